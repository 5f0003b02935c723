//! Server-side copies against the local cloud (every Glance of
//! scripts/cloud/up.sh offers `glance-download`): the target Glance pulls the
//! data from the master's Glance, no image byte passes through glancesync,
//! each copy is verified; a failed import leaves nothing behind and, with
//! `transfer = auto`, falls back to streaming.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloud_test_support::{cloud_lock, config, local_cloud_dir, session_for};
use glancesync_core::{
    ConfigSource, GlanceBackend, GlanceSyncConfig, LoadOptions, NoProgress, RegionBackend,
    RegionRef, UploadRequest,
};
use openstack_client::glance::{GlanceClient, Image, ImageStatus, Visibility};
use openstack_client::Session;

mod common;

use common::named;

fn config_text(prefix: &str, transfer: &str) -> String {
    format!(
        "[main]\nmaster_region = RegionOne\n\n[master]\ncredential = {}\nmetadata_condition = image.name.startswith('{prefix}')\ntransfer = {transfer}\n",
        common::credential(&config())
    )
}

async fn create(g: &GlanceClient, name: &str, len: usize) -> Image {
    let props = [("purpose", "server-side")];
    common::create_image(g, name, &common::random_data(len), true, &props).await
}

async fn cleanup(admin: &Session, prefix: &str) {
    let regions = ["RegionOne", "RegionTwo", "RegionThree"];
    common::delete_prefixed(&[admin], &regions, prefix).await;
}

fn run(cwd: &Path, cfg: &Path) -> (i32, String, u32) {
    let cfg = cfg.to_str().unwrap();
    let args = ["--config-file", cfg, "RegionTwo", "RegionThree"];
    let (code, _, err, pid) = common::output_with_pid(common::glancesync(cwd).args(args));
    (code, err, pid)
}

/// Requests to the data of the master images `ids` made by glancesync
/// process `pid` (the ids keep an older run with the same PID out).
fn master_reads(pid: u32, ids: &[&str]) -> usize {
    let marker = format!("pid/{pid}\"");
    let text =
        std::fs::read_to_string(local_cloud_dir().join("logs/glance-r1-access.log")).unwrap();
    text.lines()
        .filter(|l| {
            l.ends_with(&marker)
                && ids
                    .iter()
                    .any(|id| l.contains(&format!("/v2/images/{id}/file ")))
        })
        .count()
}

fn with_cloud<F>(body: F)
where
    F: for<'a> FnOnce(
        &'a Session,
        &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
{
    let prefix = common::image_prefix("gs-gd");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _lock = rt.block_on(cloud_lock());
    let admin = rt.block_on(session_for(config()));
    common::run_then_clean_up(&rt, body(&admin, &prefix), cleanup(&admin, &prefix));
}

#[test]
fn targets_pull_the_data_themselves() {
    with_cloud(|admin, prefix| Box::pin(server_side(admin, prefix)));
}

async fn server_side(admin: &Session, prefix: &str) {
    let r1 = admin.image(Some("RegionOne")).await.unwrap();
    let a = create(&r1, &format!("{prefix}a"), 9 * 1024 * 1024).await;
    let b = create(&r1, &format!("{prefix}b"), 1024 * 1024 + 3).await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg: PathBuf = tmp.path().join("glancesync.conf");
    std::fs::write(&cfg, config_text(prefix, "glance-download")).unwrap();
    let (code, err, pid) = run(tmp.path(), &cfg);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("0 bytes streamed through glancesync (0 images), 4 images copied server-side"),
        "{err}"
    );
    assert!(
        err.contains("copied server-side (glance-download) by Glance in"),
        "{err}"
    );
    assert_eq!(
        master_reads(pid, &[&a.id, &b.id]),
        0,
        "glancesync itself read no image data"
    );
    for region in ["RegionTwo", "RegionThree"] {
        let g = admin.image(Some(region)).await.unwrap();
        for m in [&a, &b] {
            let copies = named(&g, m.name.as_deref().unwrap()).await;
            assert_eq!(copies.len(), 1, "{region}: {copies:?}");
            let c = &copies[0];
            assert_eq!(c.status, ImageStatus::Active);
            assert_eq!((c.size, &c.checksum), (m.size, &m.checksum), "{region}");
            assert_eq!(c.os_hash_value, m.os_hash_value, "{region}");
            assert_eq!(c.visibility, Visibility::Public);
            assert_eq!(c.property("purpose"), Some("server-side"));
            assert!(c.property("glancesync_transfer").is_none());
        }
    }
    // Nothing left to do.
    let (code, err, _) = run(tmp.path(), &cfg);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("Uploading image"), "{err}");
}

#[test]
fn a_failed_import_leaves_nothing_and_auto_falls_back_to_streaming() {
    with_cloud(|admin, prefix| Box::pin(failed_import(admin, prefix)));
}

async fn failed_import(admin: &Session, prefix: &str) {
    let r1 = admin.image(Some("RegionOne")).await.unwrap();
    let r2 = admin.image(Some("RegionTwo")).await.unwrap();
    let real = create(&r1, &format!("{prefix}src"), 2 * 1024 * 1024).await;
    for transfer in ["glance-download", "auto"] {
        let cfg = GlanceSyncConfig::load(
            &ConfigSource::Text {
                name: "test".into(),
                text: config_text(prefix, transfer),
            },
            &LoadOptions {
                overrides: vec![],
                require_credentials: true,
            },
            &|_: &str| None,
        )
        .unwrap();
        let cfg = Arc::new(cfg);
        let backend = GlanceBackend::new(cfg.clone(), false, Arc::new(NoProgress));
        let region = RegionRef::parse("RegionTwo");
        // A master image whose data the master's Glance does not have: the
        // import fails (and so does streaming it).
        let mut master =
            glancesync_core::Image::new("RegionOne", &format!("{prefix}{transfer}"), "");
        master.id = "0b1d7a04-9a8e-4d51-9a49-0c6fca0ffee0".into();
        master.size = real.size.unwrap();
        master.checksum = real.checksum.clone();
        let image = master.clone();
        let err = backend
            .upload_image(UploadRequest {
                region: &region,
                target: cfg.master(),
                image: &image,
                master: &master,
            })
            .await
            .unwrap_err();
        let c = backend.counters();
        if transfer == "auto" {
            assert_eq!(c.server_side_fallbacks, 1, "{err}");
        } else {
            assert_eq!(c.server_side_fallbacks, 0, "{err}");
            assert!(err.to_string().contains("glance-download"), "{err}");
        }
        assert_eq!(c.server_side_images, 0);
        assert!(
            named(&r2, &image.name).await.is_empty(),
            "{transfer}: nothing active or half-imported is left"
        );
    }
}
