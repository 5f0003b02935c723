//! Deleting what the OpenStack backend created: by id, or by the unique
//! name of a ledger record whose id was never written (the run died between
//! the request and the answer). A resource already gone (404) counts as
//! released.

use std::time::Instant;

use openstack_client::glance::ImageFilter;
use openstack_client::nova::{ServerFilter, ServerStatus};

use super::{gone_ok, os_err, Clients, OpenStackBackend, BACKEND_NAME, RUN_TAG_KEY};
use crate::error::{Error, Result};
use crate::ledger::{ResourceKind, ResourceRecord};

impl OpenStackBackend {
    /// Delete server `id` and wait until Nova no longer lists it.
    pub(super) async fn delete_server(
        &self,
        clients: &Clients,
        id: &str,
        name: &str,
    ) -> Result<()> {
        let resource = format!("{name} ({id})");
        gone_ok(clients.nova.delete_server(id).await)
            .map_err(os_err("deleting server", &resource))?;
        let started = Instant::now();
        loop {
            let last = match clients.nova.get_server(id).await {
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(os_err("reading deleted server", &resource)(e)),
                Ok(s) if s.status == ServerStatus::Deleted => return Ok(()),
                Ok(s) => s.status.to_string(),
            };
            if started.elapsed() >= self.options.delete_timeout {
                return Err(Error::WaitTimeout {
                    kind: "server",
                    resource,
                    wanted: "deleted".into(),
                    last,
                    waited: started.elapsed(),
                    option: "delete_timeout",
                });
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Delete security group `id`, retrying while Neutron says it is still
    /// in use (the ports of a just-deleted server go away asynchronously).
    pub(super) async fn delete_security_group(&self, clients: &Clients, id: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            match gone_ok(clients.neutron.delete_security_group(id).await) {
                Ok(()) => return Ok(()),
                Err(e) if e.is_conflict() && started.elapsed() < self.options.delete_timeout => {
                    tracing::debug!(group = id, "security group still in use; retrying");
                    tokio::time::sleep(self.options.poll_interval).await;
                }
                Err(e) => return Err(os_err("deleting security group", id)(e)),
            }
        }
    }

    /// Release one record of this backend (see [`crate::ComputeBackend::release`]).
    pub(super) async fn release_record(&self, record: &ResourceRecord) -> Result<bool> {
        debug_assert_eq!(record.backend, BACKEND_NAME);
        let other;
        let clients = if record.region.is_none() || record.region == self.region {
            &self.clients
        } else {
            other = Self::clients_for(&self.session, record.region.as_deref()).await?;
            &other
        };
        let name = record.name.as_str();
        tracing::info!(kind = %record.kind, name, id = ?record.id, "releasing");
        match record.kind {
            ResourceKind::Server => {
                let ids = match &record.id {
                    Some(id) => vec![id.clone()],
                    None => {
                        let filter = ServerFilter {
                            name: Some(format!("^{}$", regex_escape(name))),
                            ..Default::default()
                        };
                        clients
                            .nova
                            .list_servers(&filter)
                            .await
                            .map_err(os_err("listing servers named", name))?
                            .into_iter()
                            .filter(|s| s.name == name && s.metadata.contains_key(RUN_TAG_KEY))
                            .map(|s| s.id)
                            .collect()
                    }
                };
                for id in ids {
                    self.delete_server(clients, &id, name).await?;
                }
            }
            ResourceKind::Keypair => {
                let keypair = record.id.as_deref().unwrap_or(name);
                gone_ok(clients.nova.delete_keypair(keypair).await)
                    .map_err(os_err("deleting keypair", keypair))?;
            }
            ResourceKind::SecurityGroup => {
                let ids = match &record.id {
                    Some(id) => vec![id.clone()],
                    None => clients
                        .neutron
                        .list_security_groups(Some(name))
                        .await
                        .map_err(os_err("listing security groups named", name))?
                        .into_iter()
                        .filter(|g| g.name == name)
                        .map(|g| g.id)
                        .collect(),
                };
                for id in ids {
                    self.delete_security_group(clients, &id).await?;
                }
            }
            ResourceKind::FloatingIp => {
                let ids = match &record.id {
                    Some(id) => vec![id.clone()],
                    None => clients
                        .neutron
                        .list_floating_ips_filtered(&[("description", name)])
                        .await
                        .map_err(os_err("listing floating IPs described as", name))?
                        .into_iter()
                        .filter(|f| {
                            f.extra.get("description").and_then(|d| d.as_str()) == Some(name)
                        })
                        .map(|f| f.id)
                        .collect(),
                };
                for id in ids {
                    gone_ok(clients.neutron.delete_floating_ip(&id).await)
                        .map_err(os_err("releasing floating IP", &id))?;
                }
            }
            ResourceKind::Snapshot => {
                let ids = match &record.id {
                    Some(id) => vec![id.clone()],
                    None => clients
                        .glance
                        .list_images(&ImageFilter::default().name(name))
                        .await
                        .map_err(Error::glance("listing images named", name))?
                        .into_iter()
                        .filter(|i| i.property(RUN_TAG_KEY).is_some())
                        .map(|i| i.id)
                        .collect(),
                };
                for id in ids {
                    gone_ok(clients.glance.delete_image(&id).await)
                        .map_err(Error::glance("deleting snapshot", &id))?;
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Escape `name` for Nova's regular-expression name filter.
fn regex_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn regex_escape_quotes_metacharacters() {
        assert_eq!(super::regex_escape("web.1(a)"), "web\\.1\\(a\\)");
        assert_eq!(super::regex_escape("plain-name"), "plain-name");
    }
}
