//! The resource ledger: a file in the image folder that lists every cloud or
//! local resource a run created, written *before* the call that creates it
//! returns (intent first, then the id), so that it survives SIGKILL and
//! `ge-image gc` can remove what a killed run left behind.
//!
//! The file is JSON lines, append-only, each line flushed and synced:
//!
//! ```text
//! {"op":"intent","key":1,"kind":"server","name":"web","backend":"openstack","region":"RegionOne"}
//! {"op":"created","key":1,"id":"4b0c…"}
//! {"op":"released","key":1}
//! ```
//!
//! A record is *outstanding* from its `intent` until its `released` line. An
//! outstanding record without an id (the run died between the request and
//! the answer) is found again by its name, which callers make unique per run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name of the ledger inside an image folder.
pub const LEDGER_FILE: &str = "ledger.jsonl";

/// What kind of resource a ledger record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A Nova server.
    Server,
    /// A Nova keypair (by name).
    Keypair,
    /// A Neutron security group.
    SecurityGroup,
    /// A Neutron floating IP allocated by the run (never one it was given).
    FloatingIp,
    /// A Glance image made by a Nova snapshot.
    Snapshot,
    /// A Glance image uploaded by the run (for example `<name>_rc`).
    Image,
    /// A local QEMU VM: its process and its directory (overlay, logs).
    LocalVm,
    /// A local file or directory (downloaded snapshot, prepared image, cache entry being written).
    File,
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ResourceKind::Server => "server",
            ResourceKind::Keypair => "keypair",
            ResourceKind::SecurityGroup => "security group",
            ResourceKind::FloatingIp => "floating IP",
            ResourceKind::Snapshot => "snapshot",
            ResourceKind::Image => "image",
            ResourceKind::LocalVm => "local VM",
            ResourceKind::File => "file",
        };
        f.write_str(s)
    }
}

/// Identifies one record of a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LedgerKey(pub u64);

/// One outstanding resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// The record's key.
    pub key: LedgerKey,
    /// What it is.
    pub kind: ResourceKind,
    /// Its name (unique per run), or the path for local files and VMs.
    pub name: String,
    /// Its id once the creating call returned it.
    pub id: Option<String>,
    /// The backend that created it (`openstack`, `local`, `glance`, `local-file`).
    pub backend: String,
    /// Region, when it lives in a cloud region.
    pub region: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Intent {
        key: LedgerKey,
        kind: ResourceKind,
        name: String,
        backend: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    Created {
        key: LedgerKey,
        id: String,
    },
    Released {
        key: LedgerKey,
    },
}

/// An append-only, crash-safe list of the resources a run created.
#[derive(Debug)]
pub struct ResourceLedger {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    records: Vec<ResourceRecord>,
    next_key: u64,
}

impl ResourceLedger {
    /// Open (or create) the ledger at `path`, reading what it already holds.
    /// A torn last line (the writer was killed mid-write) is ignored; any
    /// other unreadable line is an error naming the file and line.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let mut records: Vec<ResourceRecord> = Vec::new();
        let mut next_key = 1;
        if path.exists() {
            let text =
                std::fs::read_to_string(&path).map_err(|e| ledger_io(&path, "reading", e))?;
            let mut good_len = 0usize;
            let mut offset = 0usize;
            let segments: Vec<&str> = text.split_inclusive('\n').collect();
            let count = segments.len();
            for (index, segment) in segments.iter().enumerate() {
                offset += segment.len();
                let complete = segment.ends_with('\n');
                if segment.trim().is_empty() {
                    good_len = offset;
                    continue;
                }
                let line: Line = match serde_json::from_str(segment.trim_end()) {
                    Ok(line) if complete => line,
                    // A torn final line from a killed writer: cut it off so
                    // that the next append starts on a line of its own.
                    _ if index + 1 == count && !complete => break,
                    Ok(line) => line,
                    Err(e) => {
                        return Err(Error::Ledger {
                            path: path.clone(),
                            detail: format!("line {}: {e}", index + 1),
                        })
                    }
                };
                good_len = offset;
                apply(&mut records, &mut next_key, line);
            }
            if good_len < text.len() {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| ledger_io(&path, "repairing", e))?;
                file.set_len(good_len as u64)
                    .map_err(|e| ledger_io(&path, "repairing", e))?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ledger_io(&path, "opening", e))?;
        Ok(ResourceLedger {
            path,
            inner: Mutex::new(Inner {
                file,
                records,
                next_key,
            }),
        })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record that `kind` named `name` is about to be created. Call before
    /// the creating request; then [`ResourceLedger::created`] with its id.
    pub fn intent(
        &self,
        kind: ResourceKind,
        name: &str,
        backend: &str,
        region: Option<&str>,
    ) -> Result<LedgerKey> {
        let mut inner = self.lock()?;
        let key = LedgerKey(inner.next_key);
        let line = Line::Intent {
            key,
            kind,
            name: name.to_string(),
            backend: backend.to_string(),
            region: region.map(str::to_string),
        };
        self.append(&mut inner, &line)?;
        let Inner {
            records, next_key, ..
        } = &mut *inner;
        apply(records, next_key, line);
        tracing::debug!(ledger = %self.path.display(), key = key.0, %kind, name, "ledger: intent");
        Ok(key)
    }

