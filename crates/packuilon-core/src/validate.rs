//! `packuilon validate`: every problem of an installation at once —
//! config.ini, the credentials file, template-map.json, source-images.json
//! and every template (placeholders present, valid JSON once rendered) —
//! each with its file and key.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::Error;
use crate::profile::{BuildPlan, SourceImages, TemplateMap};
use crate::runner::AuthEnv;
use crate::template;

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file concerned.
    pub file: PathBuf,
    /// The key, entry or section concerned (may be empty for a whole file).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// What `validate` found: problems (non-zero exit) and notes (ignored keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Everything wrong.
    pub problems: Vec<Problem>,
    /// Keys read and ignored, with why.
    pub notes: Vec<String>,
}

fn problem(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

/// A problem of a credentials file (its line, never its content).
fn auth_problem(e: &Error, file: &Path, key: &str) -> Problem {
    match e {
        Error::AuthFile { line, message, .. } => {
            problem(file, format!("line {line}"), format!("{message} ({key})"))
        }
        other => problem(file, "", format!("{} ({key})", self::message(other, file))),
    }
}

/// Strip the `<path>: ` prefix errors carry, the file being said apart.
fn message(e: &Error, file: &Path) -> String {
    let s = e.to_string();
    s.strip_prefix(&format!("{}: ", file.display()))
        .map_or(s.clone(), str::to_string)
}

/// A plan with awkward values, to render every template with.
fn sample_plan() -> BuildPlan {
    BuildPlan {
        name: "validate-sl7x-x86_64".into(),
        pretty_name: "sl7x-x86_64 \"quoted\" \\ name".into(),
        source_image: "00000000-0000-4000-8000-000000000000".into(),
        metadata: vec![
            ("AQ_PERSONALITY".into(), "va\"lid".into()),
            ("AQ_OS".into(), "sl".into()),
        ],
        templates: vec![],
    }
}

/// Check the installation described by the config file at `path`.
pub fn validate(path: &Path) -> Report {
    let mut report = Report::default();
    let config = match Config::load_lenient(path) {
        Ok((config, errors)) => {
            for e in errors {
                match &e {
                    Error::ConfigValue {
                        section,
                        key,
                        message,
                        ..
                    } => report.problems.push(problem(
                        path,
                        format!("[{section}] {key}"),
                        message.clone(),
                    )),
                    other => report
                        .problems
                        .push(problem(path, "", message(other, path))),
                }
            }
            config
        }
        Err(e) => {
            report.problems.push(problem(path, "", message(&e, path)));
            return report;
        }
    };
    report.notes.clone_from(&config.ignored);
    let r = &config.rabbit2packer;
    if let Err(e) = AuthEnv::load(&r.packer_auth_file) {
        report
            .problems
            .push(auth_problem(&e, &r.packer_auth_file, "PACKER_AUTH_FILE"));
    }
    let needs_admin = match (&config.rename, &config.gate) {
        (Some(_), _) => Some("[rename-old-images]"),
        (None, Some(_)) => Some("[test-gate]"),
        (None, None) => None,
    };
    if let Some(section) = needs_admin {
        if let Err(e) = AuthEnv::load(&r.packer_admin_auth) {
            report.problems.push(auth_problem(
                &e,
                &r.packer_admin_auth,
                &format!("PACKER_ADMIN_AUTH, needed by {section}"),
            ));
        }
    }
    if let Some(script) = config.gate.as_ref().and_then(|g| g.script.as_ref()) {
        use std::os::unix::fs::PermissionsExt;
        let why = match std::fs::metadata(script) {
            Err(e) => Some(e.to_string()),
            Ok(m) if !m.is_file() => Some("not a file".into()),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => Some("not executable".into()),
            Ok(_) => None,
        };
        if let Some(why) = why {
            report.problems.push(problem(
                path,
                "[test-gate] TEST_SCRIPT",
                format!("{}: {why}", script.display()),
            ));
        }
    }
    match SourceImages::load(&r.images_config) {
        Ok(images) => {
            for (key, why) in images.problems() {
                report.problems.push(problem(&r.images_config, key, why));
            }
        }
        Err(e) => {
            report
                .problems
                .push(problem(&r.images_config, "", message(&e, &r.images_config)))
        }
    }
    let map = match TemplateMap::load(&r.packer_template_map) {
        Ok(map) => map,
        Err(e) => {
            report.problems.push(problem(
                &r.packer_template_map,
                "",
                message(&e, &r.packer_template_map),
            ));
            return report;
        }
    };
    let plan = sample_plan();
    let mut seen: Vec<PathBuf> = Vec::new();
    for (key, templates) in map.entries() {
        if templates.is_empty() {
            report.problems.push(problem(
                &r.packer_template_map,
                key.clone(),
                "lists no template",
            ));
        }
        for (i, t) in templates.iter().enumerate() {
            let entry = format!("{key}[{i}]");
            let text = match std::fs::read_to_string(t) {
                Ok(text) => text,
                Err(e) => {
                    report.problems.push(problem(
                        &r.packer_template_map,
                        entry,
                        format!("{}: {e}", t.display()),
                    ));
                    continue;
                }
            };
            if seen.contains(t) {
                continue;
            }
            seen.push(t.clone());
            for placeholder in ["$NAME", "$IMAGE"] {
                if !text.contains(placeholder) {
                    report.problems.push(problem(
                        t,
                        placeholder,
                        format!("placeholder missing (used by {entry} of the template map)"),
                    ));
                }
            }
            if let Err(e) = template::render(&text, t, &plan) {
                report.problems.push(problem(t, "", message(&e, t)));
            }
        }
    }
    if !map.entries().iter().any(|(k, _)| k == "DEFAULT") {
        report.notes.push(format!(
            "{}: no DEFAULT entry: build names without their own entry build nothing",
            r.packer_template_map.display()
        ));
    }
    report
}
