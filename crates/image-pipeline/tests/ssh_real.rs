//! The SSH layer against a real OpenSSH server: each test starts a private
//! `/usr/sbin/sshd` on a free loopback port (its own host key, config and
//! authorized_keys in a temporary directory) and logs in as the current user
//! (root here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use cloud_test_support::sshd::{free_port, keygen, Sshd};

use image_pipeline::ssh::{
    wait_for_ssh, ChangedKeyPolicy, KnownHosts, RunOptions, SshKey, SshSession, SshTarget,
    UploadSource, WaitPolicy,
};
use image_pipeline::Error;

/// The image-pipeline side of the test sshd.
trait SshdTargets {
    /// The pipeline's known_hosts file beside the sshd's.
    fn known_hosts(&self) -> KnownHosts;
    /// A target for root with a freshly generated, authorised ed25519 key.
    fn target(&self) -> SshTarget;
    /// A session on [`SshdTargets::target`].
    async fn session(&self) -> SshSession;
}

impl SshdTargets for Sshd {
    fn known_hosts(&self) -> KnownHosts {
        KnownHosts::new(self.path("pipeline_known_hosts"))
    }

    fn target(&self) -> SshTarget {
        let (key, public) = SshKey::generate_ed25519("ssh-real-test").unwrap();
        self.authorize(&public);
        root_at(self.port, key)
    }

    async fn session(&self) -> SshSession {
        match SshSession::connect(&self.target(), &self.known_hosts()).await {
            Ok(s) => s,
            Err(e) => panic!("connect: {e}\nsshd log:\n{}", self.log()),
        }
    }
}

/// root on `127.0.0.1:port` with `key`.
fn root_at(port: u16, key: SshKey) -> SshTarget {
    SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        key,
    }
}

/// `true` runs and succeeds in `session`.
async fn assert_runs_true(session: &SshSession) {
    assert!(session
        .run("true", &RunOptions::default())
        .await
        .unwrap()
        .success());
}

fn same_key(a: &str, b: &str) -> bool {
    let fields = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    fields(a) == fields(b)
}

#[tokio::test]
async fn connects_with_generated_ed25519_and_rsa_key_file() {
    let sshd = Sshd::started();
    let session = sshd.session().await;
    let log = sshd.path("whoami.log");
    let opts = RunOptions {
        log: Some(log.clone()),
        ..Default::default()
    };
    assert!(session.run("whoami", &opts).await.unwrap().success());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "root\n");
    session.close().await.unwrap();

    let rsa = sshd.path("id_rsa");
    keygen(&["-t", "rsa", "-b", "2048"], &rsa);
    sshd.authorize(&std::fs::read_to_string(rsa.with_extension("pub")).unwrap());
    let target = root_at(sshd.port, SshKey::from_file(&rsa).unwrap());
    assert!(target.key.describe().starts_with("ssh-rsa "));
    let session = SshSession::connect(&target, &sshd.known_hosts())
        .await
        .unwrap_or_else(|e| panic!("rsa connect: {e}\n{}", sshd.log()));
    assert_runs_true(&session).await;
}

#[tokio::test]
async fn wrong_key_is_a_clear_authentication_error() {
    let sshd = Sshd::started();
    let (key, _public_not_authorised) = SshKey::generate_ed25519("stranger").unwrap();
    let target = root_at(sshd.port, key);
    let err = SshSession::connect(&target, &sshd.known_hosts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SshAuth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("root@127.0.0.1:{}", sshd.port))
            && msg.contains("public key authentication failed")
            && msg.contains("ssh-ed25519 SHA256:"),
        "{msg}"
    );
}

#[tokio::test]
async fn unreadable_key_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not_a_key");
    std::fs::write(&path, "hello\n").unwrap();
    let err = SshKey::from_file(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[tokio::test]
async fn wait_for_ssh_succeeds_when_the_server_starts_late() {
    let mut sshd = Sshd::prepare();
    let target = sshd.target();
    let known_hosts = sshd.known_hosts();
    let starter = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(2));
        sshd.start();
        sshd
    });
    let policy = WaitPolicy {
        initial_delay: Duration::ZERO,
        attempts: 40,
        interval: Duration::from_millis(250),
    };
    let session = wait_for_ssh(&target, &known_hosts, policy).await;
    let sshd = starter.await.unwrap();
    let session = session.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_runs_true(&session).await;
}

#[tokio::test]
async fn wait_for_ssh_gives_up_naming_host_attempts_and_cause() {
    let port = free_port();
    let (key, _) = SshKey::generate_ed25519("nobody").unwrap();
    let target = root_at(port, key);
    let dir = tempfile::tempdir().unwrap();
    let policy = WaitPolicy {
        initial_delay: Duration::ZERO,
        attempts: 3,
        interval: Duration::from_millis(100),
    };
    let err = wait_for_ssh(&target, &KnownHosts::new(dir.path().join("kh")), policy)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}"))
            && msg.contains("after 3 attempts")
            && msg.contains("last error")
            && msg.contains("refused"),
        "{msg}"
    );
}

