//! `package-installs.yaml|json`: the per-phase install and uninstall lists
//! DIB's `package-installs-squash` produces from every element's file.
//!
//! Keys are package names; a value is empty, a map, or a list of maps with:
//! `phase` (default `install.d`), `uninstall`, `build-only` (install, then
//! uninstall in the same phase), `installtype` (`source`/`package`, compared
//! with `DIB_INSTALLTYPE_<element>` or `DIB_DEFAULT_INSTALLTYPE`, default
//! `source`), `arch` / `not-arch` (comma lists checked against `ARCH`,
//! mutually exclusive), `dib_python_version` (against `DIB_PYTHON_VERSION`),
//! `when` (`VAR = value` / `VAR != value`, a list is an AND; an unset
//! variable is an error naming it).
//!
//! As in DIB, `uninstall` and `build-only` count by their presence, and a
//! plain install request removes earlier uninstalls of the same package in
//! that phase. Two deliberate differences from the squash script: only the
//! element directory that wins on `ELEMENTS_PATH` is read (the script also
//! reads shadowed copies), and `arch` lists are trimmed around commas.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use crate::element::Element;
use crate::error::{Error, Result};

/// A package requested by an element.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageRequest {
    /// The (generic, pre-pkg-map) package name.
    pub package: String,
    /// The element whose file asked for it (its pkg-map applies).
    pub element: String,
}

/// Install and uninstall lists of one phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PhasePackages {
    /// Packages to install, in request order.
    pub install: Vec<PackageRequest>,
    /// Packages to uninstall, in request order.
    pub uninstall: Vec<PackageRequest>,
}

/// The squashed package-installs of an element set: phase → lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackageInstalls {
    /// By phase directory name (`install.d`, ...).
    pub phases: BTreeMap<String, PhasePackages>,
}

impl PackageInstalls {
    /// The lists of `phase` (empty when none).
    pub fn phase(&self, phase: &str) -> PhasePackages {
        self.phases.get(phase).cloned().unwrap_or_default()
    }

    /// The squash script's JSON shape, empty lists left out:
    /// `{phase: {"install": [[pkg, element], ...], "uninstall": [...]}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let list = |v: &[PackageRequest]| {
            serde_json::Value::Array(
                v.iter()
                    .map(|r| serde_json::json!([r.package, r.element]))
                    .collect(),
            )
        };
        let mut out = serde_json::Map::new();
        for (phase, p) in &self.phases {
            let mut m = serde_json::Map::new();
            if !p.install.is_empty() {
                m.insert("install".into(), list(&p.install));
            }
            if !p.uninstall.is_empty() {
                m.insert("uninstall".into(), list(&p.uninstall));
            }
            if !m.is_empty() {
                out.insert(phase.clone(), serde_json::Value::Object(m));
            }
        }
        serde_json::Value::Object(out)
    }
}

/// The install type of `element`: `DIB_INSTALLTYPE_<element, - as _>`, else
/// `DIB_DEFAULT_INSTALLTYPE`, else `source`.
pub fn element_installtype(element: &str, env: &BTreeMap<String, String>) -> String {
    env.get(&format!("DIB_INSTALLTYPE_{}", element.replace('-', "_")))
        .or_else(|| env.get("DIB_DEFAULT_INSTALLTYPE"))
        .cloned()
        .unwrap_or_else(|| "source".into())
}

/// Squash the package-installs files of `elements` (in this order) under
/// the build environment `env` (which must hold `ARCH` when a file uses
/// `arch`/`not-arch`, and every variable a `when` names).
pub fn squash(elements: &[Element], env: &BTreeMap<String, String>) -> Result<PackageInstalls> {
    let mut out = PackageInstalls::default();
    for el in elements {
        for ext in ["json", "yaml"] {
            let file = el.path.join(format!("package-installs.{ext}"));
            if file.exists() {
                collect(&mut out, &file, &el.name, env)?;
            }
        }
    }
    Ok(out)
}

/// Python's `str()` of a YAML scalar, for comparisons.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Python truthiness of a YAML value.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Sequence(s)) => !s.is_empty(),
        Some(Value::Mapping(m)) => !m.is_empty(),
        Some(Value::Tagged(_)) => true,
    }
}

