//! `ge-image setup-account`: the per-user setup of the original
//! `create_secgroup` script, made idempotent.
//!
//! - security groups `sshopen` (TCP 22) and `allopen` (ICMP, TCP 1-65535,
//!   UDP 1-65535), ingress from `0.0.0.0/0`, each created only if missing
//!   and completed with the rules it lacks;
//! - the keypair `createtestimage`, whose private key is kept in
//!   `~/.ssh/createtestimage` (mode 0400). The original recreates it on every
//!   run; here it is recreated only when the Nova keypair and the local key
//!   do not match (the old local file is kept as `<file>.bak`), and a local
//!   key without a Nova keypair is imported;
//! - a floating IP from `public-ext-net-01`, allocated only if the project
//!   has none.
//!
//! Decide, then act: [`plan_setup_account`] reads the cloud and returns an
//! [`AccountPlan`] (printed by `--dry-run`), [`apply_setup_account`] carries
//! it out and returns an [`AccountReport`]. A second run plans nothing.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use openstack_client::neutron::{NetworkClient, SecurityGroupRule, SecurityGroupRuleCreate};
use openstack_client::nova::ComputeClient;
use openstack_client::Session;
use serde::Serialize;

use crate::error::os_err;
use crate::error::{Error, Result};
use crate::ssh::SshKey;

/// Settings of `setup-account`; [`Default`] gives the original's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOptions {
    /// Region (the cloud's default region when `None`).
    pub region: Option<String>,
    /// Name of the keypair (`createtestimage`).
    pub keypair_name: String,
    /// Where its private key is kept (`~/.ssh/createtestimage`).
    pub key_path: PathBuf,
    /// External network floating IPs come from (`public-ext-net-01`).
    pub floating_network: String,
    /// Source addresses of the groups' rules (`0.0.0.0/0`).
    pub remote_cidr: String,
}

impl Default for AccountOptions {
    fn default() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        AccountOptions {
            region: None,
            keypair_name: "createtestimage".into(),
            key_path: home.join(".ssh").join("createtestimage"),
            floating_network: "public-ext-net-01".into(),
            remote_cidr: "0.0.0.0/0".into(),
        }
    }
}

/// One ingress rule (IPv4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSpec {
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// Lowest port (none for ICMP).
    pub port_min: Option<u16>,
    /// Highest port (none for ICMP).
    pub port_max: Option<u16>,
    /// Source CIDR.
    pub cidr: String,
}

impl RuleSpec {
    fn new(protocol: &str, ports: Option<(u16, u16)>, cidr: &str) -> Self {
        RuleSpec {
            protocol: protocol.into(),
            port_min: ports.map(|p| p.0),
            port_max: ports.map(|p| p.1),
            cidr: cidr.into(),
        }
    }

    /// Whether the existing rule `r` already allows this.
    fn is_met_by(&self, r: &SecurityGroupRule) -> bool {
        let cidr_matches = match r.remote_ip_prefix.as_deref() {
            Some(p) => p == self.cidr,
            // No prefix and no remote group: any source.
            None => r.remote_group_id.is_none() && self.cidr == "0.0.0.0/0",
        };
        r.direction == "ingress"
            && r.ethertype.as_deref().unwrap_or("IPv4") == "IPv4"
            && r.protocol.as_deref() == Some(self.protocol.as_str())
            && r.port_range_min == self.port_min
            && r.port_range_max == self.port_max
            && cidr_matches
    }

    fn to_create(&self, group_id: &str) -> SecurityGroupRuleCreate {
        SecurityGroupRuleCreate {
            security_group_id: group_id.into(),
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: Some(self.protocol.clone()),
            port_range_min: self.port_min,
            port_range_max: self.port_max,
            remote_ip_prefix: Some(self.cidr.clone()),
            remote_group_id: None,
        }
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port_min, self.port_max) {
            (Some(a), Some(b)) if a == b => write!(f, "{} {a}", self.protocol)?,
            (Some(a), Some(b)) => write!(f, "{} {a}-{b}", self.protocol)?,
            _ => write!(f, "{}", self.protocol)?,
        }
        write!(f, " from {}", self.cidr)
    }
}

/// The groups of the original with their rules.
pub fn wanted_groups(cidr: &str) -> Vec<(&'static str, Vec<RuleSpec>)> {
    vec![
        ("sshopen", vec![RuleSpec::new("tcp", Some((22, 22)), cidr)]),
        (
            "allopen",
            vec![
                RuleSpec::new("icmp", None, cidr),
                RuleSpec::new("tcp", Some((1, 65535)), cidr),
                RuleSpec::new("udp", Some((1, 65535)), cidr),
            ],
        ),
    ]
}

