//! Glance v2 against the real local cloud, in both regions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use openstack_client::glance::{
    CreateImage, GlanceClient, Image, ImageFilter, ImagePatch, ImageStatus, ImportMethod,
    ImportOptions, MemberStatus, Visibility,
};

async fn glance(region: &str) -> GlanceClient {
    common::session().await.image(Some(region)).await.unwrap()
}

/// Upload `payload` to image `id`, its size announced.
async fn upload(g: &GlanceClient, id: &str, payload: &[u8]) {
    g.upload(
        id,
        std::io::Cursor::new(payload.to_vec()),
        Some(payload.len() as u64),
    )
    .await
    .unwrap();
}

/// Image `id`'s data, downloaded and verified.
async fn downloaded(g: &GlanceClient, id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    g.download_to(id, &mut out).await.unwrap();
    out
}

/// Start an import of `id` (Glance accepts it), then wait for its end.
async fn import_and_wait(
    g: &GlanceClient,
    id: &str,
    method: &ImportMethod,
    options: &ImportOptions,
) -> openstack_client::Result<Image> {
    g.import_image(id, method, options).await.unwrap();
    g.wait_for_import(id, Duration::from_secs(120)).await
}

/// Create → get → list with filters → patch → upload → download (verified)
/// → delete, with a client-chosen id that is the same in both regions.
#[tokio::test]
async fn image_lifecycle_in_both_regions() {
    let _serial = common::cloud_lock().await;
    let session = common::session().await;
    let id = uuid::Uuid::new_v4().to_string();
    let name = common::unique("life");
    let tag = common::unique("tag");
    let payload = common::data(3 * 1024 * 1024 + 17, 7);
    for region in common::regions() {
        let g = session.image(Some(&region)).await.unwrap();
        let created = g
            .create_image(
                &common::raw(&name)
                    .id(&id)
                    .min_disk(1)
                    .min_ram(64)
                    .visibility(Visibility::Private)
                    .tag(&tag)
                    .property("os_distro", "debian")
                    .property("owner_specified.openstack.sha256", "abc"),
            )
            .await
            .unwrap();
        assert_eq!(created.id, id);
        assert_eq!(created.status, ImageStatus::Queued);
        assert_eq!(created.property("os_distro"), Some("debian"));
        assert_eq!(created.min_ram, Some(64));

        // Same id again in the same region: conflict.
        let dup = g
            .create_image(&common::raw(&name).id(&id))
            .await
            .unwrap_err();
        assert!(dup.is_conflict(), "{dup}");

        let listed = g
            .list_images(&ImageFilter::default().name(&name))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        let by_tag = g
            .list_images(&ImageFilter::default().tag(&tag).status(ImageStatus::Queued))
            .await
            .unwrap();
        assert_eq!(
            by_tag.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            vec![id.as_str()]
        );
        let by_prop = g
            .list_images(
                &ImageFilter::default()
                    .filter("os_distro", "debian")
                    .name(&name),
            )
            .await
            .unwrap();
        assert_eq!(by_prop.len(), 1);

        let patched = g
            .update_image(
                &id,
                &ImagePatch::for_image(&created)
                    .set_property("os_distro", "debian12")
                    .set_property("custom_new", "yes")
                    .remove_property("owner_specified.openstack.sha256")
                    .min_disk(2)
                    .visibility(Visibility::Community),
            )
            .await
            .unwrap();
        assert_eq!(patched.property("os_distro"), Some("debian12"));
        assert_eq!(patched.property("custom_new"), Some("yes"));
        assert_eq!(patched.property("owner_specified.openstack.sha256"), None);
        assert_eq!(patched.min_disk, Some(2));
        assert_eq!(patched.visibility, Visibility::Community);

        upload(&g, &id, &payload).await;
        let active = g.get_image(&id).await.unwrap();
        assert_eq!(active.status, ImageStatus::Active);
        assert_eq!(active.size, Some(payload.len() as u64));
        assert_eq!(active.os_hash_algo.as_deref(), Some("sha512"));
        common::assert_holds(&active, &payload);

        let mut out = Vec::new();
        let summary = g.download_to(&id, &mut out).await.unwrap();
        assert_eq!(out, payload);
        assert_eq!(summary.bytes, payload.len() as u64);
        assert_eq!(summary.algorithm.as_deref(), Some("sha512"));
        assert_eq!(
            summary.hash.as_deref(),
            Some(common::sha512_hex(&payload).as_str())
        );

        g.delete_image(&id).await.unwrap();
        let gone = g.get_image(&id).await.unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
        assert!(gone.request_id().is_some(), "{gone}");
        assert!(gone.to_string().contains(&id), "{gone}");
    }
}

