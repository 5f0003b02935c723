//! Packer JSON templates (`<template_dir>/template`): parsing, the
//! template engine's functions imagebuilder templates use, and the
//! provisioner steps a native build runs.
//!
//! Supported: one builder (its `type`, `name` and `ssh_pty`), `variables`
//! (defaults; `null` means required), the `manifest` post-processor's
//! `output`, and the `shell` and `file` provisioners with Packer 1.6's keys.
//! Any other provisioner type, an unknown key, or an unknown template
//! function is an error naming the provisioner, the key or the function.

mod engine;
mod parse;
mod resolve;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Result;

pub use engine::{expand_execute_command, parse_duration, secs};

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
