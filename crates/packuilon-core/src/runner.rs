//! Run Packer for one rendered template: build file, log file, credentials
//! in the child's environment only.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn, Instrument};

use crate::error::{Error, Result};
use crate::profile::BuildPlan;
use crate::template;

/// OpenStack credentials read from an `admin-openrc`-style file.
#[derive(Clone, Default)]
pub struct AuthEnv {
    vars: Vec<(String, String)>,
}

impl std::fmt::Debug for AuthEnv {
    // Only the names: the values hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(k, _)| k))
            .finish()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl AuthEnv {
    /// Parse the text of a credentials file; `path` names it in errors.
    ///
    /// Accepted lines: `export NAME=value` or `NAME=value`, the value bare,
    /// in single quotes (taken literally) or in double quotes (`\"`, `\\`,
    /// `\$` unescaped); `$NAME`/`${NAME}` in bare and double-quoted values
    /// expand to a variable set earlier in the file (or empty). Blank lines,
    /// comments and `unset` lines are skipped. Anything else is an error
    /// naming the line, never its content.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut vars: Vec<(String, String)> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let err = |message: &str| Error::AuthFile {
                path: path.to_path_buf(),
                line: idx + 1,
                message: message.to_string(),
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("unset ") {
                continue;
            }
            let assignment = line.strip_prefix("export ").map_or(line, str::trim_start);
            let Some((name, value)) = assignment.split_once('=') else {
                return Err(err("expected `export NAME=value`"));
            };
            if !valid_name(name) {
                return Err(err(
                    "expected `export NAME=value` with a shell variable name",
                ));
            }
            let value = unquote(value, &vars).ok_or_else(|| {
                err("value must be bare, 'single-quoted' or \"double-quoted\" with nothing after")
            })?;
            vars.retain(|(k, _)| k != name);
            vars.push((name.to_string(), value));
        }
        Ok(AuthEnv { vars })
    }

    /// Read and parse the credentials file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// The value of one variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The variables for Packer: the file's, plus `OS_TENANT_ID` =
    /// `OS_PROJECT_ID` and `OS_DOMAIN_NAME` = `OS_USER_DOMAIN_NAME` when the
    /// file sets those, as the original's wrapper exported them.
    pub fn packer_env(&self) -> Vec<(String, String)> {
        let mut out = self.vars.clone();
        for (alias, source) in [
            ("OS_TENANT_ID", "OS_PROJECT_ID"),
            ("OS_DOMAIN_NAME", "OS_USER_DOMAIN_NAME"),
        ] {
            if let Some(v) = self.get(source) {
                out.retain(|(k, _)| k != alias);
                out.push((alias.to_string(), v.to_string()));
            }
        }
        out
    }
}

fn expand(s: &str, vars: &[(String, String)], out: &mut String) -> Option<()> {
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}')?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            out.push('$');
        } else if let Some((_, v)) = vars.iter().find(|(k, _)| k == name) {
            out.push_str(v);
        }
        rest = tail;
    }
    out.push_str(rest);
    Some(())
}

fn unquote(value: &str, vars: &[(String, String)]) -> Option<String> {
    let mut out = String::new();
    if let Some(inner) = value.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        if inner.contains('\'') {
            return None;
        }
        return Some(inner.to_string());
    }
    if let Some(inner) = value.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        // Split on unescaped `$` handling escapes first.
        let mut literal = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('"' | '\\' | '$' | '`')) => {
                        expand(&literal, vars, &mut out)?;
                        literal.clear();
                        out.push(e);
                    }
                    Some(e) => {
                        literal.push('\\');
                        literal.push(e);
                    }
                    None => return None,
                },
                '"' => return None,
                c => literal.push(c),
            }
        }
        expand(&literal, vars, &mut out)?;
        return Some(out);
    }
    if value.contains(|c: char| c.is_whitespace() || "'\"`;&|<>()\\".contains(c)) {
        return None;
    }
    expand(value, vars, &mut out)?;
    Some(out)
}

/// Where and how Packer runs.
#[derive(Debug, Clone)]
pub struct Runner {
    /// `PACKER_PATH`.
    pub packer: PathBuf,
    /// `BUILD_FILE_DIR`.
    pub build_file_dir: PathBuf,
    /// `LOG_DIR`.
    pub log_dir: PathBuf,
    /// The credentials passed to Packer's environment.
    pub auth: AuthEnv,
}

/// What one Packer run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    /// The build file written.
    pub build_file: PathBuf,
    /// The log file.
    pub log_file: PathBuf,
    /// Packer's exit code (`None` when killed by a signal).
    pub exit_code: Option<i32>,
    /// The image the build created, from the last
    /// `An image was created: <id>` line of the log (Packer's OpenStack
    /// builder artifact line); `None` when the log has no such line.
    pub image_id: Option<String>,
}

