//! The phase executor: applies a [`BuildPlan`] to a root tree.
//!
//! The merged hook tree is copied to `TMP_HOOKS_PATH` (`<build dir>/hooks`).
//! Before each phase the `environment.d` files are sourced by bash (with
//! `set -eu -o pipefail` and tracing, as dib-run-parts does) and the
//! exported result becomes the environment of that phase's scripts.
//! Outside-chroot phases run on the host with `TARGET_ROOT` (root.d,
//! cleanup.d), `TMP_MOUNT_PATH`, `TMP_HOOKS_PATH`, `TMP_BUILD_DIR`, `ARCH`
//! and the `DIB_*` variables; in-chroot phases run through `chroot` with the
//! hooks bind-mounted at `/tmp/in_target.d` and /proc, /sys, /dev,
//! /dev/pts mounted, all unmounted on every exit path (a guard's drop);
//! what the hooks themselves mount below the root is unmounted when the
//! [`Executor`] is dropped (or by [`base::unmount_under`] earlier).
//! Only `DIB_*` and the variables listed in [`PASSTHROUGH`] reach a hook
//! from the caller's environment.

pub mod base;
mod native;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::namespace::MountNamespace;
use crate::phases::{BuildPlan, HookFile, Phase, PhasePlan, Step};
use crate::rootfs::Chroot;

/// Variables besides `DIB_*` taken from the caller's environment.
pub const PASSTHROUGH: &[&str] = &[
    "ARCH",
    "ELEMENTS_PATH",
    "IMAGE_NAME",
    "FS_TYPE",
    "IMAGE_TYPE",
    "PATH",
    "HOME",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// The standard directories added to `PATH` inside the chroot.
const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Keep only `DIB_*` and [`PASSTHROUGH`] variables of `vars`.
pub fn filter_environment(
    vars: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| k.starts_with("DIB_") || PASSTHROUGH.contains(&k.as_str()))
        .collect()
}

/// How the executor runs.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// `TMP_BUILD_DIR`: the hooks are copied to `<build_dir>/hooks`.
    pub build_dir: PathBuf,
    /// `-x` count: `DIB_DEBUG_TRACE`.
    pub trace: u32,
    /// Append the hooks' output here (else it goes to our stdout/stderr).
    pub log: Option<PathBuf>,
    /// The image cache (`DIB_IMAGE_CACHE`, source repositories live under it).
    pub image_cache: PathBuf,
}

/// A plan bound to a root tree and a build directory.
#[derive(Debug)]
pub struct Executor<'a> {
    plan: &'a BuildPlan,
    root: PathBuf,
    hooks: PathBuf,
    opts: ExecOptions,
    skip: Vec<String>,
    /// The directory bound as the shared apt cache (see [`Executor::with_apt_cache`]).
    apt_cache: Option<PathBuf>,
    /// The private mount namespace every phase runs in, started on first
    /// use: mounts a hook leaves stay there across phases (as in DIB) but
    /// never reach the host, and die with the executor or the process.
    ns: Mutex<Option<Arc<MountNamespace>>>,
}

/// What one phase ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseReport {
    /// The phase directory.
    pub phase: String,
    /// Step names in the order they ran.
    pub ran: Vec<String>,
}

