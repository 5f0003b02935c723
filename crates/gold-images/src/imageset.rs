//! Image set files: himlarcli's `config/images/*.yaml` (`default.yaml`,
//! `vgpu.yaml`, `retired.yaml`, ...).
//!
//! ```yaml
//! type: 'gold'
//! images:
//!   'ubuntu_2404':
//!     'name':             'GOLD Ubuntu 24.04 LTS'
//!     'depricated':       'Outdated (Ubuntu 24.04)'   # the spelling is the format's
//!     'url':              'http://builder/'
//!     'latest':           'ubuntu_2404-latest.qcow2'
//!     'builder_checksum': 'ubuntu_2404-latest.md5'
//!     'min_ram':          768
//!     'min_disk':         8
//! ```
//!
//! Unlike the original, which silently skipped an entry missing a
//! mandatory key, a file with problems is refused as a whole with one line
//! per problem naming the file and the key (a wrong YAML type, a missing
//! key, an unknown visibility, digest, disk or container format).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use openstack_client::glance::Visibility;
use serde_yaml::Value;

use crate::error::{Error, Problem, Result};

/// Keys every entry of an update set must have (himlarcli's `mandatory`).
pub const MANDATORY: [&str; 6] = ["latest", "url", "name", "min_ram", "min_disk", "depricated"];

/// Keys an entry of a retire set must have.
pub const MANDATORY_RETIRE: [&str; 2] = ["name", "depricated"];

/// Keys an entry may have; anything else is logged as ignored.
const KNOWN_KEYS: [&str; 16] = [
    "name",
    "depricated",
    "url",
    "latest",
    "builder_checksum",
    "checksum_file",
    "checksum",
    "min_ram",
    "min_disk",
    "visibility",
    "disk_format",
    "container_format",
    "properties",
    "tags",
    "owner",
    "retired",
];

/// Digest algorithms `checksum` may name.
pub const DIGESTS: [&str; 5] = ["md5", "sha224", "sha256", "sha384", "sha512"];

/// Disk formats Glance knows (its `disk_formats` option can only narrow
/// them): anything else would be refused at image creation, after the
/// download.
pub const DISK_FORMATS: [&str; 11] = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];

/// Container formats Glance knows (`container_formats`).
pub const CONTAINER_FORMATS: [&str; 8] = [
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

/// What the set is loaded for: which keys are mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `update`: every entry not marked `retired: 1` has [`MANDATORY`].
    Update,
    /// `retire` (`retired.yaml`): entries need only [`MANDATORY_RETIRE`].
    Retire,
}

/// Where the builder publishes an image and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// Base URL (`url`), e.g. `http://builder/`.
    pub url: String,
    /// File name of the image under `url` (`latest`).
    pub latest: String,
    /// File under `url` whose first token is the image's md5 (`builder_checksum`).
    pub builder_checksum: Option<String>,
    /// Checksum file under `url` and its digest (`checksum_file` + `checksum`):
    /// the downloaded data's digest must appear in it.
    pub checksum_file: Option<(String, String)>,
}

impl Source {
    /// URL of the image file (`url` + `latest`, as the original joins them).
    pub fn image_url(&self) -> String {
        format!("{}{}", self.url, self.latest)
    }

    /// URL of the builder's md5 file, when configured.
    pub fn builder_checksum_url(&self) -> Option<String> {
        self.builder_checksum
            .as_ref()
            .map(|f| format!("{}{f}", self.url))
    }

    /// URL and digest of the checksum file, when configured.
    pub fn checksum_file_url(&self) -> Option<(String, String)> {
        self.checksum_file
            .as_ref()
            .map(|(f, algo)| (format!("{}{f}", self.url), algo.clone()))
    }
}

/// One image of a set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageEntry {
    /// Short name: the map key and the second tag (`ubuntu_2404`).
    pub short_name: String,
    /// Display name of the active image (`GOLD Ubuntu 24.04 LTS`).
    pub name: String,
    /// Display name once retired (`depricated`).
    pub depricated: String,
    /// Where the data comes from (absent in retire sets).
    pub source: Option<Source>,
    /// Minimum RAM in MB.
    pub min_ram: Option<u64>,
    /// Minimum disk in GB.
    pub min_disk: Option<u64>,
    /// Visibility of a new image (default `private`).
    pub visibility: Visibility,
    /// Disk format (default `qcow2`).
    pub disk_format: String,
    /// Container format (default `bare`).
    pub container_format: String,
    /// Glance properties of a new image.
    pub properties: BTreeMap<String, String>,
    /// Extra tags after `[type, short name]`.
    pub tags: Vec<String>,
    /// Owner project **name** (resolved through Keystone).
    pub owner: Option<String>,
    /// `retired: 1`: skipped by `update`.
    pub retired: bool,
}

/// A parsed, checked image set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageSet {
    /// The file it came from.
    pub path: PathBuf,
    /// `type`: the first tag of every image of the set.
    pub image_type: String,
    /// Entries in file order.
    pub images: IndexMap<String, ImageEntry>,
}

