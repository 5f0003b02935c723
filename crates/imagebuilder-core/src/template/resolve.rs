//! Resolving a template: variables applied, `only`/`except` honoured, each
//! provisioner turned into a [`Step`](super::Step) with Packer's defaults.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::engine::{interpolate, parse_duration, Context, Origin};
use super::{
    Direction, FileStep, Resolved, ScriptSource, ShellStep, Step, Template,
    DEFAULT_EXECUTE_COMMAND, DEFAULT_INLINE_SHEBANG, DEFAULT_REMOTE_FOLDER,
};
use crate::error::{Error, Result};

impl Template {
    /// Apply `vars` (which win over the template's defaults) and resolve
    /// every provisioner; relative local paths are taken from `cwd`, as
    /// Packer does.
    pub fn resolve(&self, vars: &BTreeMap<String, String>, cwd: &Path) -> Result<Resolved> {
        let err = |message: String| Error::Template {
            file: self.file.clone(),
            message,
        };
        let mut user = BTreeMap::new();
        for (k, default) in &self.variables {
            match (vars.get(k), default) {
                (Some(v), _) => {
                    user.insert(k.clone(), v.clone());
                }
                (None, Some(d)) => {
                    let d = interpolate(d, &Context::variables(self), Origin::Variables)
                        .map_err(|m| err(format!("variable '{k}': {m}")))?;
                    user.insert(k.clone(), d);
                }
                (None, None) => return Err(err(format!("required variable '{k}' is not set"))),
            }
        }
        for (k, v) in vars {
            user.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let ctx = Context {
            user: &user,
            template_dir: self.dir(),
            cwd: cwd.to_path_buf(),
            builder_name: &self.builder_name,
            builder_type: &self.builder_type,
            allow_env: false,
        };
        let text = |v: &str, what: &str| {
            interpolate(v, &ctx, Origin::Body).map_err(|m| err(format!("{what}: {m}")))
        };
        let ssh_pty = match &self.ssh_pty {
            None => false,
            Some(s) => parse_bool(&text(s, "builder 0: ssh_pty")?)
                .ok_or_else(|| err("builder 0: 'ssh_pty' is not a boolean".into()))?,
        };
        let manifest_output = self
            .manifest_output
            .as_deref()
            .map(|o| text(o, "manifest post-processor: output"))
            .transpose()?;
        let mut steps = Vec::new();
        for (index, p) in self.provisioners.iter().enumerate() {
            let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
            let at = |key: &str| format!("provisioner {index} ({kind}): {key}");
            if !self.selected(p, &at)? {
                continue;
            }
            let string = |key: &str| -> Result<Option<String>> {
                match p.get(key) {
                    None => Ok(None),
                    Some(Value::String(s)) => text(s, &at(key)).map(Some),
                    Some(_) => Err(err(format!("{} is not a string", at(key)))),
                }
            };
            let list = |key: &str| -> Result<Option<Vec<String>>> {
                match p.get(key) {
                    None => Ok(None),
                    Some(Value::Array(a)) => a
                        .iter()
                        .enumerate()
                        .map(|(i, v)| match v {
                            Value::String(s) => text(s, &format!("{}[{i}]", at(key))),
                            _ => Err(err(format!("{}[{i}] is not a string", at(key)))),
                        })
                        .collect::<Result<Vec<_>>>()
                        .map(Some),
                    Some(_) => Err(err(format!("{} is not an array of strings", at(key)))),
                }
            };
            let boolean = |key: &str| -> Result<bool> {
                match p.get(key) {
                    None => Ok(false),
                    Some(Value::Bool(b)) => Ok(*b),
                    Some(Value::String(s)) => parse_bool(&text(s, &at(key))?)
                        .ok_or_else(|| err(format!("{} is not a boolean", at(key)))),
                    Some(_) => Err(err(format!("{} is not a boolean", at(key)))),
                }
            };
            let duration = |key: &str| -> Result<Option<u64>> {
                string(key)?
                    .map(|s| {
                        parse_duration(&s).ok_or_else(|| {
                            err(format!(
                                "{} '{s}' is not a duration (e.g. 30s, 5m, 1h)",
                                at(key)
                            ))
                        })
                    })
                    .transpose()
            };
            let pause_before_secs = duration("pause_before")?.unwrap_or(0);
            match kind {
                "shell" => {
                    let inline = list("inline")?;
                    let script = string("script")?;
                    let scripts = list("scripts")?;
                    let set = [inline.is_some(), script.is_some(), scripts.is_some()]
                        .iter()
                        .filter(|b| **b)
                        .count();
                    if set != 1 {
                        return Err(err(format!(
                            "provisioner {index} (shell): exactly one of 'inline', 'script' or 'scripts' must be set"
                        )));
                    }
                    let shebang =
                        string("inline_shebang")?.unwrap_or_else(|| DEFAULT_INLINE_SHEBANG.into());
                    let sources = match (inline, script, scripts) {
                        (Some(commands), _, _) => vec![ScriptSource::Inline { shebang, commands }],
                        (_, Some(s), _) => vec![ScriptSource::File(cwd.join(s))],
                        (_, _, Some(list)) => {
                            if list.is_empty() {
                                return Err(err(format!("{} is empty", at("scripts"))));
                            }
                            list.into_iter()
                                .map(|s| ScriptSource::File(cwd.join(s)))
                                .collect()
                        }
                        _ => Vec::new(),
                    };
                    for s in &sources {
                        if let ScriptSource::File(path) = s {
                            if !path.is_file() {
                                return Err(err(format!(
                                    "provisioner {index} (shell): script {} does not exist",
                                    path.display()
                                )));
                            }
                        }
                    }
                    let mut env = BTreeMap::new();
                    env.insert("PACKER_BUILD_NAME".to_string(), self.builder_name.clone());
                    env.insert("PACKER_BUILDER_TYPE".to_string(), self.builder_type.clone());
                    for (i, kv) in list("environment_vars")?
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                    {
                        let Some((k, v)) = kv.split_once('=') else {
                            return Err(err(format!(
                                "{}[{i}] is not in the format 'key=value'",
                                at("environment_vars")
                            )));
                        };
                        let valid = k
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        if !valid {
                            return Err(err(format!(
                                "{}[{i}]: '{k}' is not a valid variable name",
                                at("environment_vars")
                            )));
                        }
                        env.insert(k.to_string(), v.to_string());
                    }
                    let execute_command = match p.get("execute_command") {
                        None => DEFAULT_EXECUTE_COMMAND.to_string(),
                        Some(Value::String(s)) => interpolate(s, &ctx, Origin::ExecuteCommand)
                            .map_err(|m| err(format!("{}: {m}", at("execute_command"))))?,
                        Some(_) => {
                            return Err(err(format!("{} is not a string", at("execute_command"))))
                        }
                    };
                    let remote_folder =
                        string("remote_folder")?.unwrap_or_else(|| DEFAULT_REMOTE_FOLDER.into());
                    let remote_path = match (string("remote_path")?, string("remote_file")?) {
                        (Some(p), _) => p,
                        (None, Some(f)) => format!("{remote_folder}/{f}"),
                        (None, None) => {
                            format!("{remote_folder}/script_{}.sh", index_suffix(index))
                        }
                    };
                    let valid_exit_codes = match p.get("valid_exit_codes") {
                        None => vec![0],
                        Some(Value::Array(a)) => a
                            .iter()
                            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                            .collect::<Option<Vec<u32>>>()
                            .ok_or_else(|| {
                                err(format!(
                                    "{} is not a list of exit codes",
                                    at("valid_exit_codes")
                                ))
                            })?,
                        Some(_) => {
                            return Err(err(format!(
                                "{} is not a list of exit codes",
                                at("valid_exit_codes")
                            )))
                        }
                    };
                    steps.push(Step::Shell(ShellStep {
                        index,
                        scripts: sources,
                        env: env.into_iter().collect(),
                        execute_command,
                        remote_path,
                        remote_folder,
                        valid_exit_codes,
                        expect_disconnect: boolean("expect_disconnect")?,
                        skip_clean: boolean("skip_clean")?,
                        pause_before_secs,
                        timeout_secs: duration("timeout")?,
                    }));
                }
                "file" => {
                    let direction = match string("direction")?.as_deref() {
                        None | Some("upload") => Direction::Upload,
                        Some("download") => Direction::Download,
                        Some(other) => {
                            return Err(err(format!(
                                "{} is '{other}', not upload or download",
                                at("direction")
                            )))
                        }
                    };
                    if boolean("generated")? {
                        return Err(err(format!(
                            "{}: generated sources are not supported natively (use --packer)",
                            at("generated")
                        )));
                    }
                    let mut sources = match (string("source")?, list("sources")?) {
                        (Some(s), None) => vec![s],
                        (None, Some(l)) if !l.is_empty() => l,
                        _ => {
                            return Err(err(format!(
                                "provisioner {index} (file): exactly one of 'source' or 'sources' must be set"
                            )))
                        }
                    };
                    let destination = string("destination")?.ok_or_else(|| {
                        err(format!(
                            "provisioner {index} (file): 'destination' is required"
                        ))
                    })?;
                    match direction {
                        Direction::Upload => {
                            for s in &mut sources {
                                let trailing = s.ends_with('/');
                                let mut abs = cwd.join(&*s).display().to_string();
                                if trailing && !abs.ends_with('/') {
                                    abs.push('/');
                                }
                                if !Path::new(&abs).exists() {
                                    return Err(err(format!(
                                        "provisioner {index} (file): source {abs} does not exist"
                                    )));
                                }
                                *s = abs;
                            }
                        }
                        Direction::Download => {
                            if sources.len() != 1 {
                                return Err(err(format!(
                                    "provisioner {index} (file): a download takes one source"
                                )));
                            }
                        }
                    }
                    let destination = match direction {
                        Direction::Download => {
                            let trailing = destination.ends_with('/');
                            let mut d = cwd.join(&destination).display().to_string();
                            if trailing && !d.ends_with('/') {
                                d.push('/');
                            }
                            d
                        }
                        Direction::Upload => destination,
                    };
                    steps.push(Step::File(FileStep {
                        index,
                        direction,
                        sources,
                        destination,
                        pause_before_secs,
                    }));
                }
                _ => {}
            }
        }
        Ok(Resolved {
            builder_type: self.builder_type.clone(),
            builder_name: self.builder_name.clone(),
            ssh_pty,
            manifest_output,
            steps,
        })
    }

    /// `only`/`except`: does provisioner `p` run for this template's builder?
    fn selected(&self, p: &Map<String, Value>, at: &dyn Fn(&str) -> String) -> Result<bool> {
        let names = |key: &str| -> Result<Option<Vec<String>>> {
            match p.get(key) {
                None => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
                    .ok_or_else(|| Error::Template {
                        file: self.file.clone(),
                        message: format!("{} is not an array of builder names", at(key)),
                    }),
                Some(_) => Err(Error::Template {
                    file: self.file.clone(),
                    message: format!("{} is not an array of builder names", at(key)),
                }),
            }
        };
        if let Some(only) = names("only")? {
            if !only.contains(&self.builder_name) {
                return Ok(false);
            }
        }
        if let Some(except) = names("except")? {
            if except.contains(&self.builder_name) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// A remote script name suffix that is stable per provisioner (Packer
/// uses a random number; a stable one keeps plans comparable).
fn index_suffix(index: usize) -> String {
    format!("{:04}", 1000 + index)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => Some(true),
        "false" | "0" | "f" | "" => Some(false),
        _ => None,
    }
}
