//! Helpers of the `packuilon` binary's tests: stand-in scripts, waiting for a
//! file the child writes, taking messages off the real RabbitMQ queue.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cloud_test_support::amqp::{take_all, take_one};
pub use cloud_test_support::write_executable;
use packuilon_core::Broker;

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

/// The local broker and a channel on it with the broker's queue declared.
async fn channel(b: &Broker) -> (lapin::Connection, lapin::Channel) {
    let conn = b
        .connect()
        .await
        .expect("RabbitMQ is not reachable on 127.0.0.1:5672: run scripts/rabbitmq/up.sh");
    let ch = b.open_channel(&conn).await.unwrap();
    (conn, ch)
}

/// Take one message off the broker's queue (acked).
pub async fn get_one(b: &Broker) -> Option<lapin::message::BasicGetMessage> {
    let (_conn, ch) = channel(b).await;
    take_one(&ch, &b.queue).await
}

/// Take every message off the broker's queue (each acked), in its order.
pub async fn get_all(b: &Broker) -> Vec<lapin::message::BasicGetMessage> {
    let (_conn, ch) = channel(b).await;
    take_all(&ch, &b.queue).await
}
