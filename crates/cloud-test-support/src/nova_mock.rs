//! A small stateful Nova + Neutron (and, for pure-mock tests, Keystone) on
//! wiremock, answering with bodies shaped like the OpenStack api-ref
//! samples. It keeps what was created (keypairs, security groups and their
//! rules, floating IPs, servers), moves servers through their states
//! (BUILD -> ACTIVE or ERROR, stop -> SHUTOFF, delete -> gone), refuses to
//! delete a security group a server still uses (409, as Neutron), and can
//! be told to fail any operation with a status.
//!
//! Operations are named `<resource>.<verb>` (`keypair.create`,
//! `server.stop`, `fip.update`, ...); [`Fake::ops`] lists those performed.
//!
//! Tests against the real local Keystone and Glance reach the fake through
//! [`Fake::session`] (the local cloud with its `compute` and `network`
//! endpoints overridden to the fake); tests that SSH to a "server" set
//! [`State::fip_address`] to `127.0.0.1` and copy the keypairs into a local
//! sshd's `authorized_keys` with [`Fake::authorize_keypairs`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openstack_client::{CloudConfig, Session};
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Project id the fake Keystone's token is scoped to (and the owner of
/// floating IPs made here).
pub const PROJECT: &str = "p1";
/// Id of the internal network (`node-int-net-01`).
pub const NET_INT: &str = "net-int-6f1c";
/// Id of the external network (`public-ext-net-01`).
pub const NET_EXT: &str = "net-ext-0a2e";

/// A server of the fake Nova.
#[derive(Debug, Clone)]
pub struct FakeServer {
    /// Name.
    pub name: String,
    /// Status.
    pub status: String,
    /// Pending task.
    pub task_state: Option<String>,
    /// Keypair name.
    pub key_name: Option<String>,
    /// Security group names.
    pub groups: Vec<String>,
    /// Metadata.
    pub metadata: Value,
    /// Being deleted: one more look answers, then 404.
    pub deleting: bool,
}

/// What the fake holds.
#[derive(Debug, Default)]
pub struct State {
    /// Keypairs: name -> public key.
    pub keypairs: BTreeMap<String, String>,
    /// Security groups: id -> (name, rules).
    pub groups: BTreeMap<String, (String, Vec<Value>)>,
    /// Floating IPs: id -> body.
    pub fips: BTreeMap<String, Value>,
    /// Servers: id -> server.
    pub servers: BTreeMap<String, FakeServer>,
    /// Operations told to fail, with the status to answer.
    pub failures: BTreeMap<String, u16>,
    /// New servers go to ERROR instead of ACTIVE.
    pub boot_error: bool,
    /// The image id `createImage` answers with.
    pub snapshot_image_id: String,
    /// Operations performed, in order, with the resource (`op id`).
    pub ops: Vec<String>,
    /// Address of the floating IPs allocated from now on (`172.24.4.N`
    /// when `None`; `127.0.0.1` for tests that SSH to a local sshd).
    pub fip_address: Option<String>,
    next: u64,
}

/// The fake cloud.
#[derive(Clone)]
pub struct Fake {
    /// The wiremock server.
    pub server: Arc<MockServer>,
    /// Its state.
    pub state: Arc<Mutex<State>>,
}

struct Responder {
    state: Arc<Mutex<State>>,
    uri: String,
}

