//! The offline backend (`--backend csv:DIR`): each `DIR/backup_<region>.csv`
//! is the state of that region. A sync changes that state and writes it back
//! (never in dry-run). No credentials are needed.
//!
//! Semantics (those of the original's mock facade): new images get id
//! `<n>$<name>` (smallest n >= 1 not used in the region) and owner the
//! target's tenant id (`tenant_id`, else `<tenant>id`); checksum, size and
//! status are copied from the master image. A metadata update changes only
//! visibility, name and properties.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use indexmap::IndexMap;

use crate::backend::{RegionBackend, RegionRef, UploadRequest};
use crate::config::TargetConfig;
use crate::error::{Error, Result};
use crate::image::{read_csv_file, write_csv_file, Image};

#[derive(Debug)]
struct RegionState {
    path: PathBuf,
    images: Option<Vec<Image>>,
    dirty: bool,
}

/// Offline CSV backend.
#[derive(Debug)]
pub struct CsvBackend {
    dir: PathBuf,
    read_only: bool,
    regions: Mutex<IndexMap<String, RegionState>>,
}

impl CsvBackend {
    /// Open a directory of `backup_<region>.csv` files. With `read_only`
    /// every write is refused (dry-run, show-status).
    pub fn open(dir: &Path, read_only: bool) -> Result<Self> {
        let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let fname = entry.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            if let Some(region) = fname
                .strip_prefix("backup_")
                .and_then(|s| s.strip_suffix(".csv"))
            {
                if !region.is_empty() {
                    names.push((region.to_string(), entry.path()));
                }
            }
        }
        names.sort();
        let regions = names
            .into_iter()
            .map(|(r, path)| {
                (
                    r,
                    RegionState {
                        path,
                        images: None,
                        dirty: false,
                    },
                )
            })
            .collect();
        Ok(CsvBackend {
            dir: dir.to_path_buf(),
            read_only,
            regions: Mutex::new(regions),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The regions' state, for an operation on `region` (full name, or
    /// empty when the operation concerns no single region).
    fn lock(&self, region: &str) -> Result<MutexGuard<'_, IndexMap<String, RegionState>>> {
        self.regions.lock().map_err(|_| Error::Backend {
            region: region.to_string(),
            operation: "lock".into(),
            message: "state lock poisoned".into(),
        })
    }

    /// The error for a region that has no backup file in the directory.
    fn unknown_region(&self, full: &str) -> Error {
        Error::UnknownRegion {
            region: full.to_string(),
            detail: format!(" (no backup_{full}.csv in {})", self.dir.display()),
        }
    }

    fn with_region<T>(
        &self,
        region: &RegionRef,
        f: impl FnOnce(&mut RegionState) -> Result<T>,
    ) -> Result<T> {
        let full = region.full_name();
        let mut guard = self.lock(&full)?;
        let Some(state) = guard.get_mut(&full) else {
            return Err(self.unknown_region(&full));
        };
        if state.images.is_none() {
            state.images = Some(read_csv_file(&state.path)?);
        }
        f(state)
    }

    fn path_of(&self, region: &RegionRef) -> Result<PathBuf> {
        let full = region.full_name();
        match self.lock(&full)?.get(&full) {
            Some(s) => Ok(s.path.clone()),
            None => Err(self.unknown_region(&full)),
        }
    }

    fn tenant(target: &TargetConfig) -> String {
        target.offline_tenant_id()
    }
}

#[async_trait]
impl RegionBackend for CsvBackend {
    async fn regions(&self, target: &TargetConfig) -> Result<Vec<String>> {
        Ok(self
            .lock("")?
            .keys()
            .filter_map(|full| match full.split_once(':') {
                Some((t, r)) if t == target.name => Some(r.to_string()),
                None if target.name == "master" => Some(full.clone()),
                _ => None,
            })
            .collect())
    }

    async fn tenant_id(&self, target: &TargetConfig) -> Result<String> {
        Ok(Self::tenant(target))
    }

    async fn list_images(&self, region: &RegionRef, _target: &TargetConfig) -> Result<Vec<Image>> {
        if self.read_only {
            // Nothing will change: parse outside the lock and hand the images over (no copy kept).
            let path = self.path_of(region)?;
            return read_csv_file(&path);
        }
        self.with_region(region, |s| Ok(s.images.clone().unwrap_or_default()))
    }

    async fn upload_image(&self, req: UploadRequest<'_>) -> Result<String> {
        req.region
            .refuse_write_if(self.read_only, "upload an image")?;
        let owner = Self::tenant(req.target);
        let full = req.region.full_name();
        self.with_region(req.region, |s| {
            let images = s.images.get_or_insert_with(Vec::new);
            let used: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
            let mut n = 1u64;
            let id = loop {
                let id = format!("{n}${}", req.image.name);
                if !used.contains(id.as_str()) {
                    break id;
                }
                n += 1;
            };
            let mut img = req.image.clone();
            img.id = id.clone();
            img.region = full.clone();
            img.owner = owner;
            img.checksum = req.master.checksum.clone();
            img.size = req.master.size;
            img.status = req.master.status.clone();
            img.raw = None;
            images.push(img);
            s.dirty = true;
            Ok(id)
        })
    }

