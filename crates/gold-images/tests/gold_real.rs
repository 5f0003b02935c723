//! `update`, rotation, members, `retire` and `purge` against the real local
//! cloud (Keystone + Glance RegionOne; `scripts/cloud/up.sh`), with the
//! builder played by a local HTTP server on 127.0.0.1 and Nova (purge's
//! instance check) by wiremock with api-ref shaped bodies.
//!
//! Every image carries a type tag unique to the test (`gt<hex>`) and is
//! deleted at the end, whatever happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{data, render, BuilderServer};
use gold_images::cloud::DomainChoice;
use gold_images::fetch::Builder;
use gold_images::output::{Format, Printer};
use gold_images::update::{apply_update, plan_update, ApplyOptions, EntryAction, EntryOutcome};
use gold_images::usage::ImageQuery;
use gold_images::{Cloud, ImageSet, SetKind};
use openstack_client::glance::{GlanceClient, ImageFilter, ImageStatus, MemberStatus, Visibility};
use serde_json::json;
use sha2::Digest;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SIZE: usize = 48 * 1024;

/// Deletes every image tagged with the run's type when dropped.
struct TypeCleanup {
    glance: GlanceClient,
    tag: String,
}

impl Drop for TypeCleanup {
    fn drop(&mut self) {
        let glance = self.glance.clone();
        let tag = self.tag.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let filter = ImageFilter::default().tag(tag.clone());
                for status in [
                    ImageStatus::Active,
                    ImageStatus::Deactivated,
                    ImageStatus::Queued,
                ] {
                    let f = filter.clone().status(status);
                    for i in glance.list_images(&f).await.unwrap_or_default() {
                        if let Err(e) = glance.delete_image(&i.id).await {
                            eprintln!("clean-up: cannot delete image {}: {e}", i.id);
                        }
                    }
                }
            })
        });
    }
}

fn run_type() -> String {
    format!("gt{:08x}", rand::random::<u32>())
}

async fn cloud() -> Cloud {
    Cloud::connect(cloud_test_support::session().await, None)
        .await
        .unwrap()
}

async fn images_named(glance: &GlanceClient, name: &str) -> Vec<openstack_client::glance::Image> {
    glance
        .list_images(&ImageFilter::default().name(name))
        .await
        .unwrap()
}

fn sha256sums(entries: &[(&str, &[u8])]) -> Vec<u8> {
    entries
        .iter()
        .map(|(n, d)| format!("{}  {n}\n", hex::encode(sha2::Sha256::digest(d))))
        .collect::<String>()
        .into_bytes()
}

/// Holds the cloud-test lock until the run's images are deleted.
struct Guard {
    _cleanup: TypeCleanup,
    _lock: cloud_test_support::CloudLock,
}

/// What the update and retire tests start from: the lock and clean-up
/// guard, the cloud, a type unique to the run (its images deleted at the
/// end), the builder's server, a work directory, the set `update.yaml`
/// rendered for them and the builder.
async fn update_setup() -> (
    Guard,
    Cloud,
    String,
    BuilderServer,
    tempfile::TempDir,
    ImageSet,
    Builder,
) {
    let lock = cloud_test_support::cloud_lock().await;
    let cloud = cloud().await;
    let ty = run_type();
    let guard = Guard {
        _cleanup: TypeCleanup {
            glance: cloud.glance.clone(),
            tag: ty.clone(),
        },
        _lock: lock,
    };
    let server = BuilderServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let set = ImageSet::load(
        &render("update.yaml", dir.path(), &server.url, &ty),
        SetKind::Update,
    )
    .unwrap();
    let builder = Builder::new("gold-images-test").unwrap();
    (guard, cloud, ty, server, dir, set, builder)
}

