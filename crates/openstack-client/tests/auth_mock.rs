//! Token lifetime handling against a mocked Keystone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openstack_client::glance::{GlanceClient, ImageFilter};
use openstack_client::{CloudConfig, Session};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn keystone(expires_in: chrono::Duration) -> MockServer {
    keystone_issued(expires_in, chrono::Duration::zero()).await
}

/// Tokens expiring in `expires_in`, issued `age` ago.
async fn keystone_issued(expires_in: chrono::Duration, age: chrono::Duration) -> MockServer {
    let ks = MockServer::start().await;
    let expires =
        (chrono::Utc::now() + expires_in).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let issued = (chrono::Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let uri = ks.uri();
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", "tok")
                .set_body_json(json!({"token": {"expires_at": expires, "issued_at": issued, "project": {"id": "p", "name": "proj"}, "catalog": [
                    {"type": "image", "endpoints": [{"interface": "public", "region_id": "R", "url": format!("{uri}/image")}]}
                ]}})),
        )
        .mount(&ks)
        .await;
    ks
}

fn config(ks: &MockServer) -> CloudConfig {
    CloudConfig::password(&format!("{}/v3", ks.uri()), "u", "p", "proj").unwrap()
}

/// A session on `ks` (its config changed by `tune` first) and its Glance
/// client in region `R`.
async fn glance_with(
    ks: &MockServer,
    tune: impl FnOnce(&mut CloudConfig),
) -> (Session, GlanceClient) {
    let mut cfg = config(ks);
    tune(&mut cfg);
    let s = Session::connect(cfg).await.unwrap();
    let g = s.image(Some("R")).await.unwrap();
    (s, g)
}

/// [`glance_with`] with the default config.
async fn glance(ks: &MockServer) -> (Session, GlanceClient) {
    glance_with(ks, |_| {}).await
}

/// The requests `ks` received whose path passes `wanted`.
async fn requests_to(ks: &MockServer, wanted: impl Fn(&str) -> bool) -> Vec<wiremock::Request> {
    ks.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| wanted(r.url.path()))
        .collect()
}

/// `PUT /image/v2/images/{id}/file` answered 204, any number of times.
async fn accept_uploads(ks: &MockServer, id: &str) {
    Mock::given(method("PUT"))
        .and(path(format!("/image/v2/images/{id}/file")))
        .respond_with(ResponseTemplate::new(204))
        .mount(ks)
        .await;
}

/// A token inside the refresh margin is replaced before it is used; a
/// short-lived token (a lifetime below the margin) is used until most of
/// its lifetime is gone, not replaced before every request.
#[tokio::test]
async fn token_close_to_expiry_is_refreshed_first() {
    // Issued 50 minutes ago, one minute left: inside the 2-minute margin.
    let ks = keystone_issued(chrono::Duration::seconds(60), chrono::Duration::minutes(50)).await;
    let s = Session::connect(config(&ks)).await.unwrap();
    assert_eq!(s.auth_count(), 1);
    s.token().await.unwrap();
    assert_eq!(s.auth_count(), 2);
    // A Keystone issuing 60-second tokens: a fresh one is kept.
    let short = keystone(chrono::Duration::seconds(60)).await;
    let s = Session::connect(config(&short)).await.unwrap();
    for _ in 0..5 {
        s.token().await.unwrap();
    }
    assert_eq!(s.auth_count(), 1);
    let fresh = keystone(chrono::Duration::hours(1)).await;
    let s = Session::connect(config(&fresh)).await.unwrap();
    s.token().await.unwrap();
    s.ensure_token_valid_for(std::time::Duration::from_secs(1800))
        .await
        .unwrap();
    assert_eq!(s.auth_count(), 1);

    // A transfer that wants 30 minutes of validity: (lifetime left, token
    // age, authentications after the check).
    for (left, age, auths) in [
        // 20 minutes left of a token issued 40 minutes ago: a new token first...
        (
            chrono::Duration::minutes(20),
            chrono::Duration::minutes(40),
            2,
        ),
        // ...but a token just issued with a short lifetime is kept.
        (chrono::Duration::minutes(20), chrono::Duration::zero(), 1),
    ] {
        let ks = keystone_issued(left, age).await;
        let s = Session::connect(config(&ks)).await.unwrap();
        s.ensure_token_valid_for(std::time::Duration::from_secs(1800))
            .await
            .unwrap();
        assert_eq!(s.auth_count(), auths, "{left} left, issued {age} ago");
    }
}

