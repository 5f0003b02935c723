//! The record of builds done or running, per build name and profile
//! checksum, persisted so that duplicate messages cause one build even
//! across a restart of the service.
//!
//! One entry per build name: the checksum of the last profile seen for it,
//! the attempt number, and where that attempt stands. A message whose
//! checksum matches a succeeded entry is a duplicate; one whose attempt was
//! already made and handed off (retried or parked on `<QUEUE>.failed`) is
//! one too. The file is rewritten atomically (temporary file, rename) on
//! every change. One service per state directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The state file's name inside `STATE_DIR`.
pub const RECORD_FILE: &str = "builds.json";

/// Where a build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    /// Started and not finished (a crash leaves this; the build is redone).
    Running,
    /// Every template built and named its image.
    Succeeded,
    /// At least one template failed.
    Failed,
    /// Built and gated, but `rename-old-images` failed afterwards: the
    /// request was parked on `<QUEUE>.failed`; a redelivery retries the
    /// rotation only.
    #[serde(rename = "rotation-failed")]
    RotationFailed,
}

/// One build name's last known build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildEntry {
    /// SHA-256 (hex) of the profile (and request id, if any).
    pub checksum: String,
    /// The attempt number (1 for the first build of this checksum).
    pub attempt: u32,
    /// Where it stands.
    pub state: BuildState,
    /// For a failed attempt: whether its follow-up (retry or `.failed`
    /// message) was confirmed by the broker.
    #[serde(default)]
    pub handed_off: bool,
    /// Seconds since the epoch of the last change.
    pub updated: u64,
    /// The images created (succeeded builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The log files of the attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// What to do with a message, given the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Build it (attempt number given by the message).
    Build,
    /// The same profile already built successfully: acknowledge only.
    AlreadyBuilt,
    /// This attempt already failed and was handed off: acknowledge only.
    AlreadyHandedOff,
    /// This attempt failed but its follow-up was never confirmed: publish
    /// the follow-up for the recorded entry, then acknowledge.
    HandOff(BuildEntry),
    /// Built already, but the rotation after it failed: run the rotation
    /// again (not the build).
    Rotate(BuildEntry),
}

/// Decide what a message with `checksum` and `attempt` leads to.
pub fn decide(entry: Option<&BuildEntry>, checksum: &str, attempt: u32) -> Decision {
    let Some(e) = entry.filter(|e| e.checksum == checksum) else {
        return Decision::Build;
    };
    match e.state {
        BuildState::Succeeded => Decision::AlreadyBuilt,
        BuildState::RotationFailed => Decision::Rotate(e.clone()),
        BuildState::Running => Decision::Build,
        BuildState::Failed if e.attempt < attempt => Decision::Build,
        BuildState::Failed if e.handed_off => Decision::AlreadyHandedOff,
        BuildState::Failed => Decision::HandOff(e.clone()),
    }
}

/// The checksum of a message: SHA-256 of the body, and of the request id
/// when the producer gave one (a manual `trigger` is always a new request).
pub fn checksum(body: &[u8], request_id: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(body);
    if let Some(r) = request_id {
        h.update([0u8]);
        h.update(r.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The persisted record (see the module comment).
#[derive(Debug)]
pub struct BuildRecord {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, BuildEntry>>,
}

impl BuildRecord {
    /// Load `path` (a missing file is an empty record; a file that does not
    /// parse is an error naming it, never silently reset).
    pub fn load(path: &Path) -> Result<Self> {
        let entries = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: path.display().to_string(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(BuildRecord {
            path: path.to_path_buf(),
            entries: Mutex::new(entries),
        })
    }

    /// The record file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry of a build name.
    pub fn get(&self, name: &str) -> Option<BuildEntry> {
        self.lock().get(name).cloned()
    }

    /// Every entry, by name.
    pub fn entries(&self) -> BTreeMap<String, BuildEntry> {
        self.lock().clone()
    }

    /// Set the entry of `name` and write the file.
    pub fn set(&self, name: &str, entry: BuildEntry) -> Result<()> {
        let mut map = self.lock();
        map.insert(name.to_string(), entry);
        self.write(&map)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BuildEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, map: &BTreeMap<String, BuildEntry>) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(map).map_err(|source| Error::Json {
            what: self.path.display().to_string(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: BuildState, attempt: u32, handed_off: bool) -> BuildEntry {
        BuildEntry {
            checksum: "c".into(),
            attempt,
            state,
            handed_off,
            updated: 0,
            images: vec![],
            reason: None,
            logs: vec![],
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(None, "c", 1), Decision::Build);
        let ok = entry(BuildState::Succeeded, 1, false);
        assert_eq!(decide(Some(&ok), "c", 1), Decision::AlreadyBuilt);
        assert_eq!(decide(Some(&ok), "c", 3), Decision::AlreadyBuilt);
        assert_eq!(decide(Some(&ok), "other", 1), Decision::Build);
        let running = entry(BuildState::Running, 1, false);
        assert_eq!(decide(Some(&running), "c", 1), Decision::Build);
        let failed = entry(BuildState::Failed, 2, true);
        assert_eq!(decide(Some(&failed), "c", 3), Decision::Build);
        assert_eq!(decide(Some(&failed), "c", 2), Decision::AlreadyHandedOff);
        assert_eq!(decide(Some(&failed), "c", 1), Decision::AlreadyHandedOff);
        let pending = entry(BuildState::Failed, 2, false);
        assert_eq!(
            decide(Some(&pending), "c", 2),
            Decision::HandOff(pending.clone())
        );
        // A rotation that failed after the build is tried again, never the build.
        let unrotated = entry(BuildState::RotationFailed, 1, true);
        assert_eq!(
            decide(Some(&unrotated), "c", 1),
            Decision::Rotate(unrotated.clone())
        );
        assert_eq!(
            serde_json::to_string(&BuildState::RotationFailed).unwrap(),
            "\"rotation-failed\""
        );
    }

    #[test]
    fn checksum_includes_the_request_id() {
        assert_eq!(checksum(b"x", None), checksum(b"x", None));
        assert_ne!(checksum(b"x", None), checksum(b"x", Some("r1")));
        assert_ne!(checksum(b"x", Some("r1")), checksum(b"x", Some("r2")));
    }

    #[test]
    fn survives_a_reload_and_refuses_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/builds.json");
        let r = BuildRecord::load(&path).unwrap();
        assert_eq!(r.get("a"), None);
        r.set("a", entry(BuildState::Succeeded, 1, false)).unwrap();
        let again = BuildRecord::load(&path).unwrap();
        assert_eq!(again.get("a"), Some(entry(BuildState::Succeeded, 1, false)));
        std::fs::write(&path, "{not json").unwrap();
        let e = BuildRecord::load(&path).unwrap_err().to_string();
        assert!(e.contains("builds.json"), "{e}");
    }
}
