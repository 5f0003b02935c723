//! diskimage-builder elements: discovery over an `ELEMENTS_PATH` and
//! dependency expansion with the semantics of DIB's
//! `element-info --expand-dependencies`.
//!
//! An element is a directory; its name is the directory's name. Paths are
//! searched so that an element found in an earlier path overrides one of the
//! same name found in a later path. `element-deps` lists elements to add,
//! `element-provides` lists (virtual) elements this one stands in for; one
//! element must provide `operating-system`.

mod expand;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use expand::{expand_image_elements, image_element_args, ImageElementOptions};

/// One element directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Element {
    /// The element name (the directory's name).
    pub name: String,
    /// The element directory (symlinks resolved, as DIB does).
    pub path: PathBuf,
    /// Names from `element-deps`.
    pub depends: BTreeSet<String>,
    /// Names from `element-provides`.
    pub provides: BTreeSet<String>,
}

impl Element {
    /// Read the element at `path` (its `element-deps` and `element-provides`).
    pub fn load(name: &str, path: &Path) -> Result<Element> {
        Ok(Element {
            name: name.to_string(),
            path: path.to_path_buf(),
            depends: read_set(&path.join("element-deps"))?,
            provides: read_set(&path.join("element-provides"))?,
        })
    }
}

/// Non-blank stripped lines of a file; a missing file is an empty set.
fn read_set(path: &Path) -> Result<BTreeSet<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Split a colon-separated `ELEMENTS_PATH` value (empty entries dropped).
pub fn parse_elements_path(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// This crate's own element directory: stand-ins (name and dependencies)
/// for the infrastructure elements the executor runs natively
/// (`package-installs`, `install-static`, `install-bin`, `install-types`,
/// `pkg-map`, `svc-map`, `source-repositories`). `None` when the crate's
/// source tree is not where it was built.
pub fn builtin_elements_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("elements");
    d.is_dir().then_some(d)
}

/// The search path a build uses, as `disk-image-create` makes it: the
/// entries of `elements_path` (an `ELEMENTS_PATH` value; `None` reads the
/// variable), then `extra` (a tool's own element directories), then
/// [`builtin_elements_dir`] — earlier entries win.
pub fn elements_search_path(elements_path: Option<&str>, extra: &[PathBuf]) -> Vec<PathBuf> {
    let env = std::env::var("ELEMENTS_PATH").unwrap_or_default();
    let mut out = parse_elements_path(elements_path.unwrap_or(&env));
    out.extend(extra.iter().cloned());
    out.extend(builtin_elements_dir());
    out
}

/// Every element found on an elements path, earlier paths winning.
#[derive(Debug, Clone, Default)]
pub struct ElementTree {
    paths: Vec<PathBuf>,
    elements: BTreeMap<String, Element>,
}

impl ElementTree {
    /// Scan `paths` (earlier entries override later ones). Every entry must
    /// be a directory; each sub-directory is an element.
    pub fn discover(paths: &[PathBuf]) -> Result<ElementTree> {
        let mut elements = BTreeMap::new();
        for dir in paths.iter().rev() {
            if !dir.is_dir() {
                return Err(Error::ElementsPath { path: dir.clone() });
            }
            let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            for entry in rd {
                let entry = entry.map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                let joined = entry.path();
                if !joined.is_dir() {
                    continue;
                }
                let Some(name) = entry.file_name().to_str().map(String::from) else {
                    continue;
                };
                let real = std::fs::canonicalize(&joined).map_err(|source| Error::Io {
                    path: joined.clone(),
                    source,
                })?;
                let el = Element::load(&name, &real)?;
                if let Some(old) = elements.insert(name.clone(), el) {
                    tracing::debug!(element = %name, overridden = %old.path.display(), "element overridden by an earlier ELEMENTS_PATH entry");
                }
            }
        }
        Ok(ElementTree {
            paths: paths.to_vec(),
            elements,
        })
    }

    /// The paths this tree was discovered from, in search order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The element called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Element> {
        self.elements.get(name)
    }

    /// All elements by name.
    pub fn all(&self) -> &BTreeMap<String, Element> {
        &self.elements
    }

    /// Expand `requested` with every transitive `element-deps` entry, minus
    /// what is provided, exactly as DIB's `element-info` does (the set of
    /// names is the same). The order is deterministic: requested elements in
    /// the order given, then dependencies in breadth-first discovery order
    /// (DIB's own order is a Python set's and varies between runs).
    ///
    /// Errors: an unknown element (naming who required it), a dependency
    /// cycle (naming the elements on it; DIB itself tolerates cycles), an
    /// element provided twice, a requested element that another provides,
    /// no `operating-system` provider.
    pub fn expand(&self, requested: &[String]) -> Result<Vec<Element>> {
        expand::expand(self, requested)
    }
}
