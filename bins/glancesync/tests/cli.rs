//! The `glancesync` binary over the offline CSV backend: every scenario of
//! `fixtures/glancesync` end to end, plus the CLI's own behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use glancesync_core::csv_backend::load_dir;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/glancesync")
}

fn glancesync(cwd: &Path) -> Command {
    let mut c = Command::cargo_bin("glancesync").unwrap();
    c.current_dir(cwd)
        .env_remove("GLANCESYNC_CONFIG")
        .env_remove("OS_REGION_NAME")
        .env_remove("OS_USERNAME")
        .env_remove("OS_PASSWORD")
        .env_remove("OS_AUTH_URL")
        .env_remove("OS_TENANT_NAME")
        .env_remove("RUST_LOG");
    c
}

/// `glancesync --config-file CONFIG --backend csv:STATE`, run in `cwd`.
fn on_csv(cwd: &Path, config: &Path, state: &Path) -> Command {
    let mut c = glancesync(cwd);
    c.args([
        "--config-file",
        config.to_str().unwrap(),
        "--backend",
        &format!("csv:{}", state.display()),
    ]);
    c
}

/// Copy scenario `name` into `tmp`: `tmp/config` and `tmp/state/backup_*.csv`.
fn setup(set: &str, name: &str, tmp: &Path) -> (PathBuf, PathBuf) {
    let src = fixtures().join(set).join(name);
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        if n == "config" {
            std::fs::copy(e.path(), tmp.join("config")).unwrap();
        } else {
            std::fs::copy(e.path(), state.join(&n)).unwrap();
        }
    }
    (tmp.join("config"), state)
}

/// The entry of `dir` whose name starts with `prefix` (there must be one).
fn entry_starting_with(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}… entry in {}", dir.display()))
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn expected_status(dir: &Path, regions: &[String]) -> String {
    let mut out = String::new();
    for r in regions {
        let text = std::fs::read_to_string(dir.join(format!("{r}.csv"))).unwrap();
        out.push_str(text.trim_end());
        out.push_str("\n\n");
    }
    out
}

/// `cmd --show-status REGIONS` succeeds and prints the `<region>.csv` files
/// of `expected_dir`, each followed by a blank line.
fn assert_status(mut cmd: Command, expected_dir: &Path, regions: &[String], what: &str) {
    let out = cmd.arg("--show-status").args(regions).output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        expected_status(expected_dir, regions),
        "{what}"
    );
}

fn status_regions(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".csv")
                .to_string()
        })
        .collect();
    v.sort();
    v
}

fn state_set(dir: &Path) -> BTreeSet<String> {
    load_dir(dir)
        .unwrap()
        .values()
        .flatten()
        .map(glancesync_core::Image::state_key)
        .collect()
}

fn run_scenario(set: &str, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup(set, name, tmp.path());
    let base = fixtures().join(set);
    let sync_regions: Vec<String> = std::fs::read_to_string(base.join(format!("{name}.regions")))
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();

    // --show-status before.
    let pre = base.join(format!("{name}.status_pre"));
    let regions = status_regions(&pre);
    assert_status(
        on_csv(tmp.path(), &config, &state),
        &pre,
        &regions,
        &format!("{name}: status before"),
    );

    // --dry-run changes nothing.
    let before = snapshot(&state);
    on_csv(tmp.path(), &config, &state)
        .args(["--dry-run"])
        .args(&sync_regions)
        .assert()
        .success();
    assert_eq!(
        snapshot(&state),
        before,
        "{name}: dry-run changed the state"
    );

    // Sync.
    let out = on_csv(tmp.path(), &config, &state)
        .args(&sync_regions)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut want = String::from("======Master is Valladolid\n");
    for r in &sync_regions {
        want.push_str(&format!("======{r}\n"));
    }
    assert_eq!(stdout, want, "{name}: sync output");
    assert_eq!(
        state_set(&state),
        state_set(&base.join(format!("{name}.result"))),
        "{name}: state after sync"
    );

    // --show-status after.
    assert_status(
        on_csv(tmp.path(), &config, &state),
        &base.join(format!("{name}.status_post")),
        &regions,
        &format!("{name}: status after"),
    );
}

#[test]
fn conformance_scenarios_through_the_cli() {
    for n in ["alreadysync", "emptyregions", "mixed", "metadata"] {
        run_scenario("conformance", n);
    }
}

#[test]
fn own_scenarios_through_the_cli() {
    for n in [
        "ami",
        "checksums",
        "conditions",
        "emptyset",
        "masterfilter",
        "obsolete",
        "tenantfilter",
    ] {
        run_scenario("scenarios", n);
    }
}

