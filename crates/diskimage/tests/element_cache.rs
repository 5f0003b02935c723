//! Element builds through `ImageBuilder` on a tiny root (no debootstrap):
//! the tree-phase snapshots and what a rebuild restores, a changed element
//! restarting from the first phase it affects, and no mount left behind.
//! Needs root (chroot, mounts).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use diskimage::{ImageBuilder, ImageType};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn builder(tree: &Path, cache: &Path, out: &Path) -> ImageBuilder {
    let mut b = ImageBuilder::new(["fx-tiny-os", "fx-tiny-app"]);
    b.elements_path = vec![tree.to_path_buf()];
    b.skip_base = true;
    b.types = vec![ImageType::Tar];
    b.output = out.to_path_buf();
    b.cache_dir = cache.to_path_buf();
    b.mirror = Some("http://mirror.invalid/debian".into());
    b.release = Some("bookworm".into());
    b.block_device_config = None;
    b
}

fn tar_file(tar: &Path, member: &str) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(member)
        .output()
        .unwrap();
    assert!(out.status.success(), "{member} not in {}", tar.display());
    String::from_utf8(out.stdout).unwrap()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap().display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

fn cached(r: &diskimage::BuildReport) -> Vec<(String, bool)> {
    r.stages
        .iter()
        .map(|s| (s.name.clone(), s.cached))
        .collect()
}

#[tokio::test]
async fn rebuilds_restore_the_last_snapshot_and_rerun_from_the_change() {
    if !is_root() {
        eprintln!("needs root (chroot, mounts); skipped");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("elements");
    let st = Command::new("cp")
        .arg("-a")
        .arg(common::fixtures().join("cache-elements"))
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success());
    let cache = d.path().join("cache");

    let r1 = builder(&tree, &cache, &d.path().join("one"))
        .build()
        .await
        .unwrap();
    assert!(r1.debootstrap_ran, "root.d ran");
    assert!(cached(&r1).iter().all(|(_, c)| !c), "{:?}", r1.stages);
    assert_eq!(
        tar_file(&d.path().join("one.tar"), "./fx-tiny-app.out"),
        "fx-tiny-app v1 on fx-tiny-os\n"
    );
    assert!(mounts_under(d.path()).is_empty());
    // Quick phases are not packed; the last tree phase always is.
    let snapshots = || std::fs::read_dir(cache.join("trees")).unwrap().count();
    assert!(snapshots() >= 1 && snapshots() < r1.stages.len());

    // Same inputs: every tree phase from the cache, nothing rerun.
    let r2 = builder(&tree, &cache, &d.path().join("two"))
        .build()
        .await
        .unwrap();
    assert!(!r2.debootstrap_ran);
    let tree_phases = [
        "root.d",
        "extra-data.d",
        "pre-install.d",
        "install.d",
        "post-install.d",
        "post-root.d",
    ];
    for (name, c) in cached(&r2) {
        assert_eq!(c, tree_phases.contains(&name.as_str()), "{name}");
    }
    assert_eq!(
        tar_file(&d.path().join("two.tar"), "./fx-tiny-app.out"),
        "fx-tiny-app v1 on fx-tiny-os\n"
    );

    // A changed install.d script: install.d and later rerun, on a root
    // restored from the latest snapshot before it (or rebuilt, here
    // where every earlier phase was too quick to pack).
    let script = tree.join("fx-tiny-app/install.d/50-fx-tiny-app");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, text.replace("v1", "v2")).unwrap();
    let r3 = builder(&tree, &cache, &d.path().join("three"))
        .build()
        .await
        .unwrap();
    let c3 = cached(&r3);
    let install = c3.iter().position(|(n, _)| n == "install.d").unwrap();
    assert!(c3[install..].iter().all(|(_, c)| !c), "{c3:?}");
    assert_eq!(
        tar_file(&d.path().join("three.tar"), "./fx-tiny-app.out"),
        "fx-tiny-app v2 on fx-tiny-os\n"
    );
    assert!(mounts_under(d.path()).is_empty());
}
