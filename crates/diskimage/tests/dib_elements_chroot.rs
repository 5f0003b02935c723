//! diskimage-builder's own elements (from the reference venv) run by our
//! executor on a real Debian root: `base debian-minimal` with DIB's
//! extra-data.d, pre-install.d, install.d and post-install.d hooks in the
//! chroot (apt from the machine's mirror), the package-installs lists
//! installed natively through DIB's `install-packages`. The root comes from
//! the crate's debootstrap (cached under `~/.cache/openstack-image-tools/
//! diskimage` or `$DISKIMAGE_TEST_CACHE`) instead of DIB's
//! `root.d/08-debootstrap`; the rest of DIB's root.d runs.
//! Needs root and the venv; minutes cold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use diskimage::executor::filter_environment;
use diskimage::rootfs::{bootstrap, RootfsSpec};
use diskimage::{
    expand_image_elements, BuildPlan, Cache, ExecOptions, Executor, ImageElementOptions,
};

fn cache_dir() -> PathBuf {
    std::env::var_os("DISKIMAGE_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::home_dir()
                .unwrap()
                .join(".cache/openstack-image-tools/diskimage")
        })
}

#[test]
fn dib_base_debian_minimal_hooks_run_in_chroot() {
    let Some(dib) = common::dib_elements() else {
        common::no_venv("dib_base_debian_minimal_hooks_run_in_chroot");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("mnt");
    let cache = Cache::open(cache_dir()).unwrap();
    let spec = RootfsSpec::debian("bookworm", "amd64").unwrap();
    bootstrap(&spec, &cache, &root, &work.path().join("debootstrap.log")).unwrap();

    let els = expand_image_elements(
        &[dib],
        &["debian-minimal".into()],
        &ImageElementOptions::default(),
    )
    .unwrap();
    let mut env = filter_environment(std::env::vars());
    env.insert("ARCH".into(), "amd64".into());
    env.insert("DIB_RELEASE".into(), "bookworm".into());
    env.insert("DIB_DISTRIBUTION_MIRROR".into(), spec.mirror.clone());
    // only the machine's own mirror is reachable (DIB's default adds the
    // security and updates suites of the public hosts)
    env.insert(
        "DIB_APT_SOURCES_CONF".into(),
        format!("default:deb {} bookworm main", spec.mirror),
    );
    let plan = BuildPlan::with_element_environment(els, env, &[]).unwrap();
    let log = work.path().join("build.log");
    let ex = Executor::prepare(
        &plan,
        &root,
        ExecOptions {
            build_dir: work.path().to_path_buf(),
            trace: 0,
            log: Some(log.clone()),
            // DIB's apt cache (dpkg's root.d binds it) survives the test
            image_cache: cache_dir().join("dib-image-cache"),
        },
    )
    .unwrap()
    .skip_scripts(["root.d/08-debootstrap".to_string()]);
    for ph in [
        "root.d",
        "extra-data.d",
        "pre-install.d",
        "install.d",
        "post-install.d",
    ] {
        if let Err(e) = ex.run_phase(ph) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            panic!(
                "{ph}: {e}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if ph == "root.d" {
            diskimage::executor::base::create_base(&root).unwrap();
        }
    }
    diskimage::executor::base::unmount_under(&root).unwrap();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let real = std::fs::canonicalize(&root).unwrap().display().to_string();
    assert!(
        !mounts.contains(&format!("{real}/")),
        "mounts left under the root"
    );
    // pkg-map files copied, install-bin's tools installed, the dpkg manifest
    // and package lists applied by DIB's own scripts and ours
    assert!(root.join("usr/share/pkg-map/base").is_file());
    assert!(root.join("usr/local/bin/install-packages").is_file());
    let installed = Command::new("chroot")
        .arg(&root)
        .args(["dpkg-query", "-W", "-f", "${Package}\\n"])
        .output()
        .unwrap();
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    // package-installs of base/debootstrap/debian-minimal (pre-install.d and install.d)
    for want in [
        "lsb-release",
        "adduser",
        "ca-certificates",
        "locales",
        "linux-image-amd64",
        // what DIB's root.d (debian-minimal's base install) adds
        "systemd-sysv",
        "python3",
    ] {
        assert!(
            installed.lines().any(|l| l == want),
            "{want} not installed:\n{installed}"
        );
    }
    // DIB's own in-chroot scripts ran
    let text = std::fs::read_to_string(&log).unwrap();
    for script in [
        "root.d/50-shared-apt-cache",
        "root.d/75-debian-minimal-baseinstall",
        "pre-install.d/99-apt-get-update",
        "install.d/10-debian-networking",
        "post-install.d/10-enable-init-scripts",
    ] {
        assert!(
            text.contains(&format!("dib-run-parts Running {script}")),
            "{script} did not run"
        );
    }
    assert!(text.contains("dib-run-parts Skipping root.d/08-debootstrap (asked)"));
    assert!(!text.contains("dib-run-parts Running root.d/08-debootstrap"));
}