impl Fake {
    /// Start the fake.
    pub async fn start() -> Fake {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any())
            .respond_with(Responder {
                state: state.clone(),
                uri: server.uri(),
            })
            .mount(&server)
            .await;
        Fake {
            server: Arc::new(server),
            state,
        }
    }

    /// Base URL.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Nova's endpoint URL.
    pub fn compute_url(&self) -> String {
        format!("{}/compute/v2.1", self.uri())
    }

    /// Neutron's endpoint URL.
    pub fn network_url(&self) -> String {
        format!("{}/network", self.uri())
    }

    /// The local cloud's configuration ([`crate::config`]) with its
    /// `compute` and `network` endpoints overridden to this fake and short
    /// retry delays: Keystone and Glance stay the real local ones.
    pub fn cloud_config(&self) -> CloudConfig {
        let mut cfg = crate::config();
        for (service, url) in [
            ("compute", self.compute_url()),
            ("network", self.network_url()),
        ] {
            cfg.endpoint_overrides
                .insert(service.into(), url::Url::parse(&url).unwrap());
        }
        cfg.http.retry_base_delay = Duration::from_millis(10);
        cfg
    }

    /// An authenticated session on [`Fake::cloud_config`]: the real local
    /// Keystone and Glance, this fake's Nova and Neutron.
    ///
    /// # Panics
    /// As [`crate::session_for`].
    pub async fn session(&self) -> Session {
        crate::session_for(self.cloud_config()).await
    }

    /// Copy every keypair of the fake into `authorized_keys` (of a local
    /// sshd, see [`crate::sshd`]) as long as the returned task runs, as
    /// cloud-init puts a server's key in place. Keys of deleted keypairs
    /// stay (harmless, like a reused VM). Abort the task when done.
    pub fn authorize_keypairs(&self, authorized_keys: PathBuf) -> tokio::task::JoinHandle<()> {
        let fake = self.clone();
        tokio::spawn(async move {
            let mut written = String::new();
            loop {
                let mut text: String = fake
                    .state
                    .lock()
                    .unwrap()
                    .keypairs
                    .values()
                    .map(|k| format!("{}\n", k.trim_end()))
                    .collect();
                for line in written.lines() {
                    if !text.contains(line) {
                        text.push_str(line);
                        text.push('\n');
                    }
                }
                if text != written {
                    std::fs::write(&authorized_keys, &text).unwrap();
                    written = text;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    /// Make every call of `op` answer `status`.
    pub fn fail(&self, op: &str, status: u16) {
        self.state
            .lock()
            .unwrap()
            .failures
            .insert(op.to_string(), status);
    }

    /// Operations performed so far.
    pub fn ops(&self) -> Vec<String> {
        self.state.lock().unwrap().ops.clone()
    }

    /// Whether nothing is left: no keypair, group, floating IP or server.
    pub fn leftovers(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut out: Vec<String> = Vec::new();
        out.extend(s.keypairs.keys().map(|k| format!("keypair {k}")));
        out.extend(
            s.groups
                .iter()
                .map(|(id, (name, _))| format!("security group {name} ({id})")),
        );
        out.extend(s.fips.keys().map(|k| format!("floating IP {k}")));
        out.extend(
            s.servers
                .iter()
                .map(|(id, v)| format!("server {} ({id})", v.name)),
        );
        out
    }

    /// Add a server directly (as if a run died before reading the answer).
    pub fn add_server(&self, name: &str, metadata: Value) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("server");
        s.servers.insert(
            id.clone(),
            FakeServer {
                name: name.into(),
                status: "ACTIVE".into(),
                task_state: None,
                key_name: None,
                groups: vec![],
                metadata,
                deleting: false,
            },
        );
        id
    }

    /// Add a keypair directly.
    pub fn add_keypair(&self, name: &str, public_key: &str) {
        self.state
            .lock()
            .unwrap()
            .keypairs
            .insert(name.into(), public_key.into());
    }

    /// Add a security group directly; returns its id.
    pub fn add_group(&self, name: &str, rules: Vec<Value>) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("sg");
        s.groups.insert(id.clone(), (name.into(), rules));
        id
    }

    /// Add a floating IP with `description`; returns its id.
    pub fn add_fip(&self, description: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("fip");
        let body = s.fip_body(&id, NET_EXT, description);
        s.fips.insert(id.clone(), body);
        id
    }

    /// Every request received, as `METHOD path`.
    pub async fn requests(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| format!("{} {}", r.method, r.url.path()))
            .collect()
    }
}

impl State {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!(
            "{prefix}-{:04}-8f6c-4a5e-9d1b-3c2e7f0a{:04}",
            self.next, self.next
        )
    }

    fn fip_body(&mut self, id: &str, network: &str, description: &str) -> Value {
        let n = self.next % 250 + 2;
        let address = self
            .fip_address
            .clone()
            .unwrap_or_else(|| format!("172.24.4.{n}"));
        json!({
            "id": id, "floating_ip_address": address, "floating_network_id": network,
            "router_id": null, "port_id": null, "fixed_ip_address": null, "status": "DOWN",
            "project_id": PROJECT, "tenant_id": PROJECT, "description": description,
            "dns_domain": "", "dns_name": "", "port_details": null, "tags": [],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "revision_number": 0, "qos_policy_id": null
        })
    }
}

