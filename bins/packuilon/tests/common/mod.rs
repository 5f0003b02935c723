//! Helpers of the `packuilon` binary's tests: stand-in scripts, waiting for a
//! file the child writes, taking messages off the real RabbitMQ queue.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions};
use packuilon_core::Broker;

/// Write `text` to `path` as an executable script (a stand-in for Packer).
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Send SIGTERM to `child` (the service's graceful stop).
pub fn sigterm(child: &Child) {
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Wait (two minutes at most, a liveness bound) for `path` to exist.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Take one message off the broker's queue (acked).
pub async fn get_one(b: &Broker) -> Option<lapin::message::BasicGetMessage> {
    let conn = b
        .connect()
        .await
        .expect("RabbitMQ is not reachable on 127.0.0.1:5672: run scripts/rabbitmq/up.sh");
    let ch = b.open_channel(&conn).await.unwrap();
    let msg = ch
        .basic_get(b.queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap();
    if let Some(m) = &msg {
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    msg
}

/// Take every message off the broker's queue (each acked), in its order.
pub async fn get_all(b: &Broker) -> Vec<lapin::message::BasicGetMessage> {
    let mut all = Vec::new();
    while let Some(m) = get_one(b).await {
        all.push(m);
    }
    all
}
