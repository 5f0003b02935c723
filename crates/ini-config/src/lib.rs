//! The workspace's one INI reader, compatible with Python's `configparser`,
//! with the dialect of the tool whose files it reads as a setting
//! ([`Dialect`]).
//!
//! Rules every dialect shares: `[section]` headers (names case-sensitive;
//! text after the last `]` ignored), `key = value` or `key: value` (the
//! first delimiter wins), option names stripped and lower-cased, full-line
//! comments starting with `#` or `;`, lines indented deeper than their
//! option's first line continue its value (joined with `\n`; blank lines
//! inside a value kept, trailing whitespace dropped), a `[DEFAULT]` section
//! inherited by every section, a leading byte-order mark ignored, `\r\n`
//! line ends accepted. What differs between the tools' originals is in
//! [`Dialect`]: `%(name)s` interpolation, Python 2's inline ` ;` comments
//! and `""` empty values, and whether a repeated section or option is an
//! error (`strict`) or the later definition wins.
//!
//! Owns: parsing INI text, lookup with `[DEFAULT]` fallback, interpolation,
//! `getboolean`/`getint`, and errors that name the file, line, section and
//! option. Must not: put a value (or any part of one, or a whole malformed
//! line) into an error or a log line: option values may be passwords.
//! What an option means is the caller's business.

use std::path::Path;

use indexmap::IndexMap;

/// The section every other section inherits from.
pub const DEFAULT_SECTION: &str = "DEFAULT";

/// configparser's `MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// How one tool's original read its INI files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// `%(name)s` and `%%` are interpolated when a value is read
    /// (`SafeConfigParser`, `BasicInterpolation`); off = values read raw.
    pub interpolation: bool,
    /// Python 2: on an option's first line, a `;` preceded by whitespace
    /// starts a comment.
    pub inline_comments: bool,
    /// Python 2: a value written `""` is the empty string.
    pub empty_quotes: bool,
    /// Python 3's `strict`: a section or an option (within one section)
    /// defined twice is an error; otherwise sections merge and the later
    /// option wins (with a warning).
    pub strict: bool,
}

impl Dialect {
    /// Python 2's `SafeConfigParser` (fiware-glancesync): interpolation,
    /// inline ` ;` comments, `""` empty, duplicates allowed (the later wins).
    pub const PYTHON2_SAFE: Dialect = Dialect {
        interpolation: true,
        inline_comments: true,
        empty_quotes: true,
        strict: false,
    };

    /// Python 3's `RawConfigParser` with `strict=True` (packuilon): no
    /// interpolation, no inline comments, duplicates are errors.
    pub const PYTHON3_RAW_STRICT: Dialect = Dialect {
        interpolation: false,
        inline_comments: false,
        empty_quotes: false,
        strict: true,
    };
}

/// Everything that can be wrong with an INI file or one of its options.
/// No variant ever carries an option's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line of the file is malformed.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file (or a name such as `<string>`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line's text).
        message: String,
    },
    /// An option's value cannot be used.
    #[error("{}: [{section}] {option}: {message}", located(file, *line))]
    Option {
        /// The file (or a name such as `<string>`).
        file: String,
        /// 1-based line of the option (0 when set in code).
        line: usize,
        /// The option's section.
        section: String,
        /// The option's name.
        option: String,
        /// What is wrong (never the value).
        message: String,
    },
    /// An option was set in a section that does not exist.
    #[error("{file}: no section [{section}]")]
    NoSection {
        /// The file (or a name such as `<string>`).
        file: String,
        /// The missing section.
        section: String,
    },
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn located(file: &str, line: usize) -> String {
    if line > 0 {
        format!("{file}:{line}")
    } else {
        file.to_string()
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One option's raw (not interpolated) value and where it was defined.
/// Its `Debug` output shows the line only: values may be secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct IniValue {
    /// The raw value (continuation lines joined with `\n`).
    pub value: String,
    /// 1-based line of the option's first line (0 for values set in code).
    pub line: usize,
}

impl std::fmt::Debug for IniValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IniValue {{ line: {}, .. }}", self.line)
    }
}

