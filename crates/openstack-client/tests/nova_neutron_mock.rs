//! Nova and Neutron against wiremock, with bodies shaped like the api-ref
//! samples; Keystone is mocked too so the catalog points at the mock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use openstack_client::neutron::SecurityGroupRuleCreate;
use openstack_client::nova::{Microversion, ServerCreate, ServerFilter, ServerStatus};
use openstack_client::{CloudConfig, Error, Session};
use serde_json::json;
use wiremock::matchers::{body_json, body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SERVER_ID: &str = "9168b536-cd40-4630-b43f-b259807c6e87";

async fn cloud() -> (MockServer, Session) {
    let server = MockServer::start().await;
    let uri = server.uri();
    let ep = |url: String| json!([{"id": "e", "interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": url}]);
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .and(body_partial_json(json!({"auth": {"identity": {"methods": ["password"]}}})))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", "gAAAAABmocktoken")
                .set_body_json(json!({"token": {
                    "expires_at": "2999-01-01T00:00:00.000000Z",
                    "issued_at": "2026-01-01T00:00:00.000000Z",
                    "methods": ["password"],
                    "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
                    "user": {"id": "u1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
                    "roles": [{"id": "r", "name": "member"}],
                    "catalog": [
                        {"type": "compute", "name": "nova", "id": "c", "endpoints": ep(format!("{uri}/compute/v2.1"))},
                        {"type": "network", "name": "neutron", "id": "n", "endpoints": ep(format!("{uri}/network"))}
                    ]
                }})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": {
            "id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"href": format!("{uri}/compute/v2.1/"), "rel": "self"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]
        }})))
        .mount(&server)
        .await;
    let mut cfg = CloudConfig::password(&format!("{uri}/v3"), "demo", "pw", "demo").unwrap();
    cfg.regions = vec!["RegionOne".into()];
    cfg.http.retry_base_delay = Duration::from_millis(10);
    (server, Session::new(cfg).unwrap())
}

fn server_body(status: &str, task_state: Option<&str>) -> serde_json::Value {
    json!({"server": {
        "id": SERVER_ID, "name": "new-server-test", "status": status,
        "OS-EXT-STS:task_state": task_state, "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:power_state": 1,
        "addresses": {"private": [
            {"addr": "192.168.1.30", "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "00:0c:29:0d:11:74"},
            {"addr": "172.24.4.10", "version": 4, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": "00:0c:29:0d:11:74"}
        ]},
        "flavor": {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0, "original_name": "m1.tiny", "extra_specs": {}},
        "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b", "links": []},
        "key_name": "k1", "metadata": {"My Server Name": "Apache1"},
        "tenant_id": "p1", "user_id": "u1", "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:01Z",
        "hostId": "", "locked": false, "tags": [], "progress": 0
    }})
}

#[tokio::test]
async fn negotiates_microversion_and_finds_flavors_across_pages() {
    let (mock, session) = cloud().await;
    let uri = mock.uri();
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/flavors/m1.small"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"itemNotFound": {"code": 404, "message": "Flavor m1.small could not be found."}})))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/flavors/detail"))
        .and(query_param("marker", "1"))
        .and(header("openstack-api-version", "compute 2.90"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"flavors": [
            {"id": "2", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "swap": 0, "rxtx_factor": 1.0, "links": []}
        ]})))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/flavors/detail"))
        .and(header("x-openstack-nova-api-version", "2.90"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "flavors": [{"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1, "swap": "", "links": []}],
            "flavors_links": [{"href": format!("{uri}/compute/v2.1/flavors/detail?marker=1"), "rel": "next"}]
        })))
        .mount(&mock)
        .await;
    let nova = session.compute(None).await.unwrap();
    assert_eq!(nova.microversion(), Some(Microversion::new(2, 90)));
    let flavor = nova.find_flavor("m1.small").await.unwrap();
    assert_eq!(
        (flavor.id.as_str(), flavor.ram, flavor.is_public),
        ("2", 2048, Some(true))
    );
    assert_eq!(nova.list_flavors().await.unwrap().len(), 2);
    let missing = nova.find_flavor("m9.huge").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(nova
        .clone()
        .with_microversion(Microversion::new(2, 99))
        .is_err());
}

