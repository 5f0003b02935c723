//! The quick inspection path (a plain Debian root read from its files, no
//! libguestfs `inspect_os`) reports exactly what `inspect_os` does, on the
//! Debian test image.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[tokio::test(flavor = "multi_thread")]
async fn quick_inspection_equals_inspect_os() {
    let image = cloud_test_support::test_image();
    let dir = tempfile::tempdir().unwrap();
    let disk = common::overlay(&image, dir.path(), "work.qcow2");
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
    let session = common::open_tcg(&[(&disk, "qcow2")], Some(ptx)).await;
    let quick = session.inspect().await.unwrap();
    let details: Vec<_> = common::received(&mut prx)
        .into_iter()
        .map(|p| p.detail)
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("a plain Debian root, read from its files")),
        "the quick path was not taken: {details:?}"
    );
    let full = session.inspect_full().await.unwrap();
    session.close().await.unwrap();
    let (q, f) = (
        serde_json::to_value(&quick).unwrap(),
        serde_json::to_value(&full).unwrap(),
    );
    for (k, v) in f.as_object().unwrap() {
        assert_eq!(q.get(k), Some(v), "field {k}");
    }
    assert_eq!(q, f);
    assert_eq!(quick.distro, "debian");
    assert!(!quick.applications.is_empty());
}
