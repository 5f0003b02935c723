//! `rabbit2packer` through a real RabbitMQ restart: the broker process is
//! stopped and started again (`scripts/rabbitmq/down.sh` / `up.sh`) in the
//! middle of a stream of messages. Nothing is lost and duplicates (the
//! redelivered messages whose builds had finished, and messages published
//! twice) build once. The broker is a RabbitMQ node of the test's own (its
//! state directory, port and node name, by the scripts' `RABBITMQ_*`
//! variables), stopped at the end: the shared broker on :5672, which the
//! other tests use, is never touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{broker_on, profile, try_ready, unique_queue};
use lapin::options::QueueDeleteOptions;
use packuilon_core::amqp::failed_queue;
use packuilon_core::{shutdown_signal, Broker, Service};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../scripts/rabbitmq/{name}"))
}

/// A RabbitMQ node of this test's own, started by `scripts/rabbitmq/up.sh`
/// with its state under a temporary directory, a free AMQP port (its
/// distribution port, 20000 above, free too) and a node name of its own;
/// stopped by `down.sh` when dropped, even when the test fails.
struct PrivateBroker {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivateBroker {
    fn start() -> Self {
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let first = 21000 + (std::process::id() % 20000) as u16;
        let port = (first..45000)
            .chain(21000..first)
            .find(|p| free(*p) && free(p + 20000))
            .expect("no free port pair for a private RabbitMQ");
        let broker = PrivateBroker {
            dir: tempfile::tempdir().unwrap(),
            port,
        };
        broker.run("up.sh");
        broker
    }

    fn command(&self, name: &str) -> Command {
        let mut c = Command::new(script(name));
        c.env("RABBITMQ_DIR", self.dir.path())
            .env("RABBITMQ_PORT", self.port.to_string())
            .env(
                "RABBITMQ_NODENAME",
                format!("oit-restart-{}@localhost", self.port),
            );
        c
    }

    /// Run `scripts/rabbitmq/<name>` on this node; panics when it fails.
    fn run(&self, name: &str) {
        let out = self.command(name).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.command("down.sh").output();
    }
}

/// [`common::service`] on the private broker at `port`, three workers and
/// three attempts, with a Packer stand-in that records the build file it
/// was given, takes a moment and names an image.
fn service(dir: &Path, queue: &str, port: u16) -> Service {
    let image = "9d2b7c1e-0000-4000-8000-000000000001";
    let packer = dir.join("fake-packer");
    common::write_executable(
        &packer,
        &format!(
            "#!/bin/sh\nsleep 0.7\nbasename \"$3\" >> {d}/runs\necho '--> openstack: An image was created: {image}'\n",
            d = dir.display()
        ),
    );
    let mut svc = common::service(dir, queue, image);
    svc.broker = broker_on(queue, port);
    svc.thread_count = 3;
    svc.max_attempts = 3;
    svc.runner.packer = packer;
    svc
}

fn runs(dir: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
    {
        *m.entry(l.to_string()).or_insert(0) += 1;
    }
    m
}

async fn ready(b: &Broker, queue: &str) -> Option<u32> {
    try_ready(b, queue).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing_and_builds_each_profile_once() {
    let rabbit = Arc::new(
        tokio::task::spawn_blocking(PrivateBroker::start)
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("restart");
    let svc = service(dir.path(), &queue, rabbit.port);
    let before = ["p1", "p2", "p3", "p1", "p4", "p5", "p2", "p6", "p7", "p8"];
    for p in before {
        svc.broker
            .publish(&profile(p))
            .await
            .expect("the private RabbitMQ is not reachable");
    }
    let (trigger, shutdown) = shutdown_signal();
    let running = tokio::spawn({
        let svc = svc.clone();
        async move { svc.run(shutdown).await }
    });
    // Liveness bounds only: wait for the first builds, then restart the
    // broker while others are running or queued.
    let deadline = Instant::now() + Duration::from_secs(120);
    while runs(dir.path()).values().sum::<usize>() < 2 {
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = rabbit.clone();
    tokio::task::spawn_blocking(move || r.run("down.sh"))
        .await
        .unwrap();
    assert!(
        ready(&svc.broker, &queue).await.is_none(),
        "the broker is still reachable after down.sh"
    );
    let r = rabbit.clone();
    tokio::task::spawn_blocking(move || r.run("up.sh"))
        .await
        .unwrap();
    // The same change published again after the restart, and new ones.
    for p in ["p3", "p9", "p10"] {
        svc.broker.publish(&profile(p)).await.unwrap();
    }
    let want: Vec<String> = (1..=10)
        .map(|i| format!("p{i}-sl7x-x86_64.null.json"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = runs(dir.path());
        if want.iter().all(|w| r.contains_key(w)) && ready(&svc.broker, &queue).await == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every profile was built: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    trigger.trigger();
    running.await.unwrap().unwrap();
    let r = runs(dir.path());
    assert_eq!(r.len(), 10, "{r:?}");
    assert!(
        r.values().all(|n| *n == 1),
        "a profile was built twice: {r:?}"
    );
    assert_eq!(
        ready(&svc.broker, &queue).await,
        Some(0),
        "a message was left"
    );
    assert_eq!(
        ready(&svc.broker, &failed_queue(&queue)).await,
        Some(0),
        "nothing failed"
    );
    let conn = svc.broker.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    for q in [queue.clone(), failed_queue(&queue)] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
}
