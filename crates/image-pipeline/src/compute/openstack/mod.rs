//! The OpenStack compute backend: Nova servers, Neutron security groups and
//! floating IPs, Glance snapshots, all through `openstack-client`.
//!
//! Packer's good habits: every build gets a temporary keypair and a
//! temporary security group named `ge-image-<vm name>-<run id>` (the run id
//! is 8 random hex digits; with [`OpenStackBackendOptions::name_prefix`]
//! the VM's own `<prefix>-…` name), a floating IP is allocated only when none is
//! given and released only when it was allocated here, and every resource
//! is written to the run's [`ResourceLedger`] before the call that creates
//! it (intent, then id), so that [`ComputeBackend::release`] can remove it
//! later, by id or, when the run died before the id was known, by its name.
//!
//! Resources made here carry a marker so that a clean-up by name never
//! touches a resource of the user that happens to share the name: servers
//! and snapshots the metadata key [`RUN_TAG_KEY`], floating IPs the run tag
//! as their description.

mod release;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openstack_client::glance::{GlanceClient, ImageStatus};
use openstack_client::neutron::{NetworkClient, SecurityGroupRuleCreate};
use openstack_client::nova::{ComputeClient, ServerCreate, ServerStatus};
use openstack_client::Session;

use super::{AccessProfile, ComputeBackend, VmAddress, VmHandle, VmSpec};
use crate::error::os_err;
use crate::error::{Error, Result};
use crate::ledger::{LedgerKey, ResourceKind, ResourceLedger, ResourceRecord};

/// Name written to the ledger for records of this backend.
pub const BACKEND_NAME: &str = "openstack";

/// Metadata key (server) and image property (snapshot) holding the run tag
/// `ge-image-<vm name>-<run id>`: marks the resources this backend made.
pub const RUN_TAG_KEY: &str = "ge_image_run";

/// Settings of the OpenStack backend; [`Default`] gives the original
/// scripts' choices.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenStackBackendOptions {
    /// Region (the cloud's default region when `None`).
    pub region: Option<String>,
    /// Network the VMs are attached to, by name or id (`node-int-net-01`).
    pub network: String,
    /// A floating IP to use (address or id; the original's `FLOATINGIP`).
    /// It is never released.
    pub floating_ip: Option<String>,
    /// External network to allocate a floating IP from when none is given
    /// (`public-ext-net-01`).
    pub floating_network: String,
    /// Reach the VM at its fixed IP on `network`: no floating IP at all.
    pub use_fixed_ip: bool,
    /// Source addresses allowed in by the temporary security group.
    pub remote_cidr: String,
    /// How long to wait for a deleted server to disappear, and for a
    /// security group still in use by its ports to become deletable.
    pub delete_timeout: Duration,
    /// How long to wait for a Nova snapshot to become an active Glance image.
    pub snapshot_timeout: Duration,
    /// Pause between two looks at a server or image changing state.
    pub poll_interval: Duration,
    /// Lines of console output returned by `console_log`.
    pub console_lines: u32,
    /// The port the VMs' SSH server is reached at (22; another one when a
    /// cloud forwards SSH, or for tests against a local sshd).
    pub ssh_port: u16,
    /// Availability zone of the servers (`None`: Nova's default).
    pub availability_zone: Option<String>,
    /// Name the temporary keypair and security group (the run tag) after
    /// the VM itself, whose name must then start with `<prefix>-` and be
    /// unique per run (NREC imagebuilder's `imagebuilder-<uuid hex>`).
    /// `None`: `ge-image-<vm name>-<run id>`.
    pub name_prefix: Option<String>,
}

