//! An INI reader that behaves like Python's `configparser` for GlanceSync files.
//!
//! Rules reproduced: `[section]` headers (case-sensitive), `key = value` or
//! `key: value` (first delimiter wins), option names lower-cased and
//! stripped, full-line comments starting with `#` or `;`, indented
//! continuation lines joined with `\n` (blank lines inside a value kept,
//! trailing ones dropped), a `[DEFAULT]` section inherited by every section,
//! and `%(name)s` / `%%` interpolation as `SafeConfigParser` does. Values
//! ending in a backslash followed by a continuation line keep the backslash
//! and the newline, exactly as Python stores them; callers decide how to
//! read them (see [`join_backslash_lines`]). As Python 2's `ConfigParser`
//! (which the original ran on) does, ` ;` starts an inline comment on an
//! option's first line and a value of `""` is empty.

use indexmap::IndexMap;

use crate::error::{Error, Result};

/// One option's raw value and where it was defined.
#[derive(Debug, Clone)]
pub struct IniValue {
    /// The raw (not interpolated) value.
    pub raw: String,
    /// 1-based line of the option's first line (0 for values set in code).
    pub line: usize,
}

/// A parsed INI document.
#[derive(Debug, Clone, Default)]
pub struct Ini {
    /// Name of the source (a path or `<string>`), used in error messages.
    pub source: String,
    defaults: IndexMap<String, IniValue>,
    sections: IndexMap<String, IndexMap<String, IniValue>>,
}

/// The name of the section every other section inherits from.
pub const DEFAULT_SECTION: &str = "DEFAULT";

impl Ini {
    /// An empty document.
    pub fn new(source: impl Into<String>) -> Self {
        Ini {
            source: source.into(),
            ..Default::default()
        }
    }

    /// Parse `text`; `source` names it in error messages.
    pub fn parse(source: impl Into<String>, text: &str) -> Result<Self> {
        let mut ini = Ini::new(source);
        ini.read_str(text)?;
        Ok(ini)
    }

    fn syntax(&self, line: usize, message: impl Into<String>) -> Error {
        Error::IniSyntax {
            file: self.source.clone(),
            line,
            message: message.into(),
        }
    }

    /// Add the definitions of `text` to this document (later definitions win).
    pub fn read_str(&mut self, text: &str) -> Result<()> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // Current section (None = before any header), current option, its indent, pending blank lines.
        let mut section: Option<String> = None;
        let mut option: Option<String> = None;
        let mut option_indent = 0usize;
        let mut blank_run = 0usize;
        for (idx, line) in text.split('\n').enumerate() {
            let lineno = idx + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            let stripped = line.trim();
            if stripped.starts_with('#') || stripped.starts_with(';') {
                continue;
            }
            if stripped.is_empty() {
                if option.is_some() {
                    blank_run += 1;
                }
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if let (Some(sec), Some(opt)) = (&section, &option) {
                if indent > option_indent {
                    let map = if sec == DEFAULT_SECTION {
                        &mut self.defaults
                    } else {
                        self.sections.entry(sec.clone()).or_default()
                    };
                    if let Some(v) = map.get_mut(opt) {
                        for _ in 0..blank_run {
                            v.raw.push('\n');
                        }
                        v.raw.push('\n');
                        v.raw.push_str(stripped);
                    }
                    blank_run = 0;
                    continue;
                }
            }
            blank_run = 0;
            option = None;
            if stripped.starts_with('[') {
                let Some(end) = stripped.rfind(']') else {
                    return Err(
                        self.syntax(lineno, format!("malformed section header: {stripped}"))
                    );
                };
                let name = &stripped[1..end];
                if name.is_empty() {
                    return Err(self.syntax(lineno, "empty section name"));
                }
                if name != DEFAULT_SECTION {
                    self.sections.entry(name.to_string()).or_default();
                }
                section = Some(name.to_string());
                continue;
            }
            let Some(sec) = section.clone() else {
                return Err(self.syntax(
                    lineno,
                    format!(
                        "option outside any section (file contains no section headers): {stripped}"
                    ),
                ));
            };
            let pos = stripped.find(['=', ':']);
            let Some(pos) = pos else {
                return Err(self.syntax(
                    lineno,
                    format!("expected 'name = value', found: {stripped}"),
                ));
            };
            let key = stripped[..pos].trim().to_lowercase();
            if key.is_empty() {
                return Err(self.syntax(lineno, format!("empty option name: {stripped}")));
            }
            let value = py2_option_value(&stripped[pos + 1..]);
            let map = if sec == DEFAULT_SECTION {
                &mut self.defaults
            } else {
                self.sections.entry(sec.clone()).or_default()
            };
            if map.contains_key(&key) {
                tracing::warn!(file = %self.source, line = lineno, "option '{key}' in section [{sec}] defined twice; the later value wins");
            }
            map.insert(
                key.clone(),
                IniValue {
                    raw: value,
                    line: lineno,
                },
            );
            option = Some(key);
            option_indent = indent;
        }
        // configparser strips trailing whitespace of multi-line values.
        for v in self
            .defaults
            .values_mut()
            .chain(self.sections.values_mut().flat_map(|s| s.values_mut()))
        {
            let t = v.raw.trim_end().len();
            v.raw.truncate(t);
        }
        Ok(())
    }

