//! `svc-map` files: per-element YAML mapping generic service names to a
//! distribution's names (distro, then family, then `default`, else the name
//! itself), merged over all elements; a service named twice is an error.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use crate::element::Element;
use crate::error::{Error, Result};

/// The OS family of a `DISTRO_NAME` as DIB's svc-map spells it (narrower
/// than pkg-map's list, as in DIB).
fn family(distro: &str) -> Option<&'static str> {
    match distro {
        "centos" | "fedora" | "rhel" => Some("redhat"),
        "debian" | "ubuntu" => Some("debian"),
        "opensuse" => Some("suse"),
        _ => None,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Merge the `svc-map` files of `elements` for `distro`: service → name.
pub fn merge(elements: &[Element], distro: &str) -> Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for el in elements {
        let path = el.path.join("svc-map");
        if !path.exists() {
            continue;
        }
        let bad = |reason: String| Error::ElementFile {
            file: path.clone(),
            line: None,
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let doc: Value = serde_yaml::from_str(&text).map_err(|e| bad(format!("svc-map: {e}")))?;
        let Value::Mapping(map) = doc else {
            return Err(bad("svc-map: the top level must be a mapping".into()));
        };
        for (k, v) in map {
            let svc = scalar(&k);
            if let Some(first) = owner.get(&svc) {
                return Err(bad(format!(
                    "{svc} already found in services list (element {first})"
                )));
            }
            let pick = |key: &str| match &v {
                Value::Mapping(m) => m.get(key).map(scalar),
                _ => None,
            };
            let name = pick(distro)
                .or_else(|| family(distro).and_then(pick))
                .or_else(|| pick("default"))
                .unwrap_or_else(|| svc.clone());
            owner.insert(svc.clone(), el.name.clone());
            out.insert(svc, name);
        }
    }
    Ok(out)
}

/// The services file DIB installs at `/usr/share/svc-map/services` (YAML).
pub fn render(map: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in map {
        s.push_str(&format!("{}: {}\n", yaml_str(k), yaml_str(v)));
    }
    s
}

fn yaml_str(s: &str) -> String {
    serde_yaml::to_string(&Value::String(s.to_string()))
        .map(|t| t.trim_end().to_string())
        .unwrap_or_else(|_| format!("'{s}'"))
}

/// Read the merged services file from a root tree (used by in-chroot code
/// paths that want the mapping without running `svc-map`).
pub fn load(root: &Path) -> Result<BTreeMap<String, String>> {
    let path = root.join("usr/share/svc-map/services");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(Error::Io { path, source }),
    };
    serde_yaml::from_str(&text).map_err(|e| Error::ElementFile {
        file: path,
        line: None,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn el(dir: &Path, name: &str, svc_map: &str) -> Element {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("svc-map"), svc_map).unwrap();
        Element::load(name, &p).unwrap()
    }

    #[test]
    fn distro_then_family_then_default_then_name() {
        let d = tempfile::tempdir().unwrap();
        let a = el(
            d.path(),
            "a",
            "haproxy:\n  default: haproxy\n  redhat: haproxy-rh\n  debian: haproxy-deb\n  ubuntu: haproxy-ubu\nplain:\n  fedora: plain-f\n",
        );
        let b = el(d.path(), "b", "vrrp-octavia:\n  default: vrrp\n");
        let m = merge(&[a.clone(), b.clone()], "debian").unwrap();
        assert_eq!(m["haproxy"], "haproxy-deb");
        assert_eq!(m["plain"], "plain");
        assert_eq!(m["vrrp-octavia"], "vrrp");
        let m = merge(&[a.clone(), b.clone()], "ubuntu").unwrap();
        assert_eq!(m["haproxy"], "haproxy-ubu");
        let m = merge(std::slice::from_ref(&a), "centos").unwrap();
        assert_eq!(m["haproxy"], "haproxy-rh");
        assert_eq!(
            merge(std::slice::from_ref(&a), "fedora").unwrap()["plain"],
            "plain-f"
        );
        let text = render(&merge(&[a.clone(), b], "debian").unwrap());
        let back: BTreeMap<String, String> = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back["haproxy"], "haproxy-deb");
        // a service named by two elements is an error naming both
        let c = el(d.path(), "c", "haproxy:\n  default: other\n");
        let err = merge(&[a, c], "debian").unwrap_err().to_string();
        assert!(
            err.contains("haproxy already found")
                && err.contains("element a")
                && err.contains("c/svc-map"),
            "{err}"
        );
    }
}