#[test]
fn region_expansion_and_show_regions() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup("scenarios", "checksums", tmp.path());
    on_csv(tmp.path(), &config, &state)
        .args(["--show-regions"])
        .assert()
        .success()
        .stdout("Burgos other:Madrid third:Soria\n");
    // `target:` expands; preferable_order puts listed regions first; ignore_regions drops.
    let out = on_csv(tmp.path(), &config, &state)
        .args(["--dry-run"])
        .args(["other:", "third:"])
        .args([
            "--config",
            "main.preferable_order=third:Soria",
            "other.ignore_regions=Nowhere",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "======Master is Valladolid\n======third:Soria\n======other:Madrid\n"
    );
    let out = on_csv(tmp.path(), &config, &state)
        .args(["--show-regions"])
        .args(["--config", "other.ignore_regions=Madrid"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Burgos third:Soria\n"
    );
}

#[test]
fn json_status_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup("conformance", "mixed", tmp.path());
    let out = on_csv(tmp.path(), &config, &state)
        .args(["--show-status", "--output", "json", "other:Madrid"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 5);
    assert_eq!(arr[1]["status"], "pending_upload");
    assert_eq!(arr[1]["region"], "other:Madrid");
    assert_eq!(arr[1]["image"], "image06");
}

#[test]
fn dry_run_json_prints_the_plans_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup("conformance", "mixed", tmp.path());
    let before = snapshot(&state);
    let out = on_csv(tmp.path(), &config, &state)
        .args(["--dry-run", "--output", "json", "Burgos", "other:Madrid"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&state), before, "dry-run changed the state");
    let plans: Vec<glancesync_core::RegionPlan> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[1].region, "other:Madrid");
    // The same plan value the engine computes (and a real run applies).
    let madrid_uploads = plans[1].uploads();
    assert!(madrid_uploads.contains(&"image06"), "{madrid_uploads:?}");
    for p in &plans {
        let uploads = p
            .actions
            .iter()
            .filter(|a| matches!(a, glancesync_core::Action::Upload { .. }))
            .count();
        assert_eq!(uploads, p.uploads().len());
    }
}

#[test]
fn parallel_writes_per_region_logs_and_honours_dry_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup("conformance", "mixed", tmp.path());
    let before = snapshot(&state);
    let out = on_csv(tmp.path(), &config, &state)
        .args(["--parallel", "--dry-run"])
        .args(["Burgos", "other:Madrid"])
        .args(["--config", "main.max_children=2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        snapshot(&state),
        before,
        "--parallel --dry-run changed the state"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("======Master is Valladolid\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Region Burgos has finished\n")
            && stdout.contains("Region other:Madrid has finished\n")
    );
    assert!(stdout.ends_with("All is done.\n"));
    let sync_dir = entry_starting_with(tmp.path(), "sync_");
    let name = sync_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(name.len(), "sync_20260101_1200".len(), "{name}");
    let madrid = std::fs::read_to_string(sync_dir.join("other:Madrid.txt")).unwrap();
    assert!(
        madrid.contains("other:Madrid: Pending: image06 (1024.0000476837158 MB)"),
        "{madrid}"
    );
    assert!(
        madrid.contains("other:Madrid: MBs pending : 3072"),
        "{madrid}"
    );

    // Without --dry-run the parallel sync converges like the sequential one.
    on_csv(tmp.path(), &config, &state)
        .args(["--parallel", "Burgos", "other:Madrid"])
        .assert()
        .success();
    assert_eq!(
        state_set(&state),
        state_set(&fixtures().join("conformance/mixed.result"))
    );
}

#[test]
fn make_backup_writes_requested_regions_and_master() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup("conformance", "mixed", tmp.path());
    on_csv(tmp.path(), &config, &state)
        .args(["--make-backup", "other:Madrid"])
        .assert()
        .success();
    let dir = entry_starting_with(tmp.path(), "backup_glance_");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["backup_Valladolid.csv", "backup_other:Madrid.csv"]);
    // Byte-identical round trip of the fixture rows.
    assert_eq!(
        std::fs::read(dir.join("backup_other:Madrid.csv")).unwrap(),
        std::fs::read(state.join("backup_other:Madrid.csv")).unwrap()
    );
}

#[test]
fn config_from_glancesync_config_env() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup("conformance", "mixed", tmp.path());
    glancesync(tmp.path())
        .env("GLANCESYNC_CONFIG", &config)
        .args([
            "--backend",
            &format!("csv:{}", state.display()),
            "--show-regions",
        ])
        .assert()
        .success()
        .stdout("Burgos other:Madrid\n");
    // An explicit --config-file wins over the variable.
    let other = tmp.path().join("other.conf");
    std::fs::write(
        &other,
        "[main]\nmaster_region = Valladolid\n[master]\nignore_regions = Burgos\n",
    )
    .unwrap();
    on_csv(tmp.path(), &other, &state)
        .env("GLANCESYNC_CONFIG", &config)
        .args(["--show-regions"])
        .assert()
        .success()
        .stdout("\n");
}

