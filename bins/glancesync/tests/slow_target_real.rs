//! A slow target among several, against real Keystone and Glance servers: a
//! private cloud (`common::PrivateCloud`, three regions on 127.0.93.3) whose
//! RegionTwo is reached through a proxy passing 2 MiB/s of uploads while
//! RegionThree is reached directly. The image both need is read from the
//! master once for both; RegionTwo falls behind the shared read and gets a
//! read of its own, so RegionThree is never held to RegionTwo's pace; both
//! copies are complete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::{PrivateCloud, Throttle};
use openstack_client::glance::{CreateImage, ImageFilter, ImageStatus, Visibility};
use openstack_client::Session;

const MIB: usize = 1024 * 1024;

#[test]
fn a_slow_target_gets_its_own_read_and_never_holds_back_the_others() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(slow_target());
}

async fn slow_target() {
    let host = "127.0.93.3";
    let upstream: SocketAddr = format!("{host}:9293").parse().unwrap();
    let proxy = Throttle::start(host, upstream, 2 * MIB as u64).await;
    let url = proxy.url();
    let cloud = tokio::task::block_in_place(|| {
        PrivateCloud::start(
            "gs-slow-target",
            host,
            &[("GLANCE_R2_ENDPOINT", &url), ("REGION_COUNT", "3")],
        )
    });
    let cfg = cloud.config("local");
    let s = Session::connect(cfg.clone()).await.unwrap();
    let r1 = s.image(Some("RegionOne")).await.unwrap();
    let targets = [
        s.image(Some("RegionTwo")).await.unwrap(),
        s.image(Some("RegionThree")).await.unwrap(),
    ];
    for g in std::iter::once(&r1).chain(&targets) {
        for i in g.list_images(&ImageFilter::default()).await.unwrap() {
            if i.name.as_deref().is_some_and(|n| n.starts_with("gs-slow")) {
                let _ = g.delete_image(&i.id).await;
            }
        }
    }
    let name = format!("gs-slow-{:08x}", rand::random::<u32>());
    let img = r1
        .create_image(
            &CreateImage::new(&name)
                .disk_format("raw")
                .container_format("bare")
                .visibility(Visibility::Public),
        )
        .await
        .unwrap();
    let size = 24 * MIB;
    let d: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
    r1.upload(&img.id, std::io::Cursor::new(d), Some(size as u64))
        .await
        .unwrap();
    let master = r1.get_image(&img.id).await.unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("glancesync.conf");
    std::fs::write(
        &conf,
        format!(
            "[main]\nmaster_region = RegionOne\n\n[master]\ncredential = {}\nmetadata_condition = image.name == '{name}'\ntransfer = stream\n",
            common::credential(&cfg)
        ),
    )
    .unwrap();
    let child = Command::new(assert_cmd::cargo::cargo_bin("glancesync"))
        .current_dir(tmp.path())
        .env_remove("GLANCESYNC_CONFIG")
        .env_remove("RUST_LOG")
        .args([
            "--config-file",
            conf.to_str().unwrap(),
            "RegionTwo",
            "RegionThree",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(out.status.success(), "{err}");

    let mut copies = Vec::new();
    for (g, region) in targets.iter().zip(["RegionTwo", "RegionThree"]) {
        let v = g
            .list_images(&ImageFilter::default().name(&name))
            .await
            .unwrap();
        assert_eq!(v.len(), 1, "{region}: {v:?}");
        let c = v.into_iter().next().unwrap();
        assert_eq!(c.status, ImageStatus::Active, "{region}");
        assert_eq!(
            (&c.size, &c.checksum, &c.os_hash_value),
            (&master.size, &master.checksum, &master.os_hash_value),
            "{region}"
        );
        assert!(c.property("glancesync_transfer").is_none(), "{region}");
        copies.push(c);
    }
    // Read once for both, then RegionTwo detached and read on its own: two
    // downloads of the master in all, not one per region held in lockstep.
    assert!(
        err.contains(&format!("{name}: read once from the master for 2 regions")),
        "{err}"
    );
    assert!(err.contains("fell behind the shared read"), "{err}");
    let reads = common::lines_of_pid(&cloud.log("glance-r1-access.log"), pid)
        .into_iter()
        .filter(|l| l.contains(&format!("GET /v2/images/{}/file ", master.id)))
        .count();
    assert_eq!(reads, 2, "master downloads");
    // RegionThree finished first: it was not held to RegionTwo's pace.
    assert!(
        copies[1].updated_at < copies[0].updated_at,
        "RegionThree {:?} vs RegionTwo {:?}",
        copies[1].updated_at,
        copies[0].updated_at
    );
    for (g, c) in targets.iter().zip(&copies) {
        g.delete_image(&c.id).await.unwrap();
    }
    r1.delete_image(&master.id).await.unwrap();
}
