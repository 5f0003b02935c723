//! The image folder of the original: `<root>/<name>/` with `create.sh`,
//! `test.sh`, an optional `data.tgz`, the logs `create.log`/`test.log`, the
//! state of the last run (`state.json`, and `dist_type` holding the login
//! user as the original wrote it) and the run's ledger (`ledger.jsonl`).
//! Working files (run key, known_hosts, VM directories, snapshots) go to
//! `.ge-image/` inside it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compute::BackendKind;
use crate::error::{Error, Result};
use crate::ledger::{ResourceLedger, LEDGER_FILE};

/// The state of the last run, as `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderState {
    /// The VM of the run in progress or kept (id), if any.
    #[serde(default)]
    pub vm: Option<String>,
    /// Id of the `<name>_rc` image of the last successful create.
    #[serde(default)]
    pub rc_image_id: Option<String>,
    /// Login user of the image (the original's `dist_type`).
    #[serde(default)]
    pub login_user: Option<String>,
    /// Base OS it was built from.
    #[serde(default)]
    pub base: Option<String>,
    /// Backend of the last run.
    #[serde(default)]
    pub backend: Option<BackendKind>,
}

/// One image folder.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    name: String,
    dir: PathBuf,
}

impl ImageFolder {
    /// The folder of image `name` under `root`. The name must be usable as a
    /// VM and image name: letters, digits, `.`, `_`, `-`.
    pub fn new(root: &Path, name: &str) -> Result<ImageFolder> {
        let ok = !name.is_empty()
            && name.len() <= 58
            && !name.starts_with(['.', '-'])
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(Error::Folder {
                path: root.join(name),
                problem: format!(
                    "'{name}' is not a usable image name (1 to 58 letters, digits, '.', '_', '-')"
                ),
            });
        }
        let dir = root.join(name);
        if !dir.is_dir() {
            return Err(Error::Folder {
                path: dir,
                problem: "no such directory".into(),
            });
        }
        Ok(ImageFolder {
            name: name.to_string(),
            dir,
        })
    }

    /// The image name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `create.sh`.
    pub fn create_script(&self) -> PathBuf {
        self.dir.join("create.sh")
    }
    /// `test.sh`.
    pub fn test_script(&self) -> PathBuf {
        self.dir.join("test.sh")
    }
    /// `data.tgz`, when present.
    pub fn data(&self) -> Option<PathBuf> {
        Some(self.dir.join("data.tgz")).filter(|p| p.is_file())
    }
    /// `create.log`.
    pub fn create_log(&self) -> PathBuf {
        self.dir.join("create.log")
    }
    /// `test.log`.
    pub fn test_log(&self) -> PathBuf {
        self.dir.join("test.log")
    }
    /// The working directory `.ge-image/` (created on demand).
    pub fn work_dir(&self) -> Result<PathBuf> {
        let d = self.dir.join(".ge-image");
        std::fs::create_dir_all(&d).map_err(|e| Error::Folder {
            path: d.clone(),
            problem: format!("cannot create: {e}"),
        })?;
        Ok(d)
    }
    /// The ledger file.
    pub fn ledger_path(&self) -> PathBuf {
        self.dir.join(LEDGER_FILE)
    }

    /// Check that `script` exists and is a regular file.
    pub fn require(&self, script: &Path) -> Result<()> {
        if script.is_file() {
            Ok(())
        } else {
            Err(Error::Folder {
                path: script.to_path_buf(),
                problem:
                    "missing (an image folder holds create.sh, test.sh and an optional data.tgz)"
                        .into(),
            })
        }
    }

    /// Open the ledger for a new run: refused when a killed run left
    /// outstanding records (run `ge-image gc NAME` first).
    pub fn open_ledger_for_run(&self) -> Result<ResourceLedger> {
        let ledger = ResourceLedger::open(self.ledger_path())?;
        let left = ledger.outstanding()?;
        if !left.is_empty() {
            let list: Vec<String> = left
                .iter()
                .map(|r| format!("{} {}", r.kind, r.id.as_deref().unwrap_or(&r.name)))
                .collect();
            return Err(Error::Folder {
                path: self.ledger_path(),
                problem: format!(
                    "an earlier run left {} resource(s) ({}); run `ge-image gc {}` first",
                    left.len(),
                    list.join(", "),
                    self.name
                ),
            });
        }
        Ok(ledger)
    }

    /// Read `state.json` (falling back to `dist_type` for the login user,
    /// as the original's `test_only.sh` does).
    pub fn load_state(&self) -> Result<FolderState> {
        let path = self.dir.join("state.json");
        let mut state = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Folder {
                path: path.clone(),
                problem: format!("unreadable state: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FolderState::default(),
            Err(e) => {
                return Err(Error::Folder {
                    path,
                    problem: e.to_string(),
                })
            }
        };
        if state.login_user.is_none() {
            if let Ok(user) = std::fs::read_to_string(self.dir.join("dist_type")) {
                let user = user.trim();
                if !user.is_empty() {
                    state.login_user = Some(user.to_string());
                }
            }
        }
        Ok(state)
    }

    /// Write `state.json` (atomically) and `dist_type`.
    pub fn save_state(&self, state: &FolderState) -> Result<()> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join(".state.json.tmp");
        let text = serde_json::to_string_pretty(state).map_err(|e| Error::Folder {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let write = |p: &Path, t: &str| {
            std::fs::write(p, t).map_err(|e| Error::Folder {
                path: p.to_path_buf(),
                problem: format!("cannot write: {e}"),
            })
        };
        write(&tmp, &format!("{text}\n"))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::Folder {
            path: path.clone(),
            problem: format!("cannot write: {e}"),
        })?;
        if let Some(user) = &state.login_user {
            write(&self.dir.join("dist_type"), &format!("{user}\n"))?;
        }
        Ok(())
    }
}

