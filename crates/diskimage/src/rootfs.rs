//! Root filesystems: Debian (and, untested here, Ubuntu) bootstrapped with
//! `debootstrap`, cached, plus the chroot plumbing later stages run in.
//!
//! The mirror comes from `DIB_DISTRIBUTION_MIRROR` or the machine's apt
//! sources; no registry host is written into the project. Downloaded
//! `.deb`s are kept in the cache (`debootstrap --cache-dir`, and apt's
//! archive directory bind-mounted during installs), and the bootstrapped
//! tree is stored as a tarball keyed on [`RootfsSpec::cache_key`].
//!
//! CentOS, Fedora, RHEL and Rocky roots are not bootstrapped here: their
//! diskimage-builder elements (`centos-minimal`, `fedora`, `rhel`,
//! `rocky-container`) build them in their own `root.d` scripts, run by the
//! phase executor. Only Debian can be reached from these machines, so only
//! the Debian path is tested.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::cache::{Cache, KeyChain};
use crate::cmd::{io, run, run_logged};
use crate::error::{Error, Result};
use crate::namespace::MountNamespace;

/// A distribution debootstrap can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distro {
    /// Debian (`debian`, `debian-minimal`); tested.
    Debian,
    /// Ubuntu (`ubuntu`, `ubuntu-minimal`); same code path, untested here
    /// (no Ubuntu mirror is reachable).
    Ubuntu,
}

impl Distro {
    /// The distribution of an operating-system element, if debootstrap builds it.
    /// Known elements of other families give [`Error::UnsupportedDistro`].
    pub fn from_element(element: &str) -> Result<Option<Distro>> {
        match element {
            "debian" | "debian-minimal" => Ok(Some(Distro::Debian)),
            "ubuntu" | "ubuntu-minimal" => Ok(Some(Distro::Ubuntu)),
            "centos" | "centos-minimal" | "fedora" | "fedora-minimal" | "rhel"
            | "rocky-container" | "opensuse" | "opensuse-minimal" => {
                Err(Error::UnsupportedDistro {
                    element: element.into(),
                    reason: "its root filesystem comes from its own diskimage-builder element \
                         (root.d), not from debootstrap"
                        .into(),
                })
            }
            _ => Ok(None),
        }
    }

    /// `DISTRO_NAME` as diskimage-builder exports it.
    pub fn name(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
        }
    }

    /// The release used when `DIB_RELEASE` is unset.
    pub fn default_release(self) -> &'static str {
        match self {
            Distro::Debian => "bookworm",
            Distro::Ubuntu => "noble",
        }
    }

    /// Archive components enabled in the target's apt sources.
    pub fn components(self) -> &'static str {
        match self {
            Distro::Debian => "main",
            Distro::Ubuntu => "main,universe",
        }
    }
}

/// What to bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    /// Distribution.
    pub distro: Distro,
    /// Release codename (`bookworm`, `trixie`).
    pub release: String,
    /// dpkg architecture (`amd64`, `arm64`, ...).
    pub arch: String,
    /// Mirror URL.
    pub mirror: String,
    /// debootstrap variant (`minbase` by default, as diskimage-builder).
    pub variant: String,
    /// Extra packages for debootstrap's `--include`.
    pub include: Vec<String>,
    /// `DIB_DEBOOTSTRAP_EXTRA_ARGS`, split on whitespace.
    pub extra_args: Vec<String>,
}

impl RootfsSpec {
    /// A Debian spec with the mirror resolved from the environment/apt sources.
    pub fn debian(release: &str, arch: &str) -> Result<RootfsSpec> {
        Ok(RootfsSpec {
            distro: Distro::Debian,
            release: release.into(),
            arch: arch.into(),
            mirror: resolve_mirror(Distro::Debian, release)?,
            variant: "minbase".into(),
            include: Vec::new(),
            extra_args: std::env::var("DIB_DEBOOTSTRAP_EXTRA_ARGS")
                .map(|s| s.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        })
    }

    /// The cache key of the bootstrapped tree (every input of debootstrap).
    pub fn cache_key(&self) -> String {
        let mut k = KeyChain::new("debootstrap");
        k.push_str("distro", self.distro.name())
            .push_str("release", &self.release)
            .push_str("arch", &self.arch)
            .push_str("mirror", &self.mirror)
            .push_str("variant", &self.variant)
            .push_str("include", &self.include.join(","))
            .push_str("extra", &self.extra_args.join(" "));
        k.key()
    }
}

/// The mirror: `DIB_DISTRIBUTION_MIRROR`, else the machine's apt sources.
pub fn resolve_mirror(distro: Distro, release: &str) -> Result<String> {
    if let Some(m) = std::env::var("DIB_DISTRIBUTION_MIRROR")
        .ok()
        .filter(|m| !m.trim().is_empty())
    {
        return Ok(m.trim().to_string());
    }
    let mut sources = Vec::new();
    for f in ["/etc/apt/sources.list"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            sources.push((PathBuf::from(f), t));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(t) = std::fs::read_to_string(&p) {
                sources.push((p, t));
            }
        }
    }
    match (distro, find_mirror(release, &sources)) {
        (Distro::Debian, Some(m)) => Ok(m),
        _ => Err(Error::NoMirror {
            distro: distro.name().into(),
            release: release.into(),
        }),
    }
}