    /// Record the id the creating call returned.
    pub fn created(&self, key: LedgerKey, id: &str) -> Result<()> {
        let mut inner = self.lock()?;
        let line = Line::Created {
            key,
            id: id.to_string(),
        };
        self.append(&mut inner, &line)?;
        let Inner {
            records, next_key, ..
        } = &mut *inner;
        apply(records, next_key, line);
        Ok(())
    }

    /// Record that the resource is gone (deleted, or handed over to the user
    /// on purpose, like a tested `_rc` image).
    pub fn released(&self, key: LedgerKey) -> Result<()> {
        let mut inner = self.lock()?;
        let line = Line::Released { key };
        self.append(&mut inner, &line)?;
        let Inner {
            records, next_key, ..
        } = &mut *inner;
        apply(records, next_key, line);
        Ok(())
    }

    /// Outstanding records, oldest first (clean up in reverse order).
    pub fn outstanding(&self) -> Result<Vec<ResourceRecord>> {
        Ok(self.lock()?.records.clone())
    }

    /// True when nothing is outstanding.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.lock()?.records.is_empty())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| Error::Ledger {
            path: self.path.clone(),
            detail: "ledger lock poisoned by a panicking thread".into(),
        })
    }

    fn append(&self, inner: &mut Inner, line: &Line) -> Result<()> {
        let mut text = serde_json::to_string(line).map_err(|e| Error::Ledger {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        text.push('\n');
        inner
            .file
            .write_all(text.as_bytes())
            .and_then(|()| inner.file.sync_data())
            .map_err(|e| ledger_io(&self.path, "writing", e))
    }
}

fn apply(records: &mut Vec<ResourceRecord>, next_key: &mut u64, line: Line) {
    match line {
        Line::Intent {
            key,
            kind,
            name,
            backend,
            region,
        } => {
            *next_key = (*next_key).max(key.0 + 1);
            records.push(ResourceRecord {
                key,
                kind,
                name,
                id: None,
                backend,
                region,
            });
        }
        Line::Created { key, id } => {
            if let Some(r) = records.iter_mut().find(|r| r.key == key) {
                r.id = Some(id);
            }
        }
        Line::Released { key } => records.retain(|r| r.key != key),
    }
}

fn ledger_io(path: &Path, action: &str, e: std::io::Error) -> Error {
    Error::Ledger {
        path: path.to_path_buf(),
        detail: format!("{action}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_release_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        let ledger = ResourceLedger::open(&path).unwrap();
        let a = ledger
            .intent(ResourceKind::Server, "web", "openstack", Some("RegionOne"))
            .unwrap();
        ledger.created(a, "uuid-a").unwrap();
        let b = ledger
            .intent(ResourceKind::Keypair, "web-key", "openstack", None)
            .unwrap();
        drop(ledger);

        let reopened = ResourceLedger::open(&path).unwrap();
        let out = reopened.outstanding().unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].id.as_deref(), Some("uuid-a"));
        assert_eq!(out[0].region.as_deref(), Some("RegionOne"));
        assert_eq!(out[1].id, None);
        reopened.released(a).unwrap();
        let c = reopened
            .intent(ResourceKind::File, "/tmp/x", "local-file", None)
            .unwrap();
        assert!(c.0 > b.0, "keys never repeat after a reopen");
        reopened.released(b).unwrap();
        reopened.released(c).unwrap();
        assert!(reopened.is_empty().unwrap());
        assert!(ResourceLedger::open(&path).unwrap().is_empty().unwrap());
    }

    #[test]
    fn torn_last_line_is_ignored_but_a_bad_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        std::fs::write(
            &path,
            "{\"op\":\"intent\",\"key\":1,\"kind\":\"server\",\"name\":\"a\",\"backend\":\"openstack\"}\n{\"op\":\"crea",
        )
        .unwrap();
        let ledger = ResourceLedger::open(&path).unwrap();
        assert_eq!(ledger.outstanding().unwrap().len(), 1);
        let key = ledger.outstanding().unwrap()[0].key;
        ledger.released(key).unwrap();
        drop(ledger);
        assert!(ResourceLedger::open(&path).unwrap().is_empty().unwrap());

        std::fs::write(&path, "garbage\n{\"op\":\"released\",\"key\":1}\n").unwrap();
        let err = ResourceLedger::open(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains(LEDGER_FILE), "{err}");
    }
}
