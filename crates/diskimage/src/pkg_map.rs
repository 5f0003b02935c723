//! `pkg-map` files: per-element JSON mapping generic package names to a
//! distribution's names, with DIB's precedence: `release` over `distro` over
//! `family` over `default`; a name mapped to an empty string is skipped, an
//! unmapped name passes through (DIB's `--missing-ok`, as package-installs
//! calls it).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The OS family of a `DISTRO_NAME`, as DIB's pkg-map spells it.
pub fn os_family(distro: &str) -> Option<&'static str> {
    match distro {
        "almalinux" | "fedora" | "rhel" | "centos" | "openeuler" | "rocky" => Some("redhat"),
        "debian" | "ubuntu" => Some("debian"),
        "opensuse" => Some("suse"),
        "gentoo" => Some("gentoo"),
        _ => None,
    }
}

/// One element's parsed `pkg-map`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PkgMap {
    raw: serde_json::Map<String, Value>,
}

impl PkgMap {
    /// Parse a `pkg-map` file.
    pub fn load(path: &Path) -> Result<PkgMap> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| Error::ElementFile {
            file: path.to_path_buf(),
            line: None,
            reason,
        })
    }

    /// Parse `pkg-map` JSON text.
    pub fn parse(text: &str) -> std::result::Result<PkgMap, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(raw)) => Ok(PkgMap { raw }),
            Ok(_) => Err("pkg-map: the top level must be a JSON object".into()),
            Err(e) => Err(format!("pkg-map: {e}")),
        }
    }

    /// The effective name table for `distro` / `release`.
    pub fn table(&self, distro: &str, release: Option<&str>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut merge = |v: Option<&Value>| {
            if let Some(Value::Object(m)) = v {
                for (k, v) in m {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    out.insert(k.clone(), s);
                }
            }
        };
        merge(self.raw.get("default"));
        if let Some(f) = os_family(distro) {
            merge(self.raw.get("family").and_then(|m| m.get(f)));
        }
        merge(self.raw.get("distro").and_then(|m| m.get(distro)));
        if let Some(r) = release {
            let r = if r == "8-stream" { "8" } else { r };
            merge(
                self.raw
                    .get("release")
                    .and_then(|m| m.get(distro))
                    .and_then(|m| m.get(r)),
            );
        }
        out
    }

    /// Map `names`: mapped names (whitespace-separated lists split), names
    /// mapped to "" dropped, unknown names kept.
    pub fn map(&self, distro: &str, release: Option<&str>, names: &[String]) -> Vec<String> {
        let table = self.table(distro, release);
        let mut out = Vec::new();
        for n in names {
            match table.get(n) {
                Some(m) if m.is_empty() => {}
                Some(m) => out.extend(m.split_whitespace().map(String::from)),
                None => out.push(n.clone()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn precedence_release_distro_family_default() {
        let m = PkgMap::parse(
            r#"{"default": {"a": "a-def", "b": "b-def", "c": "c-def", "gone": "x"},
                "family": {"debian": {"a": "a-fam", "b": "b-fam"}},
                "distro": {"debian": {"a": "a-dist"}},
                "release": {"debian": {"bookworm": {"c": "c-rel", "gone": ""}}}}"#,
        )
        .unwrap();
        let names: Vec<String> = ["a", "b", "c", "gone", "other"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            m.map("debian", Some("bookworm"), &names),
            ["a-dist", "b-fam", "c-rel", "other"]
        );
        assert_eq!(
            m.map("fedora", Some("40"), &names),
            ["a-def", "b-def", "c-def", "x", "other"]
        );
        assert_eq!(
            m.map("ubuntu", None, &names),
            ["a-fam", "b-fam", "c-def", "x", "other"]
        );
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(PkgMap::parse("[1]").is_err());
        assert!(PkgMap::parse("{").unwrap_err().starts_with("pkg-map:"));
    }
}
