//! Reading a configuration: the file (or text) and its resolution order,
//! `--config` overrides, environment fallbacks, and each target section
//! with its options checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ini_config::{Ini, DEFAULT_SECTION};

use super::{
    ConfigSource, Env, GlanceSyncConfig, LoadOptions, Secret, TargetConfig, Transfer,
    DEFAULT_CONCURRENT_IMPORTS, DEFAULT_CONFIG_FILE, DIALECT,
};
use crate::condition::Condition;
use crate::error::{Error, Result};

impl GlanceSyncConfig {
    /// Load with the original's resolution order, overrides and env fallbacks.
    pub fn load(source: &ConfigSource, opts: &LoadOptions, env: &dyn Env) -> Result<Self> {
        let mut ini = match source {
            ConfigSource::Text { name, text } => Ini::parse(name.clone(), text, DIALECT)?,
            ConfigSource::File(p) => read_file(p)?,
            ConfigSource::Resolve { explicit } => {
                let path = env
                    .var("GLANCESYNC_CONFIG")
                    .map(PathBuf::from)
                    .or_else(|| explicit.clone())
                    .or_else(|| {
                        let p = Path::new(DEFAULT_CONFIG_FILE);
                        p.exists().then(|| p.to_path_buf())
                    });
                match path {
                    Some(p) => read_file(&p)?,
                    None => Ini::new("<environment>", DIALECT),
                }
            }
        };
        for (k, v) in [
            ("use_keystone_v3", "False"),
            ("support_obsolete_images", "True"),
            ("only_tenant_images", "True"),
            ("list_images_timeout", "30"),
        ] {
            ini.set_default_if_absent(k, v);
        }
        for arg in &opts.overrides {
            apply_override(&mut ini, arg)?;
        }
        Self::from_ini(&ini, opts.require_credentials, env)
    }

    /// Build from a parsed INI document.
    pub fn from_ini(ini: &Ini, require_credentials: bool, env: &dyn Env) -> Result<Self> {
        let file = ini.source().to_string();
        let master_region = ini
            .get("main", "master_region")?
            .map(|s| s.trim().to_string())
            .or_else(|| env.var("OS_REGION_NAME"));
        if master_region.is_none() {
            tracing::error!("A master region must be set in the configuration or OS_REGION_NAME must be defined");
        }
        let preferable_order = get_list(ini, "main", "preferable_order")?;
        let max_children = match ini.get_int("main", "max_children")? {
            None => 1,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(1),
            Some(_) => {
                return Err(ini
                    .option_error("main", "max_children", "must be at least 1")
                    .into())
            }
        };
        let images_dir = ini
            .get("main", "images_dir")?
            .map(|s| PathBuf::from(s.trim()));

        let mut targets = indexmap::IndexMap::new();
        for section in ini.sections() {
            if section == "main" || section == "DEFAULTS" {
                continue;
            }
            let t = read_target(ini, section, require_credentials)?;
            targets.insert(section.to_string(), t);
        }
        if !targets.contains_key("master") {
            let mut t = TargetConfig::empty("master");
            // DEFAULT values apply to the implicit master target as well.
            if ini.has_section(DEFAULT_SECTION) {
                if let Ok(mut with_defaults) = read_target_defaults_only(ini) {
                    with_defaults.name = "master".into();
                    t = with_defaults;
                }
            }
            targets.insert("master".to_string(), t);
        }
        if let Some(master) = targets.get_mut("master") {
            let fallbacks = [
                ("OS_USERNAME", "A username for master target must be provided in configuration or OS_USERNAME must be defined"),
                ("OS_PASSWORD", "A password for master target must be provided in configuration or OS_PASSWORD must be defined. In the configuration file, passwords must be encoded with base64"),
                ("OS_AUTH_URL", "A keystone url for master target must be provided in configuration or OS_AUTH_URL must be defined."),
                ("OS_TENANT_NAME", "A tenant name for master target must be provided in configuration or OS_TENANT_NAME must be defined."),
            ];
            for (i, (var, msg)) in fallbacks.iter().enumerate() {
                let present = match i {
                    0 => master.user.is_some(),
                    1 => master.password.is_some(),
                    2 => master.keystone_url.is_some(),
                    _ => master.tenant.is_some(),
                };
                if present {
                    continue;
                }
                // OS_PROJECT_NAME is the modern spelling of OS_TENANT_NAME.
                let value = env.var(var).or_else(|| {
                    if i == 3 {
                        env.var("OS_PROJECT_NAME")
                    } else {
                        None
                    }
                });
                match (i, value) {
                    (0, Some(v)) => master.user = Some(v),
                    (1, Some(v)) => master.password = Some(Secret::new(v)),
                    (2, Some(v)) => master.keystone_url = Some(v),
                    (_, Some(v)) => master.tenant = Some(v),
                    (_, None) if require_credentials => {
                        return Err(Error::Config {
                            file: file.clone(),
                            message: (*msg).to_string(),
                        })
                    }
                    (_, None) => {}
                }
            }
        }
        Ok(GlanceSyncConfig {
            source: file,
            master_region,
            preferable_order,
            max_children,
            images_dir,
            targets,
        })
    }
}

