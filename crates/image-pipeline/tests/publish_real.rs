//! `locate_images` and `publish` against the real local cloud
//! (`scripts/cloud/up.sh`): Glance RegionOne, as the admin cloud `local`
//! (`$OS_TEST_CLOUD`), with `local-demo` as the "other project".
//!
//! Every test creates its own uniquely named images and deletes them when it
//! ends, whether it passes or fails (`ImageCleanup` deletes on drop).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cloud_test_support::{glance_test, publish_lines, session_named, unique_nid, GlanceTest};
use image_pipeline::publish::compare_nids;
use image_pipeline::{
    caller_project_id, execute_plan, locate_images, plan_publish, publish, Error, NidType,
    NidTypeSource, PublishRequest, RollbackOutcome,
};
use openstack_client::glance::{GlanceClient, Image, ImagePatch, Visibility};
use std::collections::BTreeMap;

const REGION: &str = "RegionOne";

/// The admin cloud under test (locked, its Glance in RegionOne, an image
/// guard) and its project id.
async fn cloud() -> (GlanceTest, String) {
    let c = glance_test(REGION).await;
    let project = caller_project_id(&c.session).await.unwrap();
    (c, project)
}

/// A publication about to happen: the locked cloud and its project, a
/// unique name and NID, the old public image `name` (with the NID and a
/// type) and the candidate `<name>_rc`.
struct Publication(GlanceTest, String, String, String, Image, Image);

/// [`Publication`] named after `tag`, the old image of type `kind`.
async fn publication(tag: &str, kind: &str) -> Publication {
    let (mut c, project) = cloud().await;
    let name = unique(tag);
    let nid = unique_nid();
    let old = c.images.old_public(&name, &nid, kind).await;
    let rc = c.images.candidate(&name).await;
    Publication(c, project, name, nid, old, rc)
}

/// The demo project's id (an "other project" for ownership tests).
async fn demo_project() -> String {
    caller_project_id(&session_named("local-demo").await)
        .await
        .unwrap()
}

fn unique(tag: &str) -> String {
    cloud_test_support::unique(&format!("ipt-{tag}"))
}

/// Publish with `req`, expecting it refused before any write: `image`
/// (the candidate as it was) is left exactly as it was. The error.
async fn refused(
    glance: &GlanceClient,
    project: &str,
    req: &PublishRequest,
    image: &Image,
) -> Error {
    let err = publish(glance, project, req, false).await.unwrap_err();
    eprintln!("refused: {err}");
    unchanged(glance, &[image]).await;
    err
}

/// The failed image, the cause and the rollback of a rolled-back failure.
fn rolled_back(err: &Error) -> (&str, &openstack_client::Error, &RollbackOutcome) {
    match err {
        Error::RolledBack {
            image,
            source,
            rollback,
            ..
        } => (image, source, rollback),
        _ => panic!("expected a rolled-back failure, got {err}"),
    }
}

/// Each of `images` is in Glance exactly as given.
async fn unchanged(glance: &GlanceClient, images: &[&Image]) {
    for image in images {
        assert_eq!(glance.get_image(&image.id).await.unwrap(), **image);
    }
}