/// One source entry: its URI and suites.
fn entries(path: &Path, text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "sources") {
        for stanza in text.split("\n\n") {
            let mut uri = None;
            let mut suites = Vec::new();
            let mut deb = true;
            for line in stanza.lines() {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                match k.trim() {
                    "URIs" => uri = v.split_whitespace().next().map(String::from),
                    "Suites" => suites = v.split_whitespace().map(String::from).collect(),
                    "Types" => deb = v.split_whitespace().any(|t| t == "deb"),
                    "Enabled" => deb &= v.trim() != "no",
                    _ => {}
                }
            }
            if let (Some(u), true) = (uri, deb) {
                out.push((u, suites));
            }
        }
    } else {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                continue;
            }
            let mut w: Vec<&str> = words.collect();
            if w.first().is_some_and(|o| o.starts_with('[')) {
                let end = w.iter().position(|o| o.ends_with(']')).unwrap_or(0);
                w.drain(..=end);
            }
            if let Some((u, rest)) = w.split_first() {
                out.push((
                    u.to_string(),
                    rest.first().map(|s| s.to_string()).into_iter().collect(),
                ));
            }
        }
    }
    out
}

/// The mirror for `release` in the given apt source files: the URI of an
/// entry with exactly that suite, else the first entry of a plain release
/// suite (not `-security`, whose archive has no full release).
pub fn find_mirror(release: &str, sources: &[(PathBuf, String)]) -> Option<String> {
    let all: Vec<(String, Vec<String>)> = sources.iter().flat_map(|(p, t)| entries(p, t)).collect();
    let exact = all
        .iter()
        .find(|(_, s)| s.iter().any(|s| s == release))
        .map(|(u, _)| u.clone());
    exact.or_else(|| {
        all.iter()
            .find(|(u, s)| {
                !u.contains("security") && s.iter().any(|s| !s.contains('-') && !s.contains('/'))
            })
            .map(|(u, _)| u.clone())
    })
}

/// Bootstrap `spec` into `dest` (must not exist or be empty), from the cache
/// when a tarball of the same inputs exists. Returns whether it was a hit.
#[tracing::instrument(skip_all, fields(release = %spec.release, arch = %spec.arch, dest = %dest.display()))]
pub fn bootstrap(spec: &RootfsSpec, cache: &Cache, dest: &Path, log: &Path) -> Result<bool> {
    let key = spec.cache_key();
    let _lock = cache.lock(&format!("bootstrap-{key}"))?;
    if cache.restore_tree(&key, dest)? {
        tracing::info!(key = %key, "bootstrap from cache");
        return Ok(true);
    }
    let debs = cache.debs_dir(spec.distro.name(), &spec.release, &spec.arch)?;
    let _debs_lock = cache.debs_lock(spec.distro.name(), &spec.release, &spec.arch)?;
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut cmd = Command::new("debootstrap");
    cmd.arg(format!("--variant={}", spec.variant))
        .arg(format!("--arch={}", spec.arch))
        .arg(format!("--components={}", spec.distro.components()))
        .arg(format!("--cache-dir={}", debs.display()));
    if !spec.include.is_empty() {
        cmd.arg(format!("--include={}", spec.include.join(",")));
    }
    cmd.args(&spec.extra_args)
        .arg(&spec.release)
        .arg(dest)
        .arg(&spec.mirror);
    tracing::info!("debootstrap {} {} (cold)", spec.release, spec.mirror);
    // debootstrap mounts /proc and /sys in the target: in a private
    // namespace, so a killed bootstrap leaves no mount on the host.
    let ns = MountNamespace::new()?;
    let mut in_ns = ns.command(cmd.get_program());
    in_ns.args(cmd.get_args());
    run_logged(&mut in_ns, log)?;
    ns.close();
    cache.store_tree(&key, dest)?;
    Ok(false)
}