    async fn update_metadata(
        &self,
        region: &RegionRef,
        _target: &TargetConfig,
        image: &Image,
    ) -> Result<()> {
        region.refuse_write_if(self.read_only, "update image metadata")?;
        let full = region.full_name();
        self.with_region(region, |s| {
            let images = s.images.get_or_insert_with(Vec::new);
            let Some(i) = images.iter_mut().find(|i| i.id == image.id) else {
                return Err(Error::ImageNotFound {
                    region: full.clone(),
                    id: image.id.clone(),
                });
            };
            i.is_public = image.is_public;
            i.name = image.name.clone();
            i.user_properties = image.user_properties.clone();
            s.dirty = true;
            Ok(())
        })
    }

    async fn delete_image(
        &self,
        region: &RegionRef,
        _target: &TargetConfig,
        id: &str,
    ) -> Result<()> {
        region.refuse_write_if(self.read_only, "delete an image")?;
        let full = region.full_name();
        self.with_region(region, |s| {
            let images = s.images.get_or_insert_with(Vec::new);
            let before = images.len();
            images.retain(|i| i.id != id);
            if images.len() == before {
                return Err(Error::ImageNotFound {
                    region: full.clone(),
                    id: id.to_string(),
                });
            }
            s.dirty = true;
            Ok(())
        })
    }

    async fn flush(&self, region: &RegionRef) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.with_region(region, |s| {
            if s.dirty {
                write_csv_file(&s.path, s.images.as_deref().unwrap_or_default())?;
                s.dirty = false;
            }
            Ok(())
        })
    }
}

/// Load every `backup_*.csv` of a directory (region full name → images); for tests and tools.
pub fn load_dir(dir: &Path) -> Result<HashMap<String, Vec<Image>>> {
    let backend = CsvBackend::open(dir, true)?;
    let names: Vec<(String, PathBuf)> = backend
        .lock("")?
        .iter()
        .map(|(k, v)| (k.clone(), v.path.clone()))
        .collect();
    let mut out = HashMap::new();
    for (k, p) in names {
        out.insert(k, read_csv_file(&p)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GlanceSyncConfig;

    fn target(name: &str, extra: &str) -> TargetConfig {
        let text = format!(
            "[main]\nmaster_region = M\n[master]\ncredential = u,cA==,http://k,tenant1\n[other]\ncredential = u,cA==,http://k,tenant2\n{extra}"
        );
        GlanceSyncConfig::from_test_text(text)
            .target(name)
            .unwrap()
            .clone()
    }

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("backup_M.csv"),
            "M,img,m1,active,10,c1,tenant1id,True,{'a': 1}\r\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("backup_R.csv"),
            "R,img,1$img,active,10,c0,tenant1id,True,{}\r\n",
        )
        .unwrap();
        std::fs::write(d.path().join("backup_other:X.csv"), "").unwrap();
        std::fs::write(d.path().join("notabackup.txt"), "x").unwrap();
        d
    }

    #[tokio::test]
    async fn regions_per_target_from_file_names() {
        let d = setup();
        let b = CsvBackend::open(d.path(), true).unwrap();
        assert_eq!(
            b.regions(&target("master", "")).await.unwrap(),
            vec!["M", "R"]
        );
        assert_eq!(b.regions(&target("other", "")).await.unwrap(), vec!["X"]);
        assert_eq!(
            b.tenant_id(&target("other", "")).await.unwrap(),
            "tenant2id"
        );
        assert_eq!(
            b.tenant_id(&target("other", "tenant_id = abc\n"))
                .await
                .unwrap(),
            "abc"
        );
    }

    #[tokio::test]
    async fn new_ids_owner_and_write_back() {
        let d = setup();
        let b = CsvBackend::open(d.path(), false).unwrap();
        let t = target("master", "");
        let r = RegionRef::parse("R");
        let master = read_csv_file(&d.path().join("backup_M.csv"))
            .unwrap()
            .remove(0);
        let mut new = master.clone();
        new.owner = "someone".into();
        let id = b
            .upload_image(UploadRequest {
                region: &r,
                target: &t,
                image: &new,
                master: &master,
            })
            .await
            .unwrap();
        assert_eq!(id, "2$img", "1$img is taken");
        // Metadata update: only visibility, name and properties change.
        let mut upd = b.list_images(&r, &t).await.unwrap().remove(1);
        upd.name = "renamed".into();
        upd.is_public = false;
        upd.status = "ignored".into();
        upd.user_properties.clear();
        b.update_metadata(&r, &t, &upd).await.unwrap();
        b.delete_image(&r, &t, "1$img").await.unwrap();
        assert!(b.delete_image(&r, &t, "nope").await.is_err());
        // Nothing is written before flush.
        assert!(std::fs::read_to_string(d.path().join("backup_R.csv"))
            .unwrap()
            .contains("1$img,"));
        b.flush(&r).await.unwrap();
        let text = std::fs::read_to_string(d.path().join("backup_R.csv")).unwrap();
        assert_eq!(text, "R,renamed,2$img,active,10,c1,tenant1id,False,{}\r\n");
    }

    #[tokio::test]
    async fn read_only_refuses_writes() {
        let d = setup();
        let b = CsvBackend::open(d.path(), true).unwrap();
        let t = target("master", "");
        let r = RegionRef::parse("R");
        let e = b.delete_image(&r, &t, "1$img").await.unwrap_err();
        assert!(matches!(e, Error::DryRunWrite { .. }), "{e}");
        let e = b
            .list_images(&RegionRef::parse("other:Nope"), &t)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("backup_other:Nope.csv"), "{e}");
    }
}
