//! Shared helpers for the tests that run against the real local cloud
//! (`scripts/cloud/up.sh`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use openstack_client::glance::{CreateImage, GlanceClient, Image};
use openstack_client::{CloudConfig, Session};

/// The clouds.yaml written by `scripts/cloud/up.sh`.
pub fn clouds_yaml() -> PathBuf {
    if let Ok(p) = std::env::var("OS_CLIENT_CONFIG_FILE") {
        return PathBuf::from(p);
    }
    let dir = std::env::var("LOCAL_CLOUD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            dirs::home_dir()
                .expect("no home directory")
                .join(".cache/openstack-image-tools/local-cloud")
        });
    dir.join("clouds.yaml")
}

/// Name of the cloud to test (`OS_TEST_CLOUD`, default `local`).
pub fn cloud_name() -> String {
    std::env::var("OS_TEST_CLOUD").unwrap_or_else(|_| "local".into())
}

/// Config of cloud `name`; panics with instructions when the cloud is absent.
pub fn config_named(name: &str) -> CloudConfig {
    let path = clouds_yaml();
    assert!(
        path.is_file(),
        "{} does not exist: start the local cloud with scripts/cloud/up.sh",
        path.display()
    );
    CloudConfig::from_files(&path, None, name)
        .unwrap_or_else(|e| panic!("{e} (run scripts/cloud/up.sh)"))
}

/// Config of the cloud under test.
pub fn config() -> CloudConfig {
    config_named(&cloud_name())
}

/// An authenticated session; panics with instructions when Keystone is down.
pub async fn session() -> Session {
    session_for(config()).await
}

/// Authenticate `config`; panics with instructions when Keystone is down.
pub async fn session_for(config: CloudConfig) -> Session {
    match Session::connect(config).await {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot authenticate against the local cloud: {e}\nstart it with scripts/cloud/up.sh"
        ),
    }
}

/// The regions of the cloud under test (at least two expected).
pub fn regions() -> Vec<String> {
    let r = config().regions;
    assert!(
        r.len() >= 2,
        "the test cloud must have two regions, has {r:?}"
    );
    r
}

/// A unique name for test resources.
pub fn unique(prefix: &str) -> String {
    format!("oc-test-{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// `len` bytes of pseudo-random data (fast, deterministic per seed).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex sha512 of `data`.
pub fn sha512_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha512::digest(data))
}

/// The request for a `raw`/`bare` image record named `name`.
pub fn raw(name: impl Into<String>) -> CreateImage {
    CreateImage::new(name)
        .disk_format("raw")
        .container_format("bare")
}

/// A new `raw`/`bare` image record named `name` (status `queued`).
pub async fn raw_image(g: &GlanceClient, name: impl Into<String>) -> Image {
    g.create_image(&raw(name)).await.unwrap()
}

/// Glance's sha512 of `image` is the one of `payload`.
pub fn assert_holds(image: &Image, payload: &[u8]) {
    assert_eq!(
        image.os_hash_value.as_deref(),
        Some(sha512_hex(payload).as_str()),
        "image {}",
        image.id
    );
}

/// Serialises the tests that use the local cloud, across test processes
/// too (nextest runs each test in its own process): the cloud keeps its data
/// in sqlite, which answers concurrent writes with "database is locked"
/// (HTTP 500). Hold the returned guard for the whole test.
pub async fn cloud_lock() -> CloudLock {
    let path = std::env::temp_dir().join("openstack-client-cloud-tests.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    tokio::task::spawn_blocking(move || {
        file.lock().expect("cannot lock the cloud test lock file");
        CloudLock(file)
    })
    .await
    .unwrap()
}

/// Holds the cross-process cloud test lock until dropped.
pub struct CloudLock(#[allow(dead_code)] std::fs::File);
