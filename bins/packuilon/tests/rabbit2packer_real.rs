//! The `packuilon` binary against the real RabbitMQ on 127.0.0.1:5672
//! (`scripts/rabbitmq/up.sh`): trigger publishes a persistent skeleton;
//! a killed service leaves its message to be redelivered; SIGTERM lets the
//! running build finish and ack before exiting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use common::{get_one, wait_for};
use lapin::options::QueueDeleteOptions;
use packuilon_core::{Broker, Config};

fn unique_queue(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("packuilon-bin-{tag}-{}-{nanos}", std::process::id())
}

/// A config for `queue` in `dir` whose Packer is a script that records its
/// arguments in `dir/started` and then waits for `dir/release`.
fn setup(dir: &Path, queue: &str) -> (PathBuf, Broker) {
    let packer = dir.join("fake-packer");
    common::write_executable(&packer, &format!(
            "#!/bin/sh\necho \"$@\" > {d}/started.tmp && mv {d}/started.tmp {d}/started\n\
             i=0; while [ ! -e {d}/release ]; do sleep 0.1; i=$((i+1)); [ $i -gt 1200 ] && exit 9; done\n\
             echo fake packer done\necho '--> openstack: An image was created: img-new'\n",
            d = dir.display()
        ));
    std::fs::write(
        dir.join("t.json"),
        r#"{"builders": [{"type": "null", "communicator": "none"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("map.json"), r#"{"DEFAULT": ["t.json"]}"#).unwrap();
    std::fs::write(
        dir.join("images.json"),
        r#"{"IMAGES": {"sl": {"7x-x86_64": "img-1"}}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("openrc"), "export OS_PROJECT_ID=p\n").unwrap();
    let cfg = dir.join("config.ini");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nQUEUE = {queue}\nRABBIT_HOST = 127.0.0.1\nRABBIT_PORT = 5672\nRABBIT_USER = guest\nRABBIT_PW = guest\n\
             [rabbit2packer]\nTHREAD_COUNT = 1\nLOG_DIR = {d}/logs\nBUILD_FILE_DIR = {d}/build\n\
             PACKER_AUTH_FILE = {d}/openrc\nPACKER_TEMPLATE_MAP = {d}/map.json\nIMAGES_CONFIG = {d}/images.json\n\
             PACKER_PATH = {p}\nSTATE_DIR = {d}/state\n",
            d = dir.display(),
            p = packer.display()
        ),
    )
    .unwrap();
    let broker = Broker::from_config(&Config::load(&cfg).unwrap());
    (cfg, broker)
}

fn packuilon(cfg: &Path) -> StdCommand {
    let mut c = StdCommand::cargo_bin("packuilon").unwrap();
    c.arg("--config").arg(cfg);
    c
}

fn trigger(cfg: &Path, extra: &[&str]) {
    let out = packuilon(cfg)
        .args(["trigger", "--personality", "nubes"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trigger failed (is RabbitMQ up? run scripts/rabbitmq/up.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn delete_queue(b: &Broker) {
    let conn = b.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(b.queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

fn start_service(cfg: &Path) -> Child {
    packuilon(cfg).arg("rabbit2packer").spawn().unwrap()
}

#[tokio::test]
async fn trigger_publishes_a_persistent_skeleton_profile() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, broker) = setup(dir.path(), &unique_queue("trigger"));
    trigger(
        &cfg,
        &["--sandbox", "jdoe/fix", "--os_ver", "8", "--os", "rocky"],
    );
    let msg = get_one(&broker).await.expect("a message on the queue");
    assert_eq!(msg.delivery.properties.delivery_mode(), &Some(2));
    let request = packuilon_core::amqp::header_str(&msg.delivery.properties, "x-packuilon-request");
    assert!(
        request.is_some_and(|r| r.starts_with("trigger-")),
        "a manual trigger is a new request, never a duplicate"
    );
    let body: serde_json::Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "metadata": {"template": {"branch": {"name": "fix", "type": "sandbox", "author": "jdoe"}}},
            "system": {
                "personality": {"name": "nubes"},
                "archetype": {"name": "ral-tier1"},
                "os": {"architecture": "x86_64", "distribution": {"name": "rocky"}, "version": {"name": "8"}}
            }
        })
    );
    delete_queue(&broker).await;
}

#[tokio::test]
async fn a_service_killed_mid_build_leaves_the_message_for_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, broker) = setup(dir.path(), &unique_queue("killed"));
    trigger(&cfg, &[]);
    let mut service = start_service(&cfg);
    wait_for(&dir.path().join("started"));
    service.kill().unwrap();
    service.wait().unwrap();
    std::fs::write(dir.path().join("release"), "").unwrap();
    let msg = get_one(&broker)
        .await
        .expect("the message is back in the queue");
    assert!(msg.delivery.redelivered);
    let body: serde_json::Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(body["system"]["personality"]["name"], "nubes");
    delete_queue(&broker).await;
}

#[tokio::test]
async fn sigterm_lets_the_running_build_finish_and_ack_before_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, broker) = setup(dir.path(), &unique_queue("sigterm"));
    trigger(&cfg, &[]);
    let mut service = start_service(&cfg);
    wait_for(&dir.path().join("started"));
    let started = std::fs::read_to_string(dir.path().join("started")).unwrap();
    assert!(
        started.starts_with("build -color=false ")
            && started
                .trim_end()
                .ends_with("/build/nubes-sl7x-x86_64.t.json"),
        "{started}"
    );
    common::sigterm(&service);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        service.try_wait().unwrap().is_none(),
        "the service exited while its build was running"
    );
    std::fs::write(dir.path().join("release"), "").unwrap();
    let status = service.wait().unwrap();
    assert!(status.success(), "{status}");
    let logs: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(logs.len(), 1);
    assert!(logs[0].contains("fake packer done"), "{}", logs[0]);
    assert!(
        logs[0].trim_end().ends_with("with exit code 0"),
        "{}",
        logs[0]
    );
    assert!(
        get_one(&broker).await.is_none(),
        "the message was not acked"
    );
    delete_queue(&broker).await;
}
