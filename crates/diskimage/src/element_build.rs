//! Builds from element trees (diskimage-builder's own, the workspace's, a
//! user's `ELEMENTS_PATH`): expansion → [`BuildPlan`] → the executor's tree
//! phases (`root.d` … `post-root.d`) on a cached tree → `block-device.d`,
//! `pre-finalise.d`, `finalise.d`, `cleanup.d` on the tree → disk → GRUB →
//! outputs.
//!
//! After each tree phase the tree is snapshotted under the key from
//! [`crate::phase_cache::phase_keys`] (unless the phase was quick, see
//! `SNAPSHOT_MIN_SECONDS`, or changed nothing: then it shares the
//! previous snapshot); a rebuild restores the latest snapshot whose inputs
//! are unchanged and reruns only the later phases.
//!
//! Differences from `disk-image-create`, all forced by building without
//! block devices: the filesystem is made from the finished tree (so
//! `finalise.d` and `cleanup.d` run on the tree, before `mkfs`), and the
//! `bootloader` element's `finalise.d/50-bootloader` (which runs
//! `grub-install` on a loop device) is replaced by installing its GRUB
//! packages in the tree (unless `DIB_SKIP_GRUB_PACKAGE_INSTALL=True`), the
//! serial-console `/etc/default/grub`, and GRUB written into the image file
//! without a block device ([`crate::bootloader`]). Hooks that call `sudo` get a pass-through shim (we are root).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::apt_cache::AptCacheCopy;
use crate::builder::{dpkg_arch, BuildReport, FinishedTree, ImageBuilder, StageReport};
use crate::cache::{Cache, TreeEvictionPolicy};
use crate::cmd::io;
use crate::disk::DiskLayout;
use crate::element::{expand_image_elements, ImageElementOptions};
use crate::error::{Error, Result};
use crate::executor::{filter_environment, ExecOptions, Executor};
use crate::phase_cache::{phase_keys, TREE_PHASES};
use crate::phases::{BuildPlan, NativeStep, Step};
use crate::rootfs::{self, Chroot, Distro};
use crate::snapshot::Snapshots;

/// Phases run on the tree after the cached ones, in order.
const LATE_PHASES: &[&str] = &[
    "block-device.d",
    "pre-finalise.d",
    "finalise.d",
    "cleanup.d",
];

/// A tree phase that ran for less than this is rerun rather than
/// snapshotted (packing a Debian tree takes about this long here).
const SNAPSHOT_MIN_SECONDS: f64 = 10.0;

/// The `sudo` shim put first on the hooks' `PATH`.
const SUDO_SHIM: &str = "#!/bin/bash\n# We already run as root: drop sudo's options, run the command.\n\
while [ $# -gt 0 ]; do\n  case \"$1\" in\n    -u|-g|-C|-D|-h|-p|-r|-t|-U) shift 2 ;;\n    --) shift; break ;;\n    -*) shift ;;\n    *) break ;;\n  esac\ndone\nexec \"$@\"\n";

