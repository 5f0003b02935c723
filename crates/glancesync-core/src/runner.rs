//! What `sync.py` did around the engine, for any program embedding it: the
//! sequential and `--parallel` runs (with `max_children` and the per-region
//! `sync_<date>/<region>.txt` logs), `--make-backup` (folder naming, the
//! master region added) and `--show-status` (concurrent listing, CSV
//! rendering). Output lines go through a callback; the caller prints them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Local};

use crate::engine::{GlanceSync, StatusLine};
use crate::error::{Error, Result};
use crate::image::csv_field;
use crate::log::SyncLog;
use crate::multi::{RegionRun, RunEvent};

/// Regions that failed in a run (each was logged and skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// Regions that failed, in the order they ended.
    pub failed: Vec<String>,
}

impl RunOutcome {
    /// No region failed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// The folder of a `--parallel` run's logs: `sync_YYYYMMDD_HHMM`.
pub fn sync_dir_name(now: &DateTime<Local>) -> String {
    format!("sync_{}", now.format("%Y%m%d_%H%M"))
}

/// The folder of a `--make-backup`: `backup_glance_<ISO 8601 local time>`.
pub fn backup_dir_name(now: &DateTime<Local>) -> String {
    format!("backup_glance_{}", now.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

/// Sequential sync (`sync.py` without `--parallel`): prints
/// `======Master is <master>` and `======<region>` before each region; a
/// failing region is logged and the next one goes on. Images several
/// regions need are uploaded to all of them at once.
pub async fn sync_sequential(
    gs: &GlanceSync,
    regions: &[String],
    dry_run: bool,
    out: &(dyn Fn(&str) + Sync),
) -> RunOutcome {
    out(&format!("======Master is {}", gs.master_region()));
    let runs: Vec<RegionRun> = regions
        .iter()
        .map(|r| RegionRun {
            region: r.clone(),
            log: SyncLog::new(),
        })
        .collect();
    let on_event = |e: RunEvent<'_>| {
        if let RunEvent::Start(r) = e {
            out(&format!("======{r}"));
        }
    };
    let results = gs.sync_regions(&runs, dry_run, 1, &on_event).await;
    RunOutcome {
        failed: regions
            .iter()
            .zip(results)
            .filter(|(_, r)| r.is_err())
            .map(|(r, _)| r.clone())
            .collect(),
    }
}

/// `--parallel`: prints `======Master is <master>`, creates
/// `<base>/sync_<date>` and writes each region's messages to
/// `<region>.txt` there, syncs up to `max_children` regions at a time,
/// prints `Region <r> has finished` (or `... has finished with errors`) as
/// each ends and `All is done.` at the end. Returns the log folder too.
pub async fn sync_parallel(
    gs: &GlanceSync,
    regions: &[String],
    dry_run: bool,
    base: &Path,
    now: &DateTime<Local>,
    out: &(dyn Fn(&str) + Sync),
) -> Result<(PathBuf, RunOutcome)> {
    out(&format!("======Master is {}", gs.master_region()));
    let dir = base.join(sync_dir_name(now));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for r in regions {
        match SyncLog::with_file(&dir.join(format!("{r}.txt"))) {
            Ok(log) => runs.push(RegionRun {
                region: r.clone(),
                log,
            }),
            Err(e) => {
                tracing::error!("{r}: {e}");
                out(&format!("Region {r} has finished with errors"));
                failed.push(r.clone());
            }
        }
    }
    let on_event = |e: RunEvent<'_>| {
        if let RunEvent::Done(r, ok) = e {
            if ok {
                out(&format!("Region {r} has finished"));
            } else {
                out(&format!("Region {r} has finished with errors"));
            }
        }
    };
    let max = gs.config().max_children.max(1);
    let results = gs.sync_regions(&runs, dry_run, max, &on_event).await;
    failed.extend(
        runs.iter()
            .zip(results)
            .filter(|(_, r)| r.is_err())
            .map(|(r, _)| r.region.clone()),
    );
    out("All is done.");
    Ok((dir, RunOutcome { failed }))
}

/// The regions a backup covers: the requested ones plus the master region.
pub fn backup_regions(gs: &GlanceSync, regions: &[String]) -> Vec<String> {
    let mut all: Vec<String> = regions.to_vec();
    if !all.iter().any(|r| r == gs.master_region()) {
        all.push(gs.master_region().to_string());
    }
    all
}

/// `--make-backup`: creates `<base>/backup_glance_<date>` and writes
/// `backup_<region>.csv` for every region of [`backup_regions`]; a failing
/// region is logged and skipped. Returns the folder.
pub async fn make_backup(
    gs: &GlanceSync,
    regions: &[String],
    base: &Path,
    now: &DateTime<Local>,
) -> Result<(PathBuf, RunOutcome)> {
    let dir = base.join(backup_dir_name(now));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut outcome = RunOutcome::default();
    for r in backup_regions(gs, regions) {
        if let Err(e) = gs.backup_region(&r, &dir).await {
            tracing::error!("{r}:Error retrieving images from region. Cause {e}");
            outcome.failed.push(r);
        }
    }
    Ok((dir, outcome))
}

/// `--show-status`: the status of every region, computed concurrently
/// (`workers` at a time), returned in the requested order.
pub async fn region_statuses(
    gs: Arc<GlanceSync>,
    regions: &[String],
    workers: usize,
) -> Vec<(String, Result<Vec<StatusLine>>)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(workers.max(1)));
    let handles: Vec<_> = regions
        .iter()
        .map(|r| {
            let gs = gs.clone();
            let sem = sem.clone();
            let r = r.clone();
            tokio::spawn(async move {
                let _permit = sem.acquire().await.ok();
                gs.region_status(&r, &SyncLog::new()).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(regions.len());
    for (r, h) in regions.iter().zip(handles) {
        let result = match h.await {
            Ok(res) => res,
            Err(e) => Err(Error::Backend {
                region: r.clone(),
                operation: "show status".into(),
                message: e.to_string(),
            }),
        };
        out.push((r.clone(), result));
    }
    out
}

/// The original's `--show-status` text of one region: `status,region,image`
/// lines (CSV-quoted), without the blank line that follows each region.
pub fn status_csv(lines: &[StatusLine]) -> String {
    let mut text = String::with_capacity(lines.len() * 40);
    for l in lines {
        text.push_str(l.status.as_str());
        text.push(',');
        text.push_str(&csv_field(&l.region));
        text.push(',');
        text.push_str(&csv_field(&l.image));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn folder_names() {
        let now = Local.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(sync_dir_name(&now), "sync_20260304_0506");
        assert_eq!(
            backup_dir_name(&now),
            "backup_glance_2026-03-04T05:06:07.000000"
        );
    }
}
