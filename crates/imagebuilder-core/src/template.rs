//! Packer JSON templates (`<template_dir>/template`): parsing, the
//! template engine's functions imagebuilder templates use, and the
//! provisioner steps a native build runs.
//!
//! Supported: one builder (its `type`, `name` and `ssh_pty`), `variables`
//! (defaults; `null` means required), the `manifest` post-processor's
//! `output`, and the `shell` and `file` provisioners with Packer 1.6's keys.
//! Any other provisioner type, an unknown key, or an unknown template
//! function is an error naming the provisioner, the key or the function.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Packer's default `execute_command` of the shell provisioner.
pub const DEFAULT_EXECUTE_COMMAND: &str = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}";
/// Packer's default `inline_shebang`.
pub const DEFAULT_INLINE_SHEBANG: &str = "/bin/sh -e";
/// Packer's default `remote_folder`.
pub const DEFAULT_REMOTE_FOLDER: &str = "/tmp";

/// A parsed template, before variables are applied.
#[derive(Debug, Clone)]
pub struct Template {
    /// The file it was read from.
    pub file: PathBuf,
    /// Declared variables and their defaults (`None`: required).
    pub variables: BTreeMap<String, Option<String>>,
    /// The builder's `type` (`openstack`).
    pub builder_type: String,
    /// The builder's `name` (its type when unnamed).
    pub builder_name: String,
    /// The builder's `ssh_pty` (raw; resolved with the variables).
    pub ssh_pty: Option<String>,
    /// The `manifest` post-processor's `output` (raw), when there is one.
    pub manifest_output: Option<String>,
    /// The provisioners, raw.
    provisioners: Vec<Map<String, Value>>,
}

/// Where the commands of one script come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptSource {
    /// A local script file.
    File(PathBuf),
    /// `inline` commands, written to a script with `shebang`.
    Inline {
        /// The `#!` line's interpreter (`/bin/sh -e`).
        shebang: String,
        /// The commands, one per line.
        commands: Vec<String>,
    },
}

impl ScriptSource {
    /// The script as uploaded: the file's bytes, or the inline script.
    pub fn contents(&self) -> Result<Vec<u8>> {
        match self {
            ScriptSource::File(p) => {
                std::fs::read(p).map_err(crate::error::io_err("reading script", p))
            }
            ScriptSource::Inline { shebang, commands } => {
                let mut s = format!("#!{shebang}\n");
                for c in commands {
                    s.push_str(c);
                    s.push('\n');
                }
                Ok(s.into_bytes())
            }
        }
    }
}

/// One shell provisioner, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShellStep {
    /// Position in the template.
    pub index: usize,
    /// The scripts, in order.
    pub scripts: Vec<ScriptSource>,
    /// Environment for the scripts (sorted by name; `PACKER_BUILD_NAME`
    /// and `PACKER_BUILDER_TYPE` included, as Packer does).
    pub env: Vec<(String, String)>,
    /// `execute_command` with `{{.Vars}}` and `{{.Path}}` still in it.
    pub execute_command: String,
    /// Remote path each script is uploaded to.
    pub remote_path: String,
    /// Remote folder (the environment file goes there too).
    pub remote_folder: String,
    /// Exit codes counted as success (`[0]`).
    pub valid_exit_codes: Vec<u32>,
    /// A lost connection is not a failure (the script reboots the VM).
    pub expect_disconnect: bool,
    /// Leave the uploaded scripts on the VM.
    pub skip_clean: bool,
    /// Pause before running, in seconds.
    pub pause_before_secs: u64,
    /// Time limit per script, in seconds.
    pub timeout_secs: Option<u64>,
}

/// One file provisioner, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileStep {
    /// Position in the template.
    pub index: usize,
    /// `upload` or `download`.
    pub direction: Direction,
    /// Sources (local paths for uploads, one remote path for downloads).
    pub sources: Vec<String>,
    /// Destination (remote for uploads, local for downloads).
    pub destination: String,
    /// Pause before, in seconds.
    pub pause_before_secs: u64,
}

/// Direction of a file provisioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local to VM.
    Upload,
    /// VM to local.
    Download,
}

/// One provisioner step of a native build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Step {
    /// A `shell` provisioner.
    Shell(ShellStep),
    /// A `file` provisioner.
    File(FileStep),
}

/// What a resolved template asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// Builder type.
    pub builder_type: String,
    /// Builder name.
    pub builder_name: String,
    /// Run provisioners in a pty (`ssh_pty`).
    pub ssh_pty: bool,
    /// Where the manifest goes (the `manifest` post-processor's `output`).
    pub manifest_output: Option<String>,
    /// The steps, in order (provisioners excluded by `only`/`except` left out).
    pub steps: Vec<Step>,
}

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

