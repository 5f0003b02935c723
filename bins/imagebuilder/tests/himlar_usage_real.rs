//! `usage` and `purge` through the CLI with the real local Glance and Nova
//! played by wiremock (clouds.yaml's `compute_endpoint_override`, bodies
//! shaped like the api-ref's `GET /servers/detail`, matched on the `image`
//! and `all_tenants` filters).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod himlar_support;

use std::path::Path;

use himlar_support::{
    clouds_yaml_with_compute, glance_requests, image, mock_servers, nova, run, unique_type,
    with_tagged_cleanup, writes,
};
use openstack_client::glance::{GlanceClient, ImageStatus, Visibility};

#[tokio::test(flavor = "multi_thread")]
async fn usage_counts_and_purge_keeps_used_images_and_honours_the_limit() {
    let ty = unique_type();
    with_tagged_cleanup(&[ty.clone(), format!("{ty}x")], |glance| {
        scenario(ty, glance)
    })
    .await;
}

/// The `servers/detail` requests Nova received, as their query strings.
async fn server_queries(nova: &wiremock::MockServer) -> Vec<String> {
    nova.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/v2.1/servers/detail")
        .map(|r| r.url.query().unwrap_or("").to_owned())
        .collect()
}

async fn scenario(ty: String, glance: GlanceClient) {
    let ty = ty.as_str();
    let dir = tempfile::tempdir().unwrap();
    let d: &Path = dir.path();
    let nova = nova().await;
    let clouds = clouds_yaml_with_compute(d, &format!("{}/v2.1/", nova.uri()));
    let cloud = cloud_test_support::cloud_name();
    let env = [
        ("OS_CLIENT_CONFIG_FILE", clouds.to_str().unwrap()),
        ("OS_CLOUD", cloud.as_str()),
    ];

    // The current GOLD image (2 instances) and three outdated ones, oldest
    // first (created_at has whole seconds): the oldest is protected and
    // unused, the middle one unused, the newest used by one instance.
    let gold = image(
        &glance,
        &format!("GOLD Ubuntu {ty}"),
        Visibility::Shared,
        &[ty, "ubuntu_2404"],
        false,
        false,
    )
    .await;
    let mut old = Vec::new();
    for i in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        old.push(
            image(
                &glance,
                &format!("Outdated (Ubuntu {ty} {i})"),
                Visibility::Shared,
                &[ty, "ubuntu_2404"],
                i == 0,
                true,
            )
            .await,
        );
    }
    // Another type's deactivated image in the same Glance: never touched.
    let other_ty = format!("{ty}x");
    let other = image(
        &glance,
        &format!("Outdated (Debian {other_ty})"),
        Visibility::Shared,
        &[&other_ty, "debian12"],
        false,
        true,
    )
    .await;
    let vm = |n: u8| format!("9168b536-cd40-4630-b43f-b259807c6e8{n}");
    let (vm1, vm2, vm3) = (vm(1), vm(2), vm(3));
    mock_servers(&nova, &gold, &[&vm1, &vm2]).await;
    mock_servers(&nova, &old[0], &[]).await;
    mock_servers(&nova, &old[1], &[]).await;
    mock_servers(&nova, &old[2], &[&vm3]).await;

    // usage of the active images: name, id and count on one line.
    let (code, out, err, _) = run(d, &["usage", "-t", ty, "-v", "shared"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("2 {gold} GOLD Ubuntu {ty}\n")),
        "{out}"
    );
    assert!(out.contains("ubuntu = 2\n"), "{out}");
    assert!(out.contains(&format!("{ty} = 2\n")), "{out}");
    assert!(out.contains("ubuntu_2404 = 2\n"), "{out}");
    assert!(out.contains("count = 1\n"), "{out}");
    let queries = server_queries(&nova).await;
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(
        queries[0].contains(&format!("image={gold}")) && queries[0].contains("all_tenants=1"),
        "{queries:?}"
    );

    // usage -s deactive --detailed: every outdated image with its instances.
    let (code, out, err, _) = run(
        d,
        &[
            "usage",
            "-t",
            ty,
            "-n",
            "ubuntu_2404",
            "-v",
            "shared",
            "-s",
            "deactive",
            "--detailed",
            "--format",
            "json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    let records: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let per_image: Vec<(String, u64, serde_json::Value)> = records
        .iter()
        .filter(|r| r.get("id").is_some())
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["count"].as_u64().unwrap(),
                r["instances"].clone(),
            )
        })
        .collect();
    assert_eq!(
        per_image,
        vec![
            (old[0].clone(), 0, serde_json::json!([])),
            (old[1].clone(), 0, serde_json::json!([])),
            (old[2].clone(), 1, serde_json::json!([vm3])),
        ],
        "{out}"
    );
    assert!(records.contains(&serde_json::json!({"count": 3})), "{out}");

    // purge dry run: the plan, no write.
    let (code, out, err, pid) = run(
        d,
        &[
            "purge",
            "-t",
            ty,
            "-v",
            "shared",
            "--limit",
            "1",
            "--dry-run",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "DRY-RUN: delete image {} 'Outdated (Ubuntu {ty} 0)' ",
            old[0]
        )),
        "{out}"
    );
    assert!(out.contains(" (unprotect first)\n"), "{out}");
    assert!(
        out.contains(&format!(
            "DRY-RUN: keep image {} 'Outdated (Ubuntu {ty} 2)': in use by 1 instance(s)\n",
            old[2]
        )),
        "{out}"
    );
    assert!(
        out.contains("DRY-RUN: 1 more unused image(s) left by --limit\n"),
        "{out}"
    );
    assert!(writes(&glance_requests(pid)).is_empty());

    // purge --limit 1: only the oldest unused one (protected: unprotected first).
    let (code, out, err, _) = run(
        d,
        &["purge", "-t", ty, "-v", "shared", "--limit", "1", "--force"],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("Outdated (Ubuntu {ty} 0) ")) && out.contains("count = 1\n"),
        "{out}"
    );
    assert!(glance.get_image(&old[0]).await.unwrap_err().is_not_found());
    for id in &old[1..] {
        assert_eq!(
            glance.get_image(id).await.unwrap().status,
            ImageStatus::Deactivated
        );
    }

    // purge without a limit: the other unused one; the used one stays, as
    // do the active image and the other type's image.
    let (code, out, err, _) = run(d, &["purge", "-t", ty, "-v", "shared", "--force"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("Outdated (Ubuntu {ty} 1) ")) && out.contains("count = 1\n"),
        "{out}"
    );
    assert!(glance.get_image(&old[1]).await.unwrap_err().is_not_found());
    assert_eq!(
        glance.get_image(&old[2]).await.unwrap().status,
        ImageStatus::Deactivated
    );
    assert_eq!(
        glance.get_image(&gold).await.unwrap().status,
        ImageStatus::Active
    );
    assert_eq!(
        glance.get_image(&other).await.unwrap().status,
        ImageStatus::Deactivated
    );
    glance.delete_image(&other).await.unwrap();

    // Nothing left to purge: the used image is kept, nothing deleted.
    let (code, out, err, pid) = run(d, &["purge", "-t", ty, "-v", "shared", "--force"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("count = 0\n"), "{out}");
    assert!(writes(&glance_requests(pid)).is_empty());
    assert_eq!(
        glance.get_image(&old[2]).await.unwrap().status,
        ImageStatus::Deactivated
    );
    // Every instance look-up asked all tenants.
    for q in server_queries(&nova).await {
        assert!(q.contains("all_tenants=1"), "{q}");
    }
}
