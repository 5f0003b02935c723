//! `cdb2rabbit`: publish the Quattor profiles that changed since the last
//! run.
//!
//! Compared with the original: `profiles-info.xml` is parsed as XML and its
//! `<profile>` entries (name and attributes, e.g. `mtime`) are compared,
//! not its lines; a profile is published when its text differs from the
//! cached copy; caches are updated only after the broker confirmed the
//! message, and `cached_info.xml` only when every changed profile was
//! handled, so a failed run is retried in full by the next one. Profile
//! names that could leave `CACHE_DIR` (containing `/`, or `.`/`..`) are
//! skipped with a warning. The first run (no `cached_info.xml`) only
//! records the current state, as the original does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use quick_xml::XmlVersion;
use tracing::{info, info_span, warn, Instrument};

use crate::amqp::Broker;
use crate::config::Config;
use crate::error::{Error, Result};

/// One `<profile>` entry of `profiles-info.xml`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProfileEntry {
    /// The profile file name (the element's text).
    pub name: String,
    /// The element's attributes, sorted (e.g. `mtime`).
    pub attributes: Vec<(String, String)>,
}

/// The `<profile>` entries of a `profiles-info.xml` document; `url` names
/// it in errors.
pub fn parse_profiles_info(xml: &str, url: &str) -> Result<Vec<ProfileEntry>> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let err = |reader: &Reader<&[u8]>, message: String| Error::ProfilesInfo {
        url: url.to_string(),
        position: reader.error_position(),
        message,
    };
    let mut out = Vec::new();
    let mut current: Option<ProfileEntry> = None;
    loop {
        match reader.read_event() {
            Err(e) => return Err(err(&reader, e.to_string())),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) if e.name().as_ref() == "profile" => {
                let mut attributes = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| err(&reader, e.to_string()))?;
                    let value = a
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| err(&reader, e.to_string()))?;
                    attributes.push((a.key.as_ref().to_string(), value.into_owned()));
                }
                attributes.sort();
                current = Some(ProfileEntry {
                    name: String::new(),
                    attributes,
                });
            }
            Ok(Event::Text(t)) => {
                if let Some(c) = current.as_mut() {
                    c.name.push_str(&t.xml_content(XmlVersion::Implicit1_0));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let Some(c) = current.as_mut() {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(ch)) => ch,
                        Ok(None) => match r.xml_content(XmlVersion::Implicit1_0).as_ref() {
                            "lt" => '<',
                            "gt" => '>',
                            "amp" => '&',
                            "apos" => '\'',
                            "quot" => '"',
                            other => return Err(err(&reader, format!("unknown entity &{other};"))),
                        },
                        Err(e) => return Err(err(&reader, e.to_string())),
                    };
                    c.name.push(resolved);
                }
            }
            Ok(Event::End(e)) if e.name().as_ref() == "profile" => {
                if let Some(c) = current.take() {
                    let name = c.name.trim().to_string();
                    if !name.is_empty() {
                        out.push(ProfileEntry { name, ..c });
                    }
                }
            }
            Ok(_) => {}
        }
    }
    Ok(out)
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cdb2RabbitReport {
    /// No cached `profiles-info.xml` existed: the state was recorded only.
    pub first_run: bool,
    /// Entries new or changed since the cached `profiles-info.xml`.
    pub changed: Vec<String>,
    /// Profiles published (matching `PROFILE_MATCH` and with new content).
    pub published: Vec<String>,
}

/// The `cdb2rabbit` job.
#[derive(Debug, Clone)]
pub struct Cdb2Rabbit {
    /// `PROFILE_INFO_URL`.
    pub info_url: String,
    /// `PROFILE_DIR_URL`.
    pub dir_url: String,
    /// `PROFILE_MATCH`.
    pub profile_match: String,
    /// `CACHE_DIR`.
    pub cache_dir: PathBuf,
    /// Where changed profiles are published.
    pub broker: Broker,
}

fn required(config: &Config, key: &str, value: Option<&String>) -> Result<String> {
    value.cloned().ok_or_else(|| Error::ConfigValue {
        path: config.path.clone(),
        section: "cdb2rabbit".into(),
        key: key.into(),
        message: "required by cdb2rabbit but not set".into(),
    })
}