/// Host filesystems mounted into a root tree for chroot work, inside a
/// private mount namespace ([`MountNamespace`]): the host never sees them,
/// they are unmounted (in reverse order) on drop, and they vanish with the
/// namespace whatever happens to the build.
#[derive(Debug)]
pub struct Chroot {
    root: PathBuf,
    ns: Arc<MountNamespace>,
    mounted: Vec<PathBuf>,
}

impl Chroot {
    /// Mount `/proc`, `/sys`, `/dev`, `/dev/pts` into `root`, in a new
    /// private namespace.
    pub fn enter(root: &Path) -> Result<Chroot> {
        Chroot::enter_in(root, Arc::new(MountNamespace::new()?))
    }

    /// As [`Chroot::enter`], in the namespace `ns` (shared with other work
    /// of the same build, e.g. the executor's host phases).
    pub fn enter_in(root: &Path, ns: Arc<MountNamespace>) -> Result<Chroot> {
        let mut c = Chroot {
            root: root.to_path_buf(),
            ns,
            mounted: Vec::new(),
        };
        c.mount(&["-t", "proc", "proc"], "proc")?;
        c.mount(&["--bind", "/sys"], "sys")?;
        c.mount(&["--bind", "/dev"], "dev")?;
        c.mount(&["--bind", "/dev/pts"], "dev/pts")?;
        Ok(c)
    }

    /// The root tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn mount(&mut self, args: &[&str], at: &str) -> Result<()> {
        let target = self.root.join(at);
        std::fs::create_dir_all(&target).map_err(io(&target))?;
        run(self.ns.command("mount").args(args).arg(&target))?;
        self.mounted.push(target);
        Ok(())
    }

    /// Bind-mount host directory `src` at `at` inside the root until drop.
    pub fn bind(&mut self, src: &Path, at: &str) -> Result<()> {
        let target = self.root.join(at.trim_start_matches('/'));
        std::fs::create_dir_all(&target).map_err(io(&target))?;
        run(self.ns.command("mount").arg("--bind").arg(src).arg(&target))?;
        self.mounted.push(target);
        Ok(())
    }

    /// Bind-mount the host file `src` over the file `at` inside the root
    /// until drop (the tree's own file is untouched underneath).
    pub fn bind_file(&mut self, src: &Path, at: &str) -> Result<()> {
        let target = self.root.join(at.trim_start_matches('/'));
        if !target.is_file() {
            return Err(Error::Io {
                path: target,
                source: std::io::Error::other("no such file to bind over"),
            });
        }
        run(self.ns.command("mount").arg("--bind").arg(src).arg(&target))?;
        self.mounted.push(target);
        Ok(())
    }

    /// The namespace the mounts live in.
    pub fn namespace(&self) -> &Arc<MountNamespace> {
        &self.ns
    }

    /// A command running `args` inside the chroot with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.ns.command("chroot");
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LANG", "C.UTF-8")
            .arg(&self.root)
            .args(args);
        c
    }

    /// Unmount everything now (also done on drop).
    pub fn exit(mut self) -> Result<()> {
        self.unmount_all()
    }

    fn unmount_all(&mut self) -> Result<()> {
        let mut first_err = None;
        while let Some(t) = self.mounted.pop() {
            if let Err(e) = run(self.ns.command("umount").arg(&t)) {
                // A busy mount (a leftover daemon) is detached lazily.
                if run(self.ns.command("umount").arg("-l").arg(&t)).is_err() && first_err.is_none()
                {
                    first_err = Some(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_all() {
            tracing::warn!("unmounting the chroot: {e}");
        }
    }
}

/// Keep daemons from starting inside the chroot while packages install.
pub fn block_services(root: &Path) -> Result<()> {
    let p = root.join("usr/sbin/policy-rc.d");
    std::fs::write(&p, "#!/bin/sh\nexit 101\n").map_err(io(&p))?;
    set_mode(&p, 0o755)
}

/// A wrapper put first on the chroot's `PATH` while packages install: the
/// kernel's postinst hook (`update-initramfs -c`, from a maintainer script)
/// defers to initramfs-tools' trigger instead of building an initramfs that
/// the trigger rebuilds minutes later, once more packages are configured;
/// when the trigger runs, every kernel without an initramfs gets one (an
/// update of the existing ones otherwise). The initramfs in the image is
/// the one the trigger would have built: once instead of twice.
const DEFERRED_INITRAMFS: &str = r#"#!/bin/sh
# diskimage build: one initramfs per kernel, built when initramfs-tools'
# trigger runs (removed from the tree after the package installs).
real=/usr/sbin/update-initramfs
case " $* " in
  *" -c "*)
    if [ -n "$DPKG_MAINTSCRIPT_PACKAGE" ] && dpkg-trigger --no-await update-initramfs; then
      echo "update-initramfs: deferring creation (trigger activated)"
      exit 0
    fi ;;
  *" -u "*)
    if [ -z "$DPKG_MAINTSCRIPT_PACKAGE" ]; then
      made=
      for v in $(linux-version list 2>/dev/null); do
        [ -e "/boot/initrd.img-$v" ] && continue
        "$real" -c -k "$v" || exit $?
        made=1
      done
      [ -n "$made" ] && exit 0
    fi ;;
esac
exec "$real" "$@"
"#;

const DEFERRED_INITRAMFS_PATH: &str = "usr/local/sbin/update-initramfs";

/// Put the deferring `update-initramfs` wrapper in the tree (see
/// [`DEFERRED_INITRAMFS`]); `false` when the tree already has a file there
/// (left alone).
pub fn defer_initramfs(root: &Path) -> Result<bool> {
    let p = root.join(DEFERRED_INITRAMFS_PATH);
    if std::fs::symlink_metadata(&p).is_ok() {
        return Ok(false);
    }
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    std::fs::write(&p, DEFERRED_INITRAMFS).map_err(io(&p))?;
    set_mode(&p, 0o755)?;
    Ok(true)
}

/// Remove the wrapper [`defer_initramfs`] put in the tree.
pub fn undefer_initramfs(root: &Path) -> Result<()> {
    let p = root.join(DEFERRED_INITRAMFS_PATH);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p)(e)),
        _ => Ok(()),
    }
}