#[tokio::test]
async fn known_hosts_accept_new_refuse_changed_and_forget() {
    let mut sshd = Sshd::started();
    let target = sshd.target();
    let known_hosts = sshd.known_hosts();
    assert!(known_hosts
        .lookup("127.0.0.1", sshd.port)
        .unwrap()
        .is_none());
    SshSession::connect(&target, &known_hosts).await.unwrap();
    let recorded = known_hosts.lookup("127.0.0.1", sshd.port).unwrap().unwrap();
    assert!(same_key(
        &recorded.to_openssh().unwrap(),
        &sshd.host_public_key()
    ));
    let text = std::fs::read_to_string(known_hosts.path()).unwrap();
    assert!(
        text.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)),
        "{text}"
    );

    // The machine is "recreated": same address, new host key.
    sshd.stop();
    sshd.new_host_key();
    sshd.start();
    let err = SshSession::connect(&target, &known_hosts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HostKeyChanged { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{} CHANGED", sshd.port)),
        "{err}"
    );
    // The refused key was not recorded.
    let still = known_hosts.lookup("127.0.0.1", sshd.port).unwrap().unwrap();
    assert_eq!(still.key_data(), recorded.key_data());

    assert!(known_hosts.forget("127.0.0.1", sshd.port).unwrap());
    SshSession::connect(&target, &known_hosts)
        .await
        .unwrap_or_else(|e| panic!("after forget: {e}"));
    let new = known_hosts.lookup("127.0.0.1", sshd.port).unwrap().unwrap();
    assert!(same_key(
        &new.to_openssh().unwrap(),
        &sshd.host_public_key()
    ));
    assert_ne!(new.key_data(), recorded.key_data());

    // Recreated once more: the Replace policy records the new key itself.
    sshd.stop();
    sshd.new_host_key();
    sshd.start();
    let replacing = known_hosts.clone().with_policy(ChangedKeyPolicy::Replace);
    SshSession::connect(&target, &replacing)
        .await
        .unwrap_or_else(|e| panic!("with Replace: {e}"));
    let third = known_hosts.lookup("127.0.0.1", sshd.port).unwrap().unwrap();
    assert!(same_key(
        &third.to_openssh().unwrap(),
        &sshd.host_public_key()
    ));
    assert_ne!(third.key_data(), new.key_data());
}

#[tokio::test]
async fn uploads_file_and_bytes_with_mode() {
    let sshd = Sshd::started();
    let session = sshd.session().await;
    let local = sshd.path("data.bin");
    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&local, &data).unwrap();
    let remote = sshd.path("remote dir");
    std::fs::create_dir(&remote).unwrap();
    let remote_file = remote.join("it's data.tgz");
    let sent = session
        .upload(
            UploadSource::File(&local),
            remote_file.to_str().unwrap(),
            0o700,
        )
        .await
        .unwrap();
    assert_eq!(sent, data.len() as u64);
    assert!(
        std::fs::read(&remote_file).unwrap() == data,
        "content differs"
    );
    let mode = std::fs::metadata(&remote_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);

    let script = b"#!/bin/sh\necho created\n";
    let remote_script = remote.join("create.sh");
    session
        .upload(
            UploadSource::Bytes(script),
            remote_script.to_str().unwrap(),
            0o700,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&remote_script).unwrap(), script);
    let mode = std::fs::metadata(&remote_script)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);

    let err = session
        .upload(UploadSource::Bytes(b"x"), "/nonexistent-dir/x", 0o600)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent-dir/x"), "{err}");
}

#[tokio::test]
async fn run_reports_exit_codes_and_logs_interleaved_output() {
    let sshd = Sshd::started();
    let session = sshd.session().await;
    let log = sshd.path("create.log");
    let opts = RunOptions {
        log: Some(log.clone()),
        ..Default::default()
    };
    let ok = session.run("exit 0", &opts).await.unwrap();
    assert_eq!(ok.exit_status, Some(0));
    let three = session.run("echo failing; exit 3", &opts).await.unwrap();
    assert_eq!(three.exit_status, Some(3));
    assert!(!three.success());

    let interleaved =
        "echo out1; sleep 0.3; echo err1 >&2; sleep 0.3; echo out2; sleep 0.3; echo err2 >&2";
    assert!(session.run(interleaved, &opts).await.unwrap().success());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "out1\nerr1\nout2\nerr2\n"
    );

    let err = session.run_checked("exit 3", &opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`exit 3`")
            && msg.contains("exited with status 3")
            && msg.contains(&log.display().to_string()),
        "{msg}"
    );
}