/// `arg` as error messages may show it: the value of a `password` or
/// `credential` option is replaced by `***`.
fn shown_override(arg: &str) -> String {
    match arg.split_once('=') {
        Some((key, _)) if is_secret_option(key) => format!("{key}=***"),
        _ => arg.to_string(),
    }
}

/// Options whose values carry a password.
fn is_secret_option(key: &str) -> bool {
    let option = key
        .trim()
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    option.contains("password") || option == "credential"
}

fn apply_override(ini: &mut Ini, arg: &str) -> Result<()> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(Error::Override {
            arg: shown_override(arg),
            message: "config options must have the format key=value".into(),
        });
    };
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        [section, option] => {
            if !ini.has_section(section) {
                return Err(Error::Override {
                    arg: shown_override(arg),
                    message: format!("no section [{section}] in {}", ini.source()),
                });
            }
            ini.set(section, option, value)
                .map_err(|e| Error::Override {
                    arg: shown_override(arg),
                    message: e.to_string(),
                })
        }
        [option] if !option.is_empty() => Ok(ini.set(DEFAULT_SECTION, option, value)?),
        _ => Err(Error::Override {
            arg: shown_override(arg),
            message: "key must be 'option' or 'section.option'".into(),
        }),
    }
}

/// Read `glancesync.conf` at `path`; a missing file names it.
fn read_file(path: &Path) -> Result<Ini> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Ini::parse(path.display().to_string(), &text, DIALECT)?)
}

/// Remove backslash-newline pairs (and the indentation configparser already
/// stripped), turning a value continued with `\` into one logical line.
pub fn join_backslash_lines(v: &str) -> String {
    v.replace("\\\n", "")
}

/// Split a comma-separated value the way GlanceSync does: trim each item;
/// a blank value gives an empty list.
pub fn split_list(v: &str) -> Vec<String> {
    let v = join_backslash_lines(v);
    let v = v.trim();
    if v.is_empty() {
        return Vec::new();
    }
    v.split(',').map(|x| x.trim().to_string()).collect()
}

/// A comma-separated option as a list (empty when absent).
fn get_list(ini: &Ini, section: &str, option: &str) -> Result<Vec<String>> {
    Ok(ini
        .get(section, option)?
        .map(|v| split_list(&v))
        .unwrap_or_default())
}

fn get_set(ini: &Ini, section: &str, option: &str) -> Result<BTreeSet<String>> {
    Ok(get_list(ini, section, option)?.into_iter().collect())
}

fn read_target_defaults_only(ini: &Ini) -> Result<TargetConfig> {
    read_target(ini, DEFAULT_SECTION, false)
}