type Options = IndexMap<String, IniValue>;

/// A parsed INI document.
#[derive(Debug, Clone)]
pub struct Ini {
    source: String,
    dialect: Dialect,
    defaults: Options,
    sections: IndexMap<String, Options>,
}

impl Ini {
    /// An empty document named `source` in errors.
    pub fn new(source: impl Into<String>, dialect: Dialect) -> Self {
        Ini {
            source: source.into(),
            dialect,
            defaults: Options::new(),
            sections: IndexMap::new(),
        }
    }

    /// Parse `text`; `source` names it in errors.
    pub fn parse(source: impl Into<String>, text: &str, dialect: Dialect) -> Result<Self> {
        let mut ini = Ini::new(source, dialect);
        ini.read_str(text)?;
        Ok(ini)
    }

    /// Read and parse the file at `path`.
    pub fn load(path: &Path, dialect: Dialect) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path.display().to_string(), &text, dialect)
    }

    /// The name of the source (a path or `<string>`), as errors show it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The dialect this document is read with.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn syntax(&self, line: usize, message: impl Into<String>) -> Error {
        Error::Syntax {
            file: self.source.clone(),
            line,
            message: message.into(),
        }
    }

    fn options_mut(&mut self, section: &str) -> &mut Options {
        if section == DEFAULT_SECTION {
            &mut self.defaults
        } else {
            self.sections.entry(section.to_string()).or_default()
        }
    }

    /// Add the definitions of `text` to this document (in the non-strict
    /// dialect later definitions win).
    pub fn read_str(&mut self, text: &str) -> Result<()> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut seen_sections: Vec<String> = Vec::new();
        let mut seen_options: Vec<(String, String)> = Vec::new();
        let mut section: Option<String> = None;
        // The option a deeper-indented line continues, with its indent.
        let mut option: Option<(String, usize)> = None;
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
            if let (Some(sec), Some((opt, opt_indent))) = (&section, &option) {
                if indent > *opt_indent {
                    let (sec, opt) = (sec.clone(), opt.clone());
                    if let Some(v) = self.options_mut(&sec).get_mut(&opt) {
                        for _ in 0..blank_run {
                            v.value.push('\n');
                        }
                        v.value.push('\n');
                        v.value.push_str(stripped);
                    }
                    blank_run = 0;
                    continue;
                }
            }
            blank_run = 0;
            option = None;
            if stripped.starts_with('[') {
                let Some(end) = stripped.rfind(']') else {
                    return Err(self.syntax(lineno, "section header without a closing ']'"));
                };
                let name = stripped[1..end].to_string();
                if name.is_empty() {
                    return Err(self.syntax(lineno, "empty section name"));
                }
                if self.dialect.strict && seen_sections.contains(&name) {
                    return Err(self.syntax(lineno, format!("section [{name}] appears twice")));
                }
                seen_sections.push(name.clone());
                if name != DEFAULT_SECTION {
                    self.sections.entry(name.clone()).or_default();
                }
                section = Some(name);
                continue;
            }
            let Some(sec) = section.clone() else {
                return Err(self.syntax(
                    lineno,
                    "option outside any section (the file must start with a [section] header)",
                ));
            };
            let Some(pos) = stripped.find(['=', ':']) else {
                return Err(self.syntax(
                    lineno,
                    "line is neither a [section], a comment nor 'name = value'",
                ));
            };
            let key = stripped[..pos].trim().to_lowercase();
            if key.is_empty() {
                return Err(self.syntax(lineno, "option with an empty name"));
            }
            let value = self.first_line_value(&stripped[pos + 1..]);
            let pair = (sec.clone(), key.clone());
            if seen_options.contains(&pair) {
                if self.dialect.strict {
                    return Err(
                        self.syntax(lineno, format!("option {key} appears twice in [{sec}]"))
                    );
                }
                tracing::warn!(file = %self.source, line = lineno, "option '{key}' in section [{sec}] defined twice; the later value wins");
            } else {
                seen_options.push(pair);
            }
            self.options_mut(&sec).insert(
                key.clone(),
                IniValue {
                    value,
                    line: lineno,
                },
            );
            option = Some((key, indent));
        }
        for v in self
            .defaults
            .values_mut()
            .chain(self.sections.values_mut().flat_map(|s| s.values_mut()))
        {
            let t = v.value.trim_end().len();
            v.value.truncate(t);
        }
        Ok(())
    }

    /// The value on an option's first line, as the dialect reads it.
    fn first_line_value(&self, raw: &str) -> String {
        let mut v = raw.trim();
        if self.dialect.inline_comments {
            let bytes = v.as_bytes();
            if let Some(pos) =
                (1..bytes.len()).find(|&i| bytes[i] == b';' && bytes[i - 1].is_ascii_whitespace())
            {
                v = v[..pos].trim_end();
            }
        }
        if self.dialect.empty_quotes && v == "\"\"" {
            return String::new();
        }
        v.to_string()
    }

    /// Section names in file order (`DEFAULT` excluded).
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

    /// The raw value of `option` (any case) in `section`, falling back to
    /// `[DEFAULT]`; `None` when the section or the option is absent.
    pub fn raw(&self, section: &str, option: &str) -> Option<&IniValue> {
        let option = option.to_lowercase();
        if section != DEFAULT_SECTION {
            let options = self.sections.get(section)?;
            if let Some(v) = options.get(&option) {
                return Some(v);
            }
        }
        self.defaults.get(&option)
    }

    /// Does the section (or `DEFAULT`) define the option?
    pub fn has_option(&self, section: &str, option: &str) -> bool {
        self.raw(section, option).is_some()
    }

    /// Line where the option is defined (0 when set in code or absent).
    pub fn line_of(&self, section: &str, option: &str) -> usize {
        self.raw(section, option).map_or(0, |v| v.line)
    }

    /// Set an option. Fails when the section does not exist (as
    /// `configparser.set`).
    pub fn set(&mut self, section: &str, option: &str, value: &str) -> Result<()> {
        if !self.has_section(section) {
            return Err(Error::NoSection {
                file: self.source.clone(),
                section: section.to_string(),
            });
        }
        let option = option.trim().to_lowercase();
        self.options_mut(section).insert(
            option,
            IniValue {
                value: value.to_string(),
                line: 0,
            },
        );
        Ok(())
    }

    /// Set a `DEFAULT` value only when none exists yet (built-in defaults).
    pub fn set_default_if_absent(&mut self, option: &str, value: &str) {
        self.defaults
            .entry(option.trim().to_lowercase())
            .or_insert_with(|| IniValue {
                value: value.to_string(),
                line: 0,
            });
    }

    /// The value of an option (interpolated when the dialect says so), or
    /// `None` when absent.
    pub fn get(&self, section: &str, option: &str) -> Result<Option<String>> {
        let Some(v) = self.raw(section, option) else {
            return Ok(None);
        };
        if !self.dialect.interpolation {
            return Ok(Some(v.value.clone()));
        }
        self.interpolate(section, option, &v.value, 1).map(Some)
    }

    /// An error about one option: names the file, its line, the section and
    /// the option. `message` must not contain the value.
    pub fn option_error(&self, section: &str, option: &str, message: impl Into<String>) -> Error {
        Error::Option {
            file: self.source.clone(),
            line: self.line_of(section, option),
            section: section.to_string(),
            option: option.to_string(),
            message: message.into(),
        }
    }

    fn interpolate(&self, section: &str, option: &str, raw: &str, depth: usize) -> Result<String> {
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(self.option_error(
                section,
                option,
                "interpolation too deeply nested (recursive reference?)",
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
                    return Err(self.option_error(
                        section,
                        option,
                        "bad interpolation syntax: '%(' without ')s' (write '%%' for a literal percent sign)",
                    ));
                };
                let name = r[..close].to_lowercase();
                let Some(v) = self.raw(section, &name) else {
                    // The name is part of the value: not shown.
                    return Err(self.option_error(
                        section,
                        option,
                        "'%(...)s' refers to an option that is not defined (write '%%' for a literal percent sign)",
                    ));
                };
                out.push_str(&self.interpolate(section, option, &v.value, depth + 1)?);
                rest = &r[close + 2..];
            } else {
                return Err(self.option_error(
                    section,
                    option,
                    "'%' must be followed by '%' or '(' (write '%%' for a literal percent sign)",
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
                _ => Err(self.option_error(
                    section,
                    option,
                    "not a boolean (1/yes/true/on or 0/no/false/off)",
                )),
            },
        }
    }

    /// `getint`.
    pub fn get_int(&self, section: &str, option: &str) -> Result<Option<i64>> {
        match self.get(section, option)? {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.option_error(section, option, "not an integer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY2: Dialect = Dialect::PYTHON2_SAFE;
    const PY3: Dialect = Dialect::PYTHON3_RAW_STRICT;

    const SAMPLE: &str = "[DEFAULT]\nonly_tenant_images = False\n\n[main]\nMaster_Region = Valladolid\n# comment\n; other\n[master]\ncredential = user,ZmFr,\\\n  http://server:4730/v2.0,tenant1\nmetadata_set = nid, type\n[other]\nmetadata_condition = image.is_public and\\\n 'type' in image.user_properties\nmulti = a\n\n   b\n\nport: 80%%\nref = %(port)s!\n";

    #[test]
    fn parses_like_python2_safeconfigparser() {
        let ini = Ini::parse("t.conf", SAMPLE, PY2).unwrap();
        let get = |s: &str, o: &str| ini.get(s, o).unwrap();
        assert_eq!(get("main", "master_region").as_deref(), Some("Valladolid"));
        assert_eq!(get("main", "MASTER_REGION").as_deref(), Some("Valladolid"));
        assert_eq!(
            get("master", "credential").as_deref(),
            Some("user,ZmFr,\\\nhttp://server:4730/v2.0,tenant1")
        );
        assert_eq!(
            get("other", "metadata_condition").as_deref(),
            Some("image.is_public and\\\n'type' in image.user_properties")
        );
        assert_eq!(get("other", "multi").as_deref(), Some("a\n\nb"));
        assert_eq!(get("other", "port").as_deref(), Some("80%"));
        assert_eq!(get("other", "ref").as_deref(), Some("80%!"));
        assert_eq!(
            ini.get_bool("master", "only_tenant_images").unwrap(),
            Some(false)
        );
        assert_eq!(
            ini.sections().collect::<Vec<_>>(),
            vec!["main", "master", "other"]
        );
        assert_eq!(ini.line_of("master", "metadata_set"), 11);
        assert!(get("nosuch", "only_tenant_images").is_none());
    }

    #[test]
    fn python2_inline_comments_empty_quotes_and_duplicates() {
        let ini = Ini::parse(
            "x",
            "[a]\nk = v ; comment\nj = v;not a comment\ne = \"\"\nk = later\n[a]\nz = 1\n",
            PY2,
        )
        .unwrap();
        assert_eq!(ini.get("a", "k").unwrap().as_deref(), Some("later"));
        assert_eq!(
            ini.get("a", "j").unwrap().as_deref(),
            Some("v;not a comment")
        );
        assert_eq!(ini.get("a", "e").unwrap().as_deref(), Some(""));
        assert_eq!(ini.get("a", "z").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn parses_like_python3_strict_raw() {
        let text = "# comment\n[DEFAULT]\nbase = /etc\n\n[global]\nQUEUE = build-queue\nRabbit_Host: rabbit.example\n; other comment\nLONG = first\n  second\n\n  third\n\nPW = a%b ; c\nQ = \"\"\n[other]\nx=1\n";
        let ini = Ini::parse("c.ini", text, PY3).unwrap();
        let raw = |s: &str, k: &str| ini.raw(s, k).map(|v| v.value.clone());
        assert_eq!(raw("global", "queue").as_deref(), Some("build-queue"));
        assert_eq!(ini.line_of("global", "QUEUE"), 6);
        assert_eq!(
            raw("global", "RABBIT_HOST").as_deref(),
            Some("rabbit.example")
        );
        assert_eq!(
            raw("global", "long").as_deref(),
            Some("first\nsecond\n\nthird")
        );
        assert_eq!(ini.get("global", "pw").unwrap().as_deref(), Some("a%b ; c"));
        assert_eq!(raw("global", "q").as_deref(), Some("\"\""));
        assert_eq!(raw("other", "base").as_deref(), Some("/etc"));
        assert!(raw("Global", "queue").is_none(), "section names keep case");
    }

    #[test]
    fn strict_duplicates_are_errors_naming_file_and_line() {
        let cases = [
            ("key = v\n", 1, "outside any section"),
            ("[s]\nno delimiter\n", 2, "name = value"),
            ("[s]\n[s]\n", 2, "twice"),
            ("[s]\na=1\nA=2\n", 3, "twice"),
            ("[s\n", 1, "closing"),
            ("[]\n", 1, "empty section"),
            ("[s]\n = v\n", 2, "empty name"),
        ];
        for (text, line, needle) in cases {
            let e = Ini::parse("/etc/x.ini", text, PY3).unwrap_err().to_string();
            assert!(e.starts_with(&format!("/etc/x.ini:{line}: ")), "{e}");
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn errors_never_show_a_value() {
        let secret = "hunter2";
        // Malformed lines holding a secret are not echoed.
        for text in [
            format!("password = {secret}\n"),
            format!("[a]\n{secret}\n"),
            format!("[{secret}\n"),
        ] {
            let e = Ini::parse("x.conf", &text, PY2).unwrap_err().to_string();
            assert!(!e.contains(secret), "{e}");
        }
        // Interpolation errors on a password name the key and line only.
        for pw in ["hun%ter2", "hunter2%(", "x%(hunter2)s", "%(p)s"] {
            let ini = Ini::parse(
                "x.conf",
                &format!("[a]\nb = 1\npassword = {pw}\np = %(password)s\n"),
                PY2,
            )
            .unwrap();
            let e = ini.get("a", "password").unwrap_err().to_string();
            assert!(e.starts_with("x.conf:3: [a] password: "), "{e}");
            assert!(!e.contains("hunter2") && !e.contains(pw), "{e}");
        }
        let ini = Ini::parse("x.conf", "[a]\nb = s3cret\n", PY2).unwrap();
        for e in [
            ini.get_bool("a", "b").unwrap_err().to_string(),
            ini.get_int("a", "b").unwrap_err().to_string(),
        ] {
            assert!(
                e.starts_with("x.conf:2: [a] b: ") && !e.contains("s3cret"),
                "{e}"
            );
        }
        assert!(!format!("{ini:?}").contains("s3cret"));
    }

    #[test]
    fn set_and_defaults() {
        let mut ini = Ini::parse("x", "[a]\n", PY2).unwrap();
        assert!(matches!(
            ini.set("b", "k", "v"),
            Err(Error::NoSection { .. })
        ));
        ini.set("a", "K", "v").unwrap();
        assert_eq!(ini.get("a", "k").unwrap().as_deref(), Some("v"));
        ini.set(DEFAULT_SECTION, "z", "1").unwrap();
        ini.set_default_if_absent("z", "2");
        ini.set_default_if_absent("y", "3");
        assert_eq!(ini.get("a", "z").unwrap().as_deref(), Some("1"));
        assert_eq!(ini.get("a", "y").unwrap().as_deref(), Some("3"));
        assert_eq!(ini.line_of("a", "k"), 0);
        let e = ini.option_error("a", "k", "bad").to_string();
        assert_eq!(e, "x: [a] k: bad");
    }

    #[test]
    fn bom_crlf_and_missing_file() {
        let ini = Ini::parse("x", "\u{feff}[a]\r\nk = v\r\n", PY3).unwrap();
        assert_eq!(ini.get("a", "k").unwrap().as_deref(), Some("v"));
        let e = Ini::load(Path::new("/nonexistent/c.ini"), PY3)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/c.ini: "), "{e}");
    }
}
