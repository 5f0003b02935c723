//! Neutron (network) client: networks, security groups and rules, floating
//! IPs and the ports of a server.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::error::{Error, Result};
use crate::paging::{by_id_or_name, get_all, join};
use crate::session::{Req, Session};

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

    fn req(&self, method: Method, segments: &[&str]) -> Result<Req> {
        Ok(Req::new(
            "network",
            self.region.clone(),
            method,
            join(&self.base, segments)?,
        ))
    }

    /// Every `resource` (the list under `key`), those whose `field` is
    /// `value` when one is given.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        resource: &str,
        key: &str,
        field: &str,
        value: Option<&str>,
    ) -> Result<Vec<T>> {
        let mut url = join(&self.base, &[resource])?;
        if let Some(value) = value {
            url.query_pairs_mut().append_pair(field, value);
        }
        get_all(
            &self.session,
            "network",
            self.region.clone(),
            &HeaderMap::new(),
            url,
            key,
        )
        .await
    }

    /// Networks, optionally by exact name.
    pub async fn list_networks(&self, name: Option<&str>) -> Result<Vec<Network>> {
        self.list("networks", "networks", "name", name).await
    }

    /// A network by id.
    pub async fn get_network(&self, id: &str) -> Result<Network> {
        self.session
            .execute(self.req(Method::GET, &["networks", id])?)
            .await?
            .json_in("network")
    }

    /// A network by id, or else by exact name.
    pub async fn find_network(&self, name_or_id: &str) -> Result<Network> {
        by_id_or_name(
            "network",
            name_or_id,
            self.get_network(name_or_id).await,
            Error::is_not_found,
            || self.list_networks(Some(name_or_id)),
        )
        .await
    }

    /// Create a security group.
    pub async fn create_security_group(
        &self,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroup> {
        let req = self.req(Method::POST, &["security-groups"])?.json(
            &serde_json::json!({"security_group": {"name": name, "description": description}}),
        )?;
        self.session.execute(req).await?.json_in("security_group")
    }

    /// Security groups, optionally by exact name.
    pub async fn list_security_groups(&self, name: Option<&str>) -> Result<Vec<SecurityGroup>> {
        self.list("security-groups", "security_groups", "name", name)
            .await
    }

    /// A security group by id.
    pub async fn get_security_group(&self, id: &str) -> Result<SecurityGroup> {
        self.session
            .execute(self.req(Method::GET, &["security-groups", id])?)
            .await?
            .json_in("security_group")
    }

    /// A security group by id, or else by exact name.
    pub async fn find_security_group(&self, name_or_id: &str) -> Result<SecurityGroup> {
        by_id_or_name(
            "security group",
            name_or_id,
            self.get_security_group(name_or_id).await,
            Error::is_not_found,
            || self.list_security_groups(Some(name_or_id)),
        )
        .await
    }

    /// Delete a security group.
    pub async fn delete_security_group(&self, id: &str) -> Result<()> {
        self.session
            .execute(self.req(Method::DELETE, &["security-groups", id])?)
            .await
            .map(|_| ())
    }

    /// Add a rule to a security group.
    pub async fn create_security_group_rule(
        &self,
        rule: &SecurityGroupRuleCreate,
    ) -> Result<SecurityGroupRule> {
        let req = self
            .req(Method::POST, &["security-group-rules"])?
            .json(&serde_json::json!({ "security_group_rule": rule }))?;
        self.session
            .execute(req)
            .await?
            .json_in("security_group_rule")
    }

    /// Delete a rule.
    pub async fn delete_security_group_rule(&self, id: &str) -> Result<()> {
        self.session
            .execute(self.req(Method::DELETE, &["security-group-rules", id])?)
            .await
            .map(|_| ())
    }

    /// Allocate a floating IP from an external network, optionally
    /// associating it with a port right away.
    pub async fn create_floating_ip(
        &self,
        floating_network_id: &str,
        port_id: Option<&str>,
    ) -> Result<FloatingIp> {
        let mut fip = serde_json::json!({ "floating_network_id": floating_network_id });
        if let Some(p) = port_id {
            fip["port_id"] = Value::String(p.to_owned());
        }
        let req = self
            .req(Method::POST, &["floatingips"])?
            .json(&serde_json::json!({ "floatingip": fip }))?;
        self.session.execute(req).await?.json_in("floatingip")
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
        let mut fip = serde_json::json!({
            "floating_network_id": floating_network_id,
            "description": description,
        });
        if let Some(p) = port_id {
            fip["port_id"] = Value::String(p.to_owned());
        }
        let req = self
            .req(Method::POST, &["floatingips"])?
            .json(&serde_json::json!({ "floatingip": fip }))?;
        self.session.execute(req).await?.json_in("floatingip")
    }

    /// Floating IPs matching every `(field, value)` filter (Neutron's query
    /// filters: `floating_ip_address`, `description`, `project_id`,
    /// `floating_network_id`, `port_id`, ...).
    pub async fn list_floating_ips_filtered(
        &self,
        filters: &[(&str, &str)],
    ) -> Result<Vec<FloatingIp>> {
        let mut url = join(&self.base, &["floatingips"])?;
        if !filters.is_empty() {
            let mut q = url.query_pairs_mut();
            for (field, value) in filters {
                q.append_pair(field, value);
            }
        }
        get_all(
            &self.session,
            "network",
            self.region.clone(),
            &HeaderMap::new(),
            url,
            "floatingips",
        )
        .await
    }

    /// A floating IP by id.
    pub async fn get_floating_ip(&self, id: &str) -> Result<FloatingIp> {
        self.session
            .execute(self.req(Method::GET, &["floatingips", id])?)
            .await?
            .json_in("floatingip")
    }

    /// Floating IPs, optionally those bound to `port_id`.
    pub async fn list_floating_ips(&self, port_id: Option<&str>) -> Result<Vec<FloatingIp>> {
        self.list("floatingips", "floatingips", "port_id", port_id)
            .await
    }

    /// Associate a floating IP with a port.
    pub async fn associate_floating_ip(&self, id: &str, port_id: &str) -> Result<FloatingIp> {
        let req = self
            .req(Method::PUT, &["floatingips", id])?
            .json(&serde_json::json!({"floatingip": {"port_id": port_id}}))?;
        self.session.execute(req).await?.json_in("floatingip")
    }

    /// Detach a floating IP from its port.
    pub async fn disassociate_floating_ip(&self, id: &str) -> Result<FloatingIp> {
        let req = self
            .req(Method::PUT, &["floatingips", id])?
            .json(&serde_json::json!({"floatingip": {"port_id": null}}))?;
        self.session.execute(req).await?.json_in("floatingip")
    }

    /// Release a floating IP.
    pub async fn delete_floating_ip(&self, id: &str) -> Result<()> {
        self.session
            .execute(self.req(Method::DELETE, &["floatingips", id])?)
            .await
            .map(|_| ())
    }

    /// Ports whose device is `server_id`.
    pub async fn server_ports(&self, server_id: &str) -> Result<Vec<Port>> {
        self.list("ports", "ports", "device_id", Some(server_id))
            .await
    }
}