/// A service that keeps answering 401: exactly one re-authentication, then
/// the 401 is returned.
#[tokio::test]
async fn one_reauth_on_401_then_give_up() {
    let ks = keystone(chrono::Duration::hours(1)).await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .and(header("x-auth-token", "tok"))
        .respond_with(ResponseTemplate::new(401).set_body_string(
            "401 Unauthorized\n\nThis server could not verify that you are authorized",
        ))
        .expect(2)
        .mount(&ks)
        .await;
    let (s, g) = glance(&ks).await;
    let err = g.list_images(&ImageFilter::default()).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(err.to_string().contains("could not verify"), "{err}");
    assert_eq!(s.auth_count(), 2);
}

/// Uploads announce their size (Content-Length, x-openstack-image-size) and
/// are not chunked when the size is known; unknown sizes stream chunked.
#[tokio::test]
async fn upload_headers() {
    let ks = keystone(chrono::Duration::hours(1)).await;
    Mock::given(method("PUT"))
        .and(path("/image/v2/images/img-1/file"))
        .and(header("content-length", "300000"))
        .and(header("x-openstack-image-size", "300000"))
        .and(header("content-type", "application/octet-stream"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&ks)
        .await;
    Mock::given(method("PUT"))
        .and(path("/image/v2/images/img-2/file"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&ks)
        .await;
    let (_s, g) = glance(&ks).await;
    g.upload(
        "img-1",
        std::io::Cursor::new(vec![1u8; 300_000]),
        Some(300_000),
    )
    .await
    .unwrap();
    g.upload("img-2", std::io::Cursor::new(vec![2u8; 1000]), None)
        .await
        .unwrap();
    let known = &requests_to(&ks, |p| p.ends_with("img-1/file")).await[0];
    assert_eq!(known.body.len(), 300_000);
    assert!(known.headers.get("transfer-encoding").is_none());
    let unknown = &requests_to(&ks, |p| p.ends_with("img-2/file")).await[0];
    assert_eq!(unknown.body, vec![2u8; 1000]);
    assert!(unknown.headers.get("x-openstack-image-size").is_none());
}

/// A source shorter than the announced size fails the upload instead of
/// sending a truncated image.
#[tokio::test]
async fn upload_shorter_than_announced_fails() {
    let ks = keystone(chrono::Duration::hours(1)).await;
    accept_uploads(&ks, "img-3").await;
    let (_s, g) = glance_with(&ks, |cfg| {
        cfg.http.idle_timeout = std::time::Duration::from_secs(2)
    })
    .await;
    let err = g
        .upload("img-3", std::io::Cursor::new(vec![1u8; 500]), Some(1000))
        .await
        .unwrap_err();
    assert!(
        matches!(err, openstack_client::Error::Transport { .. }),
        "{err}"
    );
}

/// `upload_chunked` sends the body chunked, its size only in
/// `x-openstack-image-size`, and the data intact.
#[tokio::test]
async fn chunked_upload_headers() {
    let ks = keystone(chrono::Duration::hours(1)).await;
    Mock::given(method("PUT"))
        .and(path("/image/v2/images/img-5/file"))
        .and(header("x-openstack-image-size", "300000"))
        .and(header("transfer-encoding", "chunked"))
        .and(header("content-type", "application/octet-stream"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&ks)
        .await;
    let (_s, g) = glance(&ks).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    g.upload_chunked("img-5", std::io::Cursor::new(data.clone()), Some(300_000))
        .await
        .unwrap();
    let put = &requests_to(&ks, |p| p.ends_with("img-5/file")).await[0];
    assert!(put.headers.get("content-length").is_none());
    assert_eq!(put.body, data);
}

/// A chunked upload whose source gives fewer or more bytes than announced
/// fails instead of completing the body.
#[tokio::test]
async fn chunked_upload_of_another_size_fails() {
    let ks = keystone(chrono::Duration::hours(1)).await;
    accept_uploads(&ks, "img-6").await;
    let (_s, g) = glance_with(&ks, |cfg| {
        cfg.http.idle_timeout = std::time::Duration::from_secs(2)
    })
    .await;
    for len in [500, 1500] {
        let err = g
            .upload_chunked("img-6", std::io::Cursor::new(vec![1u8; len]), Some(1000))
            .await
            .unwrap_err();
        assert!(
            matches!(err, openstack_client::Error::Transport { .. }),
            "{len}: {err}"
        );
    }
    // The mock never saw a complete body of another size.
    assert!(requests_to(&ks, |p| p.ends_with("img-6/file"))
        .await
        .iter()
        .all(|r| r.body.len() == 1000));
}

/// 429, 502 and 504 are retried for GETs (Retry-After honoured); a 500 is not.
#[tokio::test]
async fn throttling_and_gateway_errors_are_retried() {
    let ks = keystone(chrono::Duration::hours(1)).await;
    for (i, status) in [429u16, 502, 504].into_iter().enumerate() {
        Mock::given(method("GET"))
            .and(path("/image/v2/images"))
            .respond_with(ResponseTemplate::new(status).insert_header("Retry-After", "0"))
            .up_to_n_times(1)
            .with_priority(1 + i as u8)
            .mount(&ks)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"images": [], "first": "/v2/images"})),
        )
        .with_priority(10)
        .mount(&ks)
        .await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images/broken"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .expect(1)
        .mount(&ks)
        .await;
    let (_s, g) = glance(&ks).await;
    assert!(g
        .list_images(&ImageFilter::default())
        .await
        .unwrap()
        .is_empty());
    let list_calls = requests_to(&ks, |p| p == "/image/v2/images").await.len();
    assert_eq!(list_calls, 4);
    let err = g.get_image("broken").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(500));
    assert!(!err.is_retryable());
}

