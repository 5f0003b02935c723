//! A Quattor profile (the message body) → the plan of the builds it asks for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The fields of a Quattor profile a build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `system.personality.name`.
    pub personality: String,
    /// `system.archetype.name`.
    pub archetype: String,
    /// `system.os.distribution.name`.
    pub os: String,
    /// `system.os.version.name`.
    pub os_version: String,
    /// `system.os.architecture`.
    pub arch: String,
    /// `system.network.hostname`, when the profile has one.
    pub hostname: Option<String>,
    /// The Aquilon domain or sandbox the profile was compiled from.
    pub domain: String,
}

fn field<'a>(root: &'a Value, what: &str, path: &str) -> Result<&'a str> {
    path.split('.')
        .try_fold(root, |v, k| v.get(k))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::MissingField {
            what: what.to_string(),
            field: path.to_string(),
        })
}

impl Profile {
    /// Parse a profile's JSON text; `what` names it in errors (e.g. `message 12`).
    ///
    /// `AQ_DOMAIN` comes from `metadata.template.branch`: a branch of type
    /// `domain` gives its `name`; a `sandbox` gives `<author>/<name>` (the
    /// form `aq make --sandbox` takes), or `<name>` when there is no author.
    pub fn from_json(text: &[u8], what: &str) -> Result<Self> {
        let root: Value = serde_json::from_slice(text).map_err(|source| Error::Json {
            what: what.to_string(),
            source,
        })?;
        let f = |p: &str| field(&root, what, p).map(str::to_string);
        let branch_type = f("metadata.template.branch.type")?;
        let branch_name = f("metadata.template.branch.name")?;
        let domain = match branch_type.as_str() {
            "sandbox" => match field(&root, what, "metadata.template.branch.author") {
                Ok(author) => format!("{author}/{branch_name}"),
                Err(_) => branch_name,
            },
            _ => branch_name,
        };
        let hostname = match root.pointer("/system/network/hostname") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(Error::MissingField {
                    what: what.to_string(),
                    field: "system.network.hostname".into(),
                })
            }
        };
        Ok(Profile {
            personality: f("system.personality.name")?,
            archetype: f("system.archetype.name")?,
            os: f("system.os.distribution.name")?,
            os_version: f("system.os.version.name")?,
            arch: f("system.os.architecture")?,
            hostname,
            domain,
        })
    }

    /// The build name: the profile's hostname when it has one (the 2021
    /// behaviour), else `<personality>-<os><os_ver>-<arch>` (the 2019 one).
    /// Keys the template map and names build and log files.
    pub fn name(&self) -> String {
        match &self.hostname {
            Some(h) => h.clone(),
            None => format!(
                "{}-{}{}-{}",
                self.personality, self.os, self.os_version, self.arch
            ),
        }
    }

    /// The image name (`$NAME`): the hostname when there is one, else
    /// `<os><os_ver>-<arch> <personality>`.
    pub fn pretty_name(&self) -> String {
        match &self.hostname {
            Some(h) => h.clone(),
            None => format!(
                "{}{}-{} {}",
                self.os, self.os_version, self.arch, self.personality
            ),
        }
    }

    /// The flat source-image key, `<os><os_ver>-<arch>`.
    pub fn source_key(&self) -> String {
        format!("{}{}-{}", self.os, self.os_version, self.arch)
    }

    /// The instance metadata (`$METADATA`), in this order: AQ_PERSONALITY,
    /// AQ_OS, AQ_OSVERSION (`<ver>-<arch>`), AQ_DOMAIN, AQ_ARCHETYPE.
    pub fn metadata(&self) -> Vec<(String, String)> {
        vec![
            ("AQ_PERSONALITY".into(), self.personality.clone()),
            ("AQ_OS".into(), self.os.clone()),
            (
                "AQ_OSVERSION".into(),
                format!("{}-{}", self.os_version, self.arch),
            ),
            ("AQ_DOMAIN".into(), self.domain.clone()),
            ("AQ_ARCHETYPE".into(), self.archetype.clone()),
        ]
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|source| Error::Json {
        what: path.display().to_string(),
        source,
    })
}

/// `source-images.json` in either shape: flat `{"sl7x-x86_64": "<uuid>"}`
/// (2019) or nested `{"IMAGES": {"sl": {"7x-x86_64": "<uuid>"}}}` (2021).
#[derive(Debug, Clone)]
pub struct SourceImages {
    path: PathBuf,
    root: Value,
}