fn err(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    let body = if kind.is_empty() {
        json!({"NeutronError": {"type": "Fault", "message": message, "detail": ""}})
    } else {
        json!({ kind: {"code": status, "message": message} })
    };
    ResponseTemplate::new(status).set_body_json(body)
}

fn not_found(what: &str) -> ResponseTemplate {
    err(404, "itemNotFound", &format!("{what} could not be found."))
}

fn network(id: &str, name: &str, external: bool) -> Value {
    json!({
        "id": id, "name": name, "status": "ACTIVE", "admin_state_up": true, "shared": external,
        "router:external": external, "subnets": [format!("{id}-subnet")], "project_id": "admin",
        "mtu": 1450, "availability_zones": ["nova"], "ipv4_address_scope": null, "tags": []
    })
}

fn networks() -> Vec<Value> {
    vec![
        network(NET_INT, "node-int-net-01", false),
        network(NET_EXT, "public-ext-net-01", true),
    ]
}

fn flavor() -> Value {
    json!({"id": "2", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "rxtx_factor": 1.0,
        "links": []})
}

fn flavor_tiny() -> Value {
    json!({"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1, "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "rxtx_factor": 1.0,
        "links": []})
}

fn server_body(id: &str, s: &FakeServer) -> Value {
    let addresses = if s.status == "BUILD" {
        json!({})
    } else {
        json!({"node-int-net-01": [{"addr": "192.168.0.10", "version": 4,
            "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:4c:2c:30"}]})
    };
    let fault = (s.status == "ERROR").then(|| {
        json!({"code": 500, "created": "2026-01-01T00:00:02Z",
            "message": "No valid host was found. There are not enough hosts available."})
    });
    let groups: Vec<Value> = s.groups.iter().map(|g| json!({"name": g})).collect();
    json!({
        "id": id, "name": s.name, "status": s.status,
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:vm_state": s.status.to_lowercase(),
        "OS-EXT-STS:power_state": if s.status == "ACTIVE" { 1 } else { 4 },
        "addresses": addresses, "fault": fault,
        "flavor": {"vcpus": 1, "ram": 2048, "disk": 20, "ephemeral": 0, "swap": 0,
            "original_name": "m1.small", "extra_specs": {}},
        "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b", "links": []},
        "key_name": s.key_name, "metadata": s.metadata, "security_groups": groups,
        "tenant_id": PROJECT, "user_id": "u1", "hostId": "", "locked": false, "tags": [],
        "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:01Z", "progress": 0,
        "OS-DCF:diskConfig": "MANUAL", "accessIPv4": "", "accessIPv6": "", "links": []
    })
}

fn query(req: &Request) -> BTreeMap<String, String> {
    req.url.query_pairs().into_owned().collect()
}

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let method = req.method.to_string();
        let path = req.url.path().trim_end_matches('/').to_string();
        let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut s = self.state.lock().unwrap();
        let op = op_name(&method, &seg, &body);
        let target = seg.get(3).copied().unwrap_or_default().to_string();
        s.ops.push(format!("{op} {target}").trim_end().to_string());
        if let Some(status) = s.failures.get(&op).copied() {
            return err(status, "computeFault", &format!("injected failure of {op}"));
        }
        self.handle(&mut s, &op, &seg, &body, req)
    }
}

