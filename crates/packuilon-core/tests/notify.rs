//! Notifications: mail through a recording sendmail-compatible script, the
//! Slack hook on a local HTTP server (wiremock).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use packuilon_core::notify::{Notice, Notifier};
use packuilon_core::Secret;
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A sendmail stand-in that records its arguments and its standard input.
fn recording_mail(dir: &Path) -> Vec<String> {
    let script = dir.join("sendmail");
    common::write_executable(
        &script,
        &format!(
            "#!/bin/sh\necho \"$@\" >> {d}/mail.args\ncat >> {d}/mail.txt\n",
            d = dir.display()
        ),
    );
    vec![script.display().to_string(), "-t".into(), "-i".into()]
}

fn notice(failure: Option<&str>) -> Notice {
    Notice {
        build: "web-sl7x-x86_64".into(),
        images: vec!["5e7c0d2a".into()],
        failure: failure.map(String::from),
        logs: vec!["web-sl7x-x86_64.managed.1700000000.log".into()],
        attempts: 3,
    }
}

#[tokio::test]
async fn success_mails_the_success_address_and_posts_to_slack() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/secret"))
        .and(body_json(serde_json::json!({
            "text": "The image build web-sl7x-x86_64 succeeded; image(s): 5e7c0d2a.\nLog file(s): web-sl7x-x86_64.managed.1700000000.log\n"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let n = Notifier {
        mail_command: recording_mail(dir.path()),
        success_address: Some("ok@example.org".into()),
        failure_address: Some("ko@example.org".into()),
        slack_success_hook: Some(Secret::new(format!(
            "{}/services/T0/B0/secret",
            server.uri()
        ))),
    };
    n.notify(&notice(None)).await;
    let mail = std::fs::read_to_string(dir.path().join("mail.txt")).unwrap();
    assert!(
        mail.starts_with(
            "To: ok@example.org\nSubject: packuilon: build of web-sl7x-x86_64 succeeded\n"
        ),
        "{mail}"
    );
    assert!(mail.contains("image(s): 5e7c0d2a"), "{mail}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mail.args")).unwrap(),
        "-t -i\n",
        "the address is in the message, not on the command line"
    );
    server.verify().await;
}

#[tokio::test]
async fn failure_mails_the_failure_address_and_not_slack() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let n = Notifier {
        mail_command: recording_mail(dir.path()),
        success_address: Some("ok@example.org".into()),
        failure_address: Some("ko@example.org".into()),
        slack_success_hook: Some(Secret::new(server.uri())),
    };
    n.notify(&notice(Some("packer exited with code 1"))).await;
    let mail = std::fs::read_to_string(dir.path().join("mail.txt")).unwrap();
    assert!(
        mail.starts_with(
            "To: ko@example.org\nSubject: packuilon: build of web-sl7x-x86_64 failed\n"
        ),
        "{mail}"
    );
    assert!(
        mail.contains("failed after 3 attempt(s): packer exited with code 1"),
        "{mail}"
    );
    assert!(
        mail.contains("web-sl7x-x86_64.managed.1700000000.log"),
        "{mail}"
    );
    server.verify().await;
}

#[tokio::test]
async fn nothing_configured_sends_nothing_and_errors_do_not_leak_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    Notifier {
        mail_command: recording_mail(dir.path()),
        ..Notifier::default()
    }
    .notify(&notice(None))
    .await;
    assert!(!dir.path().join("mail.txt").exists());
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let hook = Secret::new(format!("{}/services/T0/B0/topsecret", server.uri()));
    let e = packuilon_core::notify::slack(&hook, "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP 500"), "{e}");
    assert!(!e.contains("topsecret"), "{e}");
    let gone = Secret::new("http://127.0.0.1:1/services/topsecret".to_string());
    let e = packuilon_core::notify::slack(&gone, "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains("topsecret"), "{e}");
    let failing = Notifier {
        mail_command: vec!["false".into()],
        ..Notifier::default()
    };
    let e = failing
        .mail("a@b", &notice(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("mail command false: "), "{e}");
}
