//! A known password and a known token never leave `packuilon`: the binary
//! runs at its most verbose level (`-vvv`, text and JSON log records) over
//! configurations and runs that fail in every way we can provoke (malformed
//! config.ini around `RABBIT_PW`, the broker down, the real RabbitMQ on
//! 127.0.0.1:5672 refusing the password, a Packer build that fails with the
//! OpenStack password and token in its credentials file), and neither
//! appears on stdout, stderr, in any file the run wrote (build files, build
//! logs, the record) or on the command line of the child it starts (a fake
//! `packer` records its own and its parent's `/proc/<pid>/cmdline`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use cloud_test_support::leaks::{assert_files_free, assert_no_secret, closed_port, files_under};
use common::wait_for;
use lapin::options::QueueDeleteOptions;
use packuilon_core::{Broker, Config};

const PASSWORD: &str = "Kn0wn-Rabbit%Pa55;(zq)s";
const OS_PASSWORD: &str = "Kn0wn-OpenStack-Pa55word";
const TOKEN: &str = "gAAAAA-known-token-7f3a9c1e";

/// Files that hold the secrets on purpose (the inputs).
const INPUTS: [&str; 2] = ["config.ini", "openrc"];

const TRIGGER: [&str; 3] = ["trigger", "--personality", "nubes"];

const SECRETS: [&str; 3] = [PASSWORD, OS_PASSWORD, TOKEN];

fn assert_clean(what: &str, text: &str) {
    assert_no_secret(what, text, &SECRETS);
}

/// Every file under `dir` but the inputs is free of the secrets.
fn assert_files_clean(dir: &Path) {
    assert_files_free(dir, &INPUTS, &SECRETS);
}

fn packuilon(cfg: &Path, format: &str) -> StdCommand {
    let mut c = StdCommand::new(env!("CARGO_BIN_EXE_packuilon"));
    c.env_remove("RUST_LOG")
        .arg("-vvv")
        .args(["--log-format", format])
        .arg("--config")
        .arg(cfg);
    c
}

/// Run `args` in both log formats; outputs must be clean. Returns the text
/// run's stderr.
fn run_clean(cfg: &Path, args: &[&str]) -> String {
    let mut text_stderr = String::new();
    for format in ["text", "json"] {
        let out = packuilon(cfg, format).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was meant to fail");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.is_empty(), "-vvv printed nothing");
        assert_clean(&format!("{format} stdout of {args:?}"), &stdout);
        assert_clean(&format!("{format} stderr of {args:?}"), &stderr);
        if format == "text" {
            text_stderr = format!("{stdout}{stderr}");
        }
    }
    text_stderr
}

fn unique_queue(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("packuilon-secrets-{tag}-{}-{nanos}", std::process::id())
}

/// The inputs of a build in `dir`: a fake packer that records its command
/// lines and fails, a template, the maps, an openrc holding the OpenStack
/// password and token; config.ini with `host:port`, `rabbit_pw` and `extra`.
fn setup(dir: &Path, queue: &str, port: u16, rabbit_pw: &str, extra: &str) -> PathBuf {
    let packer = dir.join("fake-packer");
    common::write_executable(
        &packer,
        &format!(
            "#!/bin/sh\n{{ echo \"args: $*\"; echo \"self: $(tr '\\0' ' ' < /proc/$$/cmdline)\"; \
             echo \"parent: $(tr '\\0' ' ' < /proc/$PPID/cmdline)\"; }} > {d}/cmdlines.tmp\n\
             mv {d}/cmdlines.tmp {d}/cmdlines\necho 'fake packer: build failed'\nexit 1\n",
            d = dir.display()
        ),
    );
    std::fs::write(
        dir.join("t.json"),
        r#"{"builders": [{"type": "null", "communicator": "none", "name": $NAME, "image": $IMAGE}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("map.json"), r#"{"DEFAULT": ["t.json"]}"#).unwrap();
    std::fs::write(
        dir.join("images.json"),
        r#"{"IMAGES": {"sl": {"7x-x86_64": "img-1"}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("openrc"),
        format!(
            "export OS_AUTH_URL=http://127.0.0.1:1/v3\nexport OS_USERNAME=admin\n\
             export OS_PASSWORD='{OS_PASSWORD}'\nexport OS_TOKEN={TOKEN}\nexport OS_PROJECT_NAME=admin\n"
        ),
    )
    .unwrap();
    let cfg = dir.join("config.ini");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nQUEUE = {queue}\nRABBIT_HOST = 127.0.0.1\nRABBIT_PORT = {port}\nRABBIT_USER = guest\nRABBIT_PW = {rabbit_pw}\n\
             [rabbit2packer]\nTHREAD_COUNT = 1\nMAX_ATTEMPTS = 1\nRETRY_DELAY = 0\nLOG_DIR = {d}/logs\nBUILD_FILE_DIR = {d}/build\n\
             PACKER_AUTH_FILE = {d}/openrc\nPACKER_ADMIN_AUTH = {d}/openrc\nPACKER_TEMPLATE_MAP = {d}/map.json\nIMAGES_CONFIG = {d}/images.json\n\
             PACKER_PATH = {p}\nSTATE_DIR = {d}/state\n{extra}",
            d = dir.display(),
            p = packer.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn malformed_config_around_the_password_is_reported_without_it() {
    let dir = tempfile::tempdir().unwrap();
    for (i, extra) in [
        format!("{PASSWORD}\n"),
        format!("[{PASSWORD}\n"),
        format!("[global]\nRABBIT_PW = {PASSWORD}\n"),
        "[rename-old-images]\nRENAME_STYLE = weekly\n".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let case = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let cfg = setup(&case, "q", 5672, PASSWORD, extra);
        for args in [&["validate"][..], &["rabbit2packer"], &TRIGGER] {
            let stderr = run_clean(&cfg, args);
            assert!(stderr.contains("config.ini"), "case {i} {args:?}: {stderr}");
        }
        assert_files_clean(&case);
    }
}

#[test]
fn broker_down_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "q", closed_port(), PASSWORD, "");
    let stderr = run_clean(&cfg, &TRIGGER);
    assert!(stderr.contains("connect"), "{stderr}");
    // The service retries: let it fail twice, then stop it.
    let stderr = run_service_until(&cfg, dir.path(), "cannot consume");
    assert!(stderr.contains("connect"), "{stderr}");
    assert_files_clean(dir.path());
}