#[tokio::test(flavor = "multi_thread")]
async fn update_creates_skips_unchanged_and_rotates_with_members() {
    let (_guard, cloud, ty, server, dir, set, builder) = update_setup().await;
    let opts = ApplyOptions {
        work_dir: dir.path().to_owned(),
        ..Default::default()
    };

    let (a1, b1, g1) = (data(SIZE), data(SIZE), data(SIZE));
    let a1_md5 = server.publish("alpha", &a1);
    server.publish("beta", &b1);
    server.put("gamma-latest.raw", g1.clone());
    server.put("SHA256SUMS", sha256sums(&[("gamma-latest.raw", &g1)]));

    // 1. Nothing exists yet: three new images.
    let plan = plan_update(&cloud, &builder, &set, None).await.unwrap();
    assert_eq!(plan.entries.len(), 3);
    for e in &plan.entries {
        assert!(
            matches!(
                &e.action,
                EntryAction::Upload {
                    replaces: None,
                    only_if_changed: false,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    let out = apply_update(&cloud, &builder, &plan, &opts).await;
    for (n, o) in &out {
        assert!(matches!(o, EntryOutcome::Created { .. }), "{n}: {o:?}");
    }
    let alpha = cloud.active_image(&ty, "alpha").await.unwrap().unwrap();
    assert_eq!(
        alpha.name.as_deref(),
        Some(format!("GOLD Alpha {ty}").as_str())
    );
    assert_eq!(alpha.checksum.as_deref(), Some(a1_md5.as_str()));
    assert_eq!(alpha.tags.len(), 2);
    assert!(alpha.tags.contains(&ty) && alpha.tags.contains(&"alpha".to_owned()));
    assert_eq!(alpha.property("hw_scsi_model"), Some("virtio-scsi"));
    assert_eq!(alpha.min_ram, Some(256));
    assert_eq!(alpha.visibility, Visibility::Private);
    let beta = cloud.active_image(&ty, "beta").await.unwrap().unwrap();
    assert!(beta.tags.contains(&"extra".to_owned()));
    assert_eq!(beta.visibility, Visibility::Shared);
    let demo = cloud.project("demo").await.unwrap().unwrap();
    assert_eq!(beta.owner.as_deref(), Some(demo.id.as_str()));
    let service = cloud.project("service").await.unwrap().unwrap();
    // An operator shared beta with a project.
    gold_images::update::grant(&cloud.glance, &beta.id, &service.id)
        .await
        .unwrap();

    // 2. Unchanged builds: no image data fetched for the md5-checked entries.
    let alpha_gets = server.gets("alpha-latest.raw");
    let beta_gets = server.gets("beta-latest.raw");
    let plan = plan_update(&cloud, &builder, &set, None).await.unwrap();
    assert!(matches!(
        plan.entries[0].action,
        EntryAction::UpToDate { .. }
    ));
    assert!(matches!(
        plan.entries[1].action,
        EntryAction::UpToDate { .. }
    ));
    // gamma has no builder md5: downloaded and compared, not uploaded.
    assert!(matches!(
        plan.entries[2].action,
        EntryAction::Upload {
            only_if_changed: true,
            ..
        }
    ));
    let out = apply_update(&cloud, &builder, &plan, &opts).await;
    for (n, o) in &out {
        assert!(matches!(o, EntryOutcome::UpToDate { .. }), "{n}: {o:?}");
    }
    assert_eq!(server.gets("alpha-latest.raw"), alpha_gets);
    assert_eq!(server.gets("beta-latest.raw"), beta_gets);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "the compared download was removed"
    );

    // 3. New builds: rotation.
    let (a2, b2, g2) = (data(SIZE), data(SIZE), data(SIZE));
    let a2_md5 = server.publish("alpha", &a2);
    let b2_md5 = server.publish("beta", &b2);
    server.put("gamma-latest.raw", g2.clone());
    server.put("SHA256SUMS", sha256sums(&[("gamma-latest.raw", &g2)]));
    let plan = plan_update(&cloud, &builder, &set, None).await.unwrap();
    match &plan.entries[1].action {
        EntryAction::Upload {
            replaces: Some(old),
            ..
        } => {
            assert_eq!(old.id, beta.id);
            assert_eq!(old.members, vec![service.id.clone()]);
            assert_eq!(old.new_name, format!("Outdated (Beta {ty})"));
        }
        other => panic!("{other:?}"),
    }
    let out = apply_update(&cloud, &builder, &plan, &opts).await;
    for (n, o) in &out {
        assert!(matches!(o, EntryOutcome::Rotated { .. }), "{n}: {o:?}");
    }
    let old_alpha = cloud.glance.get_image(&alpha.id).await.unwrap();
    assert_eq!(old_alpha.status, ImageStatus::Deactivated);
    assert_eq!(
        old_alpha.name.as_deref(),
        Some(format!("Outdated (Alpha {ty})").as_str())
    );
    let stamp = old_alpha.property("depricated").unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S").is_ok(),
        "{stamp}"
    );
    let new_alpha = cloud.active_image(&ty, "alpha").await.unwrap().unwrap();
    assert_ne!(new_alpha.id, alpha.id);
    assert_eq!(new_alpha.checksum.as_deref(), Some(a2_md5.as_str()));
    let new_beta = cloud.active_image(&ty, "beta").await.unwrap().unwrap();
    assert_eq!(new_beta.checksum.as_deref(), Some(b2_md5.as_str()));
    let members = cloud.glance.list_members(&new_beta.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member_id, service.id);
    assert_eq!(members[0].status, MemberStatus::Accepted);
    assert_eq!(
        cloud.glance.get_image(&beta.id).await.unwrap().status,
        ImageStatus::Deactivated
    );
    let gamma = cloud.active_image(&ty, "gamma").await.unwrap().unwrap();
    assert_eq!(
        gamma.checksum.as_deref(),
        Some(hex::encode(md5::Md5::digest(&g2)).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_data_leaves_no_image_behind() {
    let (_guard, cloud, ty, server, dir, set, builder) = update_setup().await;
    let opts = ApplyOptions {
        work_dir: dir.path().to_owned(),
        ..Default::default()
    };
    // alpha: the builder's md5 does not match the data it serves.
    server.publish("alpha", &data(SIZE));
    server.put("alpha-latest.raw", data(SIZE));
    // beta: too small.
    server.publish("beta", &data(5000));
    // gamma: the checksum file lists another digest.
    server.put("gamma-latest.raw", data(SIZE));
    server.put("SHA256SUMS", sha256sums(&[("gamma-latest.raw", b"other")]));
    let plan = plan_update(&cloud, &builder, &set, None).await.unwrap();
    let out = apply_update(&cloud, &builder, &plan, &opts).await;
    for (n, o) in &out {
        match o {
            EntryOutcome::Failed { error } => {
                let why = match n.as_str() {
                    "alpha" => "the builder announced md5",
                    "beta" => "file is too small",
                    _ => "download checksum mismatch",
                };
                assert!(error.contains(why), "{n}: {error}");
            }
            other => panic!("{n}: {other:?}"),
        }
    }
    for short in ["Alpha", "Beta", "Gamma"] {
        assert!(
            images_named(&cloud.glance, &format!("GOLD {short} {ty}"))
                .await
                .is_empty(),
            "{short}: no image left behind"
        );
    }
    // Only alpha reached Glance (beta and gamma were refused before any write).
    assert_eq!(server.gets("beta-latest.raw"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn retire_renames_stamps_and_deactivates() {
    let (_guard, cloud, ty, server, dir, set, builder) = update_setup().await;
    server.publish("alpha", &data(SIZE));
    let plan = plan_update(&cloud, &builder, &set, Some("alpha"))
        .await
        .unwrap();
    assert_eq!(plan.entries.len(), 1);
    apply_update(&cloud, &builder, &plan, &ApplyOptions::default()).await;
    let alpha = cloud.active_image(&ty, "alpha").await.unwrap().unwrap();

    let retired = ImageSet::load(
        &render("retired.yaml", dir.path(), &server.url, &ty),
        SetKind::Retire,
    )
    .unwrap();
    assert!(gold_images::retire::plan_retire(&cloud, &retired, "nosuch")
        .await
        .is_err());
    let plan = gold_images::retire::plan_retire(&cloud, &retired, "alpha")
        .await
        .unwrap();
    assert_eq!(plan.images.len(), 1);
    assert_eq!(plan.images[0].id, alpha.id);
    let done = gold_images::retire::apply_retire(&cloud, &plan)
        .await
        .unwrap();
    assert_eq!(done, vec![format!("GOLD Alpha {ty}")]);
    let after = cloud.glance.get_image(&alpha.id).await.unwrap();
    assert_eq!(after.status, ImageStatus::Deactivated);
    assert_eq!(
        after.name.as_deref(),
        Some(format!("Retired (Alpha {ty})").as_str())
    );
    assert!(after.property("depricated").is_some());
    assert!(cloud.active_image(&ty, "alpha").await.unwrap().is_none());
}

/// Nova's `GET /servers/detail` answer for `image` with `servers` instances.
fn servers_body(image: &str, servers: &[&str]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = servers
        .iter()
        .map(|id| {
            json!({
                "id": id, "name": format!("vm-{id}"), "status": "ACTIVE",
                "tenant_id": "6f70656e737461636b20342065766572", "user_id": "admin",
                "image": {"id": image, "links": []},
                "flavor": {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0, "original_name": "m1.tiny", "extra_specs": {}},
                "addresses": {}, "metadata": {}, "key_name": null,
                "OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:power_state": 1,
                "created": "2026-11-01T00:00:00Z", "updated": "2026-11-01T00:00:01Z", "hostId": "", "progress": 0
            })
        })
        .collect();
    json!({"servers": list})
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_counts_instances_and_purge_respects_them_and_the_limit() {
    let _lock = cloud_test_support::cloud_lock().await;
    let ty = run_type();
    let nova = MockServer::start().await;
    let uri = nova.uri();
    Mock::given(method("GET"))
        .and(path("/v2.1/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": {
            "id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"href": format!("{uri}/v2.1/"), "rel": "self"}]
        }})))
        .mount(&nova)
        .await;
    let mut config = cloud_test_support::config();
    config
        .endpoint_overrides
        .insert("compute".into(), format!("{uri}/v2.1/").parse().unwrap());
    let session = cloud_test_support::session_for(config).await;
    let cloud = Cloud::connect(session, None).await.unwrap();
    let _cleanup = TypeCleanup {
        glance: cloud.glance.clone(),
        tag: ty.clone(),
    };
    // Three outdated (deactivated) images, oldest first; the newest is in use.
    let mut ids = Vec::new();
    for i in 0..3 {
        let req = openstack_client::glance::CreateImage::new(format!("Outdated (Ubuntu {ty} {i})"))
            .disk_format("raw")
            .container_format("bare")
            .visibility(Visibility::Shared)
            .protected(i == 0)
            .tag(ty.clone())
            .tag("ubuntu_2404");
        let image = cloud.glance.create_image(&req).await.unwrap();
        cloud
            .glance
            .upload(&image.id, std::io::Cursor::new(data(1024)), Some(1024))
            .await
            .unwrap();
        cloud.glance.deactivate_image(&image.id).await.unwrap();
        ids.push(image.id);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    for id in &ids {
        let servers: Vec<&str> = if id == &ids[2] {
            vec!["9168b536-cd40-4630-b43f-b259807c6e87"]
        } else {
            vec![]
        };
        Mock::given(method("GET"))
            .and(path("/v2.1/servers/detail"))
            .and(query_param("image", id.as_str()))
            .and(query_param("all_tenants", "1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(servers_body(id, &servers)))
            .mount(&nova)
            .await;
    }
    let query = ImageQuery {
        status: ImageStatus::Deactivated,
        visibility: Visibility::Shared,
        tags: vec![ty.clone(), "ubuntu_2404".into()],
    };
    let mut p = Printer::new(Format::Text, Vec::new()).unwrap();
    let usage = gold_images::usage::usage(&cloud, &query, false, &mut p)
        .await
        .unwrap();
    assert_eq!(
        usage.iter().map(|u| u.count()).collect::<Vec<_>>(),
        vec![0, 0, 1]
    );
    let text = String::from_utf8(p.into_inner()).unwrap();
    assert!(
        text.contains(&format!("1 {} Outdated (Ubuntu {ty} 2)\n", ids[2])),
        "{text}"
    );
    assert!(text.contains("ubuntu = 1\n"), "{text}");

    let plan = gold_images::usage::plan_purge(&cloud, &query, Some(1))
        .await
        .unwrap();
    assert_eq!(plan.delete.len(), 1);
    assert_eq!(plan.delete[0].id, ids[0]);
    assert!(plan.delete[0].protected);
    assert_eq!(plan.in_use.len(), 1);
    assert_eq!(plan.in_use[0].0, ids[2]);
    assert_eq!(plan.over_limit, 1);
    let mut p = Printer::new(Format::Text, Vec::new()).unwrap();
    let n = gold_images::usage::apply_purge(&cloud, &plan, &mut p)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(cloud
        .glance
        .get_image(&ids[0])
        .await
        .unwrap_err()
        .is_not_found());
    assert_eq!(
        cloud.glance.get_image(&ids[1]).await.unwrap().status,
        ImageStatus::Deactivated
    );
    assert_eq!(
        cloud.glance.get_image(&ids[2]).await.unwrap().status,
        ImageStatus::Deactivated
    );
}

/// Asserts that looking `project` up in `cloud` fails with an error
/// holding each of `needles`.
async fn project_fails(cloud: Cloud, project: &str, needles: &[&str]) {
    let err = cloud.project(project).await.unwrap_err().to_string();
    for needle in needles {
        assert!(err.contains(needle), "{project}: {err}");
    }
}

/// `--domain`: an existing domain (default or given) binds; only an absent
/// default domain falls back to a unique name elsewhere; an absent given
/// domain is an error. Projects and the domain are made for the test and deleted.
#[tokio::test(flavor = "multi_thread")]
async fn projects_by_name_in_a_domain_given_by_name() {
    let _lock = cloud_test_support::cloud_lock().await;
    let base = cloud().await;
    let id = base.identity.clone();
    let dom_name = cloud_test_support::unique("gidom");
    let domain = id.create_domain(&dom_name).await.unwrap();
    let twin = cloud_test_support::unique("gitwin");
    let solo = cloud_test_support::unique("gisolo");
    let mut made = Vec::new();
    for (name, d) in [
        (&twin, "default"),
        (&twin, domain.id.as_str()),
        (&solo, "default"),
    ] {
        if let Ok(p) = id.create_project(name, d).await {
            made.push(p.id);
        }
    }
    let checks = {
        let (base, dom_name, domain_id) = (base.clone(), dom_name.clone(), domain.id.clone());
        let (twin, solo, made) = (twin.clone(), solo.clone(), made.clone());
        tokio::spawn(async move {
            assert_eq!(made.len(), 3);
            let with = |name: &str, strict: bool| {
                base.clone().with_domain(Some(DomainChoice {
                    name: name.to_owned(),
                    strict,
                }))
            };
            // Preferred domain holds the twin: that one, by name or by id.
            for d in [dom_name.as_str(), domain_id.as_str()] {
                let p = with(d, false).project(&twin).await.unwrap().unwrap();
                assert_eq!(p.id, made[1], "{d}");
            }
            assert_eq!(
                with("Default", true)
                    .project(&twin)
                    .await
                    .unwrap()
                    .unwrap()
                    .id,
                made[0]
            );
            // A domain that exists but lacks the project binds, preferred or
            // given (strict) (himlarcli: "Unknown project"): never the one
            // elsewhere.
            let not_there =
                format!("no project named {solo} in domain {dom_name} (found in domains Default)");
            for strict in [false, true] {
                project_fails(with(&dom_name, strict), &solo, &[&not_there]).await;
            }
            // Absent preferred domain: unique names still resolve, twins do not.
            let absent = with("Dataporten-absent", false);
            assert_eq!(absent.project(&solo).await.unwrap().unwrap().id, made[2]);
            let several = format!("several projects are named {twin}");
            project_fails(absent, &twin, &[&several, "Default", &dom_name]).await;
            // Strict: the domain must exist.
            project_fails(
                with("Dataporten-absent", true),
                &solo,
                &["--domain Dataporten-absent: no such Keystone domain"],
            )
            .await;
            // Ids need no domain; unknown names are None.
            assert_eq!(
                with(&dom_name, true)
                    .project(&made[0])
                    .await
                    .unwrap()
                    .unwrap()
                    .name,
                twin
            );
            assert!(with(&dom_name, false)
                .project("no-such-gi-project")
                .await
                .unwrap()
                .is_none());
        })
        .await
    };
    for p in &made {
        id.delete_project(p).await.unwrap();
    }
    id.delete_domain(&domain.id).await.unwrap();
    if let Err(e) = checks {
        std::panic::resume_unwind(e.into_panic());
    }
}
