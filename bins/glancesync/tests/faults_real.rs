//! Faults survived, against real Keystone and Glance servers.
//!
//! The tests that stop or restart a service run on a private cloud of their
//! own (`common::PrivateCloud`: `scripts/cloud/up.sh` on another loopback
//! address, state under `~/.cache/openstack-image-tools/test-clouds/`), so
//! the shared local cloud other tests use is never touched; the target
//! Glance sits behind a throttling proxy (`common::Throttle`) so that a
//! sync lasts long enough for the fault to land in the middle of it.
//!
//! - Glance RegionTwo stopped and restarted during a sync of several
//!   images: the run names each failed image with its reason and exits 2;
//!   nothing incomplete is visible; a rerun converges; the master is only read.
//! - A Keystone whose tokens live 20 s: a transfer outliving its token
//!   finishes, and glancesync authenticates once more, not once per request.
//! - Keystone unreachable at start: one error line naming the URL and the
//!   cause, exit status 1 (fatal error, as documented in the binary's crate
//!   comment), and a bounded number of connection attempts (the client's
//!   4 retries with backoff, logged at debug level: stderr is that one line).
//!
//! glancesync killed with SIGKILL during an upload is tested on the shared
//! cloud (it stops no service): `e2e_cloud.rs`,
//! `interrupted_transfer_leaves_nothing_and_rerun_converges`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PrivateCloud, Throttle};
use openstack_client::glance::{
    CreateImage, GlanceClient, Image, ImageFilter, ImageStatus, Visibility,
};
use openstack_client::{CloudConfig, Session};

const MIB: usize = 1024 * 1024;
const MARKER: &str = "glancesync_transfer";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn glancesync(cwd: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("glancesync"));
    c.current_dir(cwd)
        .env_remove("GLANCESYNC_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("OS_CLIENT_CONFIG_FILE")
        .stdin(Stdio::null());
    c
}

