//! End-to-end tests of `glancesync` on the real local cloud (Keystone +
//! Glance RegionOne as master, RegionTwo as target, and a second target,
//! `demo`, reached through the `local-demo` credentials).
//!
//! Needs `scripts/cloud/up.sh`. The clouds file is `$OS_CLIENT_CONFIG_FILE`,
//! else `$LOCAL_CLOUD_DIR/clouds.yaml`, else
//! `~/.cache/openstack-image-tools/local-cloud/clouds.yaml`; the cloud is
//! `$OS_TEST_CLOUD` (default `local`). The dry-run test reads Glance's access
//! logs (`<cloud dir>/logs/glance-r{1,2}-access.log`) to prove that no write
//! request reached Glance. Every image created here is named
//! `gs-e2e-<run>-…` and deleted at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cloud_test_support::{cloud_lock, config, config_named, local_cloud_dir, session_for};
use md5::{Digest, Md5};
use openstack_client::glance::{
    CreateImage, GlanceClient, Image, ImageFilter, ImageStatus, Visibility,
};
use openstack_client::{CloudConfig, Session};

mod common;

use common::{create_image, glancesync, named};

const MIB: usize = 1024 * 1024;

struct Cloud {
    admin: Session,
    /// The admin's Glance in RegionOne (the master region).
    r1: GlanceClient,
    /// The admin's Glance in RegionTwo.
    r2: GlanceClient,
    demo: Session,
    admin_cfg: CloudConfig,
    demo_cfg: CloudConfig,
}

async fn connect() -> Cloud {
    let admin_cfg = config();
    let demo_cfg = config_named("local-demo");
    let admin = session_for(admin_cfg.clone()).await;
    let demo = session_for(demo_cfg.clone()).await;
    let r1 = admin.image(Some("RegionOne")).await.unwrap();
    let r2 = admin.image(Some("RegionTwo")).await.unwrap();
    Cloud {
        admin,
        r1,
        r2,
        demo,
        admin_cfg,
        demo_cfg,
    }
}

fn data(size: usize, seed: u8) -> Vec<u8> {
    let mut v = common::random_data(size);
    v[0] = seed;
    v
}

fn md5_hex(d: &[u8]) -> String {
    hex::encode(Md5::digest(d))
}

async fn one(g: &GlanceClient, name: &str) -> Image {
    let mut v = named(g, name).await;
    assert_eq!(v.len(), 1, "exactly one image named {name}: {v:?}");
    v.remove(0)
}

async fn cleanup(c: &Cloud, prefix: &str) {
    common::delete_prefixed(&[&c.admin, &c.demo], &["RegionOne", "RegionTwo"], prefix).await;
}

/// The glancesync.conf for the local cloud (credential form, base64 passwords,
/// Keystone v3; users, passwords and URL from clouds.yaml): master = admin,
/// target `demo` = local-demo (its credential split over two lines). The
/// plain user/password form is covered by the config unit tests and the
/// benchmark.
fn write_config(dir: &Path, c: &Cloud, master_extra: &str, demo_condition: &str) -> PathBuf {
    let admin = common::credential(&c.admin_cfg);
    let demo = common::credential(&c.demo_cfg).replacen(",http", ",\n  http", 1);
    let text = format!(
        "[main]\nmaster_region = RegionOne\n\n[master]\ncredential = {admin}\nuse_keystone_v3 = True\n{master_extra}\n\n[demo]\ncredential = {demo}\nuse_keystone_v3 = True\nmetadata_condition = {demo_condition}\n"
    );
    let p = dir.join("glancesync.conf");
    std::fs::write(&p, text).unwrap();
    p
}

/// Run `cmd`, which must succeed: (stdout, stderr, pid).
fn run(cmd: &mut Command) -> (String, String, u32) {
    let (code, stdout, stderr, pid) = common::output_with_pid(cmd);
    assert_eq!(code, 0, "glancesync failed: {stderr}");
    (stdout, stderr, pid)
}