/// Go-style durations: `90s`, `5m`, `1h30m`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit_ms = match c {
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1000,
            _ => return None,
        };
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(total_ms.div_ceil(1000))
}

/// Where a string being interpolated comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A variable's default: `env` is allowed, `user` is not.
    Variables,
    /// Anywhere else in the template.
    Body,
    /// A shell `execute_command`: `{{.Vars}}` and `{{.Path}}` stay.
    ExecuteCommand,
}

struct Context<'a> {
    user: &'a BTreeMap<String, String>,
    template_dir: PathBuf,
    cwd: PathBuf,
    builder_name: &'a str,
    builder_type: &'a str,
    allow_env: bool,
}

impl<'a> Context<'a> {
    fn variables(t: &'a Template) -> Context<'a> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        Context {
            user: &EMPTY,
            template_dir: t.dir(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            builder_name: &t.builder_name,
            builder_type: &t.builder_type,
            allow_env: true,
        }
    }
}

/// Interpolate Packer's `{{ … }}` functions in `s`.
fn interpolate(s: &str, ctx: &Context<'_>, origin: Origin) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unterminated '{{{{' in '{s}'"))?;
        let inner = after[..end].trim();
        rest = &after[end + 2..];
        let (func, arg) = match inner.split_once(char::is_whitespace) {
            Some((f, a)) => (f, Some(a.trim())),
            None => (inner, None),
        };
        let arg = arg
            .map(|a| {
                let unq = a
                    .strip_prefix('`')
                    .and_then(|a| a.strip_suffix('`'))
                    .or_else(|| a.strip_prefix('"').and_then(|a| a.strip_suffix('"')));
                unq.map(str::to_string).ok_or_else(|| {
                    format!("'{{{{{inner}}}}}': the argument must be quoted with ` or \"")
                })
            })
            .transpose()?;
        let value = match (func, arg) {
            ("user", Some(name)) => {
                if origin == Origin::Variables {
                    return Err(format!(
                        "'{{{{{inner}}}}}': user variables cannot be used in variable defaults"
                    ));
                }
                ctx.user.get(&name).cloned().ok_or_else(|| {
                    format!("'{{{{{inner}}}}}': variable '{name}' is not declared or set")
                })?
            }
            ("env", Some(name)) if ctx.allow_env && origin == Origin::Variables => {
                std::env::var(&name).unwrap_or_default()
            }
            ("env", Some(_)) => {
                return Err(format!(
                    "'{{{{{inner}}}}}': env can only be used in variable defaults"
                ))
            }
            ("timestamp", None) => chrono::Utc::now().timestamp().to_string(),
            ("uuid", None) => uuid::Uuid::new_v4().to_string(),
            ("isotime", None) => {
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }
            ("template_dir", None) => ctx.template_dir.display().to_string(),
            ("pwd", None) => ctx.cwd.display().to_string(),
            ("build_name", None) => ctx.builder_name.to_string(),
            ("build_type", None) => ctx.builder_type.to_string(),
            (".Vars" | ".Path", None) if origin == Origin::ExecuteCommand => {
                format!("{{{{{inner}}}}}")
            }
            _ => {
                return Err(format!(
                "'{{{{{inner}}}}}' is not a template function imagebuilder supports (use --packer)"
            ))
            }
        };
        out.push_str(&value);
    }
    out.push_str(rest);
    Ok(out)
}

/// Expand `{{.Vars}}` and `{{.Path}}` (spaces allowed inside the braces)
/// in a resolved `execute_command`.
pub fn expand_execute_command(command: &str, vars: &str, path: &str) -> String {
    let mut out = String::new();
    let mut rest = command;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                match after[..end].trim() {
                    ".Vars" => out.push_str(vars),
                    ".Path" => out.push_str(path),
                    other => {
                        out.push_str("{{");
                        out.push_str(other);
                        out.push_str("}}");
                    }
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Durations as `Duration`.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("1500ms"), Some(2));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5"), Some(5));
        assert_eq!(parse_duration("5q"), None);
    }

    #[test]
    fn execute_command_expansion() {
        assert_eq!(
            expand_execute_command(
                "sudo sh -c '{{ .Vars }} {{.Path}}'",
                ". /tmp/v &&",
                "/tmp/s.sh"
            ),
            "sudo sh -c '. /tmp/v && /tmp/s.sh'"
        );
    }
}