impl<'a> Executor<'a> {
    /// Copy the plan's hook tree into `<build_dir>/hooks` (replacing any old
    /// copy) and bind it to `root`.
    pub fn prepare(plan: &'a BuildPlan, root: &Path, opts: ExecOptions) -> Result<Executor<'a>> {
        let hooks = opts.build_dir.join("hooks");
        if hooks.exists() {
            std::fs::remove_dir_all(&hooks).map_err(|source| Error::Io {
                path: hooks.clone(),
                source,
            })?;
        }
        mkdir(&hooks)?;
        for (dir, files) in &plan.hooks {
            let dest = if dir.is_empty() {
                hooks.clone()
            } else {
                hooks.join(dir)
            };
            mkdir(&dest)?;
            for f in files {
                copy_entry(&f.source, &dest.join(&f.name))?;
            }
        }
        // install-types: link the chosen `<element>-<type>-install/` scripts
        // into install.d, as DIB does
        for ph in &plan.phases {
            for st in &ph.steps {
                if let Step::Script(HookFile {
                    name,
                    via: Some(sub),
                    ..
                }) = st
                {
                    let link = hooks.join(ph.phase.dir).join(name);
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(format!("{sub}/{name}"), &link).map_err(
                        |source| Error::Io {
                            path: link.clone(),
                            source,
                        },
                    )?;
                }
            }
        }
        write_sudo_shim(&opts.build_dir.join("sudo-shim"))?;
        Ok(Executor {
            plan,
            root: root.to_path_buf(),
            hooks,
            opts,
            skip: Vec::new(),
            apt_cache: None,
            ns: Mutex::new(None),
        })
    }

    /// Do not run these hook scripts, given as `<phase dir>/<script>` (e.g.
    /// `root.d/08-debootstrap` when the caller bootstraps the root itself).
    pub fn skip_scripts(mut self, scripts: impl IntoIterator<Item = String>) -> Self {
        self.skip.extend(scripts);
        self
    }

    /// Bind `dir` (this build's [`crate::apt_cache::AptCacheCopy`]) on the
    /// tree's apt archive where the `dpkg` element's
    /// `root.d/50-shared-apt-cache` would bind
    /// `$DIB_IMAGE_CACHE/apt/$DISTRO_NAME` (the step
    /// [`crate::phases::NativeStep::SharedAptCache`]).
    pub fn with_apt_cache(mut self, dir: PathBuf) -> Self {
        self.apt_cache = Some(dir);
        self
    }

    /// The directory [`Executor::with_apt_cache`] gave, if any.
    pub fn apt_cache(&self) -> Option<&Path> {
        self.apt_cache.as_deref()
    }

    /// The build's private mount namespace (started on first use).
    pub fn namespace(&self) -> Result<Arc<MountNamespace>> {
        let mut g = self.ns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ns) = g.as_ref() {
            return Ok(ns.clone());
        }
        let ns = Arc::new(MountNamespace::new()?);
        *g = Some(ns.clone());
        Ok(ns)
    }

    /// The environment of phase `dir`'s hooks: the base environment with
    /// the `environment.d` files sourced.
    pub fn phase_environment(&self, dir: &str) -> Result<BTreeMap<String, String>> {
        let ph = crate::phases::phase(dir).ok_or_else(|| Error::Option {
            option: "phase".into(),
            reason: format!("unknown phase `{dir}`"),
        })?;
        self.source_env(ph, &self.base_environment(ph))
    }

    /// Unmount what the hooks mounted below the root and left (inside the
    /// build's namespace), as `disk-image-create` does before the tree
    /// becomes the image: finalise.d's clean-ups then touch the tree, not
    /// a bound cache.
    pub fn unmount_hook_mounts(&self) -> Result<()> {
        let started = self.ns.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match started {
            Some(ns) => ns.unmount_under(&self.root),
            None => Ok(()),
        }
    }

    /// Bind-mount `src` at `at` (inside the root) in the build's namespace,
    /// for the phases that follow (as a root.d hook's mount would be).
    pub fn bind_for_phases(&self, src: &Path, at: &str) -> Result<()> {
        let target = self.root.join(at.trim_start_matches('/'));
        mkdir(&target)?;
        crate::cmd::run(
            self.namespace()?
                .command("mount")
                .arg("--bind")
                .arg(src)
                .arg(&target),
        )
        .map(|_| ())
    }

    /// `TMP_HOOKS_PATH`.
    pub fn hooks_path(&self) -> &Path {
        &self.hooks
    }

