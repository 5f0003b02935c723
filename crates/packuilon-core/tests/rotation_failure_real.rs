//! A rotation that fails after a good build is a reported failure, not a
//! log line: the request is parked on `<QUEUE>.failed` with the reason,
//! the build is recorded as built (never redone), and a redelivery of the
//! same profile runs only the rotation again. Real RabbitMQ, real Packer
//! (null builder), real local Glance (RegionOne).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use openstack_client::glance::{CreateImage, Visibility};
use packuilon_core::amqp::failed_queue;
use packuilon_core::record::BuildEntry;
use packuilon_core::rotate::{RenameSettings, RenameStyle, Rotator};
use packuilon_core::{BuildState, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rotation_parks_the_request_and_a_redelivery_retries_only_the_rotation() {
    let _lock = cloud_test_support::cloud_lock().await;
    let session = cloud_test_support::session().await;
    let glance = session.image(Some("RegionOne")).await.unwrap();
    let mut cleanup = cloud_test_support::ImageCleanup::new(&glance);
    let name = format!("{} AQ", cloud_test_support::unique("pk-rotfail"));
    let old = cleanup.create_active(&name, Visibility::Private, &[]).await;

    // The build reports an image id Glance does not know (yet): the
    // rotation after the build cannot read it.
    let new_id = uuid_v4();
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("rotfail");
    let mut svc = service(dir.path(), &queue, &new_id);
    svc.rotator = Some(Arc::new(Rotator::new(
        session.clone(),
        Some("RegionOne".into()),
        RenameSettings::default(),
    )));
    svc.rotate_old_images = true;
    let build = "web-sl7x-x86_64";

    svc.broker.publish(&profile("web")).await.unwrap();
    let entry = run_until_settled(&svc, build, Duration::from_secs(300)).await;
    assert_eq!(entry.state, BuildState::RotationFailed, "{entry:?}");
    assert!(entry.handed_off, "{entry:?}");
    assert_eq!(entry.images, vec![new_id.clone()]);
    let failed = failed_queue(&queue);
    assert_eq!(ready(&svc.broker, &queue).await, 0, "the request was acked");
    let msg = get_one(&svc.broker, &failed).await.expect("parked request");
    let reason = header(&msg, "x-packuilon-reason");
    assert!(
        reason.contains(&format!("image {new_id} was built"))
            && reason.contains("rename-old-images failed"),
        "{reason}"
    );
    assert_eq!(header(&msg, "x-packuilon-build"), build);
    assert!(
        header(&msg, "x-packuilon-log").contains(".null."),
        "{msg:?}"
    );
    assert_eq!(msg.delivery.data, profile("web"));
    // Nothing was rotated.
    let o = glance.get_image(&old.id).await.unwrap();
    assert_eq!(o.name.as_deref(), Some(name.as_str()));

    // The image appears; the same profile arrives again (a redelivery, or
    // the operator moving the parked message back): no second build, the
    // rotation runs and succeeds.
    let created = glance
        .create_image(
            &CreateImage::new(&name)
                .id(&new_id)
                .disk_format("raw")
                .container_format("bare"),
        )
        .await
        .unwrap();
    cleanup.track(created.id.clone());
    let data = b"the new image".to_vec();
    glance
        .upload(&new_id, std::io::Cursor::new(data), Some(13))
        .await
        .unwrap();
    svc.broker.publish(&profile("web")).await.unwrap();
    // The record still shows the first round's settled state until the
    // service takes the message: wait for the state to change, not for a
    // settled one.
    let entry = run_until_succeeded(&svc, build, Duration::from_secs(300)).await;
    assert_eq!(entry.state, BuildState::Succeeded, "{entry:?}");
    assert_eq!(entry.reason, None);
    let logs = std::fs::read_dir(dir.path().join("logs")).unwrap().count();
    assert_eq!(logs, 1, "the build ran once");
    assert_eq!(ready(&svc.broker, &failed).await, 0, "nothing parked again");
    let o = glance.get_image(&old.id).await.unwrap();
    assert_eq!(
        o.name.as_deref(),
        Some(RenameStyle::Date.warehoused(&name, Utc::now()).as_str())
    );
    let n = glance.get_image(&new_id).await.unwrap();
    assert_eq!(n.name.as_deref(), Some(name.as_str()));
    delete_queues(&svc.broker).await;
}

/// Run `svc` until the record shows `name` succeeded (or `limit`, a
/// liveness bound, passes); returns the record's entry.
async fn run_until_succeeded(svc: &Service, name: &str, limit: Duration) -> BuildEntry {
    let (trigger, shutdown) = packuilon_core::shutdown_signal();
    let running = tokio::spawn({
        let svc = svc.clone();
        async move { svc.run(shutdown).await }
    });
    let deadline = std::time::Instant::now() + limit;
    let entry = loop {
        let entry = svc.record.get(name);
        let done = entry
            .as_ref()
            .is_some_and(|e| e.state == BuildState::Succeeded);
        if done || std::time::Instant::now() > deadline {
            break entry;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    trigger.trigger();
    running.await.unwrap().unwrap();
    entry.unwrap_or_else(|| panic!("no record of {name}"))
}

/// A random version-4 UUID (from the kernel).
fn uuid_v4() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_string()
}