/// Run `rabbit2packer` in both log formats until its stderr (a file in
/// `dir`) shows `needle` twice, then stop it with SIGTERM; its outputs must
/// be clean. Returns the text run's stderr.
fn run_service_until(cfg: &Path, dir: &Path, needle: &str) -> String {
    let mut text_stderr = String::new();
    for format in ["text", "json"] {
        let out_path = dir.join(format!("service-{format}.out"));
        let err_path = dir.join(format!("service-{format}.err"));
        let mut service = packuilon(cfg, format)
            .arg("rabbit2packer")
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_to_string(&err_path)
            .unwrap()
            .matches(needle)
            .count()
            < 2
        {
            assert!(
                Instant::now() < deadline,
                "{needle:?} never logged twice: {}",
                std::fs::read_to_string(&err_path).unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        common::sigterm(&service);
        service.wait().unwrap();
        let stdout = std::fs::read_to_string(&out_path).unwrap();
        let stderr = std::fs::read_to_string(&err_path).unwrap();
        assert_clean(&format!("{format} stdout of rabbit2packer"), &stdout);
        assert_clean(&format!("{format} stderr of rabbit2packer"), &stderr);
        if format == "text" {
            text_stderr = stderr;
        }
    }
    text_stderr
}

#[test]
fn refused_broker_password_is_reported_without_it() {
    // The real RabbitMQ (scripts/rabbitmq/up.sh) refuses guest with another password.
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), &unique_queue("refused"), 5672, PASSWORD, "");
    let stderr = run_clean(&cfg, &TRIGGER);
    assert!(stderr.contains("RabbitMQ connect"), "{stderr}");
    let stderr = run_service_until(&cfg, dir.path(), "cannot consume");
    assert!(stderr.contains("RabbitMQ connect"), "{stderr}");
    assert_files_clean(dir.path());
}

#[tokio::test]
async fn a_failed_build_leaks_neither_password_nor_token() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let queue = unique_queue(&format!("build-{format}"));
        let cfg = setup(dir.path(), &queue, 5672, "guest", "");
        let out = packuilon(&cfg, format)
            .args(["trigger", "--personality", "nubes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "trigger failed (is RabbitMQ up? run scripts/rabbitmq/up.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Into files: a pipe nobody reads would fill up with -vvv records.
        let out_path = dir.path().join("service.out");
        let err_path = dir.path().join("service.err");
        let mut service = packuilon(&cfg, format)
            .arg("rabbit2packer")
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        wait_for(&dir.path().join("cmdlines"));
        // The build is settled once its log has the exit-code line.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !files_under(dir.path()).iter().any(|p| {
            p.starts_with(dir.path().join("logs"))
                && std::fs::read_to_string(p).is_ok_and(|t| t.contains("exit code"))
        }) {
            assert!(Instant::now() < deadline, "the build never finished");
            std::thread::sleep(Duration::from_millis(100));
        }
        common::sigterm(&service);
        service.wait().unwrap();
        let stdout = std::fs::read_to_string(&out_path).unwrap();
        let stderr = std::fs::read_to_string(&err_path).unwrap();
        assert!(
            stderr.contains("fake-packer") || stderr.contains("packer"),
            "{stderr}"
        );
        assert_clean(&format!("{format} stdout"), &stdout);
        assert_clean(&format!("{format} stderr"), &stderr);
        let cmdlines = std::fs::read_to_string(dir.path().join("cmdlines")).unwrap();
        assert!(cmdlines.contains("self: /bin/sh "), "{cmdlines}");
        assert!(cmdlines.contains("parent: "), "{cmdlines}");
        assert_clean("packer's command lines", &cmdlines);
        assert_files_clean(dir.path());

        let broker = Broker::from_config(&Config::load(&cfg).unwrap());
        let conn = broker.connect().await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        for q in [queue.clone(), packuilon_core::amqp::failed_queue(&queue)] {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
}