#[tokio::test]
async fn server_lifecycle() {
    let (mock, session) = cloud().await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/servers"))
        .and(body_partial_json(json!({"server": {
            "name": "new-server-test", "imageRef": "img-1", "flavorRef": "2", "key_name": "k1",
            "security_groups": [{"name": "ssh"}], "networks": [{"uuid": "net-1"}],
            "user_data": "I2Nsb3VkLWNvbmZpZwo=", "metadata": {"role": "builder"}
        }})))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"server": {
            "id": SERVER_ID, "adminPass": "wfksH3GTTseP", "OS-DCF:diskConfig": "AUTO",
            "links": [], "security_groups": [{"name": "ssh"}]
        }})))
        .expect(1)
        .mount(&mock)
        .await;
    // BUILD twice, then ACTIVE.
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SERVER_ID}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(server_body("BUILD", Some("spawning"))),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SERVER_ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(server_body("ACTIVE", None)))
        .with_priority(2)
        .mount(&mock)
        .await;
    for action in [json!({"os-stop": null}), json!({"os-start": null})] {
        Mock::given(method("POST"))
            .and(path(format!("/compute/v2.1/servers/{SERVER_ID}/action")))
            .and(body_json(action))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&mock)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(format!("/compute/v2.1/servers/{SERVER_ID}/action")))
        .and(body_json(json!({"os-getConsoleOutput": {"length": 50}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"output": "login: \n"})))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/detail"))
        .and(query_param("name", "new-server"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"servers": [server_body("ACTIVE", None)["server"]]})),
        )
        .mount(&mock)
        .await;

    let nova = session.compute(None).await.unwrap();
    let req = ServerCreate::new("new-server-test", "img-1", "2")
        .key_name("k1")
        .security_group("ssh")
        .network("net-1")
        .user_data("#cloud-config\n")
        .metadata("role", "builder");
    let created = nova.create_server(&req).await.unwrap();
    assert_eq!(created.id, SERVER_ID);
    assert_eq!(
        created.admin_pass.as_ref().map(|p| p.expose()),
        Some("wfksH3GTTseP")
    );
    assert!(!format!("{created:?}").contains("wfksH3GTTseP"));
    let active = nova
        .wait_for_server_status(SERVER_ID, ServerStatus::Active, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(active.ips()[0].addr, "192.168.1.30");
    assert_eq!(active.key_name.as_deref(), Some("k1"));
    nova.stop_server(SERVER_ID).await.unwrap();
    nova.start_server(SERVER_ID).await.unwrap();
    assert_eq!(
        nova.console_log(SERVER_ID, Some(50)).await.unwrap(),
        "login: \n"
    );
    let listed = nova
        .list_servers(&ServerFilter {
            name: Some("new-server".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn server_list_filters_by_image_across_projects() {
    let (mock, session) = cloud().await;
    let image = "70a599e0-31e7-49b7-b260-868f441e862b";
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/detail"))
        .and(query_param("image", image))
        .and(query_param("all_tenants", "1"))
        .and(query_param("status", "ACTIVE"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"servers": [server_body("ACTIVE", None)["server"]]})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let nova = session.compute(None).await.unwrap();
    let listed = nova
        .list_servers(&ServerFilter {
            image: Some(image.into()),
            all_tenants: true,
            status: Some(ServerStatus::Active),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].image["id"], image);
}

#[tokio::test]
async fn server_error_and_deletion() {
    let (mock, session) = cloud().await;
    let mut failed = server_body("ERROR", None);
    failed["server"]["fault"] = json!({"code": 500, "created": "2026-01-01T00:00:00Z", "message": "No valid host was found. There are not enough hosts available."});
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/bad"))
        .respond_with(ResponseTemplate::new(200).set_body_json(failed))
        .mount(&mock)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/compute/v2.1/servers/{SERVER_ID}")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v2.1/servers/{SERVER_ID}")))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("x-compute-request-id", "req-abc")
                .set_body_json(json!({"itemNotFound": {"code": 404, "message": "Instance 9168b536 could not be found."}})),
        )
        .mount(&mock)
        .await;
    let nova = session.compute(None).await.unwrap();
    let err = nova
        .wait_for_server_status("bad", ServerStatus::Active, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::ResourceFailed { .. }), "{err}");
    assert!(err.to_string().contains("No valid host"), "{err}");
    nova.delete_server(SERVER_ID).await.unwrap();
    nova.wait_for_server_deleted(SERVER_ID, Duration::from_secs(30))
        .await
        .unwrap();
    let err = nova.get_server(SERVER_ID).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.request_id(), Some("req-abc"));
    assert!(
        err.to_string()
            .contains("Instance 9168b536 could not be found."),
        "{err}"
    );
}

