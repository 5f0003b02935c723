//! Nova (compute) resources and request bodies: microversions, server
//! statuses, flavors, servers, key pairs and the `POST /servers` request.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

/// A compute API microversion such as `2.45`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microversion {
    /// Major version (2).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl Microversion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Microversion { major, minor }
    }

    /// Parse `2.45`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once('.')?;
        Some(Microversion {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Highest compute microversion this crate understands.
pub const MAX_MICROVERSION: Microversion = Microversion::new(2, 96);
/// From this microversion on, `createImage` returns `image_id` in the body.
pub const CREATE_IMAGE_BODY_MICROVERSION: Microversion = Microversion::new(2, 45);

open_enum! {
    /// Nova server status.
    ServerStatus {
        /// Running.
        Active => "ACTIVE",
        /// Being built.
        Build => "BUILD",
        /// Deleted.
        Deleted => "DELETED",
        /// Failed.
        Error => "ERROR",
        /// Hard rebooting.
        HardReboot => "HARD_REBOOT",
        /// Migrating.
        Migrating => "MIGRATING",
        /// Setting the password.
        Password => "PASSWORD",
        /// Paused.
        Paused => "PAUSED",
        /// Rebooting.
        Reboot => "REBOOT",
        /// Rebuilding.
        Rebuild => "REBUILD",
        /// In rescue mode.
        Rescue => "RESCUE",
        /// Resizing.
        Resize => "RESIZE",
        /// Reverting a resize.
        RevertResize => "REVERT_RESIZE",
        /// Shelved.
        Shelved => "SHELVED",
        /// Shelved and offloaded.
        ShelvedOffloaded => "SHELVED_OFFLOADED",
        /// Stopped.
        Shutoff => "SHUTOFF",
        /// Soft-deleted.
        SoftDeleted => "SOFT_DELETED",
        /// Suspended.
        Suspended => "SUSPENDED",
        /// Nova's own `UNKNOWN` state.
        UnknownState => "UNKNOWN",
        /// Waiting for resize confirmation.
        VerifyResize => "VERIFY_RESIZE",
    }
}

/// A flavor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flavor {
    /// Flavor id.
    pub id: String,
    /// Name.
    pub name: String,
    /// vCPUs.
    #[serde(default)]
    pub vcpus: u32,
    /// RAM in MiB.
    #[serde(default)]
    pub ram: u64,
    /// Root disk in GiB.
    #[serde(default)]
    pub disk: u64,
    /// Ephemeral disk in GiB.
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    pub ephemeral: Option<u64>,
    /// Public flavor.
    #[serde(rename = "os-flavor-access:is_public", default)]
    pub is_public: Option<bool>,
    /// Other fields (`swap`, `links`, `extra_specs`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One address of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerAddress {
    /// The IP address.
    pub addr: String,
    /// 4 or 6.
    #[serde(default)]
    pub version: Option<u8>,
    /// `fixed` or `floating`.
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub ip_type: Option<String>,
    /// MAC address.
    #[serde(rename = "OS-EXT-IPS-MAC:mac_addr", default)]
    pub mac_addr: Option<String>,
}

/// Why a server is in ERROR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFault {
    /// HTTP-like code.
    #[serde(default)]
    pub code: Option<u16>,
    /// Message.
    #[serde(default)]
    pub message: String,
    /// Details (admin only).
    #[serde(default)]
    pub details: Option<String>,
}

/// A server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// Server id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Status.
    pub status: ServerStatus,
    /// Addresses by network name.
    #[serde(default)]
    pub addresses: BTreeMap<String, Vec<ServerAddress>>,
    /// Key pair name.
    #[serde(default)]
    pub key_name: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Fault, when status is ERROR.
    #[serde(default)]
    pub fault: Option<ServerFault>,
    /// Task state (`spawning`, `image_snapshot`, ...).
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    /// VM state.
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
    /// Power state (1 = running, 4 = shutdown).
    #[serde(rename = "OS-EXT-STS:power_state", default)]
    pub power_state: Option<i64>,
    /// Flavor (a link before 2.47, the embedded flavor after).
    #[serde(default)]
    pub flavor: Value,
    /// Image (a link, or `""` when booted from volume).
    #[serde(default)]
    pub image: Value,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Server {
    /// Every address on every network, fixed ones first.
    pub fn ips(&self) -> Vec<&ServerAddress> {
        let mut all: Vec<&ServerAddress> = self.addresses.values().flatten().collect();
        all.sort_by_key(|a| a.ip_type.as_deref() != Some("fixed"));
        all
    }
}

/// Network attachment for a new server.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Networks {
    /// Do not send `networks` (single-network clouds, old microversions).
    #[default]
    Unspecified,
    /// `"auto"` (2.37+).
    Auto,
    /// `"none"` (2.37+).
    None,
    /// Explicit NICs.
    List(Vec<NetworkSpec>),
}

/// One NIC for a new server.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NetworkSpec {
    /// Network id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Existing port id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Fixed IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<String>,
}

/// Request for `POST /servers`.
///
/// Its `Debug` output shows the size of `user_data`, never its content
/// (user data often carries passwords or tokens).
#[derive(Clone, PartialEq, Default)]
pub struct ServerCreate {
    /// Name.
    pub name: String,
    /// Image id.
    pub image_ref: Option<String>,
    /// Flavor id.
    pub flavor_ref: String,
    /// Key pair name.
    pub key_name: Option<String>,
    /// Security group names.
    pub security_groups: Vec<String>,
    /// Networks.
    pub networks: Networks,
    /// Raw user data (base64-encoded on the wire).
    pub user_data: Option<Vec<u8>>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// Config drive.
    pub config_drive: Option<bool>,
}