    /// The environment a phase starts from, before `environment.d`.
    pub fn base_environment(&self, phase: Phase) -> BTreeMap<String, String> {
        let mut env = self.plan.environment.clone();
        let host_path = env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| "/usr/bin:/bin".into());
        let host_path = [host_path.as_str(), "/usr/local/sbin", "/usr/sbin", "/sbin"]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(":");
        let root = self.root.display().to_string();
        env.insert(
            "TMP_BUILD_DIR".into(),
            self.opts.build_dir.display().to_string(),
        );
        env.insert("TMP_HOOKS_PATH".into(), self.hooks.display().to_string());
        env.insert("TMP_MOUNT_PATH".into(), root.clone());
        if phase.target_root {
            env.insert("TARGET_ROOT".into(), root);
        }
        env.insert("DIB_DEBUG_TRACE".into(), self.opts.trace.to_string());
        env.entry("DIB_IMAGE_CACHE".into())
            .or_insert_with(|| self.opts.image_cache.display().to_string());
        dib_defaults(&mut env, &self.plan.elements);
        env.insert("LC_ALL".into(), "C".into());
        if phase.in_target {
            env.insert(
                "PATH".into(),
                format!("/tmp/in_target.d/bin:{host_path}:{CHROOT_PATH}"),
            );
            env.insert("HOME".into(), "/root".into());
        } else {
            // DIB's host hooks call `sudo`; running as root, a host without
            // sudo gets a shim that runs the command as is (a real sudo earlier
            // on PATH wins)
            let shim = self.opts.build_dir.join("sudo-shim");
            env.insert("PATH".into(), format!("{host_path}:{}", shim.display()));
        }
        env
    }

    /// Run every phase in DIB order.
    pub fn run_all(&self) -> Result<Vec<PhaseReport>> {
        self.plan.phases.iter().map(|p| self.run(p)).collect()
    }

    /// Run phase `dir` (`install.d` or `install`).
    pub fn run_phase(&self, dir: &str) -> Result<PhaseReport> {
        let plan = self.plan.phase(dir).ok_or_else(|| Error::Option {
            option: "phase".into(),
            reason: format!("unknown phase `{dir}`"),
        })?;
        self.run(plan)
    }

    fn run(&self, plan: &PhasePlan) -> Result<PhaseReport> {
        let ph = plan.phase;
        let span = tracing::info_span!("phase", phase = ph.dir, in_target = ph.in_target);
        let _g = span.enter();
        let mut report = PhaseReport {
            phase: ph.dir.to_string(),
            ran: Vec::new(),
        };
        if plan.steps.is_empty() {
            return Ok(report);
        }
        if self.opts.trace > 0 && !plan.skipped.is_empty() {
            let names: Vec<&str> = plan.skipped.iter().map(|h| h.name.as_str()).collect();
            self.log_line(&format!(
                "dib-run-parts Ignoring non-executable files or non-conforming names: {}",
                names.join(" ")
            ))?;
        }
        let base = self.base_environment(ph);
        let ns = self.namespace()?;
        let chroot = if ph.in_target {
            let mut c = Chroot::enter_in(&self.root, ns.clone())?;
            c.bind(&self.hooks, "tmp/in_target.d")?;
            Some(c)
        } else {
            None
        };
        let result = (|| -> Result<()> {
            let env = self.source_env(ph, &base)?;
            for step in &plan.steps {
                if self
                    .skip
                    .iter()
                    .any(|k| *k == format!("{}/{}", ph.dir, step.name()))
                {
                    self.log_line(&format!(
                        "dib-run-parts Skipping {}/{} (asked)",
                        ph.dir,
                        step.name()
                    ))?;
                    continue;
                }
                report.ran.push(step.name().to_string());
                match step {
                    Step::Script(h) => self.run_script(ph, h, &env)?,
                    Step::Native {
                        name,
                        element,
                        step,
                    } => {
                        tracing::info!(step = %name, element = %element, "native step");
                        native::run(self, ph, step, &env)?;
                    }
                }
            }
            Ok(())
        })();
        if let Some(c) = chroot {
            let unmounted = c.exit();
            let mnt = self.root.join("tmp/in_target.d");
            let _ = std::fs::remove_dir(&mnt);
            result?;
            unmounted?;
        } else {
            result?;
        }
        Ok(report)
    }

    fn source_env(
        &self,
        ph: Phase,
        base: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let files: Vec<String> = self
            .plan
            .environment_files
            .iter()
            .map(|h| {
                if ph.in_target {
                    format!("/tmp/in_target.d/environment.d/{}", h.name)
                } else {
                    self.hooks
                        .join("environment.d")
                        .join(&h.name)
                        .display()
                        .to_string()
                }
            })
            .collect();
        let chroot = ph.in_target.then_some(self.root.as_path());
        let ns = self.namespace()?;
        source_environment_in(&files, base, chroot, self.log_target()?, Some(&ns)).map_err(
            |reason| Error::Environment {
                phase: ph.dir.to_string(),
                reason,
            },
        )
    }

    fn run_script(&self, ph: Phase, h: &HookFile, env: &BTreeMap<String, String>) -> Result<()> {
        let span = tracing::info_span!("script", script = %h.name, element = %h.element);
        let _g = span.enter();
        self.log_line(&format!("dib-run-parts Running {}/{}", ph.dir, h.name))?;
        let ns = self.namespace()?;
        let mut cmd = if ph.in_target {
            let mut c = ns.command("chroot");
            c.arg(&self.root)
                .arg(format!("/tmp/in_target.d/{}/{}", ph.dir, h.name));
            c
        } else {
            ns.command(self.hooks.join(ph.dir).join(&h.name))
        };
        cmd.env_clear().envs(env);
        let status = self.spawn(&mut cmd)?;
        if !status.success() {
            return Err(Error::Script {
                phase: ph.dir.to_string(),
                script: h.name.clone(),
                element: h.element.clone(),
                status: status.to_string(),
            });
        }
        self.log_line(&format!("dib-run-parts {} completed", h.name))
    }

    /// Run `cmd` with its output to the log (or inherited).
    fn spawn(&self, cmd: &mut Command) -> Result<std::process::ExitStatus> {
        let (out, err) = match self.log_target()? {
            Some(f) => (
                Stdio::from(clone(&f, self.opts.log.as_deref())?),
                Stdio::from(f),
            ),
            None => (Stdio::inherit(), Stdio::inherit()),
        };
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| Error::Command {
                program: format!("{cmd:?}"),
                status: "not started".into(),
                stderr: e.to_string(),
            })
    }

    fn log_target(&self) -> Result<Option<std::fs::File>> {
        let Some(p) = &self.opts.log else {
            return Ok(None);
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map(Some)
            .map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })
    }

    fn log_line(&self, line: &str) -> Result<()> {
        tracing::debug!("{line}");
        if let Some(mut f) = self.log_target()? {
            use std::io::Write;
            let p = self.opts.log.clone().unwrap_or_default();
            writeln!(f, "{line}").map_err(|source| Error::Io { path: p, source })?;
        }
        Ok(())
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn plan(&self) -> &BuildPlan {
        self.plan
    }

    pub(crate) fn options(&self) -> &ExecOptions {
        &self.opts
    }

    /// Run `args` inside the chroot with `env`, output logged; an error
    /// names `what` on failure.
    pub(crate) fn chroot_command(
        &self,
        args: &[String],
        env: &BTreeMap<String, String>,
        what: (&str, &str, &str),
    ) -> Result<()> {
        let mut c = self.namespace()?.command("chroot");
        c.arg(&self.root).args(args).env_clear().envs(env);
        let status = self.spawn(&mut c)?;
        if status.success() {
            return Ok(());
        }
        Err(Error::Script {
            phase: what.0.to_string(),
            script: what.1.to_string(),
            element: what.2.to_string(),
            status: format!("{}: {status}", args.join(" ")),
        })
    }
}

