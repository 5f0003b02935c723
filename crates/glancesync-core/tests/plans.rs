//! Data-driven plan tests: `fixtures/glancesync/plans/<case>/` holds
//! `config` (the INI file), `master.json` (`{tenant_id, images}` of the
//! master region), `region.json` (`{region, tenant_id, images}`) and
//! `expected-plan.json` (the [`RegionPlan`] as JSON). Planning is pure, so
//! no backend is involved.
//!
//! `GLANCESYNC_BLESS=1 cargo test -p glancesync-core --test plans` rewrites
//! the expected files (review the diff before committing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use glancesync_core::engine::master_images_to_dict;
use glancesync_core::plan::RegionInput;
use glancesync_core::{
    plan_region, ConfigSource, GlanceSyncConfig, Image, LoadOptions, RegionPlan, RegionRef,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct MasterFile {
    tenant_id: String,
    images: Vec<Image>,
}

#[derive(Deserialize)]
struct RegionFile {
    region: String,
    tenant_id: String,
    images: Vec<Image>,
}

fn plans_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/glancesync/plans")
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> T {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn plan_of(case: &Path) -> RegionPlan {
    let text = std::fs::read_to_string(case.join("config")).unwrap();
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
    let master: MasterFile = read_json(&case.join("master.json"));
    let region: RegionFile = read_json(&case.join("region.json"));
    let dict = master_images_to_dict(master.images, &master.tenant_id);
    let r = RegionRef::parse(&region.region);
    let target = cfg.target(&r.target).unwrap();
    plan_region(
        &dict,
        region.images,
        RegionInput {
            fullname: &r.full_name(),
            target,
            tenant_id: &region.tenant_id,
        },
    )
}

#[test]
fn plans_match_their_fixtures() {
    let bless = std::env::var_os("GLANCESYNC_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(plans_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 4, "plan fixtures missing");
    for case in cases {
        let plan = plan_of(&case);
        let got = serde_json::to_value(&plan).unwrap();
        // A plan is a plain value: its JSON form reads back to the same plan.
        let back: RegionPlan = serde_json::from_value(got.clone()).unwrap();
        assert_eq!(back, plan, "{}: JSON round trip", case.display());
        let expected_path = case.join("expected-plan.json");
        if bless {
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&expected_path, text).unwrap();
            continue;
        }
        let want: serde_json::Value = read_json(&expected_path);
        assert_eq!(
            got,
            want,
            "{}: plan differs from expected-plan.json; got:\n{}",
            case.display(),
            serde_json::to_string_pretty(&got).unwrap()
        );
    }
}

#[test]
fn dry_run_lines_of_a_plan() {
    let plan = plan_of(&plans_dir().join("checksum-directives"));
    assert_eq!(
        plan.dry_run_lines(),
        vec![
            "Burgos: Replacing image b (1.9073486328125e-05 MB)",
            "Burgos: Pending: b (1.9073486328125e-05 MB)",
            "Burgos: Renaming and replacing image c (2.86102294921875e-05 MB)",
            "Burgos: Pending: c (2.86102294921875e-05 MB)",
            "Burgos: MBs pending : 0",
        ]
    );
    assert!(plan
        .warnings
        .iter()
        .any(|w| w.starts_with("Image d has a different checksum (old4) in region Burgos")));
}
