//! Multi-region runs ([`GlanceSync::sync_regions`] and the runner) over the
//! CSV backend: the same end state as syncing region by region, a failing
//! region stopping only itself, and the runner's output lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use glancesync_core::csv_backend::load_dir;
use glancesync_core::{
    runner, ConfigSource, CsvBackend, GlanceSync, GlanceSyncConfig, Image, LoadOptions, RegionRun,
    RunEvent, SyncLog,
};

fn scenario() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/glancesync/scenarios/checksums")
}

fn state_copy(tmp: &Path) -> PathBuf {
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    for e in std::fs::read_dir(scenario()).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "config" {
            std::fs::copy(e.path(), state.join(e.file_name())).unwrap();
        }
    }
    state
}

async fn engine(state: &Path) -> GlanceSync {
    let text = std::fs::read_to_string(scenario().join("config")).unwrap();
    let cfg = GlanceSyncConfig::load(
        &ConfigSource::Text {
            name: "config".into(),
            text,
        },
        &LoadOptions {
            overrides: vec![],
            require_credentials: false,
        },
        &|_: &str| None,
    )
    .unwrap();
    let backend = CsvBackend::open(state, false).unwrap();
    GlanceSync::new(Arc::new(cfg), Arc::new(backend))
        .await
        .unwrap()
}

fn state_keys(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = load_dir(dir)
        .unwrap()
        .into_values()
        .flatten()
        .map(|i: Image| i.state_key())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn side_by_side_run_equals_region_by_region_and_a_failure_stops_only_its_region() {
    let regions = ["Burgos", "nosuch:Nowhere", "other:Madrid", "third:Soria"];
    let tmp = tempfile::tempdir().unwrap();
    let state = state_copy(tmp.path());
    let gs = engine(&state).await;
    let runs: Vec<RegionRun> = regions
        .iter()
        .map(|r| RegionRun {
            region: r.to_string(),
            log: SyncLog::capturing(),
        })
        .collect();
    let events = Mutex::new(Vec::new());
    let record = |e: RunEvent<'_>| {
        let line = match e {
            RunEvent::Start(r) => format!("start {r}"),
            RunEvent::Done(r, ok) => format!("done {r} {ok}"),
        };
        events.lock().unwrap().push(line);
    };
    let results = gs.sync_regions(&runs, false, 2, &record).await;
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    assert!(results[1].is_err());
    assert!(runs[1].log.lines()[0].starts_with("nosuch:Nowhere: synchronisation failed"));
    let events = events.into_inner().unwrap();
    for r in regions {
        assert!(events.contains(&format!("start {r}")), "{events:?}");
    }
    assert!(events.contains(&"done nosuch:Nowhere false".to_string()));
    assert!(events.contains(&"done other:Madrid true".to_string()));

    // The same end state as the region-by-region sync of the scenario.
    let want = scenario().with_extension("result");
    assert_eq!(state_keys(&state), state_keys(&want));
    let madrid = runs[2].log.lines();
    assert!(
        madrid
            .iter()
            .any(|l| l.starts_with("other:Madrid: Replacing image")),
        "{madrid:?}"
    );
}

#[tokio::test]
async fn runner_prints_the_originals_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let state = state_copy(tmp.path());
    let gs = engine(&state).await;
    let lines = Mutex::new(Vec::<String>::new());
    let out = |s: &str| lines.lock().unwrap().push(s.to_string());
    let regions = vec!["Burgos".to_string(), "other:Madrid".to_string()];
    let outcome = runner::sync_sequential(&gs, &regions, true, &out).await;
    assert!(outcome.ok());
    assert_eq!(
        *lines.lock().unwrap(),
        vec![
            "======Master is Valladolid",
            "======Burgos",
            "======other:Madrid"
        ]
    );

    lines.lock().unwrap().clear();
    let now = chrono::Local::now();
    let (dir, outcome) = runner::sync_parallel(&gs, &regions, true, tmp.path(), &now, &out)
        .await
        .unwrap();
    assert!(outcome.ok());
    assert_eq!(dir, tmp.path().join(runner::sync_dir_name(&now)));
    let burgos = std::fs::read_to_string(dir.join("Burgos.txt")).unwrap();
    assert!(burgos.contains("Burgos: MBs pending : "), "{burgos}");
    let printed = lines.lock().unwrap().clone();
    assert_eq!(printed.first().unwrap(), "======Master is Valladolid");
    assert_eq!(printed.last().unwrap(), "All is done.");
    assert!(printed.contains(&"Region other:Madrid has finished".to_string()));

    let (bdir, outcome) = runner::make_backup(&gs, &regions[..1], tmp.path(), &now)
        .await
        .unwrap();
    assert!(outcome.ok());
    let mut files: Vec<String> = std::fs::read_dir(&bdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, vec!["backup_Burgos.csv", "backup_Valladolid.csv"]);
}

