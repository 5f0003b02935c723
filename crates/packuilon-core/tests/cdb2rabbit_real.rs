//! `cdb2rabbit` against a local static file server (wiremock serving the
//! fixture files of `fixtures/packuilon/cdb`) and the real RabbitMQ on
//! 127.0.0.1:5672 (`scripts/rabbitmq/up.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeleteOptions};
use packuilon_core::{Broker, Cdb2Rabbit, Secret};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/packuilon/cdb")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap()
}

/// Serve `info` as /profiles-info.xml and every fixture profile under /profiles/.
async fn serve(server: &MockServer, info: &str) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/profiles-info.xml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fixture(info)))
        .mount(server)
        .await;
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".json") {
            Mock::given(method("GET"))
                .and(path(format!("/profiles/{name}")))
                .respond_with(ResponseTemplate::new(200).set_body_string(fixture(&name)))
                .mount(server)
                .await;
        }
    }
}

/// Drain the queue: (body, delivery_mode) of every message.
async fn drain(b: &Broker) -> Vec<(String, Option<u8>)> {
    let conn = b
        .connect()
        .await
        .expect("RabbitMQ is not reachable on 127.0.0.1:5672: run scripts/rabbitmq/up.sh");
    let ch = b.open_channel(&conn).await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(b.queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        out.push((
            String::from_utf8(m.delivery.data.clone()).unwrap(),
            *m.delivery.properties.delivery_mode(),
        ));
    }
    out
}

#[tokio::test]
async fn publishes_only_changed_matching_profiles_with_new_content() {
    let server = MockServer::start().await;
    let cache = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let job = Cdb2Rabbit {
        info_url: format!("{}/profiles-info.xml", server.uri()),
        dir_url: format!("{}/profiles/", server.uri()),
        profile_match: ".cloud.template.json".into(),
        cache_dir: cache.path().join("profiles"),
        broker: Broker {
            host: "127.0.0.1".into(),
            port: 5672,
            user: "guest".into(),
            password: Secret::new("guest"),
            queue: format!("packuilon-cdb-{}-{nanos}", std::process::id()),
        },
    };

    // First run: state recorded, nothing published.
    serve(&server, "profiles-info-1.xml").await;
    let r = job.run().await.unwrap();
    assert!(r.first_run);
    assert!(drain(&job.broker).await.is_empty());
    assert_eq!(
        std::fs::read_to_string(cache.path().join("profiles/cached_info.xml")).unwrap(),
        fixture("profiles-info-1.xml")
    );

    // A cached copy identical to what the server now has: not republished.
    let same = "grid-wn-build.cloud.template.json";
    std::fs::write(cache.path().join("profiles").join(same), fixture(same)).unwrap();

    serve(&server, "profiles-info-2.xml").await;
    let r = job.run().await.unwrap();
    assert!(!r.first_run);
    assert_eq!(
        r.changed,
        vec![
            "sl7-web-build.cloud.template.json",
            "grid-wn-build.cloud.template.json",
            "host2.example.org.json",
            "rocky8-build.cloud.template.json"
        ]
    );
    assert_eq!(
        r.published,
        vec![
            "sl7-web-build.cloud.template.json",
            "rocky8-build.cloud.template.json"
        ]
    );
    let got = drain(&job.broker).await;
    assert_eq!(
        got,
        vec![
            (fixture("sl7-web-build.cloud.template.json"), Some(2)),
            (fixture("rocky8-build.cloud.template.json"), Some(2)),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(
            cache
                .path()
                .join("profiles/rocky8-build.cloud.template.json")
        )
        .unwrap(),
        fixture("rocky8-build.cloud.template.json")
    );

    // Same listing again: nothing to do.
    let r = job.run().await.unwrap();
    assert!(r.changed.is_empty() && r.published.is_empty());
    assert!(drain(&job.broker).await.is_empty());

    // A listed profile the server cannot serve: an error naming the URL, and
    // cached_info.xml is left as it was so the next run retries.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/profiles-info.xml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            "<profiles><profile mtime=\"9\">gone.cloud.template.json</profile></profiles>",
        ))
        .mount(&server)
        .await;
    let e = job.run().await.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "GET {}/profiles/gone.cloud.template.json: HTTP 404",
            server.uri()
        )),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(cache.path().join("profiles/cached_info.xml")).unwrap(),
        fixture("profiles-info-2.xml")
    );

    let conn = job.broker.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(
        job.broker.queue.as_str().into(),
        QueueDeleteOptions::default(),
    )
    .await
    .unwrap();
}