fn one_line_error(cwd: &Path, config_text: &str, extra: &[&str]) -> String {
    let cfg = cwd.join("bad.conf");
    std::fs::write(&cfg, config_text).unwrap();
    let state = cwd.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let out = on_csv(cwd, &cfg, &state)
        .args(["--show-status"])
        .args(extra)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("glancesync:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

#[test]
fn bad_config_gives_one_line_error_naming_file_and_option() {
    let tmp = tempfile::tempdir().unwrap();
    let e = one_line_error(
        tmp.path(),
        "[main]\nmaster_region = V\n[master]\nmetadata_condition = len(image.name) > 2\n",
        &[],
    );
    assert!(
        e.contains("bad.conf:4")
            && e.contains("[master] metadata_condition")
            && e.contains("len()"),
        "{e}"
    );
    let e = one_line_error(
        tmp.path(),
        "[main]\nmaster_region = V\n[master]\nonly_tenant_images = maybe\n",
        &[],
    );
    assert!(
        e.contains("bad.conf:4") && e.contains("only_tenant_images"),
        "{e}"
    );
    let e = one_line_error(
        tmp.path(),
        "[main]\nmaster_region = V\nnot an option line\n",
        &[],
    );
    assert!(e.contains("bad.conf:3"), "{e}");
    let e = one_line_error(
        tmp.path(),
        "[main]\nmaster_region = V\n",
        &["--config", "nosection.key=1"],
    );
    assert!(e.contains("nosection"), "{e}");
    // As with the original, --config takes every following word: a region after it is a bad override.
    let e = one_line_error(
        tmp.path(),
        "[main]\nmaster_region = V\n",
        &["--config", "main.max_children=2", "Burgos"],
    );
    assert!(
        e.contains("--config Burgos") && e.contains("key=value"),
        "{e}"
    );
    let e = one_line_error(tmp.path(), "[main]\n", &[]);
    assert!(e.contains("master region"), "{e}");
}

#[test]
fn bad_backend_and_csv_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup("conformance", "mixed", tmp.path());
    std::fs::write(
        state.join("backup_Burgos.csv"),
        "Burgos,x,1,active,notanumber,c,o,True,{}\n",
    )
    .unwrap();
    let out = on_csv(tmp.path(), &config, &state)
        .args(["--show-status", "Burgos"])
        .output()
        .unwrap();
    // The failing region is reported and skipped; the exit status says so.
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("backup_Burgos.csv:1") && stderr.contains("size"),
        "{stderr}"
    );
    let out = glancesync(tmp.path())
        .args([
            "--config-file",
            config.to_str().unwrap(),
            "--backend",
            "s3:foo",
            "--show-status",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("csv:DIR"));
}

#[test]
fn exclusive_modes() {
    let tmp = tempfile::tempdir().unwrap();
    glancesync(tmp.path())
        .args(["--dry-run", "--show-status"])
        .assert()
        .failure();
}

#[test]
fn a_failing_region_does_not_stop_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, state) = setup("conformance", "mixed", tmp.path());
    let out = on_csv(tmp.path(), &config, &state)
        .args(["Nowhere", "Burgos"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "======Master is Valladolid\n======Nowhere\n======Burgos\n"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("Nowhere: synchronisation failed") && stderr.contains("backup_Nowhere.csv"),
        "{stderr}"
    );
    let burgos: Vec<String> = state_set(&state)
        .into_iter()
        .filter(|l| l.starts_with("Burgos|"))
        .collect();
    let want: Vec<String> = state_set(&fixtures().join("conformance/mixed.result"))
        .into_iter()
        .filter(|l| l.starts_with("Burgos|"))
        .collect();
    assert_eq!(burgos, want);
}

cli_common::cli_contract_tests!("glancesync");

#[test]
fn help_keeps_the_original_option_descriptions() {
    let out = glancesync(Path::new(".")).arg("-h").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // sync.py's argparse texts, typos included, for the flags both tools share.
    for text in [
        "A tool to sync images from a master region to other regions",
        "region where the images are uploaded to",
        "show this help message and exit",
        "sync several regions in parallel",
        "override configuration options. (e.g. main.master_region=Valladolid",
        "metadata_condition='image.name=name1')",
        "do not upload actually the images",
        "do not sync, but show the synchronisation status",
        "don not sync, only show the available regions",
        "do no sync, make a backup of the regions' metadata",
    ] {
        assert!(help.contains(text), "--help lacks {text:?}:\n{help}");
    }
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    for args in [
        &["--no-such-flag"][..],
        &["--dry-run", "--show-status"],
        &["--output", "xml"],
        &["--config"],
    ] {
        let out = glancesync(Path::new(".")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("glancesync: "), "{args:?}: {stderr}");
    }
}
