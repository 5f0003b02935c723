//! One read of the master for several regions, against the local cloud
//! (scripts/cloud/up.sh: Keystone, Glance RegionOne, RegionTwo, RegionThree):
//! an image two regions need is downloaded from the master once and
//! streamed to both; each copy is verified on its own; a target that fails
//! in the middle of the stream stops only itself, leaves nothing behind, and
//! a rerun converges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloud_test_support::{cloud_lock, config, local_cloud_dir, session_for};
use openstack_client::glance::{GlanceClient, Image, ImageStatus};
use openstack_client::Session;

mod common;

use common::{named, random_data};

const MIB: usize = 1024 * 1024;
const TARGETS: [&str; 2] = ["RegionTwo", "RegionThree"];

struct Cloud {
    admin: Session,
    r1: GlanceClient,
}

async fn create(g: &GlanceClient, name: &str, d: &[u8]) -> Image {
    common::create_image(g, name, d, true, &[]).await
}

async fn cleanup(c: &Cloud, prefix: &str) {
    let regions = ["RegionOne", "RegionTwo", "RegionThree"];
    common::delete_prefixed(&[&c.admin], &regions, prefix).await;
}

/// glancesync.conf: master = the admin of the local cloud (credential from
/// clouds.yaml), only images named `prefix…`.
fn write_config(dir: &Path, prefix: &str) -> PathBuf {
    let text = format!(
        "[main]\nmaster_region = RegionOne\n\n[master]\ncredential = {}\nmetadata_condition = image.name.startswith('{prefix}')\ntransfer = stream\n",
        common::credential(&config())
    );
    let p = dir.join("glancesync.conf");
    std::fs::write(&p, text).unwrap();
    p
}

/// Run glancesync; (exit status, stderr, pid).
fn run(cwd: &Path, args: &[&str]) -> (i32, String, u32) {
    let (code, _, err, pid) = common::output_with_pid(common::glancesync(cwd).args(args));
    (code, err, pid)
}

/// Run glancesync with `cfg` for both [`TARGETS`]; (exit status, stderr, pid).
fn sync_targets(cwd: &Path, cfg: &Path) -> (i32, String, u32) {
    let mut args = vec!["--config-file", cfg.to_str().unwrap()];
    args.extend(TARGETS);
    run(cwd, &args)
}

/// Downloads of image `id` from the master that process `pid` made
/// (RegionOne's access log records the user agent `glancesync/… pid/N`).
fn master_reads(pid: u32, id: &str) -> usize {
    let marker = format!("pid/{pid}\"");
    let want = format!("GET /v2/images/{id}/file ");
    let p = local_cloud_dir().join("logs/glance-r1-access.log");
    let text = std::fs::read_to_string(&p).unwrap();
    text.lines()
        .filter(|l| l.ends_with(&marker) && l.contains(&want))
        .count()
}

/// The copy in `g` is active with the master's size, md5 and sha512.
async fn assert_copy(g: &GlanceClient, master: &Image, region: &str) {
    let name = master.name.as_deref().unwrap();
    let copies = named(g, name).await;
    assert_eq!(copies.len(), 1, "{region}: {copies:?}");
    let c = &copies[0];
    assert_eq!(c.status, ImageStatus::Active, "{region}");
    assert_eq!(c.size, master.size, "{region}");
    assert_eq!(c.checksum, master.checksum, "{region}");
    assert_eq!(c.os_hash_value, master.os_hash_value, "{region}");
    assert!(c.property("glancesync_transfer").is_none(), "{region}");
}

fn with_cloud<F>(body: F)
where
    F: for<'a> FnOnce(
        &'a Cloud,
        &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
{
    let prefix = common::image_prefix("gs-fan");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _lock = rt.block_on(cloud_lock());
    let c = rt.block_on(async {
        let admin = session_for(config()).await;
        let r1 = admin.image(Some("RegionOne")).await.unwrap();
        Cloud { admin, r1 }
    });
    common::run_then_clean_up(&rt, body(&c, &prefix), cleanup(&c, &prefix));
}

#[test]
fn one_master_read_streams_to_two_regions() {
    with_cloud(|c, prefix| Box::pin(two_regions(c, prefix)));
}

async fn two_regions(c: &Cloud, prefix: &str) {
    let big = create(&c.r1, &format!("{prefix}big"), &random_data(24 * MIB)).await;
    let small = create(&c.r1, &format!("{prefix}small"), &random_data(3 * MIB + 17)).await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), prefix);
    let (code, err, pid) = sync_targets(tmp.path(), &cfg);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("read once from the master for 2 regions"),
        "{err}"
    );
    for region in TARGETS {
        let g = c.admin.image(Some(region)).await.unwrap();
        assert_copy(&g, &big, region).await;
        assert_copy(&g, &small, region).await;
    }
    assert_eq!(master_reads(pid, &big.id), 1, "one read of the big image");
    assert_eq!(
        master_reads(pid, &small.id),
        1,
        "one read of the small image"
    );

    // Nothing left to do.
    let (code, err, pid) = sync_targets(tmp.path(), &cfg);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("Uploading image"), "{err}");
    assert_eq!(master_reads(pid, &big.id), 0);
}

#[test]
fn a_target_failing_mid_stream_stops_only_itself() {
    with_cloud(|c, prefix| Box::pin(failing_target(c, prefix)));
}

async fn failing_target(c: &Cloud, prefix: &str) {
    let name = format!("{prefix}large");
    let master = create(&c.r1, &name, &random_data(192 * MIB)).await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), prefix);
    let r3 = c.admin.image(Some("RegionThree")).await.unwrap();

    // While the data streams, delete RegionThree's copy: its upload fails in
    // the middle; RegionTwo's must complete and verify.
    let saboteur = {
        let r3 = r3.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let give_up = Instant::now() + Duration::from_secs(300);
            while Instant::now() < give_up {
                for img in named(&r3, &name).await {
                    if img.status == ImageStatus::Saving {
                        r3.delete_image(&img.id).await.unwrap();
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        })
    };
    let (dir, cfg_b) = (tmp.path().to_path_buf(), cfg.clone());
    let (code, err, pid) = tokio::task::spawn_blocking(move || sync_targets(&dir, &cfg_b))
        .await
        .unwrap();
    assert!(
        saboteur.await.unwrap(),
        "the copy in RegionThree was never seen saving"
    );
    assert_eq!(
        code, 2,
        "RegionThree failed, so the exit status is 2: {err}"
    );
    assert!(err.contains("RegionThree: synchronisation failed"), "{err}");
    let r2 = c.admin.image(Some("RegionTwo")).await.unwrap();
    assert_copy(&r2, &master, "RegionTwo").await;
    assert_eq!(master_reads(pid, &master.id), 1);
    assert!(
        named(&r3, &name).await.is_empty(),
        "nothing half-uploaded stays in RegionThree"
    );

    // A rerun converges: RegionThree gets its copy, RegionTwo is left alone.
    let (code, err, _) = sync_targets(tmp.path(), &cfg);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("RegionTwo: Uploading image"), "{err}");
    assert_copy(&r3, &master, "RegionThree").await;
}
