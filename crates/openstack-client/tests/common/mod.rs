//! Helpers of openstack-client's tests that run against the real local
//! cloud (`scripts/cloud/up.sh`). Locating the cloud, connecting, the
//! cross-process lock and unique names come from `cloud-test-support`.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub use cloud_test_support::{
    cloud_lock, cloud_name, clouds_yaml, config, config_named, session, session_for, CloudLock,
};
use openstack_client::glance::{CreateImage, GlanceClient, Image};

/// The regions of the cloud under test (at least two expected).
pub fn regions() -> Vec<String> {
    let r = config().regions;
    assert!(
        r.len() >= 2,
        "the test cloud must have two regions, has {r:?}"
    );
    r
}

/// A unique name for test resources (`oc-test-<prefix>-<random>`).
pub fn unique(prefix: &str) -> String {
    cloud_test_support::unique(&format!("oc-test-{prefix}"))
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