#[tokio::test]
async fn create_image_reads_body_or_location() {
    let (mock, session) = cloud().await;
    Mock::given(method("POST"))
        .and(path(format!("/compute/v2.1/servers/{SERVER_ID}/action")))
        .and(header("openstack-api-version", "compute 2.90"))
        .and(body_partial_json(
            json!({"createImage": {"name": "snap", "metadata": {"k": "v"}}}),
        ))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(json!({"image_id": "0e7761dd-ee98-41f0-ba35-05994e446431"})),
        )
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/compute/v2.1/servers/{SERVER_ID}/action")))
        .and(header("openstack-api-version", "compute 2.44"))
        .respond_with(ResponseTemplate::new(202).insert_header(
            "Location",
            "http://glance.example.invalid:9292/images/a2459075-d96c-40d5-893e-577ff92e721c",
        ))
        .mount(&mock)
        .await;
    let nova = session.compute(None).await.unwrap();
    let meta: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
    assert_eq!(
        nova.create_image(SERVER_ID, "snap", &meta).await.unwrap(),
        "0e7761dd-ee98-41f0-ba35-05994e446431"
    );
    let old = nova.with_microversion(Microversion::new(2, 44)).unwrap();
    assert_eq!(
        old.create_image(SERVER_ID, "snap", &BTreeMap::new())
            .await
            .unwrap(),
        "a2459075-d96c-40d5-893e-577ff92e721c"
    );
}

#[tokio::test]
async fn keypairs_and_retry_on_503() {
    let (mock, session) = cloud().await;
    let pk = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBd3 test@example";
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/os-keypairs"))
        .and(body_json(json!({"keypair": {"name": "k1", "public_key": pk}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keypair": {
            "name": "k1", "public_key": pk, "fingerprint": "1e:2c:9b:56:79:4b:45:77:f9:ca:7a:98:2c:b0:d5:3c",
            "user_id": "u1", "type": "ssh"
        }})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/os-keypairs"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({"conflictingRequest": {"code": 409, "message": "Key pair 'k1' already exists."}})))
        .with_priority(2)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/os-keypairs/k1"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/os-keypairs/k1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keypair": {"name": "k1", "public_key": pk, "type": "ssh", "id": 1, "deleted": false}})))
        .with_priority(2)
        .mount(&mock)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/compute/v2.1/os-keypairs/k1"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&mock)
        .await;
    let nova = session.compute(None).await.unwrap();
    let kp = nova.create_keypair("k1", pk).await.unwrap();
    assert_eq!(kp.key_type.as_deref(), Some("ssh"));
    let dup = nova.create_keypair("k1", pk).await.unwrap_err();
    assert!(
        dup.is_conflict() && dup.to_string().contains("already exists"),
        "{dup}"
    );
    assert_eq!(nova.get_keypair("k1").await.unwrap().name, "k1");
    nova.delete_keypair("k1").await.unwrap();
}

