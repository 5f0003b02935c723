//! `rename-old-images` against the real local Glance (RegionOne): older
//! images warehoused, members moved to the new image and accepted,
//! properties and visibility carried over, `source-images.json` updated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use openstack_client::glance::{MemberStatus, Visibility};
use packuilon_core::rotate::{
    apply_rename, broken_name, mark_broken, plan_rename, RenameSettings, RenameStyle,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_images_are_warehoused_and_their_members_move_to_the_new_one() {
    let _lock = cloud_test_support::cloud_lock().await;
    let session = cloud_test_support::session().await;
    let owner = session.token_info().await.unwrap().project_id.unwrap();
    let demo = cloud_test_support::session_named("local-demo").await;
    let member = demo.token_info().await.unwrap().project_id.unwrap();
    assert_ne!(owner, member);
    let glance = session.image(Some("RegionOne")).await.unwrap();
    let mut cleanup = cloud_test_support::ImageCleanup::new(&glance);
    let name = format!("{} AQ", cloud_test_support::unique("pk-rot"));

    // Oldest first; Glance's created_at has one-second resolution, so the
    // pauses only order the images (nothing is timed).
    let oldest = cleanup
        .create_active(&name, Visibility::Private, &[("AQ_OS", "sl-old")])
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let old = cleanup
        .create_active(
            &name,
            Visibility::Shared,
            &[
                ("AQ_PERSONALITY", "web"),
                ("os_distro", "sl"),
                ("unrelated", "x"),
            ],
        )
        .await;
    glance.add_member(&old.id, &member).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = cleanup.create_active(&name, Visibility::Private, &[]).await;

    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("source-images.json");
    std::fs::write(
        &sources,
        format!(r#"{{"IMAGES": {{"sl": {{"7x-x86_64": "{}"}}}}}}"#, old.id),
    )
    .unwrap();
    let settings = RenameSettings {
        source_images: Some(sources.clone()),
        ..RenameSettings::default()
    };
    let now = Utc::now();
    let plan = plan_rename(&glance, &owner, &name, &settings, now)
        .await
        .unwrap();
    assert_eq!(plan.new_image.as_deref(), Some(new.id.as_str()));
    let ids: Vec<&str> = plan.old_images.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, vec![old.id.as_str(), oldest.id.as_str()]);
    let warehoused = RenameStyle::Date.warehoused(&name, now);
    assert!(plan.old_images.iter().all(|o| o.new_name == warehoused));
    assert_eq!(plan.visibility.as_deref(), Some("shared"));
    assert_eq!(plan.members, vec![member.clone()]);
    assert_eq!(
        plan.properties.keys().collect::<Vec<_>>(),
        vec!["AQ_PERSONALITY", "os_distro"]
    );
    // Planning wrote nothing.
    assert_eq!(
        glance.get_image(&old.id).await.unwrap().name.as_deref(),
        Some(name.as_str())
    );

    apply_rename(&glance, &plan).await.unwrap();

    for id in [&old.id, &oldest.id] {
        let i = glance.get_image(id).await.unwrap();
        assert_eq!(i.name.as_deref(), Some(warehoused.as_str()));
    }
    assert!(glance.list_members(&old.id).await.unwrap().is_empty());
    let n = glance.get_image(&new.id).await.unwrap();
    assert_eq!(n.name.as_deref(), Some(name.as_str()));
    assert_eq!(n.visibility, Visibility::Shared);
    assert_eq!(n.property("AQ_PERSONALITY"), Some("web"));
    assert_eq!(n.property("os_distro"), Some("sl"));
    assert_eq!(n.property("unrelated"), None);
    let m = glance.get_member(&new.id, &member).await.unwrap();
    assert_eq!(m.status, MemberStatus::Accepted);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sources).unwrap()).unwrap();
    assert_eq!(s["IMAGES"]["sl"]["7x-x86_64"], new.id.as_str());

    // Run again: nothing left to do.
    let again = plan_rename(&glance, &owner, &name, &settings, Utc::now())
        .await
        .unwrap();
    assert_eq!(again.new_image.as_deref(), Some(new.id.as_str()));
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_build_takes_the_old_name_in_the_2021_layout() {
    let _lock = cloud_test_support::cloud_lock().await;
    let session = cloud_test_support::session().await;
    let owner = session.token_info().await.unwrap().project_id.unwrap();
    let glance = session.image(Some("RegionOne")).await.unwrap();
    let mut cleanup = cloud_test_support::ImageCleanup::new(&glance);
    let base = cloud_test_support::unique("pk-next");
    let old = cleanup
        .create_active(&base, Visibility::Public, &[("AQ_OS", "rocky")])
        .await;
    let new = cleanup
        .create_active(&format!("Next-{base}"), Visibility::Private, &[])
        .await;
    let settings = RenameSettings {
        style: RenameStyle::Timestamp,
        ..RenameSettings::default()
    };
    let now = Utc::now();
    let plan = plan_rename(&glance, &owner, &format!("Next-{base}"), &settings, now)
        .await
        .unwrap();
    assert_eq!(plan.rename_new_to.as_deref(), Some(base.as_str()));
    assert_eq!(plan.old_images.len(), 1);
    assert_eq!(plan.visibility.as_deref(), Some("public"));
    apply_rename(&glance, &plan).await.unwrap();
    let n = glance.get_image(&new.id).await.unwrap();
    assert_eq!(n.name.as_deref(), Some(base.as_str()));
    assert_eq!(n.visibility, Visibility::Public);
    assert_eq!(n.property("AQ_OS"), Some("rocky"));
    let o = glance.get_image(&old.id).await.unwrap();
    assert_eq!(
        o.name.unwrap(),
        RenameStyle::Timestamp.warehoused(&base, now)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_failing_the_gate_becomes_broken_and_private() {
    let _lock = cloud_test_support::cloud_lock().await;
    let session = cloud_test_support::session().await;
    let glance = session.image(Some("RegionOne")).await.unwrap();
    let mut cleanup = cloud_test_support::ImageCleanup::new(&glance);
    let name = format!("{} AQ", cloud_test_support::unique("pk-broken"));
    let image = cleanup.create_active(&name, Visibility::Public, &[]).await;
    let now = Utc::now();
    let new_name = mark_broken(&glance, &image.id, now).await.unwrap();
    assert_eq!(new_name, broken_name(&name, now));
    assert!(new_name.starts_with(&format!("Broken-{name}-")));
    let i = glance.get_image(&image.id).await.unwrap();
    assert_eq!(i.name.as_deref(), Some(new_name.as_str()));
    assert_eq!(i.visibility, Visibility::Private);
}