/// A download whose data does not match the hash Glance recorded fails at
/// the end of the stream.
#[tokio::test]
async fn download_detects_a_hash_mismatch() {
    let _serial = common::cloud_lock().await;
    let g = glance(&common::regions()[0]).await;
    let image = common::raw_image(&g, common::unique("hash")).await;
    let payload = common::data(200_000, 3);
    upload(&g, &image.id, &payload).await;
    let mut real = g.get_image(&image.id).await.unwrap();
    real.os_hash_value = Some("00".repeat(64));
    let mut stream = g.download_image(&real).await.unwrap();
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    let err = last.unwrap().unwrap_err();
    assert!(
        matches!(err, openstack_client::Error::HashMismatch { .. }),
        "{err}"
    );
    // md5 fallback when os_hash is absent.
    real.os_hash_algo = None;
    real.os_hash_value = None;
    let mut out = Vec::new();
    let mut stream = g.download_image(&real).await.unwrap();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(stream.summary().unwrap().algorithm.as_deref(), Some("md5"));
    assert_eq!(out, payload);
    // Saved to a file: a mismatch leaves no file behind, a match writes it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("saved.raw");
    let mut bad = real.clone();
    bad.checksum = Some("0".repeat(32));
    let err = g
        .download_image(&bad)
        .await
        .unwrap()
        .save_to_file(&path)
        .await
        .unwrap_err();
    assert!(
        matches!(err, openstack_client::Error::HashMismatch { .. }),
        "{err}"
    );
    assert!(!path.exists(), "a file that did not verify was left behind");
    let summary = g
        .download_image(&real)
        .await
        .unwrap()
        .save_to_file(&path)
        .await
        .unwrap();
    assert_eq!(summary.bytes, payload.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), payload);
    g.delete_image(&image.id).await.unwrap();
}

/// Listing follows `next` links past the first page.
#[tokio::test]
async fn pagination_past_one_page() {
    let _serial = common::cloud_lock().await;
    for region in common::regions() {
        let g = glance(&region).await;
        let tag = common::unique("page");
        let mut ids = Vec::new();
        for i in 0..5 {
            let img = g
                .create_image(&CreateImage::new(format!("{tag}-{i}")).tag(&tag))
                .await
                .unwrap();
            ids.push(img.id);
        }
        let listed = g
            .list_images(&ImageFilter::default().tag(&tag).limit(2))
            .await
            .unwrap();
        let mut got: Vec<String> = listed.into_iter().map(|i| i.id).collect();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want);
        for id in ids {
            g.delete_image(&id).await.unwrap();
        }
    }
}

#[tokio::test]
async fn tags_deactivate_reactivate_and_protection() {
    let _serial = common::cloud_lock().await;
    let g = glance(&common::regions()[1]).await;
    let img = g
        .create_image(&common::raw(common::unique("tags")).protected(true))
        .await
        .unwrap();
    g.add_tag(&img.id, "a b").await.unwrap();
    g.add_tag(&img.id, "second").await.unwrap();
    let got = g.get_image(&img.id).await.unwrap();
    assert!(got.tags.contains(&"a b".to_string()), "{:?}", got.tags);
    g.remove_tag(&img.id, "a b").await.unwrap();
    assert_eq!(
        g.get_image(&img.id).await.unwrap().tags,
        vec!["second".to_string()]
    );

    let refused = g.delete_image(&img.id).await.unwrap_err();
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(403), "{refused}");

    upload(&g, &img.id, &[1u8; 4096]).await;
    g.deactivate_image(&img.id).await.unwrap();
    assert_eq!(
        g.get_image(&img.id).await.unwrap().status,
        ImageStatus::Deactivated
    );
    g.reactivate_image(&img.id).await.unwrap();
    assert_eq!(
        g.get_image(&img.id).await.unwrap().status,
        ImageStatus::Active
    );
    assert_eq!(downloaded(&g, &img.id).await, vec![1u8; 4096]);

    g.update_image(&img.id, &ImagePatch::new().replace("protected", false))
        .await
        .unwrap();
    g.delete_image(&img.id).await.unwrap();
}

