//! The manual trigger (`packuilon.py` of the original): a skeleton profile
//! that asks for one build.

use serde_json::{json, Value};

/// The Aquilon branch a triggered build claims to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Branch {
    /// A domain (`--domain`, default `prod`).
    Domain(String),
    /// A sandbox given as `owner/name` (`--sandbox`).
    Sandbox {
        /// The sandbox's author.
        author: String,
        /// The sandbox's name.
        name: String,
    },
}

/// What `packuilon trigger` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRequest {
    /// `--personality`.
    pub personality: String,
    /// `--archetype` (default `ral-tier1`).
    pub archetype: String,
    /// `--os` (default `sl`).
    pub os: String,
    /// `--os_ver` (default `7x`).
    pub os_version: String,
    /// `--arch` (default `x86_64`).
    pub arch: String,
    /// `--domain` or `--sandbox`.
    pub branch: Branch,
}

/// A fresh request id for [`crate::amqp::REQUEST_HEADER`]: a manual
/// trigger asks for a build even when the same skeleton was built before.
pub fn new_request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("trigger-{nanos}-{}", std::process::id())
}

impl TriggerRequest {
    /// Publish the skeleton on `broker`'s queue with a fresh request id
    /// header; returns the id.
    pub async fn publish(&self, broker: &crate::amqp::Broker) -> crate::error::Result<String> {
        let id = new_request_id();
        let mut headers = lapin::types::FieldTable::default();
        headers.insert(
            crate::amqp::REQUEST_HEADER.into(),
            lapin::types::AMQPValue::LongString(id.as_str().into()),
        );
        broker
            .publish_with_headers(self.skeleton().to_string().as_bytes(), headers)
            .await?;
        Ok(id)
    }

    /// The skeleton profile, shaped as the original's:
    /// `metadata.template.branch` and the `system` fields a build reads.
    pub fn skeleton(&self) -> Value {
        let branch = match &self.branch {
            Branch::Domain(name) => json!({"name": name, "type": "domain"}),
            Branch::Sandbox { author, name } => {
                json!({"name": name, "type": "sandbox", "author": author})
            }
        };
        json!({
            "metadata": {"template": {"branch": branch}},
            "system": {
                "personality": {"name": self.personality},
                "archetype": {"name": self.archetype},
                "os": {
                    "architecture": self.arch,
                    "distribution": {"name": self.os},
                    "version": {"name": self.os_version}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn skeleton_reads_back_as_the_profile_it_describes() {
        let r = TriggerRequest {
            personality: "nubes".into(),
            archetype: "ral-tier1".into(),
            os: "sl".into(),
            os_version: "7x".into(),
            arch: "x86_64".into(),
            branch: Branch::Sandbox {
                author: "jdoe".into(),
                name: "fix".into(),
            },
        };
        let text = r.skeleton().to_string();
        let p = Profile::from_json(text.as_bytes(), "skeleton").unwrap();
        assert_eq!(p.name(), "nubes-sl7x-x86_64");
        assert_eq!(p.domain, "jdoe/fix");
        assert_eq!(p.hostname, None);
        let r = TriggerRequest {
            branch: Branch::Domain("prod".into()),
            ..r
        };
        let p = Profile::from_json(r.skeleton().to_string().as_bytes(), "s").unwrap();
        assert_eq!(p.domain, "prod");
    }
}