/// The environment the hooks start from.
fn environment(
    b: &ImageBuilder,
    cache: &Cache,
    arch: &str,
    shim: &Path,
) -> Result<BTreeMap<String, String>> {
    let mut env = filter_environment(std::env::vars());
    env.insert("ARCH".into(), arch.into());
    env.insert("DIB_IMAGE_CACHE".into(), cache.path().display().to_string());
    if let Some(r) = &b.release {
        env.insert("DIB_RELEASE".into(), r.clone());
    }
    let release = env
        .get("DIB_RELEASE")
        .cloned()
        .unwrap_or_else(|| Distro::Debian.default_release().into());
    match &b.mirror {
        Some(m) => {
            env.insert("DIB_DISTRIBUTION_MIRROR".into(), m.clone());
        }
        None if !env.contains_key("DIB_DISTRIBUTION_MIRROR") => {
            // Debian elements: the machine's apt sources, never a built-in host.
            if let Ok(m) = rootfs::resolve_mirror(Distro::Debian, &release) {
                env.insert("DIB_DISTRIBUTION_MIRROR".into(), m);
            }
        }
        None => {}
    }
    env.entry("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE".into())
        .or_insert_with(|| "1".into());
    env.insert("DIB_GRUB_TIMEOUT".into(), b.grub_timeout.clone());
    // As disk-image-create: IMAGE_NAME is the -o value (manifests go to
    // `$IMAGE_NAME.d/`), DIB_ENV the exported DIB_* variables.
    env.insert("IMAGE_NAME".into(), b.output.display().to_string());
    let dib_env: Vec<String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("DIB_"))
        .map(|(k, v)| {
            format!(
                "declare -x {k}=\"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    env.insert("DIB_ENV".into(), dib_env.join("\n"));
    let types: Vec<&str> = b.types.iter().map(|t| t.extension()).collect();
    env.insert(
        "DIB_ARGS".into(),
        format!(
            "-a {arch} -o {} -t {}{} {}",
            b.output.display(),
            types.join(","),
            if b.compress { "" } else { " -u" },
            b.elements.join(" ")
        ),
    );
    let path = env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/bin:/bin".into());
    env.insert("PATH".into(), format!("{}:{path}", shim.display()));
    Ok(env)
}

/// The layout: `DIB_BLOCK_DEVICE_CONFIG`, else the first element shipping
/// `block-device-<arch>.yaml` or `block-device-default.yaml`, else a bare
/// filesystem (no `vm`) or MBR.
fn layout(b: &ImageBuilder, plan: &BuildPlan, arch: &str, vm: bool) -> Result<DiskLayout> {
    if let Some(cfg) = &b.block_device_config {
        return match cfg.strip_prefix("file://") {
            Some(p) => DiskLayout::from_yaml(
                &std::fs::read_to_string(p).map_err(io(Path::new(p)))?,
                p,
                &b.root_label,
            ),
            None => DiskLayout::from_yaml(cfg, "DIB_BLOCK_DEVICE_CONFIG", &b.root_label),
        };
    }
    if !vm {
        return Ok(DiskLayout::filesystem(&b.root_label));
    }
    for e in &plan.elements {
        for f in [
            format!("block-device-{arch}.yaml"),
            "block-device-default.yaml".into(),
        ] {
            let p = e.path.join(&f);
            if p.is_file() {
                let text = std::fs::read_to_string(&p).map_err(io(&p))?;
                return DiskLayout::from_yaml(&text, &p.display().to_string(), &b.root_label);
            }
        }
    }
    Ok(DiskLayout::mbr(&b.root_label))
}

/// Build `b` from the element trees on `paths`.
pub(crate) async fn build(b: &ImageBuilder, paths: &[PathBuf]) -> Result<BuildReport> {
    let t0 = Instant::now();
    let arch = dpkg_arch(&b.arch)?;
    let cache = Cache::open(&b.cache_dir)?;
    let shim = cache.path().join("bin");
    std::fs::create_dir_all(&shim).map_err(io(&shim))?;
    let sudo = shim.join("sudo");
    std::fs::write(&sudo, SUDO_SHIM).map_err(io(&sudo))?;
    rootfs::set_mode(&sudo, 0o755)?;

    let expanded = expand_image_elements(
        paths,
        &b.elements,
        &ImageElementOptions {
            arch: arch.clone(),
            skip_base: b.skip_base,
            ..Default::default()
        },
    )?;
    let env = environment(b, &cache, &arch, &shim)?;
    let mut plan = BuildPlan::with_element_environment(expanded, env, &b.packages)?;
    let vm = plan.elements.iter().any(|e| e.name == "vm");
    let bootloader = plan.elements.iter().any(|e| e.name == "bootloader");
    if bootloader {
        for ph in &mut plan.phases {
            ph.steps.retain(|s| !matches!(s, Step::Script(h) if h.element == "bootloader" && h.name == "50-bootloader"));
        }
    }
    // The shared apt cache: bound by a native step, so each build binds
    // its own copy of it (see `apt_cache`).
    for ph in &mut plan.phases {
        for st in &mut ph.steps {
            if matches!(st, Step::Script(h) if h.element == "dpkg" && h.name == "50-shared-apt-cache")
            {
                *st = Step::Native {
                    name: "50-shared-apt-cache".into(),
                    element: "dpkg".into(),
                    step: NativeStep::SharedAptCache,
                };
            }
        }
    }
    let layout = layout(b, &plan, &arch, vm)?;

    let elements: Vec<(String, PathBuf)> = plan
        .elements
        .iter()
        .map(|e| (e.name.clone(), e.path.clone()))
        .collect();
    let key_vars: BTreeMap<String, String> = plan
        .environment
        .iter()
        // Per-run values that do not change the tree.
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "PATH" | "HOME" | "IMAGE_NAME" | "DIB_ENV" | "DIB_ARGS" | "DIB_IMAGE_CACHE"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let stages = phase_keys("element-build", &elements, &key_vars)?;
    let keep: Vec<String> = stages.iter().map(|s| s.key.clone()).collect();
    let _trees = cache.use_trees(TreeEvictionPolicy::from_env()?, &keep)?;

    let (work, tmpfs) = b.work_dir(&cache)?;
    // Dropped before `work` and the tmpfs its staging copies are on, after
    // completing what is pending.
    let mut snaps = Snapshots::new(
        &cache,
        tmpfs.as_ref().map(|_| work.path().join("snapshots")),
    )?;
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    // Dropped before `work`: a hook that failed before its own clean-up
    // (e.g. an apt cache bind mount) must not leave a mount that removing
    // the work directory would descend into.
    let _sweep = MountSweep(root.clone());
    let log = b.log_path(work.path())?;
    let exec = Executor::prepare(
        &plan,
        &root,
        ExecOptions {
            build_dir: work.path().to_path_buf(),
            trace: b.trace,
            log: Some(log.clone()),
            image_cache: cache.path().to_path_buf(),
        },
    )?;

    let mut reports = Vec::new();
    let last = (0..stages.len())
        .rev()
        .find(|&i| cache.has_tree(&stages[i].key));
    let first_run = last.map_or(0, |i| i + 1);
    // Declared after `exec`'s first binding, the rebinding below drops
    // first: the namespace (and what is bound on the copy) goes before
    // the copy is deleted.
    let mut apt_copy = if first_run < stages.len() {
        apt_cache_copy(&plan, &exec, &cache)?
    } else {
        None
    };
    let exec = match &apt_copy {
        Some(c) => exec.with_apt_cache(c.dir().to_path_buf()),
        None => exec,
    };
    let first = match last {
        Some(i) => {
            let t = Instant::now();
            cache.restore_tree(&stages[i].key, &root)?;
            if i + 1 < stages.len() {
                shared_apt_cache(&plan, &exec, &root)?;
            }
            for (j, s) in stages[..=i].iter().enumerate() {
                reports.push(StageReport {
                    name: s.name.clone(),
                    cached: true,
                    seconds: if j == i {
                        t.elapsed().as_secs_f64()
                    } else {
                        0.0
                    },
                });
            }
            i + 1
        }
        None => 0,
    };
    for (i, phase) in TREE_PHASES.iter().enumerate().skip(first) {
        let t = Instant::now();
        // One initramfs per kernel, as in the package stage of the
        // built-in path: the kernel's postinst defers to initramfs-tools'
        // trigger (the wrapper is gone before the snapshot).
        let deferred = *phase != "root" && rootfs::defer_initramfs_for_hooks(&root)?;
        let r = exec.run_phase(phase);
        if deferred {
            rootfs::undefer_initramfs_for_hooks(&root)?;
        }
        r?;
        // A phase without steps left the tree as it was: its snapshot is
        // the previous one (a hard link), not a re-pack of the whole tree.
        // A quick phase is not snapshotted at all (rerunning it costs less
        // than packing the tree); the last one always is, so a rebuild
        // with the same inputs goes straight to the late phases.
        let empty = plan.phase(phase).is_none_or(|p| p.steps.is_empty());
        let last = i + 1 == TREE_PHASES.len();
        if empty && i > 0 && snaps.has(&stages[i - 1].key) {
            snaps.link(&stages[i - 1].key, &stages[i].key)?;
        } else if last || t.elapsed().as_secs_f64() >= SNAPSHOT_MIN_SECONDS {
            snaps.store(&stages[i].key, &root)?;
        }
        reports.push(StageReport {
            name: stages[i].name.clone(),
            cached: false,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    let debootstrap_ran = first == 0;
    // Before the tree becomes the image (as disk-image-create unmounts
    // the image root): what root.d and later hooks mounted and left goes,
    // so finalise.d's `apt-get clean` empties the tree's archive, not the
    // shared apt cache bound on it.
    exec.unmount_hook_mounts()?;
    if let Some(c) = apt_copy.take() {
        c.check_in()?;
    }
    for phase in LATE_PHASES {
        let t = Instant::now();
        exec.run_phase(phase)?;
        reports.push(StageReport {
            name: (*phase).into(),
            cached: false,
            seconds: t.elapsed().as_secs_f64(),
        });
    }

    b.finish_build(
        FinishedTree {
            root: &root,
            work: work.path(),
            log: &log,
            layout: &layout,
            bootloader: vm && bootloader,
            stages: reports,
            debootstrap_ran,
            started: t0,
        },
        snaps,
        || prepare_grub(b, &plan, &cache, &root, &arch, &log),
    )
}

/// This build's copy of the `dpkg` element's shared apt cache
/// (`$DIB_IMAGE_CACHE/apt/$DISTRO_NAME`), unless the element is not in the
/// build or `DIB_APT_LOCAL_CACHE=0`.
fn apt_cache_copy(
    plan: &BuildPlan,
    exec: &Executor<'_>,
    cache: &Cache,
) -> Result<Option<AptCacheCopy>> {
    if !plan.elements.iter().any(|e| e.name == "dpkg") {
        return Ok(None);
    }
    let env = exec.phase_environment("root.d")?;
    if env.get("DIB_APT_LOCAL_CACHE").is_some_and(|v| v == "0") {
        return Ok(None);
    }
    let (Some(dir), Some(distro)) = (env.get("DIB_IMAGE_CACHE"), env.get("DISTRO_NAME")) else {
        return Ok(None);
    };
    let shared = Path::new(dir).join("apt").join(distro);
    AptCacheCopy::check_out(cache, &shared).map(Some)
}

/// On a tree restored past root.d, the `dpkg` element's
/// `root.d/50-shared-apt-cache` did not run in this build: bind its cache
/// (this build's copy, else `$DIB_IMAGE_CACHE/apt/$DISTRO_NAME`) on the
/// tree's apt archive again for the phases that rerun, unless
/// `DIB_APT_LOCAL_CACHE=0`.
fn shared_apt_cache(plan: &BuildPlan, exec: &Executor<'_>, root: &Path) -> Result<()> {
    if !plan.elements.iter().any(|e| e.name == "dpkg") {
        return Ok(());
    }
    let env = exec.phase_environment("root.d")?;
    if env.get("DIB_APT_LOCAL_CACHE").is_some_and(|v| v == "0") {
        return Ok(());
    }
    let (Some(cache), Some(distro)) = (env.get("DIB_IMAGE_CACHE"), env.get("DISTRO_NAME")) else {
        return Ok(());
    };
    if !root.join("var/cache/apt/archives").is_dir() {
        return Ok(());
    }
    let dir = match exec.apt_cache() {
        Some(d) => d.to_path_buf(),
        None => Path::new(cache).join("apt").join(distro),
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    exec.bind_for_phases(&dir, "var/cache/apt/archives")
}

/// What `50-bootloader` would have done to the tree before `grub-install`:
/// its GRUB packages and a serial-console `/etc/default/grub`.
fn prepare_grub(
    b: &ImageBuilder,
    plan: &BuildPlan,
    cache: &Cache,
    root: &Path,
    arch: &str,
    log: &Path,
) -> Result<()> {
    let skip = plan
        .environment
        .get("DIB_SKIP_GRUB_PACKAGE_INSTALL")
        .is_some_and(|v| v == "True");
    if !skip && arch != "amd64" && arch != "i386" {
        return Err(Error::Option {
            option: "-a".into(),
            reason: format!("GRUB for `{arch}` images (EFI) is not built here; use amd64"),
        });
    }
    if !skip && !root.join("usr/lib/grub/i386-pc").is_dir() {
        let release = plan
            .environment
            .get("DIB_RELEASE")
            .cloned()
            .unwrap_or_else(|| "bookworm".into());
        let debs = cache.debs_dir("debian", &release, arch)?;
        let _debs_lock = cache.debs_lock("debian", &release, arch)?;
        let mut chroot = Chroot::enter(root)?;
        rootfs::block_services(root)?;
        let r = rootfs::apt_install(
            &mut chroot,
            &debs,
            None,
            &["grub-pc-bin".to_string(), "grub2-common".to_string()],
            log,
        );
        rootfs::unblock_services(root)?;
        chroot.exit()?;
        r?;
    }
    let p = root.join("etc/default/grub");
    std::fs::create_dir_all(root.join("etc/default")).map_err(io(&p))?;
    std::fs::write(&p, crate::bootloader::default_grub(&b.grub_timeout)).map_err(io(&p))?;
    Ok(())
}

/// Unmounts whatever is still mounted under its path when dropped.
pub(crate) struct MountSweep(pub(crate) PathBuf);

impl Drop for MountSweep {
    fn drop(&mut self) {
        sweep_mounts(&self.0);
    }
}

/// Lazily unmount every mount point at or under `root`, deepest first.
fn sweep_mounts(root: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = root.display().to_string();
    let under = format!("{prefix}/");
    let mut points: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&under))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        tracing::warn!(mount = %p, "left mounted by a hook; unmounting");
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(p)
            .status();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mounted(p: &Path) -> bool {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let p = p.display().to_string();
        text.lines()
            .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
    }

    /// A bind mount left under the root (as a failed hook leaves one) is
    /// gone after the sweep, and the bound directory keeps its files.
    #[test]
    fn sweep_unmounts_leftovers_and_keeps_the_bound_files() {
        let t = tempfile::tempdir().unwrap();
        let keep = t.path().join("cache");
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("a.deb"), "x").unwrap();
        let root = t.path().join("root");
        let at = root.join("var/cache/apt/archives");
        std::fs::create_dir_all(&at).unwrap();
        let st = std::process::Command::new("mount")
            .arg("--bind")
            .arg(&keep)
            .arg(&at)
            .status()
            .unwrap();
        assert!(st.success(), "mount --bind (needs root)");
        assert!(mounted(&at));
        drop(MountSweep(root.clone()));
        assert!(!mounted(&at));
        std::fs::remove_dir_all(&root).unwrap();
        assert!(keep.join("a.deb").is_file());
    }
}