fn collect(
    out: &mut PackageInstalls,
    file: &Path,
    element: &str,
    env: &BTreeMap<String, String>,
) -> Result<()> {
    let bad = |reason: String| Error::ElementFile {
        file: file.to_path_buf(),
        line: None,
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let doc: Value = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Ok(()),
        _ => {
            return Err(bad(
                "the top level must be a mapping of package names".into()
            ))
        }
    };
    let elem_installtype = element_installtype(element, env);
    for (k, params) in map {
        let pkg = py_str(&k);
        let params: Vec<Value> = match params {
            p if !truthy(Some(&p)) => vec![Value::Mapping(Default::default())],
            Value::Sequence(s) => s,
            p => vec![p],
        };
        for param in params {
            let Value::Mapping(param) = param else {
                return Err(bad(format!(
                    "package '{pkg}': parameters must be a mapping"
                )));
            };
            let get = |key: &str| param.get(key);
            let phase = match get("phase") {
                None => "install.d".to_string(),
                Some(v) => py_str(v),
            };
            let has_uninstall = get("uninstall").is_some();
            let build_only = get("build-only").is_some();
            let entry = out.phases.entry(phase.clone()).or_default();
            let mut installs: &[&str] = &["install"];
            if has_uninstall || build_only {
                let in_install = entry.install.iter().any(|r| r.package == pkg);
                let not_in_uninstall = entry.uninstall.iter().all(|r| r.package != pkg);
                if in_install && not_in_uninstall {
                    if !build_only {
                        continue;
                    }
                } else {
                    if has_uninstall {
                        installs = &["uninstall"];
                    }
                    if build_only {
                        installs = &["install", "uninstall"];
                    }
                }
            } else {
                entry.uninstall.retain(|r| r.package != pkg);
            }

            if let Some(it) = get("installtype") {
                if !matches!(it, Value::Null) && py_str(it) != elem_installtype {
                    continue;
                }
            }
            if !valid_for_arch(&pkg, get("arch"), get("not-arch"), env).map_err(bad)? {
                continue;
            }
            if let Some(v) = get("dib_python_version") {
                let want = py_str(v);
                let have = env
                    .get("DIB_PYTHON_VERSION")
                    .map(String::as_str)
                    .unwrap_or("");
                if !want.is_empty() && want != have {
                    continue;
                }
            }
            if let Some(w) = get("when") {
                if !when(w, env).map_err(|e| match e {
                    WhenError::Unset(variable) => Error::WhenVariable {
                        file: file.to_path_buf(),
                        package: pkg.clone(),
                        variable,
                    },
                    WhenError::Malformed(s) => {
                        bad(format!("package '{pkg}': malformed when line: <{s}>"))
                    }
                })? {
                    continue;
                }
            }
            for i in installs {
                let req = PackageRequest {
                    package: pkg.clone(),
                    element: element.to_string(),
                };
                if *i == "install" {
                    entry.install.push(req);
                } else {
                    entry.uninstall.push(req);
                }
            }
        }
    }
    Ok(())
}

fn valid_for_arch(
    pkg: &str,
    arch: Option<&Value>,
    not_arch: Option<&Value>,
    env: &BTreeMap<String, String>,
) -> std::result::Result<bool, String> {
    let arch = arch.filter(|v| !matches!(v, Value::Null));
    let not_arch = not_arch.filter(|v| !matches!(v, Value::Null));
    if arch.is_none() && not_arch.is_none() {
        return Ok(true);
    }
    if truthy(arch) && truthy(not_arch) {
        return Err(format!("package '{pkg}': arch and not-arch given"));
    }
    let current = env
        .get("ARCH")
        .ok_or_else(|| format!("package '{pkg}': arch/not-arch used but ARCH is not set"))?;
    let in_list = |v: &Value| py_str(v).split(',').any(|a| a.trim() == current);
    Ok(match (arch, not_arch) {
        (Some(a), _) if truthy(Some(a)) => in_list(a),
        (_, Some(n)) => !in_list(n),
        _ => true,
    })
}

/// Why a `when` condition could not be evaluated.
enum WhenError {
    Unset(String),
    Malformed(String),
}

/// Evaluate `VAR = value` / `VAR != value` (a list: all must hold).
fn when(v: &Value, env: &BTreeMap<String, String>) -> std::result::Result<bool, WhenError> {
    let statements: Vec<String> = match v {
        Value::Sequence(s) => s.iter().map(py_str).collect(),
        other => vec![py_str(other)],
    };
    let mut all = true;
    for s in &statements {
        let (var, op, val) = parse_when(s).ok_or_else(|| WhenError::Malformed(s.clone()))?;
        let have = env
            .get(var)
            .ok_or_else(|| WhenError::Unset(var.to_string()))?;
        let ok = if op == "=" { val == have } else { val != have };
        all &= ok;
    }
    Ok(all)
}

/// `(?P<var>\w+)\s*(?P<op>=|!=)\s*(?P<val>.*)` anchored at the start.
fn parse_when(s: &str) -> Option<(&str, &str, &str)> {
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let var = &s[..end];
    let rest = s[end..].trim_start();
    let (op, rest) = if let Some(r) = rest.strip_prefix("!=") {
        ("!=", r)
    } else if let Some(r) = rest.strip_prefix('=') {
        ("=", r)
    } else {
        return None;
    };
    Some((var, op, rest.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::parse_when;

    #[test]
    fn when_parsing() {
        assert_eq!(parse_when("FOO = bar"), Some(("FOO", "=", "bar")));
        assert_eq!(parse_when("FOO!=bar baz"), Some(("FOO", "!=", "bar baz")));
        assert_eq!(parse_when("FOO  !=  "), Some(("FOO", "!=", "")));
        assert_eq!(parse_when("= bar"), None);
        assert_eq!(parse_when("FOO bar"), None);
    }
}