#[tokio::test]
async fn neutron_networks_groups_floating_ips_ports() {
    let (mock, session) = cloud().await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/networks/public"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"NeutronError": {"type": "NetworkNotFound", "message": "Network public could not be found.", "detail": ""}})))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/networks"))
        .and(query_param("name", "public"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"networks": [{
            "id": "net-ext", "name": "public", "status": "ACTIVE", "admin_state_up": true, "shared": false,
            "router:external": true, "subnets": ["s1"], "project_id": "admin", "mtu": 1500,
            "provider:network_type": "flat"
        }]})))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/network/v2.0/security-groups"))
        .and(body_json(json!({"security_group": {"name": "builder", "description": "image builds"}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"security_group": {
            "id": "sg-1", "name": "builder", "description": "image builds", "project_id": "p1", "stateful": true,
            "security_group_rules": [{"id": "r0", "security_group_id": "sg-1", "direction": "egress", "ethertype": "IPv4",
                "protocol": null, "port_range_min": null, "port_range_max": null, "remote_ip_prefix": null, "remote_group_id": null}]
        }})))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/network/v2.0/security-group-rules"))
        .and(body_json(json!({"security_group_rule": {"security_group_id": "sg-1", "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"security_group_rule": {
            "id": "r1", "security_group_id": "sg-1", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0", "remote_group_id": null
        }})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/network/v2.0/security-group-rules"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({"NeutronError": {"type": "SecurityGroupRuleExists", "message": "Security group rule already exists. Rule id is r1.", "detail": ""}})))
        .with_priority(2)
        .mount(&mock)
        .await;
    for p in [
        "/network/v2.0/security-group-rules/r1",
        "/network/v2.0/security-groups/sg-1",
        "/network/v2.0/floatingips/fip-1",
    ] {
        Mock::given(method("DELETE"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&mock)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/network/v2.0/ports"))
        .and(query_param("device_id", SERVER_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ports": [{
            "id": "port-1", "name": "", "network_id": "net-priv", "device_id": SERVER_ID, "device_owner": "compute:nova",
            "mac_address": "fa:16:3e:c9:cb:f0", "status": "ACTIVE",
            "fixed_ips": [{"subnet_id": "s2", "ip_address": "10.0.0.5"}], "binding:vnic_type": "normal"
        }]})))
        .mount(&mock)
        .await;
    let fip = |port: serde_json::Value| {
        json!({"floatingip": {
            "id": "fip-1", "floating_ip_address": "172.24.4.228", "floating_network_id": "net-ext",
            "port_id": port, "fixed_ip_address": if port.is_null() { serde_json::Value::Null } else { json!("10.0.0.5") },
            "status": "DOWN", "router_id": null, "project_id": "p1", "description": ""
        }})
    };
    Mock::given(method("POST"))
        .and(path("/network/v2.0/floatingips"))
        .and(body_json(
            json!({"floatingip": {"floating_network_id": "net-ext"}}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(fip(serde_json::Value::Null)))
        .mount(&mock)
        .await;
    Mock::given(method("PUT"))
        .and(path("/network/v2.0/floatingips/fip-1"))
        .and(body_json(json!({"floatingip": {"port_id": "port-1"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fip(json!("port-1"))))
        .mount(&mock)
        .await;
    Mock::given(method("PUT"))
        .and(path("/network/v2.0/floatingips/fip-1"))
        .and(body_json(json!({"floatingip": {"port_id": null}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fip(serde_json::Value::Null)))
        .mount(&mock)
        .await;

    let neutron = session.network(None).await.unwrap();
    let net = neutron.find_network("public").await.unwrap();
    assert_eq!((net.id.as_str(), net.external), ("net-ext", Some(true)));
    assert_eq!(net.extra.get("mtu"), Some(&json!(1500)));
    let sg = neutron
        .create_security_group("builder", "image builds")
        .await
        .unwrap();
    assert_eq!(sg.security_group_rules.len(), 1);
    let rule = SecurityGroupRuleCreate::ingress_tcp(&sg.id, 22, "0.0.0.0/0");
    let r = neutron.create_security_group_rule(&rule).await.unwrap();
    assert_eq!(r.port_range_min, Some(22));
    let dup = neutron.create_security_group_rule(&rule).await.unwrap_err();
    assert!(
        dup.is_conflict() && dup.to_string().contains("already exists"),
        "{dup}"
    );
    let ports = neutron.server_ports(SERVER_ID).await.unwrap();
    assert_eq!(ports[0].fixed_ips[0].ip_address, "10.0.0.5");
    let ip = neutron.create_floating_ip(&net.id, None).await.unwrap();
    assert_eq!(ip.port_id, None);
    let ip = neutron
        .associate_floating_ip(&ip.id, &ports[0].id)
        .await
        .unwrap();
    assert_eq!(ip.fixed_ip_address.as_deref(), Some("10.0.0.5"));
    let ip = neutron.disassociate_floating_ip(&ip.id).await.unwrap();
    assert_eq!(ip.port_id, None);
    neutron.delete_floating_ip(&ip.id).await.unwrap();
    neutron.delete_security_group_rule(&r.id).await.unwrap();
    neutron.delete_security_group(&sg.id).await.unwrap();
}

/// A catalog URL ending in the project id: the version document is read one
/// level up, requests keep the project in the path.
#[tokio::test]
async fn compute_endpoint_with_project_id() {
    let mock = MockServer::start().await;
    let uri = mock.uri();
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", "t")
                .set_body_json(json!({"token": {"expires_at": "2999-01-01T00:00:00Z", "catalog": [
                    {"type": "compute", "endpoints": [{"interface": "public", "region_id": "R", "url": format!("{uri}/compute/v2.1/p1")}]}
                ]}})),
        )
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"version": {"id": "v2.1", "version": "2.60", "min_version": "2.1"}}),
        ))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/p1/flavors/1"))
        .and(header("openstack-api-version", "compute 2.60"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"flavor": {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1}}),
        ))
        .mount(&mock)
        .await;
    let cfg = CloudConfig::password(&format!("{uri}/v3"), "u", "p", "proj").unwrap();
    let s = Session::new(cfg).unwrap();
    let nova = s.compute(Some("R")).await.unwrap();
    assert_eq!(nova.microversion(), Some(Microversion::new(2, 60)));
    assert_eq!(nova.get_flavor("1").await.unwrap().name, "m1.tiny");
}

