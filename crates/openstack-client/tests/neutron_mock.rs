//! The Neutron calls `nova_neutron_mock` does not reach, against wiremock
//! with bodies shaped like the api-ref samples: look-up by name after a 404
//! by id, get and list-by-port of floating IPs, networks by name, and the
//! context (method, URL, status, request id, server message) every call's
//! error carries through the one request path of `NetworkClient`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cloud_test_support::leaks::mount_keystone;
use openstack_client::{CloudConfig, Session};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A mock whose Keystone catalog offers Neutron at `<mock>/network`, and a
/// session on it.
async fn cloud() -> (MockServer, Session) {
    let server = MockServer::start().await;
    let uri = server.uri();
    let network = [("network", "RegionOne", format!("{uri}/network"))];
    mount_keystone(&server, "gAAAAABmocktoken", &network).await;
    let mut cfg = CloudConfig::password(&format!("{uri}/v3"), "demo", "pw", "demo").unwrap();
    cfg.regions = vec!["RegionOne".into()];
    cfg.http.retry_base_delay = Duration::from_millis(10);
    (server, Session::new(cfg).unwrap())
}

/// Neutron's 404 body (api-ref "Response Codes", `NeutronError`).
fn not_found(kind: &str, id: &str) -> Value {
    json!({"NeutronError": {"type": format!("{kind}NotFound"),
        "message": format!("{kind} {id} could not be found."), "detail": ""}})
}

fn floating_ip(id: &str, port_id: Option<&str>) -> Value {
    json!({
        "id": id, "floating_ip_address": "172.24.4.228", "floating_network_id": "net-ext",
        "port_id": port_id, "fixed_ip_address": port_id.map(|_| "10.0.0.3"),
        "status": "ACTIVE", "router_id": "router-1", "project_id": "p",
        "description": "", "tags": [], "revision_number": 1,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    })
}

#[tokio::test]
async fn security_group_found_by_name_after_a_miss_by_id() {
    let (mock, session) = cloud().await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/security-groups/web"))
        .respond_with(ResponseTemplate::new(404).set_body_json(not_found("SecurityGroup", "web")))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/security-groups"))
        .and(query_param("name", "web"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"security_groups": [{
                "id": "sg-7", "name": "web", "description": "", "project_id": "p",
                "security_group_rules": [], "stateful": true, "tags": [], "revision_number": 1
            }]})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/networks"))
        .and(query_param("name", "private"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"networks": [
                {"id": "net-1", "name": "private", "status": "ACTIVE", "subnets": ["sub-1"]},
                {"id": "net-2", "name": "private", "status": "ACTIVE", "subnets": []}
            ]})),
        )
        .expect(2)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/networks/private"))
        .respond_with(ResponseTemplate::new(404).set_body_json(not_found("Network", "private")))
        .mount(&mock)
        .await;

    let neutron = session.network(None).await.unwrap();
    let sg = neutron.find_security_group("web").await.unwrap();
    assert_eq!((sg.id.as_str(), sg.name.as_str()), ("sg-7", "web"));
    assert_eq!(sg.extra.get("stateful"), Some(&json!(true)));

    let nets = neutron.list_networks(Some("private")).await.unwrap();
    assert_eq!(nets.len(), 2);
    let ambiguous = neutron.find_network("private").await.unwrap_err();
    assert!(
        ambiguous.to_string().contains("private"),
        "an ambiguous name is named: {ambiguous}"
    );
}

#[tokio::test]
async fn floating_ip_by_id_and_by_port() {
    let (mock, session) = cloud().await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/floatingips/fip-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"floatingip": floating_ip("fip-1", Some("port-1"))})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/floatingips"))
        .and(query_param("port_id", "port-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"floatingips": [floating_ip("fip-1", Some("port-1"))]})),
        )
        .expect(1)
        .mount(&mock)
        .await;

    let neutron = session.network(None).await.unwrap();
    let ip = neutron.get_floating_ip("fip-1").await.unwrap();
    assert_eq!(ip.port_id.as_deref(), Some("port-1"));
    assert_eq!(ip.fixed_ip_address.as_deref(), Some("10.0.0.3"));
    let bound = neutron.list_floating_ips(Some("port-1")).await.unwrap();
    assert_eq!(bound, vec![ip]);
}

/// Every kind of call (GET, POST, PUT, DELETE) reports the method, the URL,
/// the status, Neutron's request id and its message.
#[tokio::test]
async fn errors_carry_method_url_status_and_request_id() {
    let (mock, session) = cloud().await;
    for (verb, p, status) in [
        ("GET", "/network/v2.0/floatingips/gone", 404),
        ("PUT", "/network/v2.0/floatingips/gone", 404),
        ("DELETE", "/network/v2.0/security-groups/gone", 404),
        ("POST", "/network/v2.0/security-groups", 409),
    ] {
        Mock::given(method(verb))
            .and(path(p))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("X-Openstack-Request-Id", "req-0b1c2d3e")
                    .set_body_json(json!({"NeutronError": {"type": "Oops",
                        "message": format!("{verb} refused"), "detail": ""}})),
            )
            .expect(1)
            .mount(&mock)
            .await;
    }

    let neutron = session.network(None).await.unwrap();
    let errors = [
        (
            "GET",
            404,
            neutron.get_floating_ip("gone").await.unwrap_err(),
        ),
        (
            "PUT",
            404,
            neutron
                .associate_floating_ip("gone", "port-1")
                .await
                .unwrap_err(),
        ),
        (
            "DELETE",
            404,
            neutron.delete_security_group("gone").await.unwrap_err(),
        ),
        (
            "POST",
            409,
            neutron.create_security_group("dup", "").await.unwrap_err(),
        ),
    ];
    for (verb, status, e) in errors {
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{e}");
        assert_eq!(e.request_id(), Some("req-0b1c2d3e"), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{verb} {}", mock.uri())),
            "{text}"
        );
        assert!(text.contains("/network/v2.0/"), "{text}");
        assert!(text.contains(&format!("{verb} refused")), "{text}");
    }
}