/// What to do for one security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    /// Group name.
    pub name: String,
    /// Its id when it exists already (else it is created).
    pub existing_id: Option<String>,
    /// Rules to add.
    pub missing_rules: Vec<RuleSpec>,
}

/// What happens to the keypair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum KeypairAction {
    /// Nova's keypair matches the local private key: nothing to do.
    Keep,
    /// Neither exists: generate a key, save it, import its public half.
    Create,
    /// The local key exists but Nova has no keypair: import its public half.
    ImportLocal,
    /// They do not match (or the local key is missing or unreadable):
    /// delete the Nova keypair, move an existing local file to `backup`,
    /// then as [`KeypairAction::Create`].
    Recreate {
        /// Where the old local file is kept, if there was one.
        backup: Option<PathBuf>,
    },
}

/// The keypair part of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeypairPlan {
    /// Keypair name.
    pub name: String,
    /// Local private key file.
    pub key_path: PathBuf,
    /// What happens.
    pub action: KeypairAction,
}

/// A floating IP to allocate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FloatingIpPlan {
    /// External network name (as configured).
    pub network: String,
    /// Its id.
    pub network_id: String,
}

/// What `setup-account` will do: the value `--dry-run` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountPlan {
    /// Groups to create or complete (groups already complete are absent).
    pub groups: Vec<GroupPlan>,
    /// The keypair.
    pub keypair: KeypairPlan,
    /// Floating IP to allocate (none when the project has one already).
    pub floating_ip: Option<FloatingIpPlan>,
    /// Floating IP addresses the project already has.
    pub existing_floating_ips: Vec<String>,
}

impl AccountPlan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.keypair.action == KeypairAction::Keep
            && self.floating_ip.is_none()
    }

    /// The plan as text, one action per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for g in &self.groups {
            match &g.existing_id {
                None => out.push_str(&format!("create security group {}\n", g.name)),
                Some(id) => out.push_str(&format!("complete security group {} ({id})\n", g.name)),
            }
            for r in &g.missing_rules {
                out.push_str(&format!("  add rule {r}\n"));
            }
        }
        let k = &self.keypair;
        let key = k.key_path.display();
        match &k.action {
            KeypairAction::Keep => {}
            KeypairAction::Create => out.push_str(&format!(
                "create keypair {} (private key saved to {key})\n",
                k.name
            )),
            KeypairAction::ImportLocal => out.push_str(&format!(
                "import keypair {} from the local key {key}\n",
                k.name
            )),
            KeypairAction::Recreate { backup } => {
                out.push_str(&format!(
                    "recreate keypair {} (private key saved to {key})\n",
                    k.name
                ));
                if let Some(b) = backup {
                    out.push_str(&format!("  keep the old {key} as {}\n", b.display()));
                }
            }
        }
        if let Some(f) = &self.floating_ip {
            out.push_str(&format!("allocate a floating IP from {}\n", f.network));
        }
        if out.is_empty() {
            out.push_str("nothing to do: the account is set up\n");
        }
        out
    }
}

/// What `setup-account` did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AccountReport {
    /// Groups created (name and id).
    pub created_groups: Vec<String>,
    /// Rules added (`group: rule`).
    pub added_rules: Vec<String>,
    /// What happened to the keypair (`None`: nothing).
    pub keypair: Option<KeypairAction>,
    /// The private key file.
    pub key_path: PathBuf,
    /// The floating IP allocated, if any.
    pub allocated_floating_ip: Option<String>,
}

impl AccountReport {
    /// The report as text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for g in &self.created_groups {
            out.push_str(&format!("created security group {g}\n"));
        }
        for r in &self.added_rules {
            out.push_str(&format!("added rule {r}\n"));
        }
        if let Some(action) = &self.keypair {
            let verb = match action {
                KeypairAction::Keep => "kept",
                KeypairAction::Create => "created",
                KeypairAction::ImportLocal => "imported",
                KeypairAction::Recreate { .. } => "recreated",
            };
            out.push_str(&format!(
                "{verb} keypair (private key {})\n",
                self.key_path.display()
            ));
        }
        if let Some(ip) = &self.allocated_floating_ip {
            out.push_str(&format!("allocated floating IP {ip}\n"));
        }
        if out.is_empty() {
            out.push_str("nothing to do: the account is set up\n");
        }
        out
    }
}