/// A floating IP allocated with a description is found again by it (and by
/// its address) through the filtered listing.
#[tokio::test]
async fn floating_ip_described_and_filtered_listing() {
    let (mock, session) = cloud().await;
    let body = json!({
        "id": "fip-9", "floating_ip_address": "172.24.4.9", "floating_network_id": "net-ext",
        "port_id": null, "fixed_ip_address": null, "status": "DOWN", "router_id": null,
        "project_id": "p1", "description": "ge-image-web-1a2b3c4d", "tags": [],
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "revision_number": 0
    });
    Mock::given(method("POST"))
        .and(path("/network/v2.0/floatingips"))
        .and(body_json(json!({"floatingip": {
            "floating_network_id": "net-ext", "description": "ge-image-web-1a2b3c4d"
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "floatingip": body })))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/floatingips"))
        .and(query_param("description", "ge-image-web-1a2b3c4d"))
        .and(query_param("project_id", "p1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "floatingips": [body] })))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/network/v2.0/floatingips"))
        .and(query_param("floating_ip_address", "172.24.4.99"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "floatingips": [] })))
        .expect(1)
        .mount(&mock)
        .await;
    let neutron = session.network(None).await.unwrap();
    let ip = neutron
        .create_floating_ip_described("net-ext", None, "ge-image-web-1a2b3c4d")
        .await
        .unwrap();
    assert_eq!(ip.floating_ip_address, "172.24.4.9");
    let found = neutron
        .list_floating_ips_filtered(&[
            ("description", "ge-image-web-1a2b3c4d"),
            ("project_id", "p1"),
        ])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, "fip-9");
    let none = neutron
        .list_floating_ips_filtered(&[("floating_ip_address", "172.24.4.99")])
        .await
        .unwrap();
    assert!(none.is_empty());
}
