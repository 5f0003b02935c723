//! Neutron (network) client: networks, security groups and rules, floating
//! IPs and the ports of a server.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::error::{Error, Result};
use crate::paging::{by_id_or_name, get_all, join};
use crate::session::{RawResponse, Req, Session};

/// A network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Network id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Status (`ACTIVE`, ...).
    #[serde(default)]
    pub status: Option<String>,
    /// Admin state.
    #[serde(default)]
    pub admin_state_up: Option<bool>,
    /// Shared between projects.
    #[serde(default)]
    pub shared: Option<bool>,
    /// External (floating IPs come from such networks).
    #[serde(rename = "router:external", default)]
    pub external: Option<bool>,
    /// Subnet ids.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Owner project.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A security group rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    /// Rule id.
    pub id: String,
    /// Group id.
    pub security_group_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    #[serde(default)]
    pub ethertype: Option<String>,
    /// Protocol (`tcp`, `udp`, `icmp`, ...; `None` = any).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Lowest port.
    #[serde(default)]
    pub port_range_min: Option<u16>,
    /// Highest port.
    #[serde(default)]
    pub port_range_max: Option<u16>,
    /// Source/destination CIDR.
    #[serde(default)]
    pub remote_ip_prefix: Option<String>,
    /// Remote group.
    #[serde(default)]
    pub remote_group_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// Group id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Rules.
    #[serde(default)]
    pub security_group_rules: Vec<SecurityGroupRule>,
    /// Owner project.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A new security group rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityGroupRuleCreate {
    /// Group id.
    pub security_group_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// Protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Lowest port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range_min: Option<u16>,
    /// Highest port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range_max: Option<u16>,
    /// CIDR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip_prefix: Option<String>,
    /// Remote group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_group_id: Option<String>,
}

impl SecurityGroupRuleCreate {
    /// Allow inbound TCP to `port` from `cidr` (IPv4).
    pub fn ingress_tcp(
        security_group_id: impl Into<String>,
        port: u16,
        cidr: impl Into<String>,
    ) -> Self {
        SecurityGroupRuleCreate {
            security_group_id: security_group_id.into(),
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: Some("tcp".into()),
            port_range_min: Some(port),
            port_range_max: Some(port),
            remote_ip_prefix: Some(cidr.into()),
            remote_group_id: None,
        }
    }

    /// Allow inbound ICMP from `cidr` (IPv4).
    pub fn ingress_icmp(security_group_id: impl Into<String>, cidr: impl Into<String>) -> Self {
        SecurityGroupRuleCreate {
            security_group_id: security_group_id.into(),
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: Some("icmp".into()),
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: Some(cidr.into()),
            remote_group_id: None,
        }
    }
}

/// A floating IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatingIp {
    /// Id.
    pub id: String,
    /// The public address.
    pub floating_ip_address: String,
    /// External network it comes from.
    pub floating_network_id: String,
    /// Port it is associated with.
    #[serde(default)]
    pub port_id: Option<String>,
    /// Fixed IP it maps to.
    #[serde(default)]
    pub fixed_ip_address: Option<String>,
    /// Status (`ACTIVE`, `DOWN`).
    #[serde(default)]
    pub status: Option<String>,
    /// Router.
    #[serde(default)]
    pub router_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A fixed IP of a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixedIp {
    /// Subnet.
    pub subnet_id: String,
    /// Address.
    pub ip_address: String,
}

/// A port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    /// Port id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Network.
    pub network_id: String,
    /// Device (server id for compute ports).
    #[serde(default)]
    pub device_id: String,
    /// Owner (`compute:nova`, ...).
    #[serde(default)]
    pub device_owner: String,
    /// MAC address.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// Fixed IPs.
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    /// Status.
    #[serde(default)]
    pub status: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Client for one region's Neutron v2.0 API. Get one with [`Session::network`].
#[derive(Debug, Clone)]
pub struct NetworkClient {
    session: Session,
    region: Option<String>,
    /// `<endpoint>/v2.0/`
    base: Url,
}

impl Session {
    /// A Neutron client for `region` (default region when `None`).
    pub async fn network(&self, region: Option<&str>) -> Result<NetworkClient> {
        let region = region.or(self.config().default_region()).map(str::to_owned);
        let endpoint = self.endpoint("network", region.as_deref()).await?;
        Ok(NetworkClient::new(self.clone(), region, endpoint))
    }
}

/// A Neutron resource: its collection path, the member one item is wrapped
/// in (`{"floatingip": {...}}`), the member a listing is under and what
/// errors call it.
struct Resource {
    /// What a look-up error calls it (`security group`).
    kind: &'static str,
    /// Path segment of the collection (`security-groups`).
    path: &'static str,
    /// Key of one item in request and response bodies (`security_group`).
    one: &'static str,
    /// Key of a listing (`security_groups`).
    many: &'static str,
}