async fn get(client: &reqwest::Client, url: &str) -> Result<String> {
    let http = |message: String| Error::Http {
        url: url.to_string(),
        message,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| http(e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(http(format!("HTTP {status}")));
    }
    resp.text().await.map_err(|e| http(e.to_string()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

impl Cdb2Rabbit {
    /// The job as a config file describes it (`PROFILE_INFO_URL` and
    /// `PROFILE_DIR_URL` are required).
    pub fn from_config(config: &Config) -> Result<Self> {
        let c = &config.cdb2rabbit;
        Ok(Cdb2Rabbit {
            info_url: required(config, "PROFILE_INFO_URL", c.profile_info_url.as_ref())?,
            dir_url: required(config, "PROFILE_DIR_URL", c.profile_dir_url.as_ref())?,
            profile_match: c.profile_match.clone(),
            cache_dir: c.cache_dir.clone(),
            broker: Broker::from_config(config),
        })
    }

    /// Fetch `profiles-info.xml`, publish the changed matching profiles,
    /// update the caches.
    pub async fn run(&self) -> Result<Cdb2RabbitReport> {
        let span = info_span!("cdb2rabbit", queue = %self.broker.queue, info = %self.info_url);
        self.run_inner().instrument(span).await
    }

    async fn run_inner(&self) -> Result<Cdb2RabbitReport> {
        let client = reqwest::Client::new();
        std::fs::create_dir_all(&self.cache_dir).map_err(|e| Error::io(&self.cache_dir, e))?;
        let info_text = get(&client, &self.info_url).await?;
        let entries = parse_profiles_info(&info_text, &self.info_url)?;
        let cached_info = self.cache_dir.join("cached_info.xml");
        let mut report = Cdb2RabbitReport::default();
        let old_text = match std::fs::read_to_string(&cached_info) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write(&cached_info, &info_text)?;
                info!(
                    profiles = entries.len(),
                    "first run: state recorded, nothing published"
                );
                report.first_run = true;
                return Ok(report);
            }
            Err(e) => return Err(Error::io(&cached_info, e)),
        };
        let old: BTreeSet<ProfileEntry> =
            parse_profiles_info(&old_text, &cached_info.display().to_string())?
                .into_iter()
                .collect();
        for entry in entries.iter().filter(|e| !old.contains(e)) {
            report.changed.push(entry.name.clone());
            let name = &entry.name;
            if !name.contains(self.profile_match.as_str()) {
                continue;
            }
            if name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
                warn!(profile = %name, "profile name cannot be a cache file name; skipped");
                continue;
            }
            let url = format!("{}/{}", self.dir_url.trim_end_matches('/'), name);
            let text = get(&client, &url).await?;
            let cache = self.cache_dir.join(name);
            let cached = match std::fs::read_to_string(&cache) {
                Ok(t) => Some(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(&cache, e)),
            };
            if cached.as_deref() == Some(text.as_str()) {
                info!(profile = %name, "listed as changed but its content is the same");
                continue;
            }
            self.broker.publish(text.as_bytes()).await?;
            write(&cache, &text)?;
            info!(profile = %name, "published");
            report.published.push(name.clone());
        }
        write(&cached_info, &info_text)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profile_entries_with_attributes() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<profiles>
  <profile mtime="1575000000">host1.example.org.json</profile>
  <profile mtime="2" other="x">a&amp;b.json</profile>
  <profile/>
</profiles>"#;
        let e = parse_profiles_info(xml, "info").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "host1.example.org.json");
        assert_eq!(e[0].attributes, vec![("mtime".into(), "1575000000".into())]);
        assert_eq!(e[1].name, "a&b.json");
        assert_eq!(e[1].attributes.len(), 2);
    }

    #[test]
    fn malformed_xml_names_the_source() {
        let e = parse_profiles_info("<profiles><profile>x</profiles>", "http://h/info.xml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("http://h/info.xml: invalid profiles-info XML at byte"),
            "{e}"
        );
    }
}