impl Drop for Executor<'_> {
    /// Like DIB's exit trap: whatever hooks mounted below the root and left
    /// (an apt cache bind, a `/proc`) is unmounted when the executor goes
    /// away, also when a phase failed or a panic unwinds.
    fn drop(&mut self) {
        if self.root.exists() {
            if let Err(e) = base::unmount_under(&self.root) {
                tracing::warn!(
                    "unmounting what the hooks left under {}: {e}",
                    self.root.display()
                );
            }
        }
    }
}

fn clone(f: &std::fs::File, p: Option<&Path>) -> Result<std::fs::File> {
    f.try_clone().map_err(|source| Error::Io {
        path: p.map(Path::to_path_buf).unwrap_or_default(),
        source,
    })
}

/// Add the variables `disk-image-create` exports to every hook, unless
/// `env` has them: `ARCH` (host), `IMAGE_NAME` (`image`), `FS_TYPE`,
/// `IMAGE_TYPE`, `DIB_CHECKSUM`, `DIB_NO_TMPFS`, `DIB_MIN_TMPFS`,
/// `DIB_OFFLINE`, `DIB_DEFAULT_INSTALLTYPE`, `DIB_PYTHON_EXEC`,
/// `DIB_DEBUG_TRACE`, `LC_ALL=C`; and always `IMAGE_ELEMENT`,
/// `IMAGE_ELEMENT_YAML` and the exported `get_image_element_array` function.
pub fn dib_defaults(env: &mut BTreeMap<String, String>, elements: &[crate::element::Element]) {
    for (k, v) in [
        ("IMAGE_NAME", "image"),
        ("FS_TYPE", "ext4"),
        ("IMAGE_TYPE", "qcow2"),
        ("DIB_CHECKSUM", "0"),
        ("DIB_NO_TMPFS", "0"),
        ("DIB_MIN_TMPFS", "2"),
        ("DIB_OFFLINE", ""),
        ("DIB_DEFAULT_INSTALLTYPE", "source"),
        ("DIB_PYTHON_EXEC", "python3"),
        ("DIB_DEBUG_TRACE", "0"),
    ] {
        env.entry(k.into()).or_insert_with(|| v.into());
    }
    env.entry("ARCH".into()).or_insert_with(host_arch);
    let names: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
    env.insert("IMAGE_ELEMENT".into(), names.join(" "));
    let mut yaml = String::new();
    let mut array = String::new();
    for e in elements {
        yaml.push_str(&format!("{}: {}\n", e.name, e.path.display()));
        array.push_str(&format!("[{}]={} ", e.name, e.path.display()));
    }
    env.insert("IMAGE_ELEMENT_YAML".into(), yaml);
    env.insert(
        "BASH_FUNC_get_image_element_array%%".into(),
        format!("() {{  echo \"{array}\"\n}}"),
    );
    env.insert("LC_ALL".into(), "C".into());
}

