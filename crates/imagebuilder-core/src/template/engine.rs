//! The template engine's pieces imagebuilder templates use: `{{ … }}`
//! interpolation (`user`, `env`, `template_dir`, ...), Go-style durations and
//! `execute_command` expansion.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::Template;

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
pub(super) enum Origin {
    /// A variable's default: `env` is allowed, `user` is not.
    Variables,
    /// Anywhere else in the template.
    Body,
    /// A shell `execute_command`: `{{.Vars}}` and `{{.Path}}` stay.
    ExecuteCommand,
}

pub(super) struct Context<'a> {
    pub(super) user: &'a BTreeMap<String, String>,
    pub(super) template_dir: PathBuf,
    pub(super) cwd: PathBuf,
    pub(super) builder_name: &'a str,
    pub(super) builder_type: &'a str,
    pub(super) allow_env: bool,
}

impl<'a> Context<'a> {
    pub(super) fn variables(t: &'a Template) -> Context<'a> {
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
pub(super) fn interpolate(
    s: &str,
    ctx: &Context<'_>,
    origin: Origin,
) -> std::result::Result<String, String> {
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