#[tokio::test]
async fn run_passes_environment_without_putting_it_on_the_command_line() {
    let sshd = Sshd::started();
    let session = sshd.session().await;
    let log = sshd.path("env.log");
    let secret = "s3cr3t 'quoted' $HOME `x`\nline2";
    let opts = RunOptions {
        log: Some(log.clone()),
        env: vec![
            ("SECRET_TOKEN".into(), secret.into()),
            ("OTHER".into(), "plain".into()),
        ],
        ..Default::default()
    };
    let outcome = session
        .run(
            "printf '%s|%s|' \"$SECRET_TOKEN\" \"$OTHER\"; ls /tmp/.image-pipeline-env-* 2>/dev/null | wc -l",
            &opts,
        )
        .await
        .unwrap();
    assert!(outcome.success());
    // The values arrive intact and the env file is already gone.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{secret}|plain|0\n")
    );

    let bad = RunOptions {
        env: vec![("NOT-AN-IDENT".into(), "x".into())],
        ..Default::default()
    };
    let err = session.run("true", &bad).await.unwrap_err().to_string();
    assert!(err.contains("NOT-AN-IDENT"), "{err}");
}

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_env_variables_but_never_their_values() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sshd = Sshd::started();
    let session = sshd.session().await;
    let secret = "hunter2-do-not-log";
    let opts = RunOptions {
        env: vec![("API_TOKEN".into(), secret.into())],
        log: Some(sshd.path("quiet.log")),
        ..Default::default()
    };
    let outcome = session
        .run("test -n \"$API_TOKEN\" && exit 7", &opts)
        .await
        .unwrap();
    assert_eq!(outcome.exit_status, Some(7));
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("ssh_run") && logged.contains("API_TOKEN=<redacted>"),
        "{logged}"
    );
    assert!(logged.contains(&format!("port={}", sshd.port)), "{logged}");
    assert!(!logged.contains(secret), "{logged}");
}

#[tokio::test]
async fn pty_is_allocated_only_when_asked() {
    let sshd = Sshd::started();
    let session = sshd.session().await;
    let log = sshd.path("tty.log");
    let cmd = "tty; if test -t 0; then echo STDIN_IS_TTY; else echo STDIN_NOT_TTY; fi";
    let with_pty = RunOptions {
        pty: true,
        log: Some(log.clone()),
        ..Default::default()
    };
    assert!(session.run(cmd, &with_pty).await.unwrap().success());
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("/dev/pts/") && out.contains("STDIN_IS_TTY"),
        "{out}"
    );

    let without = RunOptions {
        log: Some(log.clone()),
        ..Default::default()
    };
    let outcome = session.run(cmd, &without).await.unwrap();
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("not a tty") && out.contains("STDIN_NOT_TTY") && !out.contains("/dev/pts/"),
        "{out}"
    );
    assert!(outcome.success());
}

fn sleepers(marker: &str) -> usize {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn timeout_kills_the_command_and_says_so() {
    let sshd = Sshd::started();
    let session = sshd.session().await;
    let marker = format!("sleep 60.{}", sshd.port);
    for pty in [false, true] {
        let opts = RunOptions {
            pty,
            timeout: Some(Duration::from_secs(1)),
            log: Some(sshd.path("sleep.log")),
            ..Default::default()
        };
        let outcome = session.run(&marker, &opts).await.unwrap();
        assert!(outcome.timed_out, "pty={pty}: {outcome:?}");
        assert!(!outcome.success());
        assert_eq!(outcome.signal.as_deref(), Some("KILL"), "pty={pty}");
        assert_eq!(outcome.to_string(), "timed out and was killed");
        let mut left = sleepers(&marker);
        for _ in 0..100 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = sleepers(&marker);
        }
        assert_eq!(
            left,
            0,
            "pty={pty}: `{marker}` still running remotely; sshd log:\n{}",
            sshd.log()
        );
        let err = session.run_checked(&marker, &opts).await.unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
    }
    // A command that ends in time keeps its exit status and output.
    let log = sshd.path("quick.log");
    let opts = RunOptions {
        timeout: Some(Duration::from_secs(60)),
        log: Some(log.clone()),
        ..Default::default()
    };
    let outcome = session.run("echo quick; exit 4", &opts).await.unwrap();
    assert_eq!(outcome.exit_status, Some(4));
    assert!(!outcome.timed_out);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "quick\n");
}

#[tokio::test]
async fn pipefail_script_failing_in_the_middle_is_non_zero() {
    let sshd = Sshd::started();
    let session = sshd.session().await;
    let log = sshd.path("create.log");
    let script_path = sshd.path("create.sh");
    session
        .upload(
            UploadSource::Bytes(
                b"#!/bin/bash\nset -eo pipefail\necho start\nfalse | cat\necho never\n",
            ),
            script_path.to_str().unwrap(),
            0o700,
        )
        .await
        .unwrap();
    let opts = RunOptions {
        log: Some(log.clone()),
        ..Default::default()
    };
    let outcome = session
        .run(script_path.to_str().unwrap(), &opts)
        .await
        .unwrap();
    assert_eq!(outcome.exit_status, Some(1));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\n");
}