/// glancesync.conf: master = `cfg`'s admin (from the private clouds.yaml),
/// images named `prefix…`, streamed.
fn write_config(dir: &Path, cfg: &CloudConfig, prefix: &str) -> String {
    let text = format!(
        "[main]\nmaster_region = RegionOne\n\n[master]\ncredential = {}\nmetadata_condition = image.name.startswith('{prefix}')\ntransfer = stream\n",
        common::credential(cfg)
    );
    let p = dir.join("glancesync.conf");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

async fn create(g: &GlanceClient, name: &str, size: usize) -> Image {
    let img = g
        .create_image(
            &CreateImage::new(name)
                .disk_format("raw")
                .container_format("bare")
                .visibility(Visibility::Public),
        )
        .await
        .unwrap();
    let d: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
    g.upload(&img.id, std::io::Cursor::new(d), Some(size as u64))
        .await
        .unwrap();
    g.get_image(&img.id).await.unwrap()
}

async fn with_prefix(g: &GlanceClient, prefix: &str) -> Vec<Image> {
    g.list_images(&ImageFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
        .collect()
}

/// Delete every image of the private cloud named `gs-fault…` (left by an
/// earlier run that was killed).
async fn clear(g: &[&GlanceClient]) {
    for g in g {
        for i in with_prefix(g, "gs-fault").await {
            let _ = g.delete_image(&i.id).await;
        }
    }
}

/// `copy` holds exactly the master's data and carries no transfer marker.
fn complete(copy: &Image, master: &Image) -> bool {
    copy.status == ImageStatus::Active
        && copy.size == master.size
        && copy.checksum == master.checksum
        && copy.os_hash_value == master.os_hash_value
        && !copy.properties.contains_key(MARKER)
}

/// After a rerun: exactly one complete copy of each master image, nothing else.
async fn assert_converged(r2: &GlanceClient, masters: &[Image], prefix: &str) {
    let copies = with_prefix(r2, prefix).await;
    assert_eq!(copies.len(), masters.len(), "{copies:#?}");
    for m in masters {
        let c: Vec<_> = copies.iter().filter(|c| c.name == m.name).collect();
        assert_eq!(c.len(), 1, "{:?}: {copies:#?}", m.name);
        assert!(complete(c[0], m), "{:?} incomplete: {:#?}", m.name, c[0]);
    }
}

#[test]
fn target_glance_stopped_and_restarted_during_a_sync() {
    runtime().block_on(glance_restart());
}

async fn glance_restart() {
    let host = "127.0.93.1";
    let upstream: SocketAddr = format!("{host}:9293").parse().unwrap();
    // RegionTwo's catalog endpoint is a proxy passing 8 MiB/s of uploads.
    let proxy = Throttle::start(host, upstream, 8 * MIB as u64).await;
    let url = proxy.url();
    let cloud = tokio::task::block_in_place(|| {
        PrivateCloud::start("gs-faults", host, &[("GLANCE_R2_ENDPOINT", &url)])
    });
    let cfg = cloud.config("local");
    let s = Session::connect(cfg.clone()).await.unwrap();
    let r1 = s.image(Some("RegionOne")).await.unwrap();
    let r2 = s.image(Some("RegionTwo")).await.unwrap();
    clear(&[&r1, &r2]).await;

    let prefix = format!("gs-fault-{:08x}-", rand::random::<u32>());
    let mut masters = Vec::new();
    for k in 0..4 {
        masters.push(create(&r1, &format!("{prefix}{k}"), 16 * MIB + k).await);
    }
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_config(tmp.path(), &cfg, &prefix);

    let mut child = glancesync(tmp.path())
        .args(["--config-file", &conf, "RegionTwo"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let reader = {
        let lines = lines.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };

    // Once the first copy is done and the second is on its way, stop
    // RegionTwo's Glance.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let seen = with_prefix(&r2, &prefix).await;
        let done = seen
            .iter()
            .filter(|i| i.status == ImageStatus::Active)
            .count();
        let busy = seen
            .iter()
            .any(|i| i.status != ImageStatus::Active && i.properties.contains_key(MARKER));
        if done >= 1 && busy {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "glancesync ended before the fault: {:?}",
            lines.lock().unwrap()
        );
        assert!(Instant::now() < deadline, "the second upload never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::block_in_place(|| cloud.stop(&["glance-r2"]));
    // Restart it once glancesync has noticed (an image failed) or ended.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("was not synchronised"))
        && child.try_wait().unwrap().is_none()
    {
        assert!(Instant::now() < deadline, "glancesync never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::block_in_place(|| cloud.up());
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    reader.join().unwrap();
    let err = lines.lock().unwrap().join("\n");
    eprintln!("first run:\n{err}");

    assert_eq!(
        status.code(),
        Some(2),
        "a failed image fails the run: {err}"
    );
    assert!(err.contains("RegionTwo: synchronisation failed"), "{err}");
    // Every image is either complete in RegionTwo or named as failed, with
    // the reason (the failing request's error) on its line.
    let copies = with_prefix(&r2, &prefix).await;
    let mut failed = 0;
    for m in &masters {
        let name = m.name.as_deref().unwrap();
        let line = err
            .lines()
            .find(|l| l.contains(&format!("image {name} was not synchronised: ")));
        let ok = copies.iter().any(|c| c.name == m.name && complete(c, m));
        match line {
            Some(l) => {
                failed += 1;
                assert!(!ok, "{name} reported failed but complete: {l}");
                let reason = l.split("was not synchronised: ").nth(1).unwrap();
                assert!(reason.len() > 10, "no reason given: {l}");
            }
            None => assert!(ok, "{name} neither complete nor reported: {err}"),
        }
    }
    assert!(failed >= 1, "{err}");
    // Nothing incomplete is visible as a usable image: an active copy is
    // complete; anything else still carries the transfer marker.
    for c in &copies {
        let m = masters.iter().find(|m| m.name == c.name).unwrap();
        if !complete(c, m) {
            assert_ne!(c.visibility, Visibility::Public, "{c:#?}");
            assert!(c.properties.contains_key(MARKER), "{c:#?}");
        }
    }

    // A rerun converges.
    let out = glancesync(tmp.path())
        .args(["--config-file", &conf, "RegionTwo"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rerun: {err}");
    assert_converged(&r2, &masters, &prefix).await;
    // The master was only read.
    for m in &masters {
        assert_eq!(&r1.get_image(&m.id).await.unwrap(), m);
    }
    clear(&[&r1, &r2]).await;
}

#[test]
fn a_token_expiring_mid_transfer_is_renewed_once() {
    runtime().block_on(token_expiry());
}

async fn token_expiry() {
    let host = "127.0.93.2";
    let upstream: SocketAddr = format!("{host}:9293").parse().unwrap();
    // 48 MiB at 1 MiB/s: the upload outlives the 20 s token by far.
    let proxy = Throttle::start(host, upstream, MIB as u64).await;
    let url = proxy.url();
    let cloud = tokio::task::block_in_place(|| {
        PrivateCloud::start(
            "gs-short-token",
            host,
            &[("GLANCE_R2_ENDPOINT", &url), ("KS_TOKEN_EXPIRATION", "20")],
        )
    });
    let cfg = cloud.config("local");
    let s = Session::connect(cfg.clone()).await.unwrap();
    let r1 = s.image(Some("RegionOne")).await.unwrap();
    let r2 = s.image(Some("RegionTwo")).await.unwrap();
    clear(&[&r1, &r2]).await;
    let prefix = format!("gs-fault-{:08x}-", rand::random::<u32>());
    let master = create(&r1, &format!("{prefix}long"), 48 * MIB).await;
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_config(tmp.path(), &cfg, &prefix);

    // Only Keystone's lines logged after this point count: PIDs wrap, an
    // earlier run with the same PID may be in the log.
    let auth_log_start = cloud.log("keystone-access.log").len();
    let child = glancesync(tmp.path())
        .args(["--config-file", &conf, "RegionTwo"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    let out = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_converged(&r2, std::slice::from_ref(&master), &prefix).await;
    // Evidence that the transfer did outlive the token (not a timed assertion
    // on glancesync's speed: the proxy's rate makes it so).
    assert!(took > Duration::from_secs(20), "the transfer took {took:?}");
    let auths: Vec<String> =
        common::lines_of_pid(&cloud.log("keystone-access.log")[auth_log_start..], pid)
            .into_iter()
            .filter(|l| l.contains("\"POST /v3/auth/tokens "))
            .collect();
    assert_eq!(
        auths.len(),
        2,
        "one authentication, then one when the token expired:\n{}",
        auths.join("\n")
    );
    clear(&[&r1, &r2]).await;
}

/// The one line of a failed run's stderr, its error (`glancesync: ...`):
/// the client's bounded retries are debug-level, so they print nothing at
/// the default verbosity.
fn the_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("glancesync: "),
        "exactly one error line: {stderr}"
    );
    lines[0].to_string()
}

#[test]
fn keystone_unreachable_at_start_is_one_line_and_no_retry_storm() {
    runtime().block_on(keystone_unreachable());
}

async fn keystone_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    // glancesync with the master's Keystone at `url`: exit 1; its stderr.
    let fails_with = |url: &str| {
        use base64::Engine as _;
        let text = format!(
            "[main]\nmaster_region = RegionOne\n\n[master]\ncredential = admin,{},{url},admin\n",
            base64::engine::general_purpose::STANDARD.encode("unused-password")
        );
        let conf = tmp.path().join("glancesync.conf");
        std::fs::write(&conf, text).unwrap();
        let out = tokio::task::block_in_place(|| {
            glancesync(tmp.path())
                .arg("--config-file")
                .arg(&conf)
                .arg("RegionTwo")
                .output()
        })
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        err
    };

    // Nothing listens: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = fails_with(&format!("http://127.0.0.1:{port}/v3"));
    let line = the_error(&err);
    assert!(
        line.contains(&format!("http://127.0.0.1:{port}/v3/auth/tokens"))
            && line.contains("cannot connect: Connection refused"),
        "{line}"
    );
    assert!(!err.contains("unused-password"), "{err}");

    // Something that accepts and hangs up at once: each attempt is counted.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = Arc::new(AtomicUsize::new(0));
    let n = attempts.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            drop(sock);
        }
    });
    let err = fails_with(&format!("http://127.0.0.1:{port}/v3"));
    let line = the_error(&err);
    assert!(
        line.contains(&format!("http://127.0.0.1:{port}/v3/auth/tokens")),
        "{line}"
    );
    let tries = attempts.load(Ordering::SeqCst);
    eprintln!("connection attempts: {tries}");
    // The client's bounded retries (max_retries = 4) at most: no storm.
    assert!((1..=5).contains(&tries), "{tries} connection attempts");
}