/// Requests Glance's access logs recorded for glancesync process `pid`: (method, path).
fn glance_requests_of(pid: u32) -> Vec<(String, String)> {
    let marker = format!("pid/{pid}\"");
    let mut out = Vec::new();
    for f in ["glance-r1-access.log", "glance-r2-access.log"] {
        let p = local_cloud_dir().join("logs").join(f);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the local cloud from scripts/cloud/up.sh writes it)",
                p.display()
            )
        });
        for line in text.lines().filter(|l| l.ends_with(&marker)) {
            let req = line.split('"').nth(1).unwrap_or("");
            let mut parts = req.split(' ');
            out.push((
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

/// glancesync process `pid` (run as `what`) sent Glance reads only (and at
/// least one), and the images named `prefix…` are still as in `before`.
async fn assert_read_only(
    c: &Cloud,
    prefix: &str,
    pid: u32,
    before: &BTreeMap<String, String>,
    what: &str,
) {
    let mut reqs = glance_requests_of(pid);
    let deadline = Instant::now() + Duration::from_secs(3);
    while reqs.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reqs = glance_requests_of(pid);
    }
    assert!(
        !reqs.is_empty(),
        "the {what} should have listed images (access log has no line for pid {pid})"
    );
    let writes: Vec<_> = reqs
        .iter()
        .filter(|(m, _)| m != "GET" && m != "HEAD")
        .collect();
    assert!(
        writes.is_empty(),
        "{what} sent write requests to Glance: {writes:?}"
    );
    assert_eq!(
        &snapshot(c, prefix).await,
        before,
        "{what} changed Glance's state"
    );
}

fn state_of(images: &[Image], prefix: &str) -> BTreeMap<String, String> {
    images
        .iter()
        .filter(|i| i.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
        .map(|i| {
            (
                i.id.clone(),
                format!(
                    "{:?} {:?} {:?} {:?} {:?} {:?}",
                    i.name, i.status, i.visibility, i.checksum, i.updated_at, i.properties
                ),
            )
        })
        .collect()
}

async fn snapshot(c: &Cloud, prefix: &str) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for region in ["RegionOne", "RegionTwo"] {
        let g = c.admin.image(Some(region)).await.unwrap();
        all.extend(state_of(
            &g.list_images(&ImageFilter::default()).await.unwrap(),
            prefix,
        ));
    }
    all
}

/// Run `body` against the local cloud with a fresh `gs-e2e-<run>-` name
/// prefix, then delete every image named with it, even when `body` panicked.
fn with_cloud<F>(body: F)
where
    F: for<'a> FnOnce(
        &'a Cloud,
        &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
{
    let prefix = common::image_prefix("gs-e2e");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // These tests write to the shared local cloud: one such test at a time,
    // across test processes (nextest) and threads (cargo test) alike.
    let _lock = rt.block_on(cloud_lock());
    let c = rt.block_on(connect());
    common::run_then_clean_up(&rt, body(&c, &prefix), cleanup(&c, &prefix));
}

#[test]
fn sync_real_cloud_all_rules_dry_run_and_second_target() {
    with_cloud(|c, prefix| Box::pin(sync_scenario(c, prefix)));
}

async fn sync_scenario(c: &Cloud, prefix: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (r1, r2) = (&c.r1, &c.r2);
    let n = |s: &str| format!("{prefix}{s}");

    // Master images (RegionOne) and the target's state (RegionTwo).
    let ami_data = data(MIB + 1, 1);
    let meta_data = data(MIB + 2, 2);
    let (repl_m, repl_r) = (data(MIB + 3, 3), data(MIB + 3, 33));
    let (ren_m, ren_r) = (data(MIB + 4, 4), data(MIB + 4, 44));
    let (dont_m, dont_r) = (data(MIB + 5, 5), data(MIB + 5, 55));
    let a_data = data(2 * MIB, 6);
    let kernel_data = data(3 * MIB, 7);
    let old_data = data(MIB / 2, 8);
    let priv_data = data(MIB / 4, 9);

    let kernel = create_image(r1, &n("pub-kernel"), &kernel_data, true, &[]).await;
    create_image(
        r1,
        &n("pub-ami"),
        &ami_data,
        true,
        &[("kernel_id", &kernel.id)],
    )
    .await;
    create_image(
        r1,
        &n("pub-meta"),
        &meta_data,
        true,
        &[("type", "good"), ("nid", "2")],
    )
    .await;
    create_image(r1, &n("pub-repl"), &repl_m, true, &[]).await;
    create_image(r1, &n("pub-ren"), &ren_m, true, &[]).await;
    create_image(r1, &n("pub-dont"), &dont_m, true, &[]).await;
    let master_a = create_image(r1, &n("pub-a"), &a_data, true, &[("type", "base")]).await;
    create_image(r1, &n("pub-old_obsolete"), &old_data, false, &[]).await;
    let master_priv =
        create_image(r1, &n("priv-d"), &priv_data, false, &[("purpose", "demo")]).await;

    let stale_kernel = "00000000-0000-4000-8000-000000000000";
    let r2_ami = create_image(
        r2,
        &n("pub-ami"),
        &ami_data,
        true,
        &[("kernel_id", stale_kernel)],
    )
    .await;
    let r2_meta = create_image(
        r2,
        &n("pub-meta"),
        &meta_data,
        true,
        &[("type", "bad"), ("extra", "x")],
    )
    .await;
    let r2_repl = create_image(r2, &n("pub-repl"), &repl_r, true, &[]).await;
    let r2_ren = create_image(r2, &n("pub-ren"), &ren_r, true, &[]).await;
    let r2_dont = create_image(r2, &n("pub-dont"), &dont_r, true, &[]).await;
    let r2_old = create_image(r2, &n("pub-old"), &old_data, true, &[]).await;

    let master_extra = format!(
        "metadata_condition = image.name.startswith('{prefix}pub-')\nreplace = {}\nrename = {}\ndontupdate = {}\n",
        md5_hex(&repl_r),
        md5_hex(&ren_r),
        md5_hex(&dont_r)
    );
    let config = write_config(
        tmp.path(),
        c,
        &master_extra,
        &format!("image.name.startswith('{prefix}priv-')"),
    );
    let cfg = config.to_str().unwrap();

    // Status before.
    let (out, _, _) = run(glancesync(tmp.path()).args([
        "--config-file",
        cfg,
        "--show-status",
        "RegionTwo",
        "demo:RegionTwo",
    ]));
    let want_pre = [
        "pending_ami,RegionTwo,pub-ami",
        "pending_metadata,RegionTwo,pub-meta",
        "pending_replace,RegionTwo,pub-repl",
        "pending_rename,RegionTwo,pub-ren",
        "ok_stalled_checksum,RegionTwo,pub-dont",
        "pending_upload,RegionTwo,pub-a",
        "pending_upload,RegionTwo,pub-kernel",
        "",
        "pending_upload,demo:RegionTwo,priv-d",
        "",
    ]
    .map(|l| {
        l.replace(",pub-", &format!(",{prefix}pub-"))
            .replace(",priv-", &format!(",{prefix}priv-"))
    })
    .join("\n");
    assert_eq!(out, format!("{want_pre}\n"));

    // Dry-run: Glance receives reads only, and nothing changes.
    let before = snapshot(c, prefix).await;
    let (out, err, pid) = run(glancesync(tmp.path()).args([
        "--config-file",
        cfg,
        "--dry-run",
        "RegionTwo",
        "demo:RegionTwo",
    ]));
    assert_eq!(
        out,
        "======Master is RegionOne\n======RegionTwo\n======demo:RegionTwo\n"
    );
    assert!(
        err.contains(&format!("RegionTwo: Pending: {prefix}pub-kernel (3.0 MB)")),
        "{err}"
    );
    assert!(err.contains("RegionTwo: MBs pending :"), "{err}");
    assert_read_only(c, prefix, pid, &before, "dry-run").await;

    // Same with --parallel (the original ignored --dry-run there).
    let (out, _, pid) = run(glancesync(tmp.path()).args([
        "--config-file",
        cfg,
        "--parallel",
        "--dry-run",
        "RegionTwo",
        "demo:RegionTwo",
    ]));
    assert!(
        out.starts_with("======Master is RegionOne\n") && out.ends_with("All is done.\n"),
        "{out}"
    );
    assert!(
        out.contains("Region RegionTwo has finished\n")
            && out.contains("Region demo:RegionTwo has finished\n")
    );
    assert_read_only(c, prefix, pid, &before, "--parallel --dry-run").await;

    // The sync.
    let (out, err, _) =
        run(glancesync(tmp.path()).args(["--config-file", cfg, "RegionTwo", "demo:RegionTwo"]));
    assert_eq!(
        out,
        "======Master is RegionOne\n======RegionTwo\n======demo:RegionTwo\n"
    );
    assert!(
        err.contains(&format!(
            "RegionTwo: updating obsolete image {prefix}pub-old_obsolete"
        )),
        "{err}"
    );

    // Upload (streamed, verified): same content, visibility and properties.
    let a = one(r2, &n("pub-a")).await;
    assert_ne!(a.id, master_a.id);
    assert_eq!(a.checksum, master_a.checksum);
    assert_eq!(a.os_hash_value, master_a.os_hash_value);
    assert_eq!(a.visibility, Visibility::Public);
    assert_eq!(a.property("type"), Some("base"));
    assert!(
        !a.properties.contains_key("glancesync_transfer"),
        "transfer marker left on {a:?}"
    );
    // AMI: the kernel (bigger than the AMI image) was uploaded, then kernel_id pointed at it.
    let k2 = one(r2, &n("pub-kernel")).await;
    assert_eq!(k2.checksum.as_deref(), Some(md5_hex(&kernel_data).as_str()));
    let ami = r2.get_image(&r2_ami.id).await.unwrap();
    assert_eq!(ami.property("kernel_id"), Some(k2.id.as_str()));
    // Metadata update with an empty metadata_set: master's properties, stale ones removed.
    let meta = r2.get_image(&r2_meta.id).await.unwrap();
    assert_eq!(
        (
            meta.property("type"),
            meta.property("nid"),
            meta.property("extra")
        ),
        (Some("good"), Some("2"), None)
    );
    // Replace: new content, old image deleted.
    let repl = one(r2, &n("pub-repl")).await;
    assert_eq!(repl.checksum.as_deref(), Some(md5_hex(&repl_m).as_str()));
    assert!(r2.get_image(&r2_repl.id).await.unwrap_err().is_not_found());
    // Rename: new content; old one kept as `.old`, private.
    let ren = one(r2, &n("pub-ren")).await;
    assert_eq!(ren.checksum.as_deref(), Some(md5_hex(&ren_m).as_str()));
    let old = r2.get_image(&r2_ren.id).await.unwrap();
    assert_eq!(old.name.as_deref(), Some(n("pub-ren.old").as_str()));
    assert_ne!(old.visibility, Visibility::Public);
    // dontupdate: untouched.
    let dont = r2.get_image(&r2_dont.id).await.unwrap();
    assert_eq!(
        (dont.checksum, dont.updated_at),
        (r2_dont.checksum.clone(), r2_dont.updated_at.clone())
    );
    // Obsolete: renamed and made private like the master's `_obsolete` image.
    let obs = r2.get_image(&r2_old.id).await.unwrap();
    assert_eq!(obs.name.as_deref(), Some(n("pub-old_obsolete").as_str()));
    assert_ne!(obs.visibility, Visibility::Public);
    // Second target: uploaded with the demo credentials, owned by demo, private.
    let demo_r2 = c.demo.image(Some("RegionTwo")).await.unwrap();
    let d = one(&demo_r2, &n("priv-d")).await;
    let demo_project = c.demo.token_info().await.unwrap().project_id.unwrap();
    assert_eq!(d.owner.as_deref(), Some(demo_project.as_str()));
    assert_eq!(d.checksum, master_priv.checksum);
    assert_ne!(d.visibility, Visibility::Public);
    assert_eq!(d.property("purpose"), Some("demo"));

    // Status after, and a second run has nothing to do.
    let (out, _, _) = run(glancesync(tmp.path()).args([
        "--config-file",
        cfg,
        "--show-status",
        "RegionTwo",
        "demo:RegionTwo",
    ]));
    let want_post = want_pre
        .replace("pending_ami", "ok")
        .replace("pending_metadata", "ok")
        .replace("pending_replace", "ok")
        .replace("pending_rename", "ok")
        .replace("pending_upload", "ok");
    assert_eq!(out, format!("{want_post}\n"));
    let before = snapshot(c, prefix).await;
    let (_, err, _) =
        run(glancesync(tmp.path()).args(["--config-file", cfg, "RegionTwo", "demo:RegionTwo"]));
    assert!(
        err.contains("RegionTwo: Region is synchronized.")
            && err.contains("demo:RegionTwo: Region is synchronized."),
        "{err}"
    );
    assert_eq!(snapshot(c, prefix).await, before);
}

#[test]
fn interrupted_transfer_leaves_nothing_and_rerun_converges() {
    with_cloud(|c, prefix| Box::pin(interrupted_scenario(c, prefix)));
}

/// Start a sync, wait until the target shows the image being created, then
/// send `signal`; returns after the process exited.
async fn interrupt_during_upload(
    cwd: &Path,
    cfg: &str,
    r2: &GlanceClient,
    name: &str,
    signal: i32,
) -> (i32, String) {
    let child = glancesync(cwd)
        .args(["--config-file", cfg, "RegionTwo"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // glancesync's own image being created carries the transfer marker.
        let seen = named(r2, name).await;
        if seen.iter().any(|i| {
            matches!(i.status, ImageStatus::Queued | ImageStatus::Saving)
                && i.properties.contains_key("glancesync_transfer")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upload of {name} never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn interrupted_scenario(c: &Cloud, prefix: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (r1, r2) = (&c.r1, &c.r2);
    let name = format!("{prefix}big");
    let big = data(256 * MIB, 1);
    let master = create_image(r1, &name, &big, true, &[]).await;
    drop(big);
    let config = write_config(
        tmp.path(),
        c,
        &format!("metadata_condition = image.name.startswith('{prefix}')\n"),
        "False",
    );
    let cfg = config.to_str().unwrap();
    // Someone else's image of the same name, still queued: glancesync must never delete it.
    let foreign = r2
        .create_image(
            &CreateImage::new(&name)
                .disk_format("raw")
                .container_format("bare"),
        )
        .await
        .unwrap();
    let mine =
        |v: Vec<Image>| -> Vec<Image> { v.into_iter().filter(|i| i.id != foreign.id).collect() };

    // Ctrl-C (SIGINT) during the transfer: the half-created image is deleted.
    let (code, err) = interrupt_during_upload(tmp.path(), cfg, r2, &name, 2).await;
    eprintln!("SIGINT during the transfer: exit code {code}");
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("deleted the incomplete image"), "{err}");
    assert!(
        mine(named(r2, &name).await).is_empty(),
        "an incomplete image was left behind"
    );

    // SIGKILL during the transfer (no chance to clean up), then a rerun converges.
    let (code, _) = interrupt_during_upload(tmp.path(), cfg, r2, &name, 9).await;
    assert_ne!(code, 0);
    let left = named(r2, &name).await;
    eprintln!(
        "after SIGKILL: {:?}",
        left.iter()
            .map(|i| i.status.as_str().to_string())
            .collect::<Vec<_>>()
    );
    let (_, err, _) = run(glancesync(tmp.path()).args(["--config-file", cfg, "RegionTwo"]));
    let images = mine(named(r2, &name).await);
    assert_eq!(
        images.len(),
        1,
        "rerun must leave exactly one image: {images:?}\n{err}"
    );
    // Complete (not active-but-partial): the master's size, md5 and sha512,
    // and no transfer marker left.
    assert_eq!(images[0].status, ImageStatus::Active);
    assert_eq!(images[0].size, master.size);
    assert_eq!(images[0].checksum, master.checksum);
    assert_eq!(images[0].os_hash_value, master.os_hash_value);
    assert!(
        !images[0].properties.contains_key("glancesync_transfer"),
        "{images:?}"
    );
    // The foreign queued image is still there, untouched.
    assert_eq!(
        r2.get_image(&foreign.id).await.unwrap().status,
        ImageStatus::Queued
    );
    // The master was only read.
    assert_eq!(r1.get_image(&master.id).await.unwrap(), master);
    let (out, _, _) =
        run(glancesync(tmp.path()).args(["--config-file", cfg, "--show-status", "RegionTwo"]));
    assert_eq!(out, format!("ok,RegionTwo,{name}\n\n"));
}

#[test]
fn images_dir_local_file_mode() {
    with_cloud(|c, prefix| Box::pin(images_dir_scenario(c, prefix)));
}

async fn images_dir_scenario(c: &Cloud, prefix: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (r1, r2) = (&c.r1, &c.r2);
    let d = data(MIB, 3);
    let master = create_image(r1, &format!("{prefix}local"), &d, true, &[]).await;
    let missing = create_image(r1, &format!("{prefix}nofile"), &data(MIB + 7, 4), true, &[]).await;
    let dir = tmp.path().join("images");
    std::fs::create_dir(&dir).unwrap();
    // The original's recipe: data pre-downloaded as <images_dir>/<master uuid>.
    std::fs::write(dir.join(&master.id), &d).unwrap();
    let config = write_config(
        tmp.path(),
        c,
        &format!("metadata_condition = image.name == '{prefix}local'\n"),
        "False",
    );
    let cfg = config.to_str().unwrap();
    let images_dir = format!("main.images_dir={}", dir.display());
    let (_, err, _) = run(glancesync(tmp.path()).args([
        "--config-file",
        cfg,
        "RegionTwo",
        "--config",
        &images_dir,
    ]));
    assert!(err.contains("Image uploaded."), "{err}");
    let up = one(r2, &format!("{prefix}local")).await;
    assert_eq!(up.checksum, master.checksum);

    // A missing file fails that region (exit status 2) and leaves nothing behind.
    let only_missing = format!("master.metadata_condition=image.name == '{prefix}nofile'");
    let out = glancesync(tmp.path())
        .args([
            "--config-file",
            cfg,
            "RegionTwo",
            "--config",
            &images_dir,
            &only_missing,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("Cannot open the image {prefix}nofile to upload")),
        "{err}"
    );
    assert!(err.contains(&missing.id), "{err}");
    assert!(named(r2, &format!("{prefix}nofile")).await.is_empty());
}
