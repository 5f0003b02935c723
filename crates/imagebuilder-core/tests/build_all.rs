//! build-all's job runner against a stand-in for the imagebuilder binary:
//! a success passes the bootstrap's output to `build -s`; every failure
//! ends the report with the original's lines (`result_imagebuilder`,
//! `output_imagebuilder`, `result: failed`): a failed bootstrap (its exit
//! code and standard error, also in the plain log), a build past the time
//! limit (SIGTERM, code 124) or dying without its report, while a build
//! that wrote its own report on SIGTERM gets no second `failed` line; a
//! stop (SIGINT/SIGTERM of build-all) is passed on to the running child.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imagebuilder_core::build_all::{run_job, Class, Job, JobEnd};

/// A stand-in for the imagebuilder binary: records its arguments, runs
/// `bootstrap_body` for `bootstrap` and `build_body` for `build`.
fn fake_program(dir: &Path, bootstrap_body: &str, build_body: &str) -> PathBuf {
    let p = dir.join("fake-imagebuilder");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$@\" >> {dir}/calls\n\
             case \"$1\" in\n bootstrap) {bootstrap_body};;\n build) {build_body};;\nesac\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn job(dir: &Path) -> Job {
    Job {
        name: "deb".into(),
        class: Class::Standard,
        env: BTreeMap::from([("IMAGEBUILDER_REPORT".to_string(), "true".to_string())]),
        bootstrap: vec!["bootstrap".into(), "-n".into(), "x".into()],
        build: vec!["build".into(), "-n".into(), "deb".into()],
        report: dir.join("deb-report.jsonl"),
    }
}

fn report(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("deb-report.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn never() -> std::future::Pending<()> {
    std::future::pending()
}

fn today() -> String {
    chrono::Local::now().format("%Y%m%d").to_string()
}

#[tokio::test]
async fn success_passes_the_id_and_writes_nothing_more() {
    let d = tempfile::tempdir().unwrap();
    let ok = fake_program(d.path(), "printf img-123", "true");
    let end = run_job(
        &ok,
        &job(d.path()),
        &["--backend".into(), "local".into()],
        None,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(end, JobEnd::Succeeded);
    let calls = std::fs::read_to_string(d.path().join("calls")).unwrap();
    assert_eq!(
        calls,
        "bootstrap -n x\nbuild -n deb -s img-123 --backend local\n"
    );
    assert!(!d.path().join("deb-report.jsonl").exists());
}

#[tokio::test]
async fn a_failed_bootstrap_gets_the_originals_report_lines() {
    let d = tempfile::tempdir().unwrap();
    // Last week's report: overwritten, as the build script does.
    std::fs::write(
        d.path().join("deb-report.jsonl"),
        "{\"result\":\"success\"}\n",
    )
    .unwrap();
    let p = fake_program(
        d.path(),
        "echo 'checksum not ok: the sha256 of x is not in y' >&2; exit 3",
        "echo build must not run; exit 9",
    );
    let end = run_job(&p, &job(d.path()), &[], None, never())
        .await
        .unwrap();
    assert_eq!(end, JobEnd::Failed);
    let calls = std::fs::read_to_string(d.path().join("calls")).unwrap();
    assert_eq!(
        calls, "bootstrap -n x\n",
        "build ran after a failed bootstrap"
    );
    let lines = report(d.path());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "3"}));
    let out = lines[1]["output_imagebuilder"].as_str().unwrap();
    assert!(
        out.starts_with("checksum not ok: the sha256 of x is not in y\\n"),
        "{out}"
    );
    assert!(
        out.contains("bootstrap of deb failed (exit code 3)"),
        "{out}"
    );
    assert_eq!(lines[2], serde_json::json!({"result": "failed"}));
    let log = std::fs::read_to_string(d.path().join(format!("deb-build-{}.log", today()))).unwrap();
    assert!(log.starts_with("checksum not ok"), "{log}");

    // A bootstrap that succeeds without printing an id: no `build -s ''`.
    let d = tempfile::tempdir().unwrap();
    let p = fake_program(d.path(), "true", "exit 9");
    let end = run_job(&p, &job(d.path()), &[], None, never())
        .await
        .unwrap();
    assert_eq!(end, JobEnd::Failed);
    let lines = report(d.path());
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "1"}));
    assert!(lines[1]["output_imagebuilder"]
        .as_str()
        .unwrap()
        .contains("printed no image id"));
    assert_eq!(lines[2], serde_json::json!({"result": "failed"}));
}

#[tokio::test]
async fn a_build_past_the_limit_or_without_its_report_is_reported_failed() {
    // Killed by the SIGTERM of the time limit before writing anything.
    let d = tempfile::tempdir().unwrap();
    let slow = fake_program(d.path(), "printf slow", "exec sleep 600");
    let end = run_job(
        &slow,
        &job(d.path()),
        &[],
        Some(Duration::from_secs(2)),
        never(),
    )
    .await
    .unwrap();
    assert_eq!(end, JobEnd::Failed);
    let lines = report(d.path());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "124"}));
    assert_eq!(lines[2], serde_json::json!({"result": "failed"}));

    // Failing with exit 1 and no report of its own.
    let d = tempfile::tempdir().unwrap();
    let bad = fake_program(d.path(), "printf bad", "echo oops; exit 1");
    let end = run_job(&bad, &job(d.path()), &[], None, never())
        .await
        .unwrap();
    assert_eq!(end, JobEnd::Failed);
    let lines = report(d.path());
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "1"}));
    assert_eq!(
        lines.last().unwrap(),
        &serde_json::json!({"result": "failed"})
    );
}

/// A build that cleans up on SIGTERM and writes its own three lines
/// (copied from `$GOOD`).
const GRACEFUL_BUILD: &str =
    "trap 'kill $!; cp \"$GOOD\" \"$REPORT\"; exit 1' TERM; sleep 600 & wait";

fn graceful_job(dir: &Path) -> Job {
    let good = dir.join("good.jsonl");
    std::fs::write(
        &good,
        "{\"result_imagebuilder\":\"1\"}\n{\"output_imagebuilder\":\"cleaned up\\\\n\"}\n{\"result\":\"failed\"}\n",
    )
    .unwrap();
    let mut j = job(dir);
    j.env.insert("GOOD".into(), good.display().to_string());
    j.env.insert(
        "REPORT".into(),
        dir.join("deb-report.jsonl").display().to_string(),
    );
    j
}

#[tokio::test]
async fn a_build_reporting_on_sigterm_gets_no_second_line_and_stop_is_passed_on() {
    let d = tempfile::tempdir().unwrap();
    let p = fake_program(d.path(), "printf img", GRACEFUL_BUILD);
    let j = graceful_job(d.path());
    let end = run_job(&p, &j, &[], Some(Duration::from_secs(2)), never())
        .await
        .unwrap();
    assert_eq!(end, JobEnd::Failed);
    let lines = report(d.path());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1]["output_imagebuilder"], "cleaned up\\n");

    // build-all's own SIGTERM (the stop future): the child gets SIGTERM.
    let d = tempfile::tempdir().unwrap();
    let p = fake_program(d.path(), "printf img", GRACEFUL_BUILD);
    let j = graceful_job(d.path());
    let end = run_job(
        &p,
        &j,
        &[],
        None,
        tokio::time::sleep(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    assert_eq!(end, JobEnd::Interrupted);
    let lines = report(d.path());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2], serde_json::json!({"result": "failed"}));
}