/// An apt setting putting `/usr/local/sbin` first on dpkg's `PATH`
/// (apt's `DPkg::Path` default leaves `/usr/local` out), so maintainer
/// scripts find the [`defer_initramfs`] wrapper when hooks run apt
/// themselves (diskimage-builder's `install-packages`).
const DPKG_PATH_CONF: &str = "etc/apt/apt.conf.d/00diskimage-dpkg-path";

/// [`defer_initramfs`] for builds whose hooks run apt: the wrapper and
/// [`DPKG_PATH_CONF`], put in a Debian tree (one with
/// `/etc/apt/apt.conf.d`) for the duration of a phase. `false` (nothing
/// done) on any other tree, or when the tree has its own file at either
/// path.
pub fn defer_initramfs_for_hooks(root: &Path) -> Result<bool> {
    let conf = root.join(DPKG_PATH_CONF);
    if !root.join("etc/apt/apt.conf.d").is_dir() || std::fs::symlink_metadata(&conf).is_ok() {
        return Ok(false);
    }
    if !defer_initramfs(root)? {
        return Ok(false);
    }
    std::fs::write(
        &conf,
        "DPkg::Path \"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\";\n",
    )
    .map_err(io(&conf))?;
    Ok(true)
}

/// Remove what [`defer_initramfs_for_hooks`] put in the tree.
pub fn undefer_initramfs_for_hooks(root: &Path) -> Result<()> {
    undefer_initramfs(root)?;
    let p = root.join(DPKG_PATH_CONF);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p)(e)),
        _ => Ok(()),
    }
}

/// Undo [`block_services`].
pub fn unblock_services(root: &Path) -> Result<()> {
    let p = root.join("usr/sbin/policy-rc.d");
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p)(e)),
        _ => Ok(()),
    }
}

pub(crate) fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))
}

