//! `packuilon cdb2rabbit --interval 1` as a service: passes keep running,
//! a change served later is published once, SIGTERM stops it with exit 0.
//! Profiles from a local HTTP server (wiremock), the real RabbitMQ.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use lapin::options::QueueDeleteOptions;
use packuilon_core::{Broker, Config};

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The bodies of every message on the queue (each acked).
async fn drain(b: &Broker) -> Vec<String> {
    common::get_all(b)
        .await
        .into_iter()
        .map(|m| String::from_utf8(m.delivery.data).unwrap())
        .collect()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/packuilon/cdb")
}

async fn serve(server: &MockServer, info: &str) {
    server.reset().await;
    let read = |n: &str| std::fs::read_to_string(fixtures().join(n)).unwrap();
    Mock::given(method("GET"))
        .and(path("/profiles-info.xml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(read(info)))
        .mount(server)
        .await;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".json") {
            Mock::given(method("GET"))
                .and(path(format!("/profiles/{name}")))
                .respond_with(ResponseTemplate::new(200).set_body_string(read(&name)))
                .mount(server)
                .await;
        }
    }
}

/// Wait (a liveness bound, not a timing assertion) for `cond`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_mode_publishes_later_changes_once_and_stops_on_sigterm() {
    let server = MockServer::start().await;
    serve(&server, "profiles-info-1.xml").await;
    let dir = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let queue = format!("packuilon-test-interval-{}-{nanos}", std::process::id());
    let cfg = dir.path().join("config.ini");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nQUEUE = {queue}\nRABBIT_HOST = 127.0.0.1\n\
             [cdb2rabbit]\nPROFILE_INFO_URL = {u}/profiles-info.xml\nPROFILE_DIR_URL = {u}/profiles/\n\
             PROFILE_MATCH = .cloud.template.json\nCACHE_DIR = {d}/cache\n",
            u = server.uri(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let broker = Broker::from_config(&Config::load(&cfg).unwrap());
    let mut child = std::process::Command::cargo_bin("packuilon")
        .unwrap()
        .arg("--config")
        .arg(&cfg)
        .args(["cdb2rabbit", "--interval", "1"])
        .spawn()
        .unwrap();
    let cached = dir.path().join("cache/cached_info.xml");
    until("the first pass", || cached.exists()).await;
    serve(&server, "profiles-info-2.xml").await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 3 {
        assert!(Instant::now() < deadline, "published: {got:?}");
        got.extend(drain(&broker).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "the loop exited");
    common::sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    got.extend(drain(&broker).await);
    assert_eq!(got.len(), 3, "each change published once: {got:?}");
    let conn = broker.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}