fn op_name(method: &str, seg: &[&str], body: &Value) -> String {
    let res = |r: &str| -> &'static str {
        match r {
            "os-keypairs" => "keypair",
            "servers" => "server",
            "flavors" => "flavor",
            "networks" => "network",
            "security-groups" => "sg",
            "security-group-rules" => "sgrule",
            "floatingips" => "fip",
            "ports" => "port",
            _ => "other",
        }
    };
    match seg {
        ["v3", "auth", "tokens"] => "keystone.token".into(),
        ["compute", "v2.1"] => "compute.version".into(),
        ["compute", "v2.1", "servers", _, "action"] => {
            let action = body
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default();
            match action.as_str() {
                "os-stop" => "server.stop".into(),
                "createImage" => "server.createImage".into(),
                "os-getConsoleOutput" => "server.console".into(),
                other => format!("server.{other}"),
            }
        }
        ["compute", "v2.1", r, rest @ ..] | ["network", "v2.0", r, rest @ ..] => {
            let verb = match (method, rest.len()) {
                ("POST", 0) => "create",
                ("GET", 0) => "list",
                ("GET", _) if rest == ["detail"] => "list",
                ("GET", _) => "get",
                ("PUT", _) => "update",
                ("DELETE", _) => "delete",
                _ => "other",
            };
            format!("{}.{verb}", res(r))
        }
        _ => format!("unknown {method} /{}", seg.join("/")),
    }
}