/// The key type and base64 body of an OpenSSH public key line.
fn key_body(line: &str) -> Option<(&str, &str)> {
    let mut it = line.split_whitespace();
    Some((it.next()?, it.next()?))
}

async fn clients(
    session: &Session,
    region: Option<&str>,
) -> Result<(ComputeClient, NetworkClient)> {
    let what = region.unwrap_or("default region").to_string();
    Ok((
        session
            .compute(region)
            .await
            .map_err(os_err("connecting to Nova of", &what))?,
        session
            .network(region)
            .await
            .map_err(os_err("connecting to Neutron of", &what))?,
    ))
}

/// Read the cloud and the local key file; decide what `setup-account` does.
#[tracing::instrument(skip_all)]
pub async fn plan_setup_account(
    session: &Session,
    options: &AccountOptions,
) -> Result<AccountPlan> {
    let (nova, neutron) = clients(session, options.region.as_deref()).await?;
    let mut groups = Vec::new();
    for (name, rules) in wanted_groups(&options.remote_cidr) {
        let existing = neutron
            .list_security_groups(Some(name))
            .await
            .map_err(os_err("listing security groups named", name))?
            .into_iter()
            .find(|g| g.name == name);
        let plan = match existing {
            None => GroupPlan {
                name: name.into(),
                existing_id: None,
                missing_rules: rules,
            },
            Some(g) => GroupPlan {
                name: name.into(),
                missing_rules: rules
                    .into_iter()
                    .filter(|r| !g.security_group_rules.iter().any(|e| r.is_met_by(e)))
                    .collect(),
                existing_id: Some(g.id),
            },
        };
        if plan.existing_id.is_none() || !plan.missing_rules.is_empty() {
            groups.push(plan);
        }
    }

    let nova_key = match nova.get_keypair(&options.keypair_name).await {
        Ok(k) => Some(k.public_key),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(os_err("reading keypair", &options.keypair_name)(e)),
    };
    let path = &options.key_path;
    let local_key = if path.exists() {
        Some(
            SshKey::from_file(path)
                .and_then(|k| k.public_openssh())
                .ok(),
        )
    } else {
        None
    };
    let backup = || {
        let mut b = path.as_os_str().to_owned();
        b.push(".bak");
        PathBuf::from(b)
    };
    let action = match (local_key, nova_key) {
        (Some(Some(local)), Some(remote))
            if key_body(&local).is_some() && key_body(&local) == key_body(&remote) =>
        {
            KeypairAction::Keep
        }
        (Some(Some(_)), None) => KeypairAction::ImportLocal,
        (None, None) => KeypairAction::Create,
        (None, Some(_)) => KeypairAction::Recreate { backup: None },
        (Some(_), _) => KeypairAction::Recreate {
            backup: Some(backup()),
        },
    };
    let keypair = KeypairPlan {
        name: options.keypair_name.clone(),
        key_path: path.clone(),
        action,
    };

    let project = crate::publish::caller_project_id(session).await?;
    let existing_floating_ips: Vec<String> = neutron
        .list_floating_ips_filtered(&[("project_id", &project)])
        .await
        .map_err(os_err("listing the floating IPs of project", &project))?
        .into_iter()
        .map(|f| f.floating_ip_address)
        .collect();
    let floating_ip = if existing_floating_ips.is_empty() {
        let net = neutron
            .find_network(&options.floating_network)
            .await
            .map_err(os_err(
                "finding external network (option floating_network)",
                &options.floating_network,
            ))?;
        Some(FloatingIpPlan {
            network: options.floating_network.clone(),
            network_id: net.id,
        })
    } else {
        None
    };
    Ok(AccountPlan {
        groups,
        keypair,
        floating_ip,
        existing_floating_ips,
    })
}