    /// Section names in file order (DEFAULT excluded).
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().map(String::as_str)
    }

    /// Does the section exist? (`DEFAULT` always does.)
    pub fn has_section(&self, section: &str) -> bool {
        section == DEFAULT_SECTION || self.sections.contains_key(section)
    }

    /// Add a section if missing.
    pub fn add_section(&mut self, section: &str) {
        if section != DEFAULT_SECTION {
            self.sections.entry(section.to_string()).or_default();
        }
    }

    fn lookup(&self, section: &str, option: &str) -> Option<&IniValue> {
        let option = option.to_lowercase();
        if section != DEFAULT_SECTION {
            if let Some(v) = self.sections.get(section).and_then(|s| s.get(&option)) {
                return Some(v);
            }
        }
        self.defaults.get(&option)
    }

    /// Does the section (or DEFAULT) define the option?
    pub fn has_option(&self, section: &str, option: &str) -> bool {
        self.has_section(section) && self.lookup(section, option).is_some()
    }

    /// Line where the option is defined (0 when set in code or absent).
    pub fn line_of(&self, section: &str, option: &str) -> usize {
        self.lookup(section, option).map_or(0, |v| v.line)
    }

    /// Set an option. Fails when the section does not exist (as `configparser.set`).
    pub fn set(&mut self, section: &str, option: &str, value: &str) -> Result<()> {
        let v = IniValue {
            raw: value.to_string(),
            line: 0,
        };
        let option = option.trim().to_lowercase();
        if section == DEFAULT_SECTION {
            self.defaults.insert(option, v);
            return Ok(());
        }
        match self.sections.get_mut(section) {
            Some(s) => {
                s.insert(option, v);
                Ok(())
            }
            None => Err(Error::Config {
                file: self.source.clone(),
                message: format!("no section [{section}]"),
            }),
        }
    }

    /// Set a DEFAULT value only if no value exists yet (built-in defaults).
    pub fn set_default_if_absent(&mut self, option: &str, value: &str) {
        self.defaults
            .entry(option.to_lowercase())
            .or_insert_with(|| IniValue {
                raw: value.to_string(),
                line: 0,
            });
    }

    /// The interpolated value of an option, or `None` when absent.
    pub fn get(&self, section: &str, option: &str) -> Result<Option<String>> {
        if !self.has_section(section) {
            return Ok(None);
        }
        let Some(v) = self.lookup(section, option) else {
            return Ok(None);
        };
        self.interpolate(section, option, &v.raw, 1).map(Some)
    }

    fn opt_err(&self, section: &str, option: &str, message: String) -> Error {
        let line = self.line_of(section, option);
        let file = if line > 0 {
            format!("{}:{line}", self.source)
        } else {
            self.source.clone()
        };
        Error::ConfigOption {
            file,
            section: section.to_string(),
            option: option.to_string(),
            message,
        }
    }

    fn interpolate(&self, section: &str, option: &str, raw: &str, depth: usize) -> Result<String> {
        if depth > 10 {
            return Err(self.opt_err(
                section,
                option,
                "interpolation too deeply nested (recursive reference?)".into(),
            ));
        }
        if !raw.contains('%') {
            return Ok(raw.to_string());
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            if let Some(r) = rest.strip_prefix("%%") {
                out.push('%');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("%(") {
                let Some(close) = r.find(")s") else {
                    return Err(self.opt_err(
                        section,
                        option,
                        format!("bad interpolation syntax in {raw:?}"),
                    ));
                };
                let name = r[..close].to_lowercase();
                let Some(v) = self.lookup(section, &name) else {
                    return Err(self.opt_err(
                        section,
                        option,
                        format!("interpolation refers to missing option '{name}'"),
                    ));
                };
                out.push_str(&self.interpolate(section, option, &v.raw, depth + 1)?);
                rest = &r[close + 2..];
            } else {
                return Err(self.opt_err(
                    section,
                    option,
                    format!("'%' must be followed by '%' or '(' (write '%%' for a literal percent sign), found: {raw:?}"),
                ));
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `getboolean`: 1/yes/true/on and 0/no/false/off, case-insensitive.
    pub fn get_bool(&self, section: &str, option: &str) -> Result<Option<bool>> {
        match self.get(section, option)? {
            None => Ok(None),
            Some(v) => match v.trim().to_lowercase().as_str() {
                "1" | "yes" | "true" | "on" => Ok(Some(true)),
                "0" | "no" | "false" | "off" => Ok(Some(false)),
                other => Err(self.opt_err(section, option, format!("not a boolean: '{other}'"))),
            },
        }
    }

    /// `getint`.
    pub fn get_int(&self, section: &str, option: &str) -> Result<Option<i64>> {
        match self.get(section, option)? {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                self.opt_err(section, option, format!("not an integer: '{}'", v.trim()))
            }),
        }
    }

    /// A comma-separated list, items trimmed; empty value → empty list.
    pub fn get_list(&self, section: &str, option: &str) -> Result<Vec<String>> {
        match self.get(section, option)? {
            None => Ok(Vec::new()),
            Some(v) => Ok(split_list(&v)),
        }
    }

    /// Build an error about one option (names the file, line and option).
    pub fn option_error(&self, section: &str, option: &str, message: impl Into<String>) -> Error {
        self.opt_err(section, option, message.into())
    }
}

/// An option's value on its first line, as Python 2's `ConfigParser` (which
/// read every existing glancesync.conf) returns it: a `;` preceded by
/// whitespace starts an inline comment, and `""` means an empty value.
fn py2_option_value(raw: &str) -> String {
    let mut v = raw.trim();
    let bytes = v.as_bytes();
    if let Some(pos) =
        (1..bytes.len()).find(|&i| bytes[i] == b';' && bytes[i - 1].is_ascii_whitespace())
    {
        v = v[..pos].trim_end();
    }
    if v == "\"\"" {
        return String::new();
    }
    v.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "[DEFAULT]\nonly_tenant_images = False\n\n[main]\nMaster_Region = Valladolid\n# comment\n; other\n[master]\ncredential = user,ZmFr,\\\n  http://server:4730/v2.0,tenant1\nmetadata_set = nid, type\n[other]\nmetadata_condition = image.is_public and\\\n 'type' in image.user_properties\nmulti = a\n\n   b\n\nport: 80%%\nref = %(port)s!\n";

    #[test]
    fn parses_like_configparser() {
        let ini = Ini::parse("t.conf", SAMPLE).unwrap();
        assert_eq!(
            ini.get("main", "master_region").unwrap().as_deref(),
            Some("Valladolid")
        );
        assert_eq!(
            ini.get("main", "MASTER_REGION").unwrap().as_deref(),
            Some("Valladolid")
        );
        assert_eq!(
            ini.get("master", "credential").unwrap().as_deref(),
            Some("user,ZmFr,\\\nhttp://server:4730/v2.0,tenant1")
        );
        assert_eq!(
            ini.get("other", "metadata_condition").unwrap().as_deref(),
            Some("image.is_public and\\\n'type' in image.user_properties")
        );
        assert_eq!(
            ini.get("other", "multi").unwrap().as_deref(),
            Some("a\n\nb")
        );
        assert_eq!(ini.get("other", "port").unwrap().as_deref(), Some("80%"));
        assert_eq!(ini.get("other", "ref").unwrap().as_deref(), Some("80%!"));
        assert_eq!(
            ini.get_bool("master", "only_tenant_images").unwrap(),
            Some(false)
        );
        assert_eq!(
            ini.sections().collect::<Vec<_>>(),
            vec!["main", "master", "other"]
        );
        assert_eq!(
            ini.get_list("master", "metadata_set").unwrap(),
            vec!["nid", "type"]
        );
        assert_eq!(ini.line_of("master", "metadata_set"), 11);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Ini::parse("x.conf", "key = 1\n").unwrap_err().to_string();
        assert!(e.starts_with("x.conf:1:"), "{e}");
        let e = Ini::parse("x.conf", "[a]\nfoo\n").unwrap_err().to_string();
        assert!(e.starts_with("x.conf:2:"), "{e}");
        let ini = Ini::parse("x.conf", "[a]\nb = 5%\nc = maybe\n").unwrap();
        let e = ini.get("a", "b").unwrap_err().to_string();
        assert!(e.contains("x.conf:2") && e.contains("b"), "{e}");
        let e = ini.get_bool("a", "c").unwrap_err().to_string();
        assert!(e.contains("x.conf:3") && e.contains("[a] c"), "{e}");
    }

    #[test]
    fn set_requires_existing_section() {
        let mut ini = Ini::parse("x", "[a]\n").unwrap();
        assert!(ini.set("b", "k", "v").is_err());
        ini.set("a", "K", "v").unwrap();
        assert_eq!(ini.get("a", "k").unwrap().as_deref(), Some("v"));
        ini.set(DEFAULT_SECTION, "z", "1").unwrap();
        assert_eq!(ini.get("a", "z").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn python2_inline_comments_and_empty_quotes() {
        let ini = Ini::parse("x", "[a]\nk = v ; comment\nj = v;not a comment\ne = \"\"\n").unwrap();
        assert_eq!(ini.get("a", "k").unwrap().as_deref(), Some("v"));
        assert_eq!(
            ini.get("a", "j").unwrap().as_deref(),
            Some("v;not a comment")
        );
        assert_eq!(ini.get("a", "e").unwrap().as_deref(), Some(""));
    }

    #[test]
    fn lists() {
        assert_eq!(split_list(" a , b,c "), vec!["a", "b", "c"]);
        assert!(split_list("  ").is_empty());
        assert_eq!(split_list("None"), vec!["None"]);
    }
}