/// The last `n` lines of a log file (for error messages).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    if tail.is_empty() {
        "<empty>".into()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ResourceKind;

    #[test]
    fn names_and_scripts_are_checked() {
        let root = tempfile::tempdir().unwrap();
        assert!(ImageFolder::new(root.path(), "../etc").is_err());
        assert!(ImageFolder::new(root.path(), "-x").is_err());
        let e = ImageFolder::new(root.path(), "web")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such directory"), "{e}");
        std::fs::create_dir(root.path().join("web")).unwrap();
        let f = ImageFolder::new(root.path(), "web").unwrap();
        let e = f.require(&f.create_script()).unwrap_err().to_string();
        assert!(e.contains("create.sh") && e.contains("missing"), "{e}");
        std::fs::write(f.create_script(), "#!/bin/sh\n").unwrap();
        f.require(&f.create_script()).unwrap();
        assert_eq!(f.data(), None);
        std::fs::write(f.dir().join("data.tgz"), b"x").unwrap();
        assert!(f.data().is_some());
    }

    #[test]
    fn state_round_trips_and_dist_type_is_read() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("web")).unwrap();
        let f = ImageFolder::new(root.path(), "web").unwrap();
        assert_eq!(f.load_state().unwrap(), FolderState::default());
        // The original's folder: only dist_type.
        std::fs::write(f.dir().join("dist_type"), "centos\n").unwrap();
        assert_eq!(
            f.load_state().unwrap().login_user.as_deref(),
            Some("centos")
        );
        let s = FolderState {
            vm: None,
            rc_image_id: Some("abc".into()),
            login_user: Some("debian".into()),
            base: Some("debian8".into()),
            backend: Some(BackendKind::Local),
        };
        f.save_state(&s).unwrap();
        assert_eq!(f.load_state().unwrap(), s);
        assert_eq!(
            std::fs::read_to_string(f.dir().join("dist_type")).unwrap(),
            "debian\n"
        );
        std::fs::write(f.dir().join("state.json"), "{").unwrap();
        assert!(f
            .load_state()
            .unwrap_err()
            .to_string()
            .contains("state.json"));
    }

    #[test]
    fn a_leftover_ledger_refuses_a_new_run() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("web")).unwrap();
        let f = ImageFolder::new(root.path(), "web").unwrap();
        {
            let l = f.open_ledger_for_run().unwrap();
            let k = l
                .intent(ResourceKind::LocalVm, "/x/web", "local", None)
                .unwrap();
            l.created(k, "/x/web").unwrap();
        }
        let e = f.open_ledger_for_run().unwrap_err().to_string();
        assert!(e.contains("ge-image gc web") && e.contains("/x/web"), "{e}");
    }

    #[test]
    fn tails_are_short() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&p, 2), "b\nc");
        assert_eq!(log_tail(&d.path().join("none"), 2), "<empty>");
    }
}