impl SourceImages {
    /// Read the file; its shape is checked on lookup.
    pub fn load(path: &Path) -> Result<Self> {
        let root = read_json(path)?;
        if !root.is_object() {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                message: "expected a JSON object".into(),
            });
        }
        Ok(SourceImages {
            path: path.to_path_buf(),
            root,
        })
    }

    /// Keys whose value is not a usable image id, as (key, problem): in
    /// the flat shape every value must be a non-empty string; in the nested
    /// one every `IMAGES.<os>` an object of non-empty strings.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let check = |key: String, v: &Value, out: &mut Vec<(String, String)>| match v {
            Value::String(s) if !s.is_empty() => {}
            _ => out.push((key, "is not a non-empty string (an image id)".into())),
        };
        match self.root.get("IMAGES") {
            Some(Value::Object(oses)) => {
                for (os, vers) in oses {
                    match vers {
                        Value::Object(m) => {
                            for (k, v) in m {
                                check(format!("IMAGES.{os}.{k}"), v, &mut out);
                            }
                        }
                        _ => out.push((format!("IMAGES.{os}"), "is not an object".into())),
                    }
                }
            }
            Some(_) => out.push(("IMAGES".into(), "is not an object".into())),
            None => {
                if let Value::Object(m) = &self.root {
                    for (k, v) in m {
                        check(k.clone(), v, &mut out);
                    }
                }
            }
        }
        out
    }

    /// The source image UUID for a profile.
    pub fn lookup(&self, profile: &Profile) -> Result<String> {
        let nested = self.root.get("IMAGES").filter(|v| v.is_object());
        let (found, key) = match nested {
            Some(images) => {
                let sub = format!("{}-{}", profile.os_version, profile.arch);
                (
                    images.get(&profile.os).and_then(|o| o.get(&sub)),
                    format!("IMAGES.{}.{sub}", profile.os),
                )
            }
            None => {
                let key = profile.source_key();
                (self.root.get(&key), key)
            }
        };
        match found {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(Error::BadFile {
                path: self.path.clone(),
                message: format!("{key} is not a non-empty string"),
            }),
            None => Err(Error::NoSourceImage {
                path: self.path.clone(),
                key,
            }),
        }
    }
}

/// `template-map.json`: build name → list of template files, with a
/// `DEFAULT` list for names that have no entry of their own.
#[derive(Debug, Clone)]
pub struct TemplateMap {
    path: PathBuf,
    map: BTreeMap<String, Vec<String>>,
}

impl TemplateMap {
    /// Read the file. Every value must be a list of strings.
    pub fn load(path: &Path) -> Result<Self> {
        let root = read_json(path)?;
        let map: BTreeMap<String, Vec<String>> =
            serde_json::from_value(root).map_err(|e| Error::BadFile {
                path: path.to_path_buf(),
                message: format!("expected an object of lists of template paths: {e}"),
            })?;
        Ok(TemplateMap {
            path: path.to_path_buf(),
            map,
        })
    }

    /// Every entry (key and resolved template paths), in key order.
    pub fn entries(&self) -> Vec<(String, Vec<PathBuf>)> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.map
            .iter()
            .map(|(k, list)| (k.clone(), list.iter().map(|t| dir.join(t)).collect()))
            .collect()
    }

    /// The templates for `name`: its own entry if it has one, else `DEFAULT`
    /// (an empty list if neither exists). Relative paths are resolved
    /// against the map file's directory.
    pub fn templates_for(&self, name: &str) -> Vec<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.map
            .get(name)
            .or_else(|| self.map.get("DEFAULT"))
            .map(|list| list.iter().map(|t| dir.join(t)).collect())
            .unwrap_or_default()
    }
}

/// Everything needed to run the builds one message asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    /// The build name (see [`Profile::name`]).
    pub name: String,
    /// The image name (see [`Profile::pretty_name`]).
    pub pretty_name: String,
    /// The source image UUID (`$IMAGE`).
    pub source_image: String,
    /// The instance metadata (`$METADATA`), in order.
    #[serde(serialize_with = "ordered_map")]
    pub metadata: Vec<(String, String)>,
    /// The templates to build, in order.
    pub templates: Vec<PathBuf>,
}

fn ordered_map<S: serde::Serializer>(
    pairs: &[(String, String)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

impl BuildPlan {
    /// The plan for one message: parse the profile, look up its source image
    /// and its templates.
    pub fn from_message(
        body: &[u8],
        what: &str,
        images: &SourceImages,
        templates: &TemplateMap,
    ) -> Result<Self> {
        let profile = Profile::from_json(body, what)?;
        let source_image = images.lookup(&profile)?;
        let name = profile.name();
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(Error::BadName {
                what: what.to_string(),
                name,
            });
        }
        Ok(BuildPlan {
            templates: templates.templates_for(&name),
            pretty_name: profile.pretty_name(),
            source_image,
            metadata: profile.metadata(),
            name,
        })
    }
}