/// `apt-get install` `packages` in the chroot, with the cache's package
/// directory as apt's archive (so later builds download nothing) and, when
/// given, the cache's package lists as apt's lists (so `apt-get update`
/// only revalidates them).
#[tracing::instrument(skip_all, fields(packages = %packages.join(" ")))]
pub fn apt_install(
    chroot: &mut Chroot,
    debs: &Path,
    lists: Option<&Path>,
    packages: &[String],
    log: &Path,
) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    chroot.bind(debs, "/var/cache/apt/archives")?;
    if let Some(l) = lists {
        chroot.bind(l, "/var/lib/apt/lists")?;
    }
    run_logged(&mut chroot.command(&["apt-get", "-q", "update"]), log)?;
    // apt runs dpkg with its own PATH (`DPkg::Path`, no /usr/local):
    // the chroot's, so a build-time wrapper there (see
    // [`defer_initramfs`]) is found by maintainer scripts.
    let mut args = vec![
        "apt-get",
        "-q",
        "-y",
        "-o",
        "DPkg::Path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--no-install-recommends",
        "install",
    ];
    args.extend(packages.iter().map(String::as_str));
    run_logged(&mut chroot.command(&args), log)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// For hook-driven builds the wrapper comes with dpkg's `PATH`
    /// setting, only in a Debian tree, never over a file of the tree's own,
    /// and both go again.
    #[test]
    fn initramfs_deferral_for_hooks_comes_and_goes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        assert!(
            !defer_initramfs_for_hooks(root).unwrap(),
            "not a Debian tree"
        );
        std::fs::create_dir_all(root.join("etc/apt/apt.conf.d")).unwrap();
        assert!(defer_initramfs_for_hooks(root).unwrap());
        let conf = std::fs::read_to_string(root.join(DPKG_PATH_CONF)).unwrap();
        assert!(conf.starts_with("DPkg::Path \"/usr/local/sbin:"), "{conf}");
        let wrapper = root.join(DEFERRED_INITRAMFS_PATH);
        assert!(std::fs::read_to_string(&wrapper)
            .unwrap()
            .contains("dpkg-trigger --no-await update-initramfs"));
        undefer_initramfs_for_hooks(root).unwrap();
        assert!(!wrapper.exists() && !root.join(DPKG_PATH_CONF).exists());
        // The tree's own update-initramfs in /usr/local/sbin stays alone.
        std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
        std::fs::write(&wrapper, "mine").unwrap();
        assert!(!defer_initramfs_for_hooks(root).unwrap());
        assert!(!root.join(DPKG_PATH_CONF).exists());
        assert_eq!(std::fs::read_to_string(&wrapper).unwrap(), "mine");
    }

    fn src(name: &str, text: &str) -> (PathBuf, String) {
        (PathBuf::from(name), text.to_string())
    }

    #[test]
    fn deb822_exact_suite_wins() {
        let s = vec![
            src(
                "/etc/apt/sources.list.d/a.sources",
                "Types: deb\nURIs: http://bp.example/debian\nSuites: bookworm-backports\nComponents: main\n",
            ),
            src(
                "/etc/apt/sources.list.d/debian.sources",
                "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\n\n\
                 Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n",
            ),
        ];
        assert_eq!(
            find_mirror("bookworm", &s).as_deref(),
            Some("http://m.example/debian")
        );
        // trixie is not listed: the plain-release mirror serves it.
        assert_eq!(
            find_mirror("trixie", &s).as_deref(),
            Some("http://m.example/debian")
        );
    }

    #[test]
    fn one_line_format_with_options() {
        let s = vec![src(
            "/etc/apt/sources.list",
            "# comment\ndeb-src http://x.example/debian bookworm main\n\
             deb [arch=amd64 signed-by=/k.gpg] http://y.example/debian bookworm main\n",
        )];
        assert_eq!(
            find_mirror("bookworm", &s).as_deref(),
            Some("http://y.example/debian")
        );
        assert_eq!(find_mirror("bookworm", &[]), None);
    }

    #[test]
    fn disabled_and_source_stanzas_are_skipped() {
        let s = vec![src(
            "x.sources",
            "Types: deb-src\nURIs: http://a.example/\nSuites: bookworm\n\n\
             Types: deb\nURIs: http://b.example/\nSuites: bookworm\nEnabled: no\n",
        )];
        assert_eq!(find_mirror("bookworm", &s), None);
    }

    #[test]
    fn distro_of_elements() {
        assert_eq!(
            Distro::from_element("debian-minimal").unwrap(),
            Some(Distro::Debian)
        );
        assert_eq!(Distro::from_element("vm").unwrap(), None);
        let e = Distro::from_element("centos-minimal")
            .unwrap_err()
            .to_string();
        assert!(e.contains("centos-minimal"), "{e}");
    }

    #[test]
    fn cache_key_covers_every_input() {
        let base = RootfsSpec {
            distro: Distro::Debian,
            release: "bookworm".into(),
            arch: "amd64".into(),
            mirror: "http://m/".into(),
            variant: "minbase".into(),
            include: vec![],
            extra_args: vec![],
        };
        let mut other = base.clone();
        other.include.push("vim".into());
        assert_ne!(base.cache_key(), other.cache_key());
        let mut other = base.clone();
        other.release = "trixie".into();
        assert_ne!(base.cache_key(), other.cache_key());
        assert_eq!(base.cache_key(), base.clone().cache_key());
    }
}
