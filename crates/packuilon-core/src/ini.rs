//! A small INI reader with the rules of Python 3's `configparser` that
//! packuilon's config file relies on.
//!
//! Rules: `[section]` headers (names case-sensitive); `key = value` or
//! `key: value` (the first delimiter wins); option names stripped and
//! lower-cased; full-line comments starting with `#` or `;` (no inline
//! comments, as configparser's default); indented lines continue the
//! previous value, joined with `\n` (blank lines inside a value kept,
//! trailing ones dropped); a `[DEFAULT]` section inherited by every section;
//! duplicate sections or options in a section are errors (configparser's
//! `strict` mode). Interpolation (`%(name)s`) is not done: packuilon's keys
//! are paths and URLs, read raw.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The section every other section inherits from.
pub const DEFAULT_SECTION: &str = "DEFAULT";

/// One option's value and the line it starts on.
#[derive(Clone, PartialEq, Eq)]
pub struct IniValue {
    /// The value (continuation lines joined with `\n`).
    pub value: String,
    /// 1-based line of the option's first line.
    pub line: usize,
}

impl std::fmt::Debug for IniValue {
    // Values may be secrets (RABBIT_PW): only the line is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IniValue {{ line: {}, .. }}", self.line)
    }
}

/// A parsed INI document.
#[derive(Debug, Clone, Default)]
pub struct Ini {
    path: PathBuf,
    sections: HashMap<String, HashMap<String, IniValue>>,
}

impl Ini {
    /// Parse `text`; `path` names it in errors.
    pub fn parse(path: impl Into<PathBuf>, text: &str) -> Result<Self> {
        let path = path.into();
        let mut sections: HashMap<String, HashMap<String, IniValue>> = HashMap::new();
        let mut current: Option<String> = None;
        // (section, key) of the option a continuation line extends.
        let mut last: Option<(String, String)> = None;
        let mut pending_blank = 0usize;
        let err = |line: usize, message: String| Error::IniSyntax {
            path: path.clone(),
            line,
            message,
        };
        for (idx, raw) in text.lines().enumerate() {
            let lineno = idx + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                if last.is_some() {
                    pending_blank += 1;
                }
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indented = raw.starts_with(' ') || raw.starts_with('\t');
            if indented {
                if let Some((sec, key)) = &last {
                    if let Some(v) = sections.get_mut(sec).and_then(|s| s.get_mut(key)) {
                        for _ in 0..pending_blank {
                            v.value.push('\n');
                        }
                        pending_blank = 0;
                        v.value.push('\n');
                        v.value.push_str(trimmed);
                        continue;
                    }
                }
            }
            pending_blank = 0;
            if trimmed.starts_with('[') {
                let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
                    return Err(err(lineno, "section header without closing ']'".into()));
                };
                if sections.contains_key(name) {
                    return Err(err(lineno, format!("section [{name}] appears twice")));
                }
                sections.insert(name.to_string(), HashMap::new());
                current = Some(name.to_string());
                last = None;
                continue;
            }
            let Some(section) = current.clone() else {
                return Err(err(lineno, "option before any [section] header".into()));
            };
            let delim = trimmed.find(['=', ':']);
            let Some(pos) = delim else {
                return Err(err(
                    lineno,
                    "line is neither a [section], a comment nor key = value".into(),
                ));
            };
            let key = trimmed[..pos].trim().to_lowercase();
            if key.is_empty() {
                return Err(err(lineno, "option with an empty name".into()));
            }
            let value = trimmed[pos + 1..].trim().to_string();
            let sec = sections.entry(section.clone()).or_default();
            if sec.contains_key(&key) {
                return Err(err(
                    lineno,
                    format!("option {key} appears twice in [{section}]"),
                ));
            }
            sec.insert(
                key.clone(),
                IniValue {
                    value,
                    line: lineno,
                },
            );
            last = Some((section, key));
        }
        Ok(Ini { path, sections })
    }

    /// Read and parse the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// The file this document came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `section` exists.
    pub fn has_section(&self, section: &str) -> bool {
        self.sections.contains_key(section)
    }

    /// The value of `key` (any case) in `section`, falling back to
    /// `[DEFAULT]` as configparser does.
    pub fn get(&self, section: &str, key: &str) -> Option<&IniValue> {
        let key = key.to_lowercase();
        self.sections
            .get(section)
            .and_then(|s| s.get(&key))
            .or_else(|| self.sections.get(DEFAULT_SECTION).and_then(|s| s.get(&key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_configparser() {
        let text = "# comment\n[DEFAULT]\nbase = /etc\n\n[global]\nQUEUE = build-queue\nRabbit_Host: rabbit.example\n; other comment\nLONG = first\n  second\n\n  third\n\n[other]\nx=1\n";
        let ini = Ini::parse("c.ini", text).unwrap();
        assert_eq!(ini.get("global", "queue").unwrap().value, "build-queue");
        assert_eq!(ini.get("global", "QUEUE").unwrap().line, 6);
        assert_eq!(
            ini.get("global", "RABBIT_HOST").unwrap().value,
            "rabbit.example"
        );
        assert_eq!(
            ini.get("global", "long").unwrap().value,
            "first\nsecond\n\nthird"
        );
        assert_eq!(ini.get("other", "base").unwrap().value, "/etc");
        assert_eq!(ini.get("other", "X").unwrap().value, "1");
        assert!(
            ini.get("Global", "queue").is_none(),
            "section names keep case"
        );
        assert!(ini.get("global", "missing").is_none());
    }

    #[test]
    fn first_delimiter_wins_and_values_keep_later_ones() {
        let ini = Ini::parse("c.ini", "[s]\nurl = http://h:80/p?a=b\n").unwrap();
        assert_eq!(ini.get("s", "url").unwrap().value, "http://h:80/p?a=b");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let cases = [
            ("key = v\n", 1, "before any [section]"),
            ("[s]\nno delimiter\n", 2, "key = value"),
            ("[s]\n[s]\n", 2, "twice"),
            ("[s]\na=1\nA=2\n", 3, "twice"),
            ("[s\n", 1, "closing"),
        ];
        for (text, line, needle) in cases {
            let e = Ini::parse("/etc/x.ini", text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("/etc/x.ini:{line}: ")), "{e}");
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn debug_hides_values() {
        let ini = Ini::parse("c.ini", "[global]\nRABBIT_PW = hunter2\n").unwrap();
        assert!(!format!("{ini:?}").contains("hunter2"));
    }
}