#[tokio::test]
async fn members_between_admin_and_demo() {
    let _serial = common::cloud_lock().await;
    let admin = common::session().await;
    let demo = common::session_for(common::config_named("local-demo")).await;
    let demo_project = demo.token_info().await.unwrap().project_id.unwrap();
    let found = admin.identity().find_project("demo").await.unwrap();
    assert_eq!(found.id, demo_project);
    let region = common::regions()[0].clone();
    let g = admin.image(Some(&region)).await.unwrap();
    let img = g
        .create_image(&CreateImage::new(common::unique("share")).visibility(Visibility::Shared))
        .await
        .unwrap();
    let m = g.add_member(&img.id, &demo_project).await.unwrap();
    assert_eq!(m.status, MemberStatus::Pending);
    assert_eq!(g.list_members(&img.id).await.unwrap().len(), 1);
    let gd = demo.image(Some(&region)).await.unwrap();
    let accepted = gd
        .update_member(&img.id, &demo_project, MemberStatus::Accepted)
        .await
        .unwrap();
    assert_eq!(accepted.status, MemberStatus::Accepted);
    assert_eq!(
        g.get_member(&img.id, &demo_project).await.unwrap().status,
        MemberStatus::Accepted
    );
    let visible = gd
        .list_images(
            &ImageFilter::default()
                .member_status(MemberStatus::Accepted)
                .visibility(Visibility::Shared),
        )
        .await
        .unwrap();
    assert!(visible.iter().any(|i| i.id == img.id));
    g.remove_member(&img.id, &demo_project).await.unwrap();
    assert!(g
        .get_member(&img.id, &demo_project)
        .await
        .unwrap_err()
        .is_not_found());
    g.delete_image(&img.id).await.unwrap();
}

#[tokio::test]
async fn discovery_and_glance_direct_import() {
    let _serial = common::cloud_lock().await;
    let g = glance(&common::regions()[0]).await;
    let methods = g.import_methods().await.unwrap();
    assert!(
        methods.contains(&"glance-direct".to_string()),
        "{methods:?}"
    );
    assert!(methods.contains(&"copy-image".to_string()), "{methods:?}");
    // scripts/cloud/up.sh gives every Glance two file stores.
    let stores = g
        .stores()
        .await
        .unwrap()
        .expect("the local Glance has multiple stores (scripts/cloud/up.sh)");
    let default = stores.iter().find(|s| s.default).expect("a default store");
    let other = stores
        .iter()
        .find(|s| !s.default)
        .unwrap_or_else(|| panic!("a second store (scripts/cloud/up.sh): {stores:?}"));
    let (default, other) = (default.id.clone(), other.id.clone());

    let img = common::raw_image(&g, common::unique("import")).await;
    let payload = common::data(1 << 20, 11);
    g.stage(
        &img.id,
        std::io::Cursor::new(payload.clone()),
        Some(payload.len() as u64),
    )
    .await
    .unwrap();
    assert_eq!(
        g.get_image(&img.id).await.unwrap().status,
        ImageStatus::Uploading
    );
    let active = import_and_wait(
        &g,
        &img.id,
        &ImportMethod::GlanceDirect,
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    common::assert_holds(&active, &payload);

    assert_eq!(active.stores(), vec![default.clone()]);

    // copy-image into the store that already has the data: Glance
    // understands the body and refuses for that reason only.
    let copy_to = |store: &str| ImportOptions {
        stores: vec![store.to_string()],
        all_stores: false,
        all_stores_must_succeed: Some(true),
    };
    let err = g
        .import_image(&img.id, &ImportMethod::CopyImage, &copy_to(&default))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already present"), "{err}");

    // copy-image into the second store: the data is in both afterwards.
    let copied = import_and_wait(&g, &img.id, &ImportMethod::CopyImage, &copy_to(&other))
        .await
        .unwrap();
    let mut have = copied.stores();
    have.sort();
    let mut want = vec![default.clone(), other.clone()];
    want.sort();
    assert_eq!(have, want, "{copied:?}");
    common::assert_holds(&copied, &payload);
    // The copy holds the bytes: with the default store's copy deleted, the
    // image is served from the second store, verified against its hash.
    g.delete_from_store(&default, &img.id).await.unwrap();
    let left = g.get_image(&img.id).await.unwrap();
    assert_eq!(left.stores(), vec![other.clone()]);
    assert!(
        downloaded(&g, &img.id).await == payload,
        "the second store's copy differs"
    );
    g.delete_image(&img.id).await.unwrap();
}

/// Serve `data` over HTTP on loopback (any path; HEAD and GET).
async fn serve(data: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data = std::sync::Arc::new(data);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    data.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                if req.starts_with(b"GET") {
                    let _ = sock.write_all(&data).await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/disk.raw")
}

#[tokio::test]
async fn web_download_import() {
    let _serial = common::cloud_lock().await;
    let g = glance(&common::regions()[1]).await;
    let methods = g.import_methods().await.unwrap();
    assert!(methods.contains(&"web-download".to_string()), "{methods:?}");
    let payload = common::data(2 * 1024 * 1024 + 5, 99);
    let uri = serve(payload.clone()).await;
    let img = common::raw_image(&g, common::unique("web")).await;
    let active = import_and_wait(
        &g,
        &img.id,
        &ImportMethod::WebDownload { uri },
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(active.size, Some(payload.len() as u64));
    common::assert_holds(&active, &payload);
    assert_eq!(downloaded(&g, &img.id).await, payload);
    g.delete_image(&img.id).await.unwrap();

    // A URL nobody serves: the import fails and the wait says so.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_uri = format!("http://{}/gone.raw", dead.local_addr().unwrap());
    drop(dead);
    let img = common::raw_image(&g, common::unique("webfail")).await;
    let err = import_and_wait(
        &g,
        &img.id,
        &ImportMethod::WebDownload { uri: dead_uri },
        &ImportOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, openstack_client::Error::ResourceFailed { .. }),
        "{err}"
    );
    g.delete_image(&img.id).await.unwrap();
}

/// Upload of unknown size (chunked transfer encoding) through the lazy
/// `images()` stream API.
#[tokio::test]
async fn chunked_upload_and_streamed_listing() {
    let _serial = common::cloud_lock().await;
    let g = glance(&common::regions()[1]).await;
    let tag = common::unique("chunked");
    let img = g.create_image(&common::raw(&tag).tag(&tag)).await.unwrap();
    let payload = common::data(1_500_000, 5);
    g.upload(&img.id, std::io::Cursor::new(payload.clone()), None)
        .await
        .unwrap();
    let mut stream = std::pin::pin!(g.images(&ImageFilter::default().tag(&tag)));
    let mut found = Vec::new();
    while let Some(image) = stream.next().await {
        found.push(image.unwrap());
    }
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].size, Some(payload.len() as u64));
    common::assert_holds(&found[0], &payload);
    g.delete_image(&img.id).await.unwrap();
}