/// `upload_reopenable` opens a fresh source for each attempt.
#[tokio::test]
async fn reopenable_upload_reopens_after_503() {
    let ks = keystone(chrono::Duration::hours(1)).await;
    Mock::given(method("PUT"))
        .and(path("/image/v2/images/img-4/file"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&ks)
        .await;
    Mock::given(method("PUT"))
        .and(path("/image/v2/images/img-4/file"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&ks)
        .await;
    let (_s, g) = glance_with(&ks, |cfg| {
        cfg.http.retry_base_delay = std::time::Duration::from_millis(10)
    })
    .await;
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = opened.clone();
    g.upload_reopenable("img-4", Some(4), move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(std::io::Cursor::new(b"data".to_vec()))
        }
    })
    .await
    .unwrap();
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 3);
    let bodies: Vec<Vec<u8>> = requests_to(&ks, |p| p.ends_with("img-4/file"))
        .await
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies, vec![b"data".to_vec(); 3]);
}

/// Many tasks on a fresh session share one authentication.
#[tokio::test]
async fn cold_start_authenticates_once() {
    let ks = keystone(chrono::Duration::hours(1)).await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"images": []})))
        .mount(&ks)
        .await;
    let s = Session::new(config(&ks)).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.image(Some("R"))
                .await?
                .list_images(&ImageFilter::default())
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.auth_count(), 1);
    let auths = requests_to(&ks, |p| p == "/v3/auth/tokens").await.len();
    assert_eq!(auths, 1);
}