impl Default for OpenStackBackendOptions {
    fn default() -> Self {
        OpenStackBackendOptions {
            region: None,
            network: "node-int-net-01".into(),
            floating_ip: None,
            floating_network: "public-ext-net-01".into(),
            use_fixed_ip: false,
            remote_cidr: "0.0.0.0/0".into(),
            delete_timeout: Duration::from_secs(300),
            snapshot_timeout: Duration::from_secs(1800),
            poll_interval: Duration::from_secs(3),
            console_lines: 50,
            ssh_port: 22,
            availability_zone: None,
            name_prefix: None,
        }
    }
}

/// The clients of one region.
#[derive(Debug, Clone)]
struct Clients {
    nova: ComputeClient,
    neutron: NetworkClient,
    glance: GlanceClient,
}

/// Builds and test VMs on an OpenStack cloud (Nova + Neutron + Glance).
#[derive(Debug, Clone)]
pub struct OpenStackBackend {
    session: Session,
    options: OpenStackBackendOptions,
    region: Option<String>,
    clients: Clients,
}

/// How the VM's floating IP was obtained.
#[derive(Debug, Clone)]
struct FloatingIpUse {
    id: String,
    address: IpAddr,
    /// The ledger record when this run allocated it (then it is released).
    allocated: Option<LedgerKey>,
}

/// A server booted by [`OpenStackBackend`], with its per-run resources.
#[derive(Debug)]
pub struct OpenStackVm {
    name: String,
    id: String,
    tag: String,
    network_id: String,
    server_key: LedgerKey,
    keypair_key: LedgerKey,
    security_group: (String, LedgerKey),
    floating_ip: Option<FloatingIpUse>,
}

impl OpenStackVm {
    /// The run tag: name of the temporary keypair and security group.
    pub fn run_tag(&self) -> &str {
        &self.tag
    }

    /// The floating IP address the VM is reached at, if it uses one.
    pub fn floating_ip(&self) -> Option<IpAddr> {
        self.floating_ip.as_ref().map(|f| f.address)
    }
}

impl VmHandle for OpenStackVm {
    fn name(&self) -> &str {
        &self.name
    }
    fn id(&self) -> &str {
        &self.id
    }
}

