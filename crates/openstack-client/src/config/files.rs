//! Finding and reading `clouds.yaml` / `secure.yaml`: the openstacksdk search
//! path, one cloud's entry, and merging `secure.yaml` over it.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::cfg_err;
use crate::error::Result;

/// The openstacksdk search path for `clouds` or `secure` files.
pub(super) fn find_config_file(
    getenv: &dyn Fn(&str) -> Option<String>,
    env: &str,
    stem: &str,
) -> Result<Option<PathBuf>> {
    if let Some(p) = getenv(env) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(Some(p));
        }
        return Err(cfg_err(
            Some(&p),
            format!("named by {env} but not a readable file"),
        ));
    }
    let mut dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd);
    }
    if let Some(xdg) = getenv("XDG_CONFIG_HOME") {
        dirs.push(PathBuf::from(xdg).join("openstack"));
    }
    if let Some(home) = dirs::home_dir() {
        dirs.push(home.join(".config").join("openstack"));
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    for dir in dirs {
        for ext in ["yaml", "yml", "json"] {
            let p = dir.join(format!("{stem}.{ext}"));
            if p.is_file() {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

pub(super) fn cloud_entry(path: &Path, name: &str) -> Result<Mapping> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| cfg_err(Some(path), format!("cannot read: {e}")))?;
    let doc: Value = serde_yaml::from_str(&text)
        .map_err(|e| cfg_err(Some(path), format!("invalid YAML: {e}")))?;
    let clouds = doc
        .get("clouds")
        .and_then(Value::as_mapping)
        .ok_or_else(|| cfg_err(Some(path), "no 'clouds:' mapping"))?;
    match clouds.get(name) {
        Some(Value::Mapping(m)) => Ok(m.clone()),
        Some(_) => Err(cfg_err(
            Some(path),
            format!("cloud '{name}' is not a mapping"),
        )),
        None => {
            let names: Vec<&str> = clouds.keys().filter_map(Value::as_str).collect();
            Err(cfg_err(
                Some(path),
                format!(
                    "cloud '{name}' not found (clouds defined: {})",
                    names.join(", ")
                ),
            ))
        }
    }
}

pub(super) fn secure_entry(path: &Path, name: &str) -> Result<Option<Mapping>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| cfg_err(Some(path), format!("cannot read: {e}")))?;
    let doc: Value = serde_yaml::from_str(&text)
        .map_err(|e| cfg_err(Some(path), format!("invalid YAML: {e}")))?;
    match doc.get("clouds").and_then(|c| c.get(name)) {
        None => Ok(None),
        Some(Value::Mapping(m)) => Ok(Some(m.clone())),
        Some(_) => Err(cfg_err(
            Some(path),
            format!("cloud '{name}' is not a mapping"),
        )),
    }
}

pub(super) fn merge(base: &mut Mapping, overlay: Mapping) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
