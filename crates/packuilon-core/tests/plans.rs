//! Data-driven: every `fixtures/packuilon/profiles/<case>.json` message
//! gives the plan (or the error) in `<case>.expected.json`, with both shapes
//! of `source-images.json`.
//!
//! Set `PACKUILON_BLESS=1` to (re)write the expected files; review them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use packuilon_core::{BuildPlan, SourceImages, TemplateMap};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/packuilon")
}

fn variant(e: &packuilon_core::Error) -> String {
    format!("{e:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap()
        .to_string()
}

fn outcome(body: &[u8], what: &str, images: &Path, dir: &Path) -> (Value, Option<String>) {
    let images = SourceImages::load(images).unwrap();
    let map = TemplateMap::load(&dir.join("template-map.json")).unwrap();
    match BuildPlan::from_message(body, what, &images, &map) {
        Ok(mut plan) => {
            plan.templates = plan
                .templates
                .iter()
                .map(|t| t.strip_prefix(dir).unwrap().to_path_buf())
                .collect();
            (json!({ "plan": plan }), None)
        }
        Err(e) => {
            let msg = e.to_string().replace(&format!("{}/", dir.display()), "");
            (json!({ "error": msg }), Some(variant(&e)))
        }
    }
}

#[test]
fn every_profile_fixture_gives_its_expected_plan() {
    let dir = fixtures().canonicalize().unwrap();
    let bless = std::env::var_os("PACKUILON_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("profiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p.to_string_lossy().ends_with(".expected.json")
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "fixtures missing: {cases:?}");
    for case in cases {
        let stem = case.file_stem().unwrap().to_string_lossy().to_string();
        let body = std::fs::read(&case).unwrap();
        let what = format!("message {stem}");
        let (flat, flat_kind) = outcome(&body, &what, &dir.join("source-images.json"), &dir);
        let (nested, nested_kind) =
            outcome(&body, &what, &dir.join("source-images-nested.json"), &dir);
        match flat_kind {
            None => assert_eq!(flat, nested, "{stem}: the two source-image shapes differ"),
            Some(k) => assert_eq!(Some(k), nested_kind, "{stem}: {flat} vs {nested}"),
        }
        let expected_path = dir.join("profiles").join(format!("{stem}.expected.json"));
        if bless {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&flat).unwrap() + "\n",
            )
            .unwrap();
            continue;
        }
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
        )
        .unwrap();
        assert_eq!(flat, expected, "{stem}");
    }
}

#[test]
fn fixture_templates_render_to_valid_packer_json_for_every_plan() {
    let dir = fixtures().canonicalize().unwrap();
    let images = SourceImages::load(&dir.join("source-images.json")).unwrap();
    let map = TemplateMap::load(&dir.join("template-map.json")).unwrap();
    let mut rendered = 0;
    for stem in ["skeleton-domain", "quotes-in-values", "with-hostname"] {
        let body = std::fs::read(dir.join(format!("profiles/{stem}.json"))).unwrap();
        let plan = BuildPlan::from_message(&body, stem, &images, &map).unwrap();
        let metadata: serde_json::Map<String, Value> = plan
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        for t in &plan.templates {
            let text = packuilon_core::template::render_file(t, &plan).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            let b = &v["builders"][0];
            let suffix = if t.ends_with("managed.json") && !t.ends_with("unmanaged.json") {
                " AQ"
            } else {
                ""
            };
            assert_eq!(b["image_name"], format!("{}{suffix}", plan.pretty_name));
            assert_eq!(b["source_image"], plan.source_image.as_str());
            assert_eq!(b["instance_metadata"], Value::Object(metadata.clone()));
            let post = v["post-processors"][0]["inline"][0].as_str().unwrap();
            assert!(post.ends_with(&format!(
                "rename-old-images.sh {}{suffix}",
                plan.pretty_name
            )));
            rendered += 1;
        }
    }
    assert_eq!(rendered, 6);
}