/// Ok when the call succeeded or the resource was already gone (404).
fn gone_ok(r: openstack_client::Result<()>) -> openstack_client::Result<()> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// 8 random hex digits.
fn run_id() -> Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 4];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::CloudSetup("the system random generator failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The run tag of VM `vm`: `ge-image-<vm>-<run id>`, or with a name
/// prefix the VM's own name, refused unless it is `<prefix>-<something>`.
fn run_tag(prefix: Option<&str>, vm: &str) -> Result<String> {
    match prefix {
        None => Ok(format!("ge-image-{vm}-{}", run_id()?)),
        Some(p) => match vm.strip_prefix(p).and_then(|r| r.strip_prefix('-')) {
            Some(rest) if !rest.is_empty() => Ok(vm.to_string()),
            _ => Err(Error::CloudSetup(format!(
                "VM name '{vm}' does not start with '{p}-' (option name_prefix)"
            ))),
        },
    }
}

/// The ingress rules of a temporary security group.
fn rules_for(
    group_id: &str,
    access: AccessProfile,
    tcp_ports: &[u16],
    cidr: &str,
) -> Vec<SecurityGroupRuleCreate> {
    let range = |protocol: &str, min: Option<u16>, max: Option<u16>| SecurityGroupRuleCreate {
        security_group_id: group_id.to_string(),
        direction: "ingress".into(),
        ethertype: "IPv4".into(),
        protocol: Some(protocol.into()),
        port_range_min: min,
        port_range_max: max,
        remote_ip_prefix: Some(cidr.into()),
        remote_group_id: None,
    };
    match access {
        AccessProfile::SshOnly => {
            let mut ports = vec![22u16];
            for p in tcp_ports {
                if !ports.contains(p) {
                    ports.push(*p);
                }
            }
            ports
                .into_iter()
                .map(|p| range("tcp", Some(p), Some(p)))
                .collect()
        }
        AccessProfile::AllOpen => vec![
            range("tcp", Some(1), Some(65535)),
            range("udp", Some(1), Some(65535)),
            range("icmp", None, None),
        ],
    }
}

impl OpenStackBackend {
    /// A backend on `session` with `options`; makes the Nova (negotiating
    /// its microversion), Neutron and Glance clients of the region.
    pub async fn connect(session: Session, options: OpenStackBackendOptions) -> Result<Self> {
        let region = options
            .region
            .clone()
            .or_else(|| session.config().default_region().map(str::to_owned));
        let clients = Self::clients_for(&session, region.as_deref()).await?;
        Ok(OpenStackBackend {
            session,
            options,
            region,
            clients,
        })
    }

    async fn clients_for(session: &Session, region: Option<&str>) -> Result<Clients> {
        let what = region.unwrap_or("default region").to_string();
        Ok(Clients {
            nova: session
                .compute(region)
                .await
                .map_err(os_err("connecting to Nova of", &what))?,
            neutron: session
                .network(region)
                .await
                .map_err(os_err("connecting to Neutron of", &what))?,
            glance: session
                .image(region)
                .await
                .map_err(os_err("connecting to Glance of", &what))?,
        })
    }

    /// The options this backend was made with.
    pub fn options(&self) -> &OpenStackBackendOptions {
        &self.options
    }

    /// The region the backend boots in.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// Look up a floating IP the operator gave, by id or address.
    async fn given_floating_ip(&self, given: &str) -> Result<FloatingIpUse> {
        let neutron = &self.clients.neutron;
        let found = if given.parse::<IpAddr>().is_ok() {
            neutron
                .list_floating_ips_filtered(&[("floating_ip_address", given)])
                .await
                .map_err(os_err("looking up floating IP", given))?
                .into_iter()
                .next()
        } else {
            match neutron.get_floating_ip(given).await {
                Ok(f) => Some(f),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(os_err("looking up floating IP", given)(e)),
            }
        };
        let fip = found.ok_or_else(|| {
            Error::CloudSetup(format!(
                "floating IP {given} (option floating_ip / FLOATINGIP) does not exist in this project"
            ))
        })?;
        Ok(FloatingIpUse {
            address: parse_ip(&fip.floating_ip_address, &fip.id)?,
            id: fip.id,
            allocated: None,
        })
    }

    /// Poll the server until `wanted` (no task pending), failing on ERROR
    /// or after `timeout`.
    async fn wait_server(
        &self,
        vm: &OpenStackVm,
        wanted: ServerStatus,
        timeout: Duration,
        option: &'static str,
    ) -> Result<openstack_client::nova::Server> {
        let started = Instant::now();
        loop {
            let server = self
                .clients
                .nova
                .get_server(&vm.id)
                .await
                .map_err(os_err("reading server", format!("{} ({})", vm.name, vm.id)))?;
            if server.status == wanted && server.task_state.is_none() {
                return Ok(server);
            }
            if server.status == ServerStatus::Error {
                return Err(Error::ServerFailed {
                    name: vm.name.clone(),
                    id: vm.id.clone(),
                    fault: server.fault.map(|f| f.message),
                });
            }
            if started.elapsed() >= timeout {
                return Err(Error::WaitTimeout {
                    kind: "server",
                    resource: format!("{} ({})", vm.name, vm.id),
                    wanted: wanted.to_string(),
                    last: match &server.task_state {
                        Some(t) => format!("{} ({t})", server.status),
                        None => server.status.to_string(),
                    },
                    waited: started.elapsed(),
                    option,
                });
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// The VM's fixed IPv4 address on the configured network, with its port.
    async fn fixed_address(&self, vm: &OpenStackVm) -> Result<(String, IpAddr)> {
        let ports = self
            .clients
            .neutron
            .server_ports(&vm.id)
            .await
            .map_err(os_err("listing ports of server", &vm.id))?;
        ports
            .iter()
            .filter(|p| p.network_id == vm.network_id)
            .flat_map(|p| p.fixed_ips.iter().map(move |f| (p, f)))
            .find_map(|(p, f)| {
                f.ip_address
                    .parse::<IpAddr>()
                    .ok()
                    .filter(IpAddr::is_ipv4)
                    .map(|ip| (p.id.clone(), ip))
            })
            .ok_or_else(|| {
                Error::CloudSetup(format!(
                    "server {} ({}) has no IPv4 port on network {} ({})",
                    vm.name, vm.id, self.options.network, vm.network_id
                ))
            })
    }
}

fn parse_ip(text: &str, id: &str) -> Result<IpAddr> {
    text.parse().map_err(|_| {
        Error::CloudSetup(format!(
            "floating IP {id} has an unreadable address '{text}'"
        ))
    })
}

#[async_trait::async_trait]
impl ComputeBackend for OpenStackBackend {
    type Vm = OpenStackVm;

    fn name(&self) -> &'static str {
        BACKEND_NAME
    }

    #[tracing::instrument(name = "openstack_boot", skip_all, fields(vm = %spec.name))]
    async fn boot(&self, spec: &VmSpec, ledger: &ResourceLedger) -> Result<OpenStackVm> {
        let Clients { nova, neutron, .. } = &self.clients;
        let region = self.region.as_deref();
        // Everything that only reads comes first: a wrong name fails before
        // anything was created.
        let network = neutron
            .find_network(&self.options.network)
            .await
            .map_err(os_err(
                "finding network (option network)",
                &self.options.network,
            ))?;
        let flavor = nova
            .find_flavor(&spec.flavor)
            .await
            .map_err(os_err("finding flavor", &spec.flavor))?;
        let given_fip = match (&self.options.floating_ip, self.options.use_fixed_ip) {
            (Some(given), false) => Some(self.given_floating_ip(given).await?),
            _ => None,
        };
        let external = match (&given_fip, self.options.use_fixed_ip) {
            (None, false) => Some(
                neutron
                    .find_network(&self.options.floating_network)
                    .await
                    .map_err(os_err(
                        "finding external network (option floating_network)",
                        &self.options.floating_network,
                    ))?,
            ),
            _ => None,
        };
        let tag = run_tag(self.options.name_prefix.as_deref(), &spec.name)?;

        let keypair_key = ledger.intent(ResourceKind::Keypair, &tag, BACKEND_NAME, region)?;
        nova.create_keypair(&tag, &spec.public_key)
            .await
            .map_err(os_err("creating keypair", &tag))?;
        ledger.created(keypair_key, &tag)?;

        let sg_key = ledger.intent(ResourceKind::SecurityGroup, &tag, BACKEND_NAME, region)?;
        let group = neutron
            .create_security_group(
                &tag,
                &format!(
                    "{}: temporary group of {}",
                    self.options.name_prefix.as_deref().unwrap_or("ge-image"),
                    spec.name
                ),
            )
            .await
            .map_err(os_err("creating security group", &tag))?;
        ledger.created(sg_key, &group.id)?;
        for rule in rules_for(
            &group.id,
            spec.access,
            &spec.tcp_ports,
            &self.options.remote_cidr,
        ) {
            neutron
                .create_security_group_rule(&rule)
                .await
                .map_err(os_err("adding a rule to security group", &tag))?;
        }

        let floating_ip = match (given_fip, external) {
            (Some(given), _) => Some(given),
            (None, Some(external)) => {
                let key = ledger.intent(ResourceKind::FloatingIp, &tag, BACKEND_NAME, region)?;
                let fip = neutron
                    .create_floating_ip_described(&external.id, None, &tag)
                    .await
                    .map_err(os_err(
                        "allocating a floating IP from",
                        &self.options.floating_network,
                    ))?;
                ledger.created(key, &fip.id)?;
                Some(FloatingIpUse {
                    address: parse_ip(&fip.floating_ip_address, &fip.id)?,
                    id: fip.id,
                    allocated: Some(key),
                })
            }
            (None, None) => None,
        };

        let mut request = ServerCreate::new(&spec.name, &spec.image_id, &flavor.id)
            .key_name(&tag)
            .security_group(&tag)
            .network(&network.id)
            .metadata(RUN_TAG_KEY, &tag);
        request.availability_zone = self.options.availability_zone.clone();
        let server_key = ledger.intent(ResourceKind::Server, &spec.name, BACKEND_NAME, region)?;
        let created = nova
            .create_server(&request)
            .await
            .map_err(os_err("creating server", &spec.name))?;
        ledger.created(server_key, &created.id)?;
        tracing::info!(server = %created.id, %tag, "server created");
        Ok(OpenStackVm {
            name: spec.name.clone(),
            id: created.id,
            tag,
            network_id: network.id,
            server_key,
            keypair_key,
            security_group: (group.id, sg_key),
            floating_ip,
        })
    }

    #[tracing::instrument(name = "openstack_wait_ready", skip_all, fields(vm = %vm.name))]
    async fn wait_ready(&self, vm: &OpenStackVm, timeout: Duration) -> Result<VmAddress> {
        self.wait_server(vm, ServerStatus::Active, timeout, "wait_ready timeout")
            .await?;
        let (port, fixed) = self.fixed_address(vm).await?;
        let ip = match &vm.floating_ip {
            Some(fip) => {
                self.clients
                    .neutron
                    .associate_floating_ip(&fip.id, &port)
                    .await
                    .map_err(os_err(
                        "associating floating IP",
                        format!("{} with server {}", fip.address, vm.name),
                    ))?;
                fip.address
            }
            None => fixed,
        };
        tracing::info!(%ip, "server active");
        Ok(VmAddress {
            ip,
            ssh_host: ip.to_string(),
            ssh_port: self.options.ssh_port,
        })
    }

    #[tracing::instrument(name = "openstack_power_off", skip_all, fields(vm = %vm.name))]
    async fn power_off(&self, vm: &OpenStackVm, timeout: Duration) -> Result<()> {
        if let Err(e) = self.clients.nova.stop_server(&vm.id).await {
            // 409: already stopped (the guest powered itself off) or busy;
            // waiting for SHUTOFF below tells which.
            if !e.is_conflict() {
                return Err(os_err(
                    "stopping server",
                    format!("{} ({})", vm.name, vm.id),
                )(e));
            }
        }
        self.wait_server(vm, ServerStatus::Shutoff, timeout, "power_off timeout")
            .await
            .map(|_| ())
    }

    #[tracing::instrument(name = "openstack_snapshot", skip_all, fields(vm = %vm.name))]
    async fn snapshot_to_file(
        &self,
        vm: &OpenStackVm,
        dest: &Path,
        ledger: &ResourceLedger,
    ) -> Result<PathBuf> {
        let Clients { nova, glance, .. } = &self.clients;
        let name = format!("{}-snapshot", vm.name);
        let metadata = BTreeMap::from([(RUN_TAG_KEY.to_string(), vm.tag.clone())]);
        let key = ledger.intent(
            ResourceKind::Snapshot,
            &name,
            BACKEND_NAME,
            self.region.as_deref(),
        )?;
        let image_id = nova
            .create_image(&vm.id, &name, &metadata)
            .await
            .map_err(os_err(
                "creating snapshot",
                format!("{name} of server {}", vm.id),
            ))?;
        ledger.created(key, &image_id)?;
        let resource = format!("{name} ({image_id})");
        let started = Instant::now();
        loop {
            let image = glance
                .get_image(&image_id)
                .await
                .map_err(Error::glance("reading snapshot", &image_id))?;
            if image.status == ImageStatus::Active {
                break;
            }
            if matches!(
                image.status,
                ImageStatus::Killed | ImageStatus::Deleted | ImageStatus::PendingDelete
            ) {
                return Err(Error::CloudSetup(format!(
                    "snapshot {resource} of server {} failed: image status '{}'",
                    vm.id, image.status
                )));
            }
            if started.elapsed() >= self.options.snapshot_timeout {
                return Err(Error::WaitTimeout {
                    kind: "snapshot",
                    resource,
                    wanted: "active".into(),
                    last: image.status.to_string(),
                    waited: started.elapsed(),
                    option: "snapshot_timeout",
                });
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
        let summary = glance
            .download_to_file(&image_id, dest)
            .await
            .map_err(Error::glance(
                format!("downloading to {}", dest.display()),
                &image_id,
            ))?;
        tracing::info!(bytes = summary.bytes, dest = %dest.display(), "snapshot downloaded");
        gone_ok(glance.delete_image(&image_id).await)
            .map_err(Error::glance("deleting snapshot", &image_id))?;
        ledger.released(key)?;
        Ok(dest.to_path_buf())
    }

    #[tracing::instrument(name = "openstack_console_log", skip_all, fields(vm = %vm.name))]
    async fn console_log(&self, vm: &OpenStackVm) -> Result<String> {
        self.clients
            .nova
            .console_log(&vm.id, Some(self.options.console_lines))
            .await
            .map_err(os_err("reading the console of server", &vm.id))
    }

    #[tracing::instrument(name = "openstack_delete", skip_all, fields(vm = %vm.name))]
    async fn delete(&self, vm: OpenStackVm, ledger: &ResourceLedger) -> Result<()> {
        let clients = &self.clients;
        // Every step is tried even when an earlier one failed; the first
        // error is returned and the failed records stay in the ledger.
        let mut first: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "clean-up step failed");
                first.get_or_insert(e);
            }
        };
        let server = self
            .delete_server(clients, &vm.id, &vm.name)
            .await
            .and_then(|()| ledger.released(vm.server_key));
        let server_gone = server.is_ok();
        note(server);
        if let Some(FloatingIpUse {
            id,
            allocated: Some(key),
            ..
        }) = &vm.floating_ip
        {
            note(
                gone_ok(clients.neutron.delete_floating_ip(id).await)
                    .map_err(os_err("releasing floating IP", id))
                    .and_then(|()| ledger.released(*key)),
            );
        }
        if server_gone {
            let (id, key) = &vm.security_group;
            note(
                self.delete_security_group(clients, id)
                    .await
                    .and_then(|()| ledger.released(*key)),
            );
        }
        note(
            gone_ok(clients.nova.delete_keypair(&vm.tag).await)
                .map_err(os_err("deleting keypair", &vm.tag))
                .and_then(|()| ledger.released(vm.keypair_key)),
        );
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    #[tracing::instrument(name = "openstack_release", skip_all, fields(kind = %record.kind, name = %record.name))]
    async fn release(&self, record: &ResourceRecord) -> Result<bool> {
        if record.backend != BACKEND_NAME {
            return Ok(false);
        }
        self.release_record(record).await
    }
}

#[cfg(test)]
mod tests {
    use super::run_tag;

    #[test]
    fn run_tags_are_per_run_or_the_prefixed_vm_name() {
        let t = run_tag(None, "vm1").unwrap();
        assert!(t.starts_with("ge-image-vm1-"), "{t}");
        assert_eq!(t.len(), "ge-image-vm1-".len() + 8);
        assert_ne!(run_tag(None, "vm1").unwrap(), t);
        assert_eq!(
            run_tag(Some("imagebuilder"), "imagebuilder-0af3").unwrap(),
            "imagebuilder-0af3"
        );
        for bad in [
            "imagebuilder",
            "imagebuilder-",
            "other-0af3",
            "imagebuilderx-1",
        ] {
            let e = run_tag(Some("imagebuilder"), bad).unwrap_err().to_string();
            assert!(e.contains("name_prefix"), "{bad}: {e}");
        }
    }
}