fn read_target(ini: &Ini, section: &str, require_credentials: bool) -> Result<TargetConfig> {
    let mut t = TargetConfig::empty(section);
    let has = |o: &str| ini.has_option(section, o);
    let get_trim = |o: &str| -> Result<Option<String>> {
        Ok(ini
            .get(section, o)?
            .map(|v| join_backslash_lines(&v).trim().to_string()))
    };
    if has("user") && has("password") && has("keystone_url") && has("tenant") {
        t.user = get_trim("user")?;
        t.tenant = get_trim("tenant")?;
        t.password = get_trim("password")?.map(Secret::new);
        t.keystone_url = get_trim("keystone_url")?;
    } else if has("credential") {
        let cred = get_trim("credential")?.unwrap_or_default();
        let parts: Vec<&str> = cred.split(',').map(str::trim).collect();
        if parts.len() != 4 {
            return Err(ini
                .option_error(
                    section,
                    "credential",
                    format!("expected 4 comma-separated fields (user,base64(password),keystone_url,tenant), found {}", parts.len()),
                )
                .into());
        }
        let pw = base64::engine::general_purpose::STANDARD
            .decode(parts[1].as_bytes())
            .map_err(|_| {
                // The decoder's message shows the offending byte: not shown.
                ini.option_error(section, "credential", "password field is not valid base64")
            })?;
        let pw = String::from_utf8(pw).map_err(|_| {
            ini.option_error(section, "credential", "decoded password is not valid UTF-8")
        })?;
        t.user = Some(parts[0].to_string());
        t.password = Some(Secret::new(pw));
        t.keystone_url = Some(parts[2].to_string());
        t.tenant = Some(parts[3].to_string());
    } else if section != "master" && section != DEFAULT_SECTION && require_credentials {
        return Err(Error::Config {
            file: ini.source().to_string(),
            message: format!(
                "[{section}]: A credential parameter is mandatory for each target (or the set: user, password, tenant, keystone_url)"
            ),
        });
    } else if section == "master" {
        // Partial credentials in [master]; OS_* fill the rest.
        t.user = get_trim("user")?;
        t.password = get_trim("password")?.map(Secret::new);
        t.keystone_url = get_trim("keystone_url")?;
        t.tenant = get_trim("tenant")?;
    } else {
        t.tenant = get_trim("tenant")?;
    }
    t.forcesyncs = get_set(ini, section, "forcesyncs")?;
    t.replace = get_set(ini, section, "replace")?;
    t.rename = get_set(ini, section, "rename")?;
    t.dontupdate = get_set(ini, section, "dontupdate")?;
    t.ignore_regions = get_set(ini, section, "ignore_regions")?;
    if let Some(cond) = ini.get(section, "metadata_condition")? {
        t.metadata_condition = Condition::compile(&cond)
            .map_err(|e| ini.option_error(section, "metadata_condition", e.0))?;
    }
    t.metadata_set = get_set(ini, section, "metadata_set")?;
    let bool_or = |o: &str, d: bool| -> Result<bool> { Ok(ini.get_bool(section, o)?.unwrap_or(d)) };
    t.only_tenant_images = bool_or("only_tenant_images", true)?;
    t.tenant_id = ini.get(section, "tenant_id")?.map(|s| s.trim().to_string());
    t.obsolete_syncprops = get_set(ini, section, "obsolete_syncprops")?;
    t.support_obsolete_images = bool_or("support_obsolete_images", true)?;
    t.list_images_timeout = match ini.get_int(section, "list_images_timeout")? {
        None => 30,
        Some(n) if n > 0 => n.unsigned_abs(),
        Some(_) => {
            return Err(ini
                .option_error(
                    section,
                    "list_images_timeout",
                    "must be a positive number of seconds",
                )
                .into())
        }
    };
    t.use_keystone_v3 = bool_or("use_keystone_v3", false)?;
    if let Some(d) = get_trim("user_domain_name")? {
        t.user_domain_name = d;
    }
    if let Some(d) = get_trim("project_domain_name")? {
        t.project_domain_name = d;
    }
    if let Some(v) = get_trim("transfer")? {
        t.transfer = Transfer::parse(&v).ok_or_else(|| {
            ini.option_error(
                section,
                "transfer",
                "expected auto, stream or glance-download",
            )
        })?;
    }
    t.max_concurrent_imports = match ini.get_int(section, "max_concurrent_imports")? {
        None => DEFAULT_CONCURRENT_IMPORTS,
        Some(n) if (1..=64).contains(&n) => usize::try_from(n).unwrap_or(1),
        Some(_) => {
            return Err(ini
                .option_error(
                    section,
                    "max_concurrent_imports",
                    "must be a whole number from 1 to 64",
                )
                .into())
        }
    };
    Ok(t)
}