const NETWORKS: Resource = Resource {
    kind: "network",
    path: "networks",
    one: "network",
    many: "networks",
};
const SECURITY_GROUPS: Resource = Resource {
    kind: "security group",
    path: "security-groups",
    one: "security_group",
    many: "security_groups",
};
const SECURITY_GROUP_RULES: Resource = Resource {
    kind: "security group rule",
    path: "security-group-rules",
    one: "security_group_rule",
    many: "security_group_rules",
};
const FLOATING_IPS: Resource = Resource {
    kind: "floating IP",
    path: "floatingips",
    one: "floatingip",
    many: "floatingips",
};
const PORTS: Resource = Resource {
    kind: "port",
    path: "ports",
    one: "port",
    many: "ports",
};

impl NetworkClient {
    pub(crate) fn new(session: Session, region: Option<String>, endpoint: Url) -> NetworkClient {
        let mut base = endpoint;
        let path = base.path().trim_end_matches('/').to_owned();
        let path = if path.ends_with("/v2.0") {
            path
        } else {
            format!("{path}/v2.0")
        };
        base.set_path(&format!("{path}/"));
        NetworkClient {
            session,
            region,
            base,
        }
    }

    /// `method` on the collection of `resource` (no `id`) or on one item,
    /// with `body` wrapped in `{"<one>": body}` when given; the answer's
    /// `<one>` member decoded. Errors carry the status, method, URL and
    /// request id (the session's `execute`).
    async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        resource: &Resource,
        id: Option<&str>,
        body: Option<&B>,
    ) -> Result<T> {
        self.send(method, resource, id, body)
            .await?
            .json_in(resource.one)
    }

    /// The request of [`NetworkClient::call`], its answer left unread.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        resource: &Resource,
        id: Option<&str>,
        body: Option<&B>,
    ) -> Result<RawResponse> {
        let url = match id {
            Some(id) => join(&self.base, &[resource.path, id])?,
            None => join(&self.base, &[resource.path])?,
        };
        let mut req = Req::new("network", self.region.clone(), method, url);
        if let Some(body) = body {
            req = req.json(&BTreeMap::from([(resource.one, body)]))?;
        }
        self.session.execute(req).await
    }

    /// One item of `resource` by id.
    async fn get<T: DeserializeOwned>(&self, resource: &Resource, id: &str) -> Result<T> {
        self.call(Method::GET, resource, Some(id), None::<&()>)
            .await
    }

    /// Create an item of `resource` from `body` (the fields inside
    /// `{"<one>": ...}`).
    async fn create<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        resource: &Resource,
        body: &B,
    ) -> Result<T> {
        self.call(Method::POST, resource, None, Some(body)).await
    }

    /// Delete one item of `resource`.
    async fn delete(&self, resource: &Resource, id: &str) -> Result<()> {
        self.send(Method::DELETE, resource, Some(id), None::<&()>)
            .await
            .map(|_| ())
    }

    /// Every item of `resource` matching every `(field, value)` query
    /// filter, following `<many>_links` pages.
    async fn list<T: DeserializeOwned>(
        &self,
        resource: &Resource,
        filters: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        let mut url = join(&self.base, &[resource.path])?;
        if !filters.is_empty() {
            url.query_pairs_mut().extend_pairs(filters);
        }
        get_all(
            &self.session,
            "network",
            self.region.clone(),
            &HeaderMap::new(),
            url,
            resource.many,
        )
        .await
    }

    /// Items of `resource`, those named exactly `name` when one is given.
    async fn list_named<T: DeserializeOwned>(
        &self,
        resource: &Resource,
        name: Option<&str>,
    ) -> Result<Vec<T>> {
        self.list(resource, name.map(|n| ("name", n)).as_slice())
            .await
    }

    /// One item of `resource` by id, or else the one named exactly
    /// `name_or_id` (none or several: an error naming the resource's kind).
    async fn find<T: DeserializeOwned>(&self, resource: &Resource, name_or_id: &str) -> Result<T> {
        by_id_or_name(
            resource.kind,
            name_or_id,
            self.get(resource, name_or_id).await,
            Error::is_not_found,
            || self.list_named(resource, Some(name_or_id)),
        )
        .await
    }

    /// Networks, optionally by exact name.
    pub async fn list_networks(&self, name: Option<&str>) -> Result<Vec<Network>> {
        self.list_named(&NETWORKS, name).await
    }

    /// A network by id.
    pub async fn get_network(&self, id: &str) -> Result<Network> {
        self.get(&NETWORKS, id).await
    }

    /// A network by id, or else by exact name.
    pub async fn find_network(&self, name_or_id: &str) -> Result<Network> {
        self.find(&NETWORKS, name_or_id).await
    }

    /// Create a security group.
    pub async fn create_security_group(
        &self,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroup> {
        let body = serde_json::json!({"name": name, "description": description});
        self.create(&SECURITY_GROUPS, &body).await
    }

    /// Security groups, optionally by exact name.
    pub async fn list_security_groups(&self, name: Option<&str>) -> Result<Vec<SecurityGroup>> {
        self.list_named(&SECURITY_GROUPS, name).await
    }

    /// A security group by id.
    pub async fn get_security_group(&self, id: &str) -> Result<SecurityGroup> {
        self.get(&SECURITY_GROUPS, id).await
    }

    /// A security group by id, or else by exact name.
    pub async fn find_security_group(&self, name_or_id: &str) -> Result<SecurityGroup> {
        self.find(&SECURITY_GROUPS, name_or_id).await
    }

    /// Delete a security group.
    pub async fn delete_security_group(&self, id: &str) -> Result<()> {
        self.delete(&SECURITY_GROUPS, id).await
    }

    /// Add a rule to a security group.
    pub async fn create_security_group_rule(
        &self,
        rule: &SecurityGroupRuleCreate,
    ) -> Result<SecurityGroupRule> {
        self.create(&SECURITY_GROUP_RULES, rule).await
    }

    /// Delete a rule.
    pub async fn delete_security_group_rule(&self, id: &str) -> Result<()> {
        self.delete(&SECURITY_GROUP_RULES, id).await
    }

    /// Allocate a floating IP from an external network, optionally
    /// associating it with a port right away.
    pub async fn create_floating_ip(
        &self,
        floating_network_id: &str,
        port_id: Option<&str>,
    ) -> Result<FloatingIp> {
        self.allocate_floating_ip(floating_network_id, port_id, None)
            .await
    }

    /// Allocate a floating IP from an external network with a description
    /// (a tag callers can find it by later, see
    /// [`NetworkClient::list_floating_ips_filtered`]), optionally associating
    /// it with a port right away.
    pub async fn create_floating_ip_described(
        &self,
        floating_network_id: &str,
        port_id: Option<&str>,
        description: &str,
    ) -> Result<FloatingIp> {
        self.allocate_floating_ip(floating_network_id, port_id, Some(description))
            .await
    }

    /// POST a floating IP with the fields that are given.
    async fn allocate_floating_ip(
        &self,
        floating_network_id: &str,
        port_id: Option<&str>,
        description: Option<&str>,
    ) -> Result<FloatingIp> {
        let mut fip = serde_json::json!({ "floating_network_id": floating_network_id });
        if let Some(p) = port_id {
            fip["port_id"] = Value::from(p);
        }
        if let Some(d) = description {
            fip["description"] = Value::from(d);
        }
        self.create(&FLOATING_IPS, &fip).await
    }

    /// Floating IPs matching every `(field, value)` filter (Neutron's query
    /// filters: `floating_ip_address`, `description`, `project_id`,
    /// `floating_network_id`, `port_id`, ...).
    pub async fn list_floating_ips_filtered(
        &self,
        filters: &[(&str, &str)],
    ) -> Result<Vec<FloatingIp>> {
        self.list(&FLOATING_IPS, filters).await
    }

    /// A floating IP by id.
    pub async fn get_floating_ip(&self, id: &str) -> Result<FloatingIp> {
        self.get(&FLOATING_IPS, id).await
    }

    /// Floating IPs, optionally those bound to `port_id`.
    pub async fn list_floating_ips(&self, port_id: Option<&str>) -> Result<Vec<FloatingIp>> {
        self.list(&FLOATING_IPS, port_id.map(|p| ("port_id", p)).as_slice())
            .await
    }

    /// Associate a floating IP with a port.
    pub async fn associate_floating_ip(&self, id: &str, port_id: &str) -> Result<FloatingIp> {
        let body = serde_json::json!({ "port_id": port_id });
        self.call(Method::PUT, &FLOATING_IPS, Some(id), Some(&body))
            .await
    }

    /// Detach a floating IP from its port.
    pub async fn disassociate_floating_ip(&self, id: &str) -> Result<FloatingIp> {
        let body = serde_json::json!({ "port_id": null });
        self.call(Method::PUT, &FLOATING_IPS, Some(id), Some(&body))
            .await
    }

    /// Release a floating IP.
    pub async fn delete_floating_ip(&self, id: &str) -> Result<()> {
        self.delete(&FLOATING_IPS, id).await
    }

    /// Ports whose device is `server_id`.
    pub async fn server_ports(&self, server_id: &str) -> Result<Vec<Port>> {
        self.list(&PORTS, &[("device_id", server_id)]).await
    }
}
