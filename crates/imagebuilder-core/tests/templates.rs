//! Data-driven: every case of `fixtures/imagebuilder/templates/` (a Packer
//! template and the variables imagebuilder passes) resolves to its
//! `expected.json` steps, or fails with its `expected-error.txt`.
//! `IMAGEBUILDER_BLESS=1` rewrites the `expected.json` files (review the diff).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use imagebuilder_core::template::Template;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/imagebuilder/templates")
}

#[test]
fn every_template_case_resolves_as_expected() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "{cases:?}");
    let bless = std::env::var("IMAGEBUILDER_BLESS").is_ok();
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let vars: BTreeMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vars.json")).unwrap()).unwrap();
        let result = Template::load(&dir.join("template")).and_then(|t| t.resolve(&vars, &dir));
        let error_file = dir.join("expected-error.txt");
        if error_file.exists() {
            let want = std::fs::read_to_string(&error_file).unwrap();
            let err = match result {
                Ok(r) => panic!("{name}: expected an error, got {r:?}"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(want.trim()),
                "{name}: error '{err}' lacks '{}'",
                want.trim()
            );
            assert!(
                err.contains("template"),
                "{name}: error does not name the file: {err}"
            );
            assert!(!err.contains('\n'), "{name}: error is not one line: {err}");
            continue;
        }
        let resolved = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = serde_json::to_string_pretty(&resolved)
            .unwrap()
            .replace(&dir.display().to_string(), "<dir>");
        let expected = dir.join("expected.json");
        if bless {
            std::fs::write(&expected, format!("{text}\n")).unwrap();
        }
        let want = std::fs::read_to_string(&expected).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(text.trim(), want.trim(), "{name}: resolved steps differ");
    }
}