impl std::fmt::Debug for ServerCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCreate")
            .field("name", &self.name)
            .field("image_ref", &self.image_ref)
            .field("flavor_ref", &self.flavor_ref)
            .field("key_name", &self.key_name)
            .field("security_groups", &self.security_groups)
            .field("networks", &self.networks)
            .field(
                "user_data",
                &self
                    .user_data
                    .as_ref()
                    .map(|d| format!("<redacted, {} bytes>", d.len())),
            )
            .field("metadata", &self.metadata)
            .field("availability_zone", &self.availability_zone)
            .field("config_drive", &self.config_drive)
            .finish()
    }
}

impl ServerCreate {
    /// A server named `name` from `image_ref` with `flavor_ref`.
    pub fn new(
        name: impl Into<String>,
        image_ref: impl Into<String>,
        flavor_ref: impl Into<String>,
    ) -> Self {
        ServerCreate {
            name: name.into(),
            image_ref: Some(image_ref.into()),
            flavor_ref: flavor_ref.into(),
            ..Default::default()
        }
    }
    /// Set the key pair.
    pub fn key_name(mut self, k: impl Into<String>) -> Self {
        self.key_name = Some(k.into());
        self
    }
    /// Add a security group by name.
    pub fn security_group(mut self, name: impl Into<String>) -> Self {
        self.security_groups.push(name.into());
        self
    }
    /// Attach to a network by id.
    pub fn network(mut self, uuid: impl Into<String>) -> Self {
        let spec = NetworkSpec {
            uuid: Some(uuid.into()),
            ..Default::default()
        };
        match &mut self.networks {
            Networks::List(l) => l.push(spec),
            _ => self.networks = Networks::List(vec![spec]),
        }
        self
    }
    /// Set the network mode.
    pub fn networks(mut self, n: Networks) -> Self {
        self.networks = n;
        self
    }
    /// Set user data (cloud-init).
    pub fn user_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.user_data = Some(data.into());
        self
    }
    /// Add metadata.
    pub fn metadata(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.metadata.insert(k.into(), v.into());
        self
    }

    pub(crate) fn body(&self) -> Value {
        let mut s = serde_json::Map::new();
        s.insert("name".into(), self.name.clone().into());
        s.insert("flavorRef".into(), self.flavor_ref.clone().into());
        if let Some(i) = &self.image_ref {
            s.insert("imageRef".into(), i.clone().into());
        }
        if let Some(k) = &self.key_name {
            s.insert("key_name".into(), k.clone().into());
        }
        if !self.security_groups.is_empty() {
            let groups: Vec<Value> = self
                .security_groups
                .iter()
                .map(|g| serde_json::json!({ "name": g }))
                .collect();
            s.insert("security_groups".into(), groups.into());
        }
        match &self.networks {
            Networks::Unspecified => {}
            Networks::Auto => {
                s.insert("networks".into(), "auto".into());
            }
            Networks::None => {
                s.insert("networks".into(), "none".into());
            }
            Networks::List(l) => {
                s.insert(
                    "networks".into(),
                    serde_json::to_value(l).unwrap_or(Value::Null),
                );
            }
        }
        if let Some(d) = &self.user_data {
            s.insert(
                "user_data".into(),
                base64::engine::general_purpose::STANDARD.encode(d).into(),
            );
        }
        if !self.metadata.is_empty() {
            s.insert(
                "metadata".into(),
                serde_json::to_value(&self.metadata).unwrap_or(Value::Null),
            );
        }
        if let Some(az) = &self.availability_zone {
            s.insert("availability_zone".into(), az.clone().into());
        }
        if let Some(cd) = self.config_drive {
            s.insert("config_drive".into(), cd.into());
        }
        serde_json::json!({ "server": s })
    }
}

/// The answer to a server creation.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedServer {
    /// New server id.
    pub id: String,
    /// Generated admin password, if Nova returned one.
    #[serde(rename = "adminPass", default)]
    pub admin_pass: Option<Secret>,
}

/// A key pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keypair {
    /// Name.
    pub name: String,
    /// Public key.
    #[serde(default)]
    pub public_key: String,
    /// Fingerprint.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// `ssh` or `x509` (2.2+).
    #[serde(rename = "type", default)]
    pub key_type: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Filters for listing servers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerFilter {
    /// Name (a regular expression in Nova).
    pub name: Option<String>,
    /// Status.
    pub status: Option<ServerStatus>,
    /// Servers booted from this image id (`image`).
    pub image: Option<String>,
    /// Servers of every project (`all_tenants=1`, admin only).
    pub all_tenants: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_create_debug_never_shows_user_data() {
        let req = ServerCreate::new("vm", "img", "flavor").user_data(b"password=hunter2".to_vec());
        let text = format!("{req:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("16 bytes"), "{text}");
        assert!(text.contains("\"vm\""), "{text}");
    }

    #[test]
    fn microversions_order_and_parse() {
        assert!(Microversion::parse("2.45").unwrap() > Microversion::parse("2.9").unwrap());
        assert_eq!(Microversion::parse("2.1").unwrap().to_string(), "2.1");
        assert!(Microversion::parse("").is_none());
    }

    #[test]
    fn create_body_shape() {
        let body = ServerCreate::new("vm", "img", "1")
            .key_name("k")
            .security_group("default")
            .network("net-1")
            .user_data("#cloud-config\n")
            .metadata("a", "b")
            .body();
        assert_eq!(
            body,
            serde_json::json!({"server": {"name": "vm", "imageRef": "img", "flavorRef": "1", "key_name": "k",
                "security_groups": [{"name": "default"}], "networks": [{"uuid": "net-1"}],
                "user_data": "I2Nsb3VkLWNvbmZpZwo=", "metadata": {"a": "b"}}})
        );
    }
}