/// The marker of Packer's OpenStack artifact line.
pub const IMAGE_CREATED_MARKER: &str = "An image was created: ";

/// The image id of the last artifact line of a Packer log, if any.
pub fn image_id_from_log(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .filter_map(|l| l.split_once(IMAGE_CREATED_MARKER).map(|(_, id)| id.trim()))
        .find(|id| !id.is_empty() && !id.contains(char::is_whitespace))
        .map(str::to_string)
}

impl BuildOutcome {
    /// Whether the build succeeded: Packer exited 0 **and** its log names
    /// the image it created. (The original ignored the exit code.)
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.image_id.is_some()
    }

    /// Why the build failed, or `None` when it succeeded.
    pub fn failure_reason(&self) -> Option<String> {
        match (self.exit_code, &self.image_id) {
            (Some(0), Some(_)) => None,
            (Some(0), None) => Some(format!(
                "packer exited 0 but its log shows no image id (no line containing {IMAGE_CREATED_MARKER:?})"
            )),
            (Some(c), _) => Some(format!("packer exited with code {c}")),
            (None, _) => Some("packer was killed by a signal".to_string()),
        }
    }
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Runner {
    /// Create `LOG_DIR/<build>.<epoch>.log`, or `<build>.<epoch>-<n>.log`
    /// when a build of the same name already logged in the same second.
    fn new_log(&self, build: &str) -> Result<(PathBuf, std::fs::File)> {
        let epoch = epoch();
        let mut n = 0u32;
        loop {
            let name = match n {
                0 => format!("{build}.{epoch}.log"),
                n => format!("{build}.{epoch}-{n}.log"),
            };
            let path = self.log_dir.join(name);
            match OpenOptions::new().create_new(true).append(true).open(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }

    /// Write `BUILD_FILE_DIR/<name>.<template>.json` (template = the
    /// template's file stem), run `PACKER build -color=false <file>` with the
    /// credentials in its environment (replacing any `OS_*` variable of this
    /// process's own environment), its output appended to
    /// `LOG_DIR/<name>.<template>.<epoch>.log` (`<epoch>-<n>` if that exists
    /// already), then append
    /// `rabbit2packer: Build finished at <epoch> (epoch) with exit code <rc>`.
    ///
    /// The build succeeded only if Packer exited 0 and the log names the
    /// created image (see [`BuildOutcome::succeeded`]).
    /// A failed build is an outcome, not an error; errors are files that
    /// cannot be written and a Packer that cannot be started.
    pub async fn run(&self, name: &str, template: &Path, rendered: &str) -> Result<BuildOutcome> {
        let stem = template
            .file_stem()
            .map_or_else(|| "template".into(), |s| s.to_string_lossy().to_string());
        let build = format!("{name}.{stem}");
        for dir in [&self.build_file_dir, &self.log_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let build_file = self.build_file_dir.join(format!("{build}.json"));
        std::fs::write(&build_file, rendered).map_err(|e| Error::io(&build_file, e))?;
        let (log_file, log) = self.new_log(&build)?;
        let log_err = log.try_clone().map_err(|e| Error::io(&log_file, e))?;
        info!(build = %build, log = %log_file.display(), "starting packer");
        let spawn_err = |source| Error::Spawn {
            build: build.clone(),
            program: self.packer.clone(),
            source,
        };
        let mut command = tokio::process::Command::new(&self.packer);
        // Only the credentials file speaks for OpenStack: OS_* variables of
        // the service's own environment are not passed on.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OS_") {
                command.env_remove(key);
            }
        }
        let status = command
            .arg("build")
            .arg("-color=false")
            .arg(&build_file)
            .envs(self.auth.packer_env())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(false)
            .status()
            .await
            .map_err(spawn_err)?;
        let exit_code = status.code();
        let rc = exit_code.map_or_else(|| format!("{status}"), |c| c.to_string());
        let mut log = OpenOptions::new()
            .append(true)
            .open(&log_file)
            .map_err(|e| Error::io(&log_file, e))?;
        writeln!(
            log,
            "rabbit2packer: Build finished at {} (epoch) with exit code {rc}",
            epoch()
        )
        .map_err(|e| Error::io(&log_file, e))?;
        drop(log);
        let text = std::fs::read(&log_file).map_err(|e| Error::io(&log_file, e))?;
        let outcome = BuildOutcome {
            build_file,
            log_file,
            exit_code,
            image_id: image_id_from_log(&String::from_utf8_lossy(&text)),
        };
        match outcome.failure_reason() {
            None => info!(build = %build, image = ?outcome.image_id, "packer build succeeded"),
            Some(reason) => {
                warn!(build = %build, %reason, log = %outcome.log_file.display(), "packer build failed")
            }
        }
        Ok(outcome)
    }
}

/// One template's build in a plan: what happened to it.
#[derive(Debug)]
pub struct TemplateResult {
    /// The template file.
    pub template: PathBuf,
    /// The Packer run, or why it could not happen.
    pub outcome: Result<BuildOutcome>,
}

impl Runner {
    /// Build every template of `plan` in order, each in its own span. A
    /// template that cannot be rendered or run does not stop the others.
    pub async fn run_plan(&self, plan: &BuildPlan) -> Vec<TemplateResult> {
        let mut results = Vec::with_capacity(plan.templates.len());
        if plan.templates.is_empty() {
            warn!(name = %plan.name, "no template for this build name and no DEFAULT entry");
        }
        for template in &plan.templates {
            let span =
                tracing::info_span!("build", name = %plan.name, template = %template.display());
            let outcome = async {
                let rendered = template::render_file(template, plan)?;
                self.run(&plan.name, template, &rendered).await
            }
            .instrument(span.clone())
            .await;
            if let Err(e) = &outcome {
                span.in_scope(|| tracing::error!(error = %e, "build not run"));
            }
            results.push(TemplateResult {
                template: template.clone(),
                outcome,
            });
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openrc_lines() {
        let text = "#!/usr/bin/env bash\n# comment\nunset OS_TENANT_ID\nexport OS_AUTH_URL=http://127.0.0.1:5000/v3\nexport OS_PROJECT_ID=abc123\nexport OS_USERNAME=\"admin\"\nexport OS_PASSWORD='p$w \"x'\nOS_USER_DOMAIN_NAME=\"Default\"\nexport OS_REGION_NAME=\"${OS_USER_DOMAIN_NAME}-r \\$x\"\n\n";
        let a = AuthEnv::parse(Path::new("openrc"), text).unwrap();
        assert_eq!(a.get("OS_AUTH_URL"), Some("http://127.0.0.1:5000/v3"));
        assert_eq!(a.get("OS_USERNAME"), Some("admin"));
        assert_eq!(a.get("OS_PASSWORD"), Some("p$w \"x"));
        assert_eq!(a.get("OS_REGION_NAME"), Some("Default-r $x"));
        let env = a.packer_env();
        assert!(env.contains(&("OS_TENANT_ID".into(), "abc123".into())));
        assert!(env.contains(&("OS_DOMAIN_NAME".into(), "Default".into())));
        assert!(!format!("{a:?}").contains("p$w"));
    }

    #[test]
    fn image_id_is_the_last_artifact_line() {
        let log = "==> openstack: Image: x\n--> openstack: An image was created: 1111\nmore\n--> openstack: An image was created: 2222-aa\nrabbit2packer: Build finished\n";
        assert_eq!(image_id_from_log(log).as_deref(), Some("2222-aa"));
        assert_eq!(image_id_from_log("Build finished\n"), None);
        assert_eq!(image_id_from_log("An image was created: \n"), None);
    }

    #[test]
    fn exit_0_without_image_is_a_failure() {
        let o = |exit_code, image_id: Option<&str>| BuildOutcome {
            build_file: PathBuf::new(),
            log_file: PathBuf::new(),
            exit_code,
            image_id: image_id.map(str::to_string),
        };
        assert!(o(Some(0), Some("i")).succeeded());
        assert!(!o(Some(0), None).succeeded());
        assert!(o(Some(0), None)
            .failure_reason()
            .unwrap()
            .contains("no image id"));
        assert!(!o(Some(1), Some("i")).succeeded());
        assert_eq!(
            o(Some(2), None).failure_reason().unwrap(),
            "packer exited with code 2"
        );
        assert!(!o(None, None).succeeded());
    }

    #[test]
    fn a_second_log_in_the_same_second_gets_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = Runner {
            packer: PathBuf::from("packer"),
            build_file_dir: dir.path().join("b"),
            log_dir: dir.path().to_path_buf(),
            auth: AuthEnv::default(),
        };
        let names: Vec<PathBuf> = (0..3).map(|_| r.new_log("n.t").unwrap().0).collect();
        assert_ne!(names[0], names[1]);
        assert_ne!(names[1], names[2]);
        assert!(names.iter().all(|n| n.exists()));
    }

    #[test]
    fn bad_lines_name_the_line_not_the_value() {
        for (text, line) in [
            ("export A=1\nread -sr OS_PASSWORD_INPUT\n", 2),
            ("export OS_PASSWORD=sec ret\n", 1),
            ("export OS_PASSWORD='secret\n", 1),
            ("export 1X=secret\n", 1),
        ] {
            let e = AuthEnv::parse(Path::new("/etc/openrc"), text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("/etc/openrc:{line}: ")), "{e}");
            assert!(!e.contains("secret") && !e.contains("sec ret"), "{e}");
        }
    }
}