impl ImageSet {
    /// Read and check the file at `path`.
    pub fn load(path: &Path, kind: SetKind) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, kind)
    }

    /// Parse and check `text`; `path` names it in errors.
    pub fn parse(path: &Path, text: &str, kind: SetKind) -> Result<Self> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| Error::Yaml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut checker = Checker::default();
        let set = checker.set(path, &doc, kind);
        if checker.problems.is_empty() {
            Ok(set)
        } else {
            Err(Error::Invalid {
                path: path.to_owned(),
                problems: checker.problems,
            })
        }
    }

    /// The entries `update` works on: not retired, and only `name` when given.
    pub fn update_entries<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> impl Iterator<Item = &'a ImageEntry> + 'a {
        self.images.values().filter(move |e| {
            if e.retired {
                tracing::debug!(image = %e.short_name, "dropped: image retired");
                return false;
            }
            name.is_none_or(|n| n == e.short_name)
        })
    }
}

/// Collects every problem of a document.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

/// A YAML value's type, for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A mapping key as text (keys may be numbers in YAML).
fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Checker {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn set(&mut self, path: &Path, doc: &Value, kind: SetKind) -> ImageSet {
        let mut set = ImageSet {
            path: path.to_owned(),
            image_type: String::new(),
            images: IndexMap::new(),
        };
        let Some(top) = doc.as_mapping() else {
            self.problem(
                "(top level)",
                format!(
                    "must be a mapping with 'type' and 'images', found {}",
                    type_name(doc)
                ),
            );
            return set;
        };
        match top.get("type") {
            None => self.problem("type", "missing (the image type tag, e.g. 'gold')"),
            Some(Value::String(s)) if !s.trim().is_empty() => set.image_type = s.clone(),
            Some(Value::String(_)) => self.problem("type", "must not be empty"),
            Some(v) => self.problem("type", format!("must be a string, found {}", type_name(v))),
        }
        for k in top.keys() {
            match key_text(k).as_deref() {
                Some("type" | "images") => {}
                Some(other) => {
                    tracing::warn!(file = %path.display(), key = other, "unknown top-level key ignored")
                }
                None => self.problem("(top level)", "a key is not a string"),
            }
        }
        let images = match top.get("images") {
            None => {
                self.problem("images", "missing (the map of short name to image)");
                return set;
            }
            Some(Value::Mapping(m)) => m,
            Some(Value::Null) => return set,
            Some(v) => {
                self.problem(
                    "images",
                    format!("must be a mapping, found {}", type_name(v)),
                );
                return set;
            }
        };
        for (k, v) in images {
            let Some(short) = key_text(k) else {
                self.problem("images", "an image key is not a string");
                continue;
            };
            if let Some(entry) = self.entry(path, &short, v, kind) {
                set.images.insert(short, entry);
            }
        }
        set
    }

    fn string(&mut self, m: &serde_yaml::Mapping, key: &str, at: &str) -> Option<String> {
        match m.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            v => {
                self.problem(
                    format!("{at}.{key}"),
                    format!("must be a string, found {}", type_name(v)),
                );
                None
            }
        }
    }

    fn integer(&mut self, m: &serde_yaml::Mapping, key: &str, at: &str) -> Option<u64> {
        match m.get(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            v => {
                self.problem(
                    format!("{at}.{key}"),
                    format!("must be a non-negative integer, found {}", describe(v)),
                );
                None
            }
        }
    }

    fn entry(&mut self, path: &Path, short: &str, v: &Value, kind: SetKind) -> Option<ImageEntry> {
        let at = format!("images.{short}");
        let Some(m) = v.as_mapping() else {
            self.problem(&at, format!("must be a mapping, found {}", type_name(v)));
            return None;
        };
        let before = self.problems.len();
        let retired = match m.get("retired") {
            None => false,
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.problem(
                    format!("{at}.retired"),
                    format!("must be 1 or 0, found {}", describe(v)),
                );
                false
            }
        };
        let mandatory: &[&str] = match kind {
            SetKind::Update if !retired => &MANDATORY,
            _ => &MANDATORY_RETIRE,
        };
        for key in mandatory {
            if !m.contains_key(*key) {
                let message = if *key == "depricated" && m.contains_key("deprecated") {
                    "missing mandatory key (found 'deprecated': the format spells it 'depricated')"
                } else {
                    "missing mandatory key"
                };
                self.problem(format!("{at}.{key}"), message);
            }
        }
        for k in m.keys() {
            match key_text(k) {
                Some(key) if KNOWN_KEYS.contains(&key.as_str()) => {}
                Some(key) => {
                    tracing::warn!(file = %path.display(), key = %format!("{at}.{key}"), "unknown key ignored")
                }
                None => self.problem(&at, "a key is not a string"),
            }
        }
        let name = self.string(m, "name", &at).unwrap_or_default();
        let depricated = self.string(m, "depricated", &at).unwrap_or_default();
        let url = self.string(m, "url", &at);
        let latest = self.string(m, "latest", &at);
        if let Some(u) = &url {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") => {}
                Ok(p) => self.problem(
                    format!("{at}.url"),
                    format!("scheme '{}' is not http or https", p.scheme()),
                ),
                Err(e) => self.problem(format!("{at}.url"), format!("not a URL: {e}")),
            }
        }
        let builder_checksum = self.string(m, "builder_checksum", &at);
        let checksum_file = self.string(m, "checksum_file", &at);
        let checksum = self.string(m, "checksum", &at);
        let checksum_pair = match (checksum_file, checksum) {
            (Some(f), Some(a)) => {
                let algo = a.to_ascii_lowercase();
                if DIGESTS.contains(&algo.as_str()) {
                    Some((f, algo))
                } else {
                    self.problem(
                        format!("{at}.checksum"),
                        format!("unknown digest '{a}' (one of {})", DIGESTS.join(", ")),
                    );
                    None
                }
            }
            (Some(_), None) => {
                self.problem(
                    format!("{at}.checksum"),
                    "missing: 'checksum_file' needs 'checksum' (md5, sha256, ...)",
                );
                None
            }
            (None, Some(_)) => {
                self.problem(
                    format!("{at}.checksum_file"),
                    "missing: 'checksum' needs 'checksum_file'",
                );
                None
            }
            (None, None) => None,
        };
        let min_ram = self.integer(m, "min_ram", &at);
        let min_disk = self.integer(m, "min_disk", &at);
        let visibility = match self.string(m, "visibility", &at).as_deref() {
            None => Visibility::Private,
            Some("public") => Visibility::Public,
            Some("private") => Visibility::Private,
            Some("shared") => Visibility::Shared,
            Some("community") => Visibility::Community,
            Some(other) => {
                self.problem(
                    format!("{at}.visibility"),
                    format!("unknown visibility '{other}' (public, private, shared or community)"),
                );
                Visibility::Private
            }
        };
        let disk_format = self
            .string(m, "disk_format", &at)
            .unwrap_or_else(|| "qcow2".into());
        let container_format = self
            .string(m, "container_format", &at)
            .unwrap_or_else(|| "bare".into());
        for (key, value, known) in [
            ("disk_format", &disk_format, &DISK_FORMATS[..]),
            (
                "container_format",
                &container_format,
                &CONTAINER_FORMATS[..],
            ),
        ] {
            if !known.contains(&value.as_str()) {
                self.problem(
                    format!("{at}.{key}"),
                    format!("unknown {key} '{value}' (one of {})", known.join(", ")),
                );
            }
        }
        let owner = self.string(m, "owner", &at);
        let mut properties = BTreeMap::new();
        match m.get("properties") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(props)) => {
                for (k, v) in props {
                    let Some(key) = key_text(k) else {
                        self.problem(format!("{at}.properties"), "a key is not a string");
                        continue;
                    };
                    match v {
                        Value::String(s) => {
                            properties.insert(key, s.clone());
                        }
                        Value::Number(n) => {
                            properties.insert(key, n.to_string());
                        }
                        other => self.problem(
                            format!("{at}.properties.{key}"),
                            format!(
                                "must be a string (Glance properties are strings; quote it), found {}",
                                describe(other)
                            ),
                        ),
                    }
                }
            }
            Some(v) => self.problem(
                format!("{at}.properties"),
                format!("must be a mapping, found {}", type_name(v)),
            ),
        }
        let mut tags = Vec::new();
        match m.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => {
                for (i, t) in items.iter().enumerate() {
                    match t {
                        Value::String(s) => tags.push(s.clone()),
                        other => self.problem(
                            format!("{at}.tags[{i}]"),
                            format!("must be a string, found {}", type_name(other)),
                        ),
                    }
                }
            }
            Some(v) => self.problem(
                format!("{at}.tags"),
                format!("must be a list, found {}", type_name(v)),
            ),
        }
        if self.problems.len() > before {
            return None;
        }
        let source = match (url, latest) {
            (Some(url), Some(latest)) => Some(Source {
                url,
                latest,
                builder_checksum,
                checksum_file: checksum_pair,
            }),
            _ => None,
        };
        Some(ImageEntry {
            short_name: short.to_owned(),
            name,
            depricated,
            source,
            min_ram,
            min_disk,
            visibility,
            disk_format,
            container_format,
            properties,
            tags,
            owner,
            retired,
        })
    }
}

/// A value for a message: its type, and the value itself when short.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string '{s}'"),
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("the boolean {b}"),
        other => type_name(other).to_owned(),
    }
}

/// Find an image set file: a path that exists as given, else `name` under
/// each of `dirs` (himlarcli reads `config/images/<name>`).
pub fn resolve(name: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    let given = PathBuf::from(name);
    let mut searched = Vec::new();
    if given.is_file() {
        return Ok(given);
    }
    searched.push(given.clone());
    if given.is_absolute() {
        return Err(Error::NotFound {
            what: "image config file",
            name: name.to_owned(),
            searched,
        });
    }
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
        searched.push(p);
    }
    Err(Error::NotFound {
        what: "image config file",
        name: name.to_owned(),
        searched,
    })
}
