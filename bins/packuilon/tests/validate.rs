//! `packuilon validate` on the trees under `fixtures/packuilon/validate/`:
//! each directory's `expected.txt` is the exact output (notes, then every
//! problem with file and key); a tree with problems exits 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use assert_cmd::Command;

fn check(tree: &str, code: i32) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/packuilon/validate")
        .join(tree);
    let out = Command::cargo_bin("packuilon")
        .unwrap()
        .current_dir(&dir)
        .args(["--config", "config.ini", "validate"])
        .output()
        .unwrap();
    let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{tree}");
    assert_eq!(out.status.code(), Some(code), "{tree}");
}

#[test]
fn a_broken_tree_reports_every_problem_with_file_and_key() {
    check("broken", 1);
}

#[test]
fn a_good_tree_passes() {
    check("good", 0);
}

#[test]
fn a_missing_config_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("packuilon")
        .unwrap()
        .current_dir(dir.path())
        .args(["--config", "nowhere.ini", "validate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("nowhere.ini: "), "{stdout}");
}