/// A token Glance rejects in the middle of `upload_file` (body of known
/// length) or `upload_file_chunked`: the session re-authenticates and the
/// file is reopened and sent again; Glance holds exactly the file.
#[tokio::test]
async fn upload_file_survives_a_rejected_token() {
    let _serial = common::cloud_lock().await;
    let s = common::session().await;
    let g = s.image(Some(&common::regions()[0])).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    let payload = common::data(8 * 1024 * 1024 + 5, 77);
    std::fs::write(&path, &payload).unwrap();
    for chunked in [false, true] {
        let img = common::raw_image(&g, common::unique("401up")).await;
        s.replace_token_for_test(openstack_client::Secret::new(
            "gAAAAAB-rejected-upload-token",
        ))
        .await
        .unwrap();
        let before = s.auth_count();
        if chunked {
            g.upload_file_chunked(&img.id, &path).await.unwrap();
        } else {
            g.upload_file(&img.id, &path).await.unwrap();
        }
        assert_eq!(s.auth_count(), before + 1, "chunked: {chunked}");
        let active = g.get_image(&img.id).await.unwrap();
        common::assert_holds(&active, &payload);
        g.delete_image(&img.id).await.unwrap();
    }
}

#[tokio::test]
async fn find_image_and_delete_from_store() {
    let _serial = common::cloud_lock().await;
    let g = glance(&common::regions()[0]).await;
    let name = common::unique("find");
    let img = common::raw_image(&g, &name).await;
    assert_eq!(g.find_image(&img.id).await.unwrap().id, img.id);
    assert_eq!(g.find_image(&name).await.unwrap().id, img.id);
    let missing = g.find_image(&common::unique("nothing")).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let twin = g.create_image(&CreateImage::new(&name)).await.unwrap();
    let ambiguous = g.find_image(&name).await.unwrap_err();
    assert!(
        ambiguous.to_string().contains("2 images are named"),
        "{ambiguous}"
    );
    g.delete_image(&twin.id).await.unwrap();

    upload(&g, &img.id, &[3u8; 4096]).await;
    let store = g.get_image(&img.id).await.unwrap().stores();
    assert_eq!(store.len(), 1, "{store:?}");
    // Glance refuses to delete the only copy of an active image's data.
    let err = g.delete_from_store(&store[0], &img.id).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403), "{err}");
    assert!(err.to_string().ends_with(": Cannot delete image data from the only store containing it. Consider deleting the image instead."), "{err}");
    g.delete_image(&img.id).await.unwrap();
}