fn request(rc: &Image) -> PublishRequest {
    PublishRequest {
        rc_image_id: rc.id.clone(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_retires_the_old_image_and_publishes_the_candidate() {
    let Publication(c, project, name, nid, old, rc) = publication("happy", "baseimage").await;

    let report = publish(&c.glance, &project, &request(&rc), false)
        .await
        .unwrap();

    let old_now = c.glance.get_image(&old.id).await.unwrap();
    assert_eq!(
        old_now.name.as_deref(),
        Some(format!("{name}_obsolete").as_str())
    );
    assert_eq!(old_now.visibility, Visibility::Private);
    assert_eq!(old_now.property("nid"), Some(nid.as_str()));
    let rc_now = c.glance.get_image(&rc.id).await.unwrap();
    assert_eq!(rc_now.name.as_deref(), Some(name.as_str()));
    assert_eq!(rc_now.visibility, Visibility::Public);
    assert_eq!(rc_now.property("nid"), Some(nid.as_str()));
    assert_eq!(rc_now.property("type"), Some("baseimage"));
    assert_eq!(rc_now.owner.as_deref(), Some(project.as_str()));

    assert!(!report.dry_run);
    assert_eq!(
        report.plan.nid_type_source,
        NidTypeSource::OldImage { id: old.id.clone() }
    );
    assert_eq!(report.plan.obsolete.len(), 1);
    assert!(old.checksum.is_some());
    assert_eq!(report.plan.obsolete[0].checksum, old.checksum);
    assert!(
        report.plan.warnings.is_empty(),
        "{:?}",
        report.plan.warnings
    );
    assert_eq!(report.published.as_ref().unwrap().id, rc.id);
    let text = report.to_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, publish_lines(&old, &rc, &name, &nid, "baseimage"));

    // Running it again is an error and renames nothing twice.
    let err = refused(&c.glance, &project, &request(&rc), &rc_now).await;
    assert!(matches!(err, Error::AlreadyPublished { .. }), "{err}");
    assert!(err.to_string().contains("already published"), "{err}");
    unchanged(&c.glance, &[&old_now]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_publication_takes_nid_and_type_from_the_request() {
    let (mut c, project) = cloud().await;
    let name = unique("first");
    let nid = unique_nid();
    let rc = c.images.candidate(&name).await;
    // The candidate was built in another project: publishing moves it to
    // the caller's (the cloud under test is admin, which Glance allows).
    let demo = demo_project().await;
    let rc = c
        .glance
        .update_image(&rc.id, &ImagePatch::new().replace("owner", demo.as_str()))
        .await
        .unwrap();
    let req = PublishRequest {
        nid_type: Some(NidType::new(nid.clone(), "ge").unwrap()),
        ..request(&rc)
    };
    let report = publish(&c.glance, &project, &req, false).await.unwrap();
    assert_eq!(report.plan.nid_type_source, NidTypeSource::Request);
    assert!(report.plan.obsolete.is_empty());
    assert_eq!(report.plan.owner_from.as_deref(), Some(demo.as_str()));
    assert!(report
        .to_text()
        .contains(&format!("owner {demo} -> {}", project)));
    let rc_now = c.glance.get_image(&rc.id).await.unwrap();
    assert_eq!(rc_now.name.as_deref(), Some(name.as_str()));
    assert_eq!(rc_now.visibility, Visibility::Public);
    assert_eq!(rc_now.property("nid"), Some(nid.as_str()));
    assert_eq!(rc_now.property("type"), Some("ge"));
    assert_eq!(rc_now.owner.as_deref(), Some(project.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_old_name_and_several_old_images_are_all_retired() {
    let (mut c, project) = cloud().await;
    let name = unique("several");
    let old_name = unique("oldname");
    let (nid_a, nid_b) = (unique_nid(), unique_nid());
    let older = c.images.old_public(&old_name, &nid_a, "a").await;
    let newer = c.images.old_public(&old_name, &nid_b, "b").await;
    let rc = c.images.candidate(&name).await;
    let req = PublishRequest {
        old_name: Some(old_name.clone()),
        ..request(&rc)
    };
    let report = publish(&c.glance, &project, &req, false).await.unwrap();
    // The most recently created gives nid/type (created_at has a one-second
    // resolution; on a tie, the smaller id).
    let first = match newer.created_at.cmp(&older.created_at) {
        std::cmp::Ordering::Greater => &newer,
        std::cmp::Ordering::Less => &older,
        std::cmp::Ordering::Equal => std::cmp::min_by_key(&older, &newer, |i| i.id.clone()),
    };
    assert_eq!(
        report.plan.nid_type_source,
        NidTypeSource::OldImage {
            id: first.id.clone()
        }
    );
    assert_eq!(report.plan.obsolete.len(), 2);
    assert_eq!(report.plan.warnings.len(), 1, "{:?}", report.plan.warnings);
    assert!(report.plan.warnings[0].contains("disagree"));
    for old in [&older, &newer] {
        let now = c.glance.get_image(&old.id).await.unwrap();
        assert_eq!(
            now.name.as_deref(),
            Some(format!("{old_name}_obsolete").as_str())
        );
        assert_eq!(now.visibility, Visibility::Private);
    }
    let rc_now = c.glance.get_image(&rc.id).await.unwrap();
    assert_eq!(rc_now.name.as_deref(), Some(name.as_str()));
    assert_eq!(rc_now.property("nid"), first.property("nid"));
    assert_eq!(rc_now.property("type"), first.property("type"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_without_rc_is_refused_and_nothing_changes() {
    let (mut c, project) = cloud().await;
    let name = unique("norc");
    let image = c
        .images
        .create_active(&name, Visibility::Private, &[])
        .await;
    let req = PublishRequest {
        nid_type: Some(NidType::new("1", "x").unwrap()),
        ..request(&image)
    };
    let err = refused(&c.glance, &project, &req, &image).await;
    assert!(matches!(err, Error::NotReleaseCandidate { .. }), "{err}");
    assert!(err.to_string().contains("does not end in '_rc'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_images_without_properties_or_of_another_project_are_skipped() {
    let (mut c, project) = cloud().await;
    let demo = demo_project().await;
    assert_ne!(demo, project);
    let name = unique("skip");
    let bare = c.images.create_active(&name, Visibility::Public, &[]).await;
    let foreign = c.images.old_public(&name, "77", "other").await;
    let foreign = c
        .glance
        .update_image(
            &foreign.id,
            &ImagePatch::new().replace("owner", demo.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(foreign.owner.as_deref(), Some(demo.as_str()));
    let rc = c.images.candidate(&name).await;

    // Without nid/type in the request, neither old image can give them.
    let err = refused(&c.glance, &project, &request(&rc), &rc).await;
    assert!(matches!(err, Error::MissingNidType { .. }), "{err}");

    let nid = unique_nid();
    let req = PublishRequest {
        nid_type: Some(NidType::new(nid.clone(), "ge").unwrap()),
        ..request(&rc)
    };
    let report = publish(&c.glance, &project, &req, false).await.unwrap();
    assert!(report.plan.obsolete.is_empty());
    let skipped: BTreeMap<&str, &str> = report
        .plan
        .skipped
        .iter()
        .map(|s| (s.id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[bare.id.as_str()].contains("lacks"), "{skipped:?}");
    assert!(skipped[foreign.id.as_str()].contains(&demo), "{skipped:?}");
    assert_eq!(report.plan.warnings.len(), 2);
    assert!(report.plan.warnings.iter().any(|w| w.contains(&bare.id)));
    assert!(report.plan.warnings.iter().any(|w| w.contains(&foreign.id)));
    // Both left exactly as they were.
    unchanged(&c.glance, &[&bare, &foreign]).await;
    let rc_now = c.glance.get_image(&rc.id).await.unwrap();
    assert_eq!(rc_now.name.as_deref(), Some(name.as_str()));
    assert_eq!(rc_now.property("nid"), Some(nid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_nid_and_type_without_an_old_image_changes_nothing() {
    let (mut c, project) = cloud().await;
    let name = unique("missing");
    let rc = c.images.candidate(&name).await;
    let err = refused(&c.glance, &project, &request(&rc), &rc).await;
    assert!(matches!(err, Error::MissingNidType { .. }), "{err}");
    assert!(err.to_string().contains("give them explicitly"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_values_that_differ_from_the_old_image_lose_with_a_warning() {
    let Publication(c, project, _, nid, old, rc) = publication("mismatch", "base").await;
    let req = PublishRequest {
        nid_type: Some(NidType::new("1", "other").unwrap()),
        ..request(&rc)
    };
    let report = publish(&c.glance, &project, &req, false).await.unwrap();
    assert_eq!(
        report.plan.nid_type_source,
        NidTypeSource::OldImage { id: old.id.clone() }
    );
    assert_eq!(report.plan.warnings.len(), 1);
    assert!(report.plan.warnings[0].contains("keeping the old image's values"));
    let rc_now = c.glance.get_image(&rc.id).await.unwrap();
    assert_eq!(rc_now.property("nid"), Some(nid.as_str()));
    assert_eq!(rc_now.property("type"), Some("base"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_everything_and_changes_nothing() {
    let Publication(c, project, name, _, old, rc) = publication("dry", "base").await;
    let report = publish(&c.glance, &project, &request(&rc), true)
        .await
        .unwrap();
    assert!(report.dry_run);
    assert!(report.published.is_none());
    assert_eq!(report.plan.new_name, name);
    assert_eq!(report.plan.obsolete.len(), 1);
    assert_eq!(report.plan.obsolete[0].new_name, format!("{name}_obsolete"));
    assert!(report.to_text().contains("dry run: nothing changed"));
    unchanged(&c.glance, &[&old, &rc]).await;
}

/// Glance's default `image_property_quota` is 128 custom properties: a
/// candidate that already has 127 makes the final patch (adding `nid` and
/// `type`) fail with 413 after the old image was retired, which must be
/// undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_final_patch_restores_the_old_image() {
    let (mut c, project) = cloud().await;
    let name = unique("rollback");
    let nid = unique_nid();
    let old = c.images.old_public(&name, &nid, "base").await;
    let many: Vec<(String, String)> = (0..127)
        .map(|i| (format!("p{i:03}"), "v".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let rc = c
        .images
        .create_active(&format!("{name}_rc"), Visibility::Private, &many)
        .await;

    let err = publish(&c.glance, &project, &request(&rc), false)
        .await
        .unwrap_err();
    let (image, source, rollback) = rolled_back(&err);
    assert_eq!(image, rc.id);
    assert!(source.to_string().contains("413"), "{source}");
    assert!(rollback.is_complete(), "{rollback}");
    assert_eq!(rollback.restored.len(), 1, "{rollback}");
    let message = err.to_string();
    assert!(
        message.contains("413") && message.contains("rolled back"),
        "{message}"
    );

    let old_now = c.glance.get_image(&old.id).await.unwrap();
    assert_eq!(old_now.name.as_deref(), Some(name.as_str()));
    assert_eq!(old_now.visibility, Visibility::Public);
    assert_eq!(old_now.property("nid"), Some(nid.as_str()));
    let rc_now = c.glance.get_image(&rc.id).await.unwrap();
    assert_eq!(rc_now.name, rc.name);
    assert_eq!(rc_now.visibility, Visibility::Private);
    assert_eq!(rc_now.property("nid"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_lists_exactly_the_callers_public_images_with_nid_and_type() {
    let (mut c, project) = cloud().await;
    let demo = demo_project().await;
    let base = u64::from(uuid::Uuid::new_v4().as_fields().0) + 1_000_000;
    // Numbers whose text order differs from their numeric order.
    let (n9, n10) = (format!("{base}9"), format!("{base}10"));
    let a = c.images.old_public(&unique("loc-a"), &n10, "x").await;
    let b = c.images.old_public(&unique("loc-b"), &n9, "y").await;
    let same_nid = c.images.old_public(&unique("loc-c"), &n9, "z").await;
    let no_type = c
        .images
        .create_active(&unique("loc-d"), Visibility::Public, &[("nid", "5")])
        .await;
    let private = c
        .images
        .create_active(
            &unique("loc-e"),
            Visibility::Private,
            &[("nid", "6"), ("type", "x")],
        )
        .await;
    let foreign = c.images.old_public(&unique("loc-f"), "7", "x").await;
    c.glance
        .update_image(
            &foreign.id,
            &ImagePatch::new().replace("owner", demo.as_str()),
        )
        .await
        .unwrap();

    let report = locate_images(&c.glance, &project).await.unwrap();
    let ids: Vec<&str> = report.images.iter().map(|i| i.id.as_str()).collect();
    for wanted in [&a, &b, &same_nid] {
        assert!(ids.contains(&wanted.id.as_str()), "{} missing", wanted.id);
    }
    for unwanted in [&no_type, &private, &foreign] {
        assert!(
            !ids.contains(&unwanted.id.as_str()),
            "{} listed",
            unwanted.id
        );
    }
    // Whatever else is listed is the caller's, public, with nid and type.
    for i in &report.images {
        let img = c.glance.get_image(&i.id).await.unwrap();
        assert_eq!(img.owner.as_deref(), Some(project.as_str()));
        assert_eq!(img.visibility, Visibility::Public);
        assert_eq!(img.property("nid"), Some(i.nid.as_str()));
        assert_eq!(img.property("type"), Some(i.image_type.as_str()));
    }
    let listed_a = report.images.iter().find(|i| i.id == a.id).unwrap();
    assert_eq!(listed_a.name, a.name.clone().unwrap());
    assert_eq!(
        (listed_a.nid.as_str(), listed_a.image_type.as_str()),
        (n10.as_str(), "x")
    );

    // NIDs: sorted numerically, each once.
    assert!(report
        .nids
        .windows(2)
        .all(|w| compare_nids(&w[0], &w[1]).is_lt()));
    assert_eq!(report.nids.iter().filter(|n| **n == n9).count(), 1);
    let pos = |n: &str| report.nids.iter().position(|x| x == n).unwrap();
    assert!(pos(&n9) < pos(&n10));
    let text = report.to_text();
    assert!(text.contains(&format!("{} {n10} x\n", a.name.as_deref().unwrap())));
    assert!(text.lines().last().unwrap().starts_with("NIDs in use: "));
}

/// An image deleted by someone else between the plan and the writes: the
/// second rename fails with 404 and the first one is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_image_deleted_between_plan_and_write_rolls_back_the_others() {
    let (mut c, project) = cloud().await;
    let name = unique("vanish");
    let nid = unique_nid();
    let props = [("nid", nid.as_str()), ("type", "base")];
    c.images
        .create_active(&name, Visibility::Public, &props)
        .await;
    c.images
        .create_active(&name, Visibility::Public, &props)
        .await;
    let rc = c.images.candidate(&name).await;

    let plan = plan_publish(&c.glance, &project, &request(&rc))
        .await
        .unwrap();
    assert_eq!(plan.obsolete.len(), 2);
    let (kept, vanished) = (plan.obsolete[0].id.clone(), plan.obsolete[1].id.clone());
    c.glance.delete_image(&vanished).await.unwrap();

    let err = execute_plan(&c.glance, plan).await.unwrap_err();
    let (image, source, rollback) = rolled_back(&err);
    assert_eq!(image, vanished);
    assert!(source.is_not_found(), "{source}");
    assert_eq!(rollback.restored, [format!("{kept} ({name})")]);
    assert!(rollback.is_complete());
    let kept_now = c.glance.get_image(&kept).await.unwrap();
    assert_eq!(kept_now.name.as_deref(), Some(name.as_str()));
    assert_eq!(kept_now.visibility, Visibility::Public);
    unchanged(&c.glance, &[&rc]).await;
}