/// A CSV backend whose uploads of one image fail.
struct FailOne {
    inner: CsvBackend,
    fail: &'static str,
}

#[async_trait::async_trait]
impl glancesync_core::RegionBackend for FailOne {
    async fn regions(
        &self,
        t: &glancesync_core::TargetConfig,
    ) -> glancesync_core::Result<Vec<String>> {
        self.inner.regions(t).await
    }
    async fn tenant_id(
        &self,
        t: &glancesync_core::TargetConfig,
    ) -> glancesync_core::Result<String> {
        self.inner.tenant_id(t).await
    }
    async fn list_images(
        &self,
        r: &glancesync_core::RegionRef,
        t: &glancesync_core::TargetConfig,
    ) -> glancesync_core::Result<Vec<Image>> {
        self.inner.list_images(r, t).await
    }
    async fn upload_image(
        &self,
        req: glancesync_core::UploadRequest<'_>,
    ) -> glancesync_core::Result<String> {
        if req.image.name == self.fail {
            return Err(glancesync_core::Error::Backend {
                region: req.region.full_name(),
                operation: "upload".into(),
                message: "injected failure".into(),
            });
        }
        self.inner.upload_image(req).await
    }
    async fn update_metadata(
        &self,
        r: &glancesync_core::RegionRef,
        t: &glancesync_core::TargetConfig,
        image: &Image,
    ) -> glancesync_core::Result<()> {
        self.inner.update_metadata(r, t, image).await
    }
    async fn delete_image(
        &self,
        r: &glancesync_core::RegionRef,
        t: &glancesync_core::TargetConfig,
        id: &str,
    ) -> glancesync_core::Result<()> {
        self.inner.delete_image(r, t, id).await
    }
    async fn flush(&self, r: &glancesync_core::RegionRef) -> glancesync_core::Result<()> {
        self.inner.flush(r).await
    }
}

#[tokio::test]
async fn total_uploaded_counts_only_the_images_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mib = 1024 * 1024;
    std::fs::write(
        state.join("backup_Valladolid.csv"),
        format!(
            "Valladolid,small,001,active,{},cs_a,tenant1id,True,{{}}\n\
             Valladolid,medium,002,active,{},cs_b,tenant1id,True,{{}}\n\
             Valladolid,large,003,active,{},cs_c,tenant1id,True,{{}}\n",
            10 * mib,
            20 * mib + 512 * 1024,
            40 * mib
        ),
    )
    .unwrap();
    std::fs::write(state.join("backup_Burgos.csv"), "").unwrap();
    let cfg = GlanceSyncConfig::load(
        &ConfigSource::Text {
            name: "config".into(),
            text: "[main]\nmaster_region = Valladolid\n[master]\n\
                   credential = user,cGFzcw==,http://127.0.0.1:5000/v3,tenant1\n"
                .into(),
        },
        &LoadOptions {
            overrides: vec![],
            require_credentials: false,
        },
        &|_: &str| None,
    )
    .unwrap();
    let backend = FailOne {
        inner: CsvBackend::open(&state, false).unwrap(),
        fail: "large",
    };
    let gs = GlanceSync::new(Arc::new(cfg), Arc::new(backend))
        .await
        .unwrap();
    assert_eq!(gs.plan_region("Burgos").await.unwrap().pending_mb, 70);
    let runs = [RegionRun {
        region: "Burgos".into(),
        log: SyncLog::capturing(),
    }];
    let results = gs.sync_regions(&runs, false, 1, &|_| {}).await;
    assert!(results[0].is_err(), "the failed image fails the region");
    let lines = runs[0].log.lines();
    // 10 + 20.5 MB copied; the 40 MB image that failed does not count.
    assert!(
        lines
            .iter()
            .any(|l| l == "Burgos:   Total uploaded to region: 30 (MB) "),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "Burgos: Image uploaded.")
            .count(),
        2,
        "{lines:?}"
    );
}