/// Carry out `plan` (from [`plan_setup_account`] with the same `options`).
#[tracing::instrument(skip_all)]
pub async fn apply_setup_account(
    session: &Session,
    options: &AccountOptions,
    plan: &AccountPlan,
) -> Result<AccountReport> {
    let (nova, neutron) = clients(session, options.region.as_deref()).await?;
    let mut report = AccountReport {
        key_path: plan.keypair.key_path.clone(),
        ..Default::default()
    };
    for g in &plan.groups {
        let id = match &g.existing_id {
            Some(id) => id.clone(),
            None => {
                let created = neutron
                    .create_security_group(
                        &g.name,
                        &format!("ge-image: {} (setup-account)", g.name),
                    )
                    .await
                    .map_err(os_err("creating security group", &g.name))?;
                report
                    .created_groups
                    .push(format!("{} ({})", g.name, created.id));
                // A new group holds egress rules only; ours are added below.
                created.id
            }
        };
        for rule in &g.missing_rules {
            neutron
                .create_security_group_rule(&rule.to_create(&id))
                .await
                .map_err(os_err("adding a rule to security group", &g.name))?;
            report.added_rules.push(format!("{}: {rule}", g.name));
        }
    }

    let k = &plan.keypair;
    match &k.action {
        KeypairAction::Keep => {}
        KeypairAction::ImportLocal => {
            let public = SshKey::from_file(&k.key_path)?.public_openssh()?;
            nova.create_keypair(&k.name, &public)
                .await
                .map_err(os_err("importing keypair", &k.name))?;
        }
        KeypairAction::Create | KeypairAction::Recreate { .. } => {
            if let KeypairAction::Recreate { backup } = &k.action {
                if let Some(backup) = backup {
                    std::fs::rename(&k.key_path, backup).map_err(|source| Error::LocalFile {
                        action: "keeping the old private key",
                        path: k.key_path.display().to_string(),
                        source,
                    })?;
                }
                match nova.delete_keypair(&k.name).await {
                    Err(e) if !e.is_not_found() => {
                        return Err(os_err("deleting keypair", &k.name)(e))
                    }
                    _ => {}
                }
            }
            let public = write_new_key(&k.key_path, &k.name)?;
            nova.create_keypair(&k.name, &public)
                .await
                .map_err(os_err("creating keypair", &k.name))?;
        }
    }
    if k.action != KeypairAction::Keep {
        report.keypair = Some(k.action.clone());
    }

    if let Some(f) = &plan.floating_ip {
        let fip = neutron
            .create_floating_ip(&f.network_id, None)
            .await
            .map_err(os_err("allocating a floating IP from", &f.network))?;
        report.allocated_floating_ip = Some(fip.floating_ip_address);
    }
    Ok(report)
}

/// Plan, then apply: the whole `setup-account`.
pub async fn setup_account(session: &Session, options: &AccountOptions) -> Result<AccountReport> {
    let plan = plan_setup_account(session, options).await?;
    apply_setup_account(session, options, &plan).await
}

/// Generate an ed25519 key, write it to `path` (directory made 0700 if
/// missing, file mode 0400 as the original), return its public line.
fn write_new_key(path: &Path, comment: &str) -> Result<String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|source| Error::LocalFile {
                action: "creating the key directory",
                path: dir.display().to_string(),
                source,
            })?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| Error::LocalFile {
                    action: "setting mode 0700 on",
                    path: dir.display().to_string(),
                    source,
                },
            )?;
        }
    }
    let (key, public) = SshKey::generate_ed25519(comment)?;
    key.write_private(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).map_err(|source| {
        Error::LocalFile {
            action: "setting mode 0400 on",
            path: path.display().to_string(),
            source,
        }
    })?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_display_and_plan_text() {
        let groups = wanted_groups("0.0.0.0/0");
        let shown: Vec<String> = groups[1].1.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "icmp from 0.0.0.0/0",
                "tcp 1-65535 from 0.0.0.0/0",
                "udp 1-65535 from 0.0.0.0/0"
            ]
        );
        let plan = AccountPlan {
            groups: vec![],
            keypair: KeypairPlan {
                name: "createtestimage".into(),
                key_path: "/k".into(),
                action: KeypairAction::Keep,
            },
            floating_ip: None,
            existing_floating_ips: vec!["172.24.4.3".into()],
        };
        assert!(plan.is_empty());
        assert_eq!(plan.to_text(), "nothing to do: the account is set up\n");
    }

    #[test]
    fn a_rule_without_prefix_counts_as_any_source() {
        let rule: SecurityGroupRule = serde_json::from_value(serde_json::json!({
            "id": "r", "security_group_id": "g", "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
            "remote_ip_prefix": null, "remote_group_id": null
        }))
        .unwrap();
        assert!(RuleSpec::new("tcp", Some((22, 22)), "0.0.0.0/0").is_met_by(&rule));
        assert!(!RuleSpec::new("tcp", Some((22, 22)), "10.0.0.0/8").is_met_by(&rule));
        assert!(!RuleSpec::new("udp", Some((22, 22)), "0.0.0.0/0").is_met_by(&rule));
    }
}
