//! build-all's job runner: a job that times out or fails appends
//! `{"result":"failed"}` to its report (the cron wrapper's behaviour); a
//! successful one passes the bootstrap's output to `build -s`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use imagebuilder_core::build_all::{run_job, Class, Job};

/// A stand-in for the imagebuilder binary: records its arguments, prints
/// an id for `bootstrap`, and sleeps when `build` gets `-s slow`.
fn fake_program(dir: &Path, bootstrap_prints: &str) -> std::path::PathBuf {
    let p = dir.join("fake-imagebuilder");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}/calls\n\
             case \"$1\" in bootstrap) printf '{bootstrap_prints}';; \
             build) case \"$*\" in *'-s slow'*) exec sleep 600;; *'-s bad'*) exit 1;; esac;; esac\n",
            dir.display()
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

#[tokio::test]
async fn timeouts_and_failures_append_failed_and_success_passes_the_id() {
    let d = tempfile::tempdir().unwrap();
    let ok = fake_program(d.path(), "img-123");
    assert!(run_job(
        &ok,
        &job(d.path()),
        &["--backend".into(), "local".into()],
        None
    )
    .await
    .unwrap());
    let calls = std::fs::read_to_string(d.path().join("calls")).unwrap();
    assert_eq!(
        calls,
        "bootstrap -n x\nbuild -n deb -s img-123 --backend local\n"
    );
    assert!(!d.path().join("deb-report.jsonl").exists());

    let slow = fake_program(d.path(), "slow");
    let ok = run_job(&slow, &job(d.path()), &[], Some(Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(!ok);
    assert_eq!(
        std::fs::read_to_string(d.path().join("deb-report.jsonl")).unwrap(),
        "{\"result\":\"failed\"}\n"
    );

    let bad = fake_program(d.path(), "bad");
    assert!(!run_job(&bad, &job(d.path()), &[], None).await.unwrap());
    let report = std::fs::read_to_string(d.path().join("deb-report.jsonl")).unwrap();
    assert_eq!(report.lines().count(), 2);
}