/// Source `files` in order with bash (`set -eu -o pipefail`, traced) in
/// environment `base` — inside `chroot` when given — and return the
/// exported environment afterwards (exported functions included). Trace
/// output goes to `log` when given. The error is bash's error output.
pub fn source_environment(
    files: &[String],
    base: &BTreeMap<String, String>,
    chroot: Option<&Path>,
    log: Option<std::fs::File>,
) -> std::result::Result<BTreeMap<String, String>, String> {
    source_environment_in(files, base, chroot, log, None)
}

/// [`source_environment`] inside the namespace `ns` when given.
fn source_environment_in(
    files: &[String],
    base: &BTreeMap<String, String>,
    chroot: Option<&Path>,
    log: Option<std::fs::File>,
    ns: Option<&MountNamespace>,
) -> std::result::Result<BTreeMap<String, String>, String> {
    const SCRIPT: &str = "set -ue; set -o pipefail; for f in \"$@\"; do echo \"dib-run-parts Sourcing environment file $f\" >&2; set -o xtrace; source \"$f\"; set +o xtrace; done; env -0";
    let new = |program: &str| match ns {
        Some(ns) => ns.command(program),
        None => Command::new(program),
    };
    let mut cmd = match chroot {
        Some(root) => {
            let mut c = new("chroot");
            c.arg(root).arg("/bin/bash");
            c
        }
        None => new("bash"),
    };
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg("bash")
        .args(files)
        .env_clear()
        .envs(base);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let logged = log.is_some();
    match log {
        Some(f) => cmd.stderr(Stdio::from(f)),
        None => cmd.stderr(Stdio::piped()),
    };
    let out = cmd.output().map_err(|e| format!("bash: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(if logged {
            format!("{} (see the build log)", out.status)
        } else {
            format!("{}: {}", out.status, crate::cmd::tail(&err, 4))
        });
    }
    let mut env = BTreeMap::new();
    for item in out.stdout.split(|b| *b == 0) {
        let s = String::from_utf8_lossy(item);
        if let Some((k, v)) = s.split_once('=') {
            if !matches!(k, "_" | "SHLVL" | "OLDPWD" | "PWD") && !k.is_empty() {
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    Ok(env)
}

/// The host architecture in DIB's spelling (`dpkg --print-architecture`,
/// else `uname -m` mapped).
pub fn host_arch() -> String {
    if let Ok(o) = Command::new("dpkg").arg("--print-architecture").output() {
        let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !s.is_empty() {
            return s;
        }
    }
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "arm" => "armhf".into(),
        other => other.into(),
    }
}

/// `sudo` for a build already running as root: drops sudo's options
/// (`-E`, `-n`, `-H`, ...) and runs the command.
fn write_sudo_shim(dir: &Path) -> Result<()> {
    mkdir(dir)?;
    let p = dir.join("sudo");
    let script = "#!/bin/sh\n# diskimage: the build runs as root; sudo runs the command as is.\nwhile [ $# -gt 0 ]; do\n  case \"$1\" in\n    -u|-g|-C|-p) shift 2 ;;\n    --) shift; break ;;\n    -*) shift ;;\n    *) break ;;\n  esac\ndone\nexec \"$@\"\n";
    std::fs::write(&p, script).map_err(|source| Error::Io {
        path: p.clone(),
        source,
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
        .map_err(|source| Error::Io { path: p, source })
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|source| Error::Io {
        path: p.to_path_buf(),
        source,
    })
}

/// `cp -a src dest` (files, directories, symlinks; modes kept); a
/// directory onto an existing one merges into it.
fn copy_entry(src: &Path, dest: &Path) -> Result<()> {
    if src.is_dir() && dest.is_dir() {
        let mut from = src.as_os_str().to_owned();
        from.push("/.");
        return crate::cmd::run(Command::new("cp").arg("-a").arg(from).arg(dest)).map(|_| ());
    }
    crate::cmd::run(Command::new("cp").arg("-a").arg(src).arg(dest)).map(|_| ())
}
