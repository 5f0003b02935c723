//! Reading a template: the builder, `variables`, the manifest
//! post-processor and the provisioners' keys, checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Template;
use crate::error::{Error, Result};

const SHELL_KEYS: &[&str] = &[
    "type",
    "inline",
    "script",
    "scripts",
    "environment_vars",
    "execute_command",
    "inline_shebang",
    "remote_folder",
    "remote_file",
    "remote_path",
    "valid_exit_codes",
    "expect_disconnect",
    "skip_clean",
    "pause_before",
    "timeout",
    "only",
    "except",
    "use_env_var_file",
    "start_retry_timeout",
    "binary",
];
const FILE_KEYS: &[&str] = &[
    "type",
    "source",
    "sources",
    "destination",
    "direction",
    "generated",
    "pause_before",
    "timeout",
    "only",
    "except",
];

impl Template {
    /// Read and check the template at `path`.
    pub fn load(path: &Path) -> Result<Template> {
        let text = std::fs::read_to_string(path)
            .map_err(crate::error::io_err("reading template", path))?;
        Template::parse(path, &text)
    }

    /// Parse template text; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Template> {
        let err = |message: String| Error::Template {
            file: file.to_path_buf(),
            message,
        };
        let root: Value = serde_json::from_str(text).map_err(|e| {
            err(format!(
                "not valid JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ))
        })?;
        let root = root
            .as_object()
            .ok_or_else(|| err("the template is not a JSON object".into()))?;
        let mut variables = BTreeMap::new();
        if let Some(vars) = root.get("variables") {
            let vars = vars
                .as_object()
                .ok_or_else(|| err("'variables' is not an object".into()))?;
            for (k, v) in vars {
                let value = match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => {
                        return Err(err(format!(
                            "variable '{k}' has a default that is not a string"
                        )))
                    }
                };
                variables.insert(k.clone(), value);
            }
        }
        let builders = root
            .get("builders")
            .and_then(Value::as_array)
            .ok_or_else(|| err("no 'builders' array".into()))?;
        let builder = match builders.as_slice() {
            [one] => one
                .as_object()
                .ok_or_else(|| err("builder 0 is not an object".into()))?,
            [] => return Err(err("'builders' is empty".into())),
            _ => {
                return Err(err(format!(
                    "{} builders: imagebuilder builds with exactly one",
                    builders.len()
                )))
            }
        };
        let builder_type = builder
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("builder 0 has no 'type'".into()))?
            .to_string();
        let builder_name = builder
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&builder_type)
            .to_string();
        let ssh_pty = match builder.get("ssh_pty") {
            None => None,
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(err("builder 0: 'ssh_pty' is not a boolean".into())),
        };
        let mut manifest_output = None;
        if let Some(pps) = root.get("post-processors") {
            let pps = pps
                .as_array()
                .ok_or_else(|| err("'post-processors' is not an array".into()))?;
            for (i, pp) in pps.iter().enumerate() {
                let (kind, obj) = match pp {
                    Value::String(s) => (s.as_str(), None),
                    Value::Object(o) => {
                        (o.get("type").and_then(Value::as_str).unwrap_or(""), Some(o))
                    }
                    _ => return Err(err(format!("post-processor {i} is not an object"))),
                };
                if kind == "manifest" {
                    manifest_output = Some(
                        obj.and_then(|o| o.get("output"))
                            .and_then(Value::as_str)
                            .unwrap_or("packer-manifest.json")
                            .to_string(),
                    );
                } else {
                    return Err(err(format!(
                        "post-processor {i} has type '{kind}': only 'manifest' is supported natively (use --packer)"
                    )));
                }
            }
        }
        let mut provisioners = Vec::new();
        if let Some(ps) = root.get("provisioners") {
            let ps = ps
                .as_array()
                .ok_or_else(|| err("'provisioners' is not an array".into()))?;
            for (index, p) in ps.iter().enumerate() {
                let p = p
                    .as_object()
                    .ok_or_else(|| err(format!("provisioner {index} is not an object")))?;
                let kind = p
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("provisioner {index} has no 'type'")))?;
                let keys = match kind {
                    "shell" => SHELL_KEYS,
                    "file" => FILE_KEYS,
                    other => {
                        return Err(Error::UnsupportedProvisioner {
                            file: file.to_path_buf(),
                            index,
                            kind: other.to_string(),
                        })
                    }
                };
                if let Some(k) = p.keys().find(|k| !keys.contains(&k.as_str())) {
                    return Err(err(format!(
                        "provisioner {index} ({kind}): unknown or unsupported key '{k}'"
                    )));
                }
                provisioners.push(p.clone());
            }
        }
        for k in root.keys() {
            if ![
                "variables",
                "builders",
                "provisioners",
                "post-processors",
                "description",
                "min_packer_version",
                "sensitive-variables",
            ]
            .contains(&k.as_str())
            {
                return Err(err(format!("unknown top-level key '{k}'")));
            }
        }
        Ok(Template {
            file: file.to_path_buf(),
            variables,
            builder_type,
            builder_name,
            ssh_pty,
            manifest_output,
            provisioners,
        })
    }

    /// The directory of the template (`{{template_dir}}`).
    pub fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}
