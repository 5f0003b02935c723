//! Where templates and downloads live: `IB_TEMPLATE_DIR` / `IB_DOWNLOAD_DIR`,
//! else `[main] template_dir` / `download_dir` of the INI `config` files
//! read, as configparser's `read([...])` does, from the current directory,
//! `~/.imagebuilder/` and `/etc/imagebuilder/` (a later file wins).

use std::path::{Path, PathBuf};

use ini_config::{Dialect, Ini};

use crate::error::{Error, Result};

/// configparser's `ConfigParser()` in Python 3: interpolation, strict.
const DIALECT: Dialect = Dialect {
    interpolation: true,
    inline_comments: false,
    empty_quotes: false,
    strict: true,
};

/// The directories the original's `config` file is read from, in order.
pub fn config_files(cwd: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let mut v = vec![cwd.join("config")];
    if let Some(h) = home {
        v.push(h.join(".imagebuilder/config"));
    }
    v.push(PathBuf::from("/etc/imagebuilder/config"));
    v
}

/// The two directories a build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Holds `template` (and what it refers to).
    pub template_dir: PathBuf,
    /// Where `-d` puts the built image.
    pub download_dir: PathBuf,
}

/// Resolve the directories from `getenv` and the config `files` (missing
/// files are skipped, as configparser does).
pub fn resolve_dirs(getenv: impl Fn(&str) -> Option<String>, files: &[PathBuf]) -> Result<Dirs> {
    let mut ini = Ini::new("imagebuilder config", DIALECT);
    for f in files {
        if let Ok(text) = std::fs::read_to_string(f) {
            // Parsed alone first, so that an error names this file and line.
            Ini::parse(f.display().to_string(), &text, DIALECT)
                .map_err(|e| Error::Config(e.to_string()))?;
            ini.read_str(&text)
                .map_err(|e| Error::Config(format!("{}: {e}", f.display())))?;
        }
    }
    let get =
        |env: &str, key: &str| -> Result<PathBuf> {
            if let Some(v) = getenv(env) {
                return Ok(PathBuf::from(v));
            }
            match ini.get("main", key) {
                Ok(Some(v)) if !v.is_empty() => Ok(PathBuf::from(v)),
                _ => {
                    Err(Error::Config(format!(
                "Failed to read {key} from config (set {env} or [main] {key} in one of: {})",
                files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
            )))
                }
            }
        };
    Ok(Dirs {
        template_dir: get("IB_TEMPLATE_DIR", "template_dir")?,
        download_dir: get("IB_DOWNLOAD_DIR", "download_dir")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_wins_then_later_files() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::write(&a, "[main]\ntemplate_dir = /a/t\ndownload_dir = /a/d\n").unwrap();
        std::fs::write(&b, "[main]\ndownload_dir = /b/d\n").unwrap();
        let files = vec![a, d.path().join("missing"), b];
        let dirs = resolve_dirs(|_| None, &files).unwrap();
        assert_eq!(dirs.template_dir, PathBuf::from("/a/t"));
        assert_eq!(dirs.download_dir, PathBuf::from("/b/d"));
        let dirs = resolve_dirs(
            |k| (k == "IB_TEMPLATE_DIR").then(|| "/env/t".to_string()),
            &files,
        )
        .unwrap();
        assert_eq!(dirs.template_dir, PathBuf::from("/env/t"));
        let err = resolve_dirs(|_| None, &[]).unwrap_err().to_string();
        assert!(
            err.contains("template_dir") && err.contains("IB_TEMPLATE_DIR"),
            "{err}"
        );
    }
}