impl Responder {
    fn handle(
        &self,
        s: &mut State,
        op: &str,
        seg: &[&str],
        body: &Value,
        req: &Request,
    ) -> ResponseTemplate {
        let q = query(req);
        let id = seg.get(3).copied().unwrap_or_default();
        let ok = |v: Value| ResponseTemplate::new(200).set_body_json(v);
        match op {
            "keystone.token" => self.token(),
            "compute.version" => ok(json!({"version": {
                "id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1",
                "updated": "2013-07-23T11:33:21Z",
                "links": [{"href": format!("{}/compute/v2.1/", self.uri), "rel": "self"}],
                "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]
            }})),
            "flavor.get" if id == "2" => ok(json!({ "flavor": flavor() })),
            "flavor.get" if id == "1" => ok(json!({ "flavor": flavor_tiny() })),
            "flavor.get" => not_found(&format!("Flavor {id}")),
            "flavor.list" => ok(json!({ "flavors": [flavor_tiny(), flavor()] })),
            "keypair.create" => {
                let name = body["keypair"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if s.keypairs.contains_key(&name) {
                    return err(
                        409,
                        "conflictingRequest",
                        &format!("Key pair '{name}' already exists."),
                    );
                }
                let public = body["keypair"]["public_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                s.keypairs.insert(name.clone(), public.clone());
                ok(
                    json!({"keypair": {"name": name, "public_key": public, "type": "ssh",
                    "fingerprint": "1e:2c:9b:56:79:4b:45:77:f9:ca:7a:98:2c:b0:d5:3c", "user_id": "u1"}}),
                )
            }
            "keypair.get" => match s.keypairs.get(id) {
                Some(k) => ok(
                    json!({"keypair": {"name": id, "public_key": k, "type": "ssh",
                    "fingerprint": "1e:2c:9b:56:79:4b:45:77:f9:ca:7a:98:2c:b0:d5:3c", "user_id": "u1",
                    "created_at": "2026-01-01T00:00:00.000000", "deleted": false, "deleted_at": null,
                    "id": 1, "updated_at": null}}),
                ),
                None => not_found(&format!("Keypair {id} not found for user u1. Keypair {id}")),
            },
            "keypair.delete" => match s.keypairs.remove(id) {
                Some(_) => ResponseTemplate::new(202),
                None => not_found(&format!("Keypair {id}")),
            },
            "server.create" => {
                let sv = &body["server"];
                let new_id = s.new_id("server");
                let server = FakeServer {
                    name: sv["name"].as_str().unwrap_or_default().into(),
                    status: "BUILD".into(),
                    task_state: Some("spawning".into()),
                    key_name: sv["key_name"].as_str().map(str::to_owned),
                    groups: sv["security_groups"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|g| g["name"].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    metadata: sv.get("metadata").cloned().unwrap_or(json!({})),
                    deleting: false,
                };
                s.servers.insert(new_id.clone(), server);
                ResponseTemplate::new(202).set_body_json(json!({"server": {
                    "id": new_id, "adminPass": "wfksH3GTTseP", "OS-DCF:diskConfig": "MANUAL",
                    "links": [], "security_groups": sv["security_groups"]
                }}))
            }
            "server.get" => {
                let boot_error = s.boot_error;
                let Some(server) = s.servers.get_mut(id) else {
                    return not_found(&format!("Instance {id}"));
                };
                if server.deleting {
                    s.servers.remove(id);
                    return not_found(&format!("Instance {id}"));
                }
                let answer = server_body(id, server);
                // The next look sees the state move on.
                if server.status == "BUILD" {
                    server.status = if boot_error { "ERROR" } else { "ACTIVE" }.into();
                }
                server.task_state = None;
                ok(json!({ "server": answer }))
            }
            "server.list" => {
                let pattern = q.get("name").cloned().unwrap_or_default();
                let exact = pattern
                    .trim_start_matches('^')
                    .trim_end_matches('$')
                    .replace('\\', "");
                let list: Vec<Value> = s
                    .servers
                    .iter()
                    .filter(|(_, v)| !v.deleting && (pattern.is_empty() || v.name.contains(&exact)))
                    .map(|(k, v)| server_body(k, v))
                    .collect();
                ok(json!({ "servers": list }))
            }
            "server.delete" => match s.servers.get_mut(id) {
                Some(server) => {
                    server.deleting = true;
                    server.task_state = Some("deleting".into());
                    ResponseTemplate::new(204)
                }
                None => not_found(&format!("Instance {id}")),
            },
            "server.stop" => match s.servers.get_mut(id) {
                Some(server) if server.status == "SHUTOFF" => err(
                    409,
                    "conflictingRequest",
                    &format!("Cannot 'stop' instance {id} while it is in vm_state stopped"),
                ),
                Some(server) => {
                    server.status = "SHUTOFF".into();
                    server.task_state = Some("powering-off".into());
                    ResponseTemplate::new(202)
                }
                None => not_found(&format!("Instance {id}")),
            },
            "server.createImage" => match s.servers.get(id) {
                Some(_) => ResponseTemplate::new(202)
                    .set_body_json(json!({ "image_id": s.snapshot_image_id })),
                None => not_found(&format!("Instance {id}")),
            },
            "server.console" => {
                ok(json!({"output": "[    0.000000] Linux version 6.1\nlogin: \n"}))
            }
            "network.get" => match networks().into_iter().find(|n| n["id"] == id) {
                Some(n) => ok(json!({ "network": n })),
                None => err(404, "", &format!("Network {id} could not be found.")),
            },
            "network.list" => {
                let list: Vec<Value> = networks()
                    .into_iter()
                    .filter(|n| q.get("name").is_none_or(|want| n["name"] == want.as_str()))
                    .collect();
                ok(json!({ "networks": list }))
            }
            "sg.create" => {
                let name = body["security_group"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let new_id = s.new_id("sg");
                let egress = json!({"id": format!("{new_id}-egress"), "security_group_id": new_id,
                    "direction": "egress", "ethertype": "IPv4", "protocol": null, "port_range_min": null,
                    "port_range_max": null, "remote_ip_prefix": null, "remote_group_id": null,
                    "description": null, "project_id": PROJECT});
                s.groups
                    .insert(new_id.clone(), (name.clone(), vec![egress]));
                ResponseTemplate::new(201).set_body_json(
                    json!({ "security_group": group_body(&new_id, &name, &s.groups[&new_id].1) }),
                )
            }
            "sg.list" => {
                let list: Vec<Value> = s
                    .groups
                    .iter()
                    .filter(|(_, (n, _))| q.get("name").is_none_or(|want| n == want))
                    .map(|(k, (n, r))| group_body(k, n, r))
                    .collect();
                ok(json!({ "security_groups": list }))
            }
            "sg.get" => match s.groups.get(id) {
                Some((n, r)) => ok(json!({ "security_group": group_body(id, n, r) })),
                None => err(404, "", &format!("Security group {id} does not exist")),
            },
            "sg.delete" => {
                let Some((name, _)) = s.groups.get(id).cloned() else {
                    return err(404, "", &format!("Security group {id} does not exist"));
                };
                if s.servers.values().any(|v| v.groups.contains(&name)) {
                    return err(409, "", &format!("Security Group {id} in use."));
                }
                s.groups.remove(id);
                ResponseTemplate::new(204)
            }
            "sgrule.create" => {
                let mut rule = body["security_group_rule"].clone();
                let group = rule["security_group_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let new_id = s.new_id("rule");
                rule["id"] = json!(new_id);
                for k in [
                    "protocol",
                    "port_range_min",
                    "port_range_max",
                    "remote_ip_prefix",
                    "remote_group_id",
                ] {
                    if rule.get(k).is_none() {
                        rule[k] = Value::Null;
                    }
                }
                match s.groups.get_mut(&group) {
                    Some((_, rules)) => {
                        rules.push(rule.clone());
                        ResponseTemplate::new(201)
                            .set_body_json(json!({ "security_group_rule": rule }))
                    }
                    None => err(404, "", &format!("Security group {group} does not exist")),
                }
            }
            "fip.create" => {
                let network = body["floatingip"]["floating_network_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let description = body["floatingip"]["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let new_id = s.new_id("fip");
                let fip = s.fip_body(&new_id, &network, &description);
                s.fips.insert(new_id, fip.clone());
                ResponseTemplate::new(201).set_body_json(json!({ "floatingip": fip }))
            }
            "fip.list" => {
                let list: Vec<Value> = s
                    .fips
                    .values()
                    .filter(|f| {
                        q.iter()
                            .all(|(k, v)| f[k.as_str()].as_str() == Some(v.as_str()))
                    })
                    .cloned()
                    .collect();
                ok(json!({ "floatingips": list }))
            }
            "fip.get" => match s.fips.get(id) {
                Some(f) => ok(json!({ "floatingip": f })),
                None => err(404, "", &format!("Floating IP {id} could not be found")),
            },
            "fip.update" => match s.fips.get_mut(id) {
                Some(f) => {
                    let port = body["floatingip"]["port_id"].clone();
                    f["fixed_ip_address"] = if port.is_null() {
                        Value::Null
                    } else {
                        json!("192.168.0.10")
                    };
                    f["port_id"] = port;
                    ok(json!({ "floatingip": f }))
                }
                None => err(404, "", &format!("Floating IP {id} could not be found")),
            },
            "fip.delete" => match s.fips.remove(id) {
                Some(_) => ResponseTemplate::new(204),
                None => err(404, "", &format!("Floating IP {id} could not be found")),
            },
            "port.list" => {
                let device = q.get("device_id").cloned().unwrap_or_default();
                let list: Vec<Value> = s
                    .servers
                    .keys()
                    .filter(|k| **k == device)
                    .map(|k| json!({
                        "id": format!("port-{k}"), "name": "", "network_id": NET_INT, "device_id": k,
                        "device_owner": "compute:nova", "mac_address": "fa:16:3e:4c:2c:30", "status": "ACTIVE",
                        "admin_state_up": true, "project_id": PROJECT, "binding:vnic_type": "normal",
                        "fixed_ips": [{"subnet_id": format!("{NET_INT}-subnet"), "ip_address": "192.168.0.10"}]
                    }))
                    .collect();
                ok(json!({ "ports": list }))
            }
            other => err(
                501,
                "",
                &format!("the fake cloud does not implement {other}"),
            ),
        }
    }

    /// A Keystone token whose catalog points compute and network here.
    fn token(&self) -> ResponseTemplate {
        let ep = |url: String| json!([{"id": "e", "interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": url}]);
        ResponseTemplate::new(201)
            .insert_header("X-Subject-Token", "gAAAAABmocktoken")
            .set_body_json(json!({"token": {
                "expires_at": "2999-01-01T00:00:00.000000Z",
                "issued_at": "2026-01-01T00:00:00.000000Z",
                "methods": ["password"],
                "project": {"id": PROJECT, "name": "demo", "domain": {"id": "default", "name": "Default"}},
                "user": {"id": "u1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
                "roles": [{"id": "r", "name": "member"}],
                "catalog": [
                    {"type": "compute", "name": "nova", "id": "c", "endpoints": ep(format!("{}/compute/v2.1", self.uri))},
                    {"type": "network", "name": "neutron", "id": "n", "endpoints": ep(format!("{}/network", self.uri))}
                ]
            }}))
    }
}

fn group_body(id: &str, name: &str, rules: &[Value]) -> Value {
    json!({
        "id": id, "name": name, "description": "", "project_id": PROJECT, "tenant_id": PROJECT,
        "stateful": true, "shared": false, "tags": [], "revision_number": 1,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "security_group_rules": rules
    })
}
