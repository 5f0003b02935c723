//! Data-driven: every `fixtures/gold-images/bad/*.yaml` is refused with
//! exactly the problems of its `.expected` (one line each, `{file}` standing
//! for the path; `retire-*.yaml` loaded as a retire set, the others as an
//! update set); every `fixtures/gold-images/sets/*.yaml` loads into the
//! entries of its `.expected.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use gold_images::{Error, ImageSet, SetKind};

fn yamls(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(common::fixtures().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn bad_sets_report_every_problem_with_file_and_key() {
    let files = yamls("bad");
    assert!(files.len() >= 4);
    for path in files {
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap()
            .replace("{file}", &path.display().to_string());
        let retire = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("retire-"));
        let kind = if retire {
            SetKind::Retire
        } else {
            SetKind::Update
        };
        let err = ImageSet::load(&path, kind).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { .. }),
            "{}: {err:?}",
            path.display()
        );
        assert_eq!(format!("{err}\n"), expected, "{}", path.display());
    }
}

#[test]
fn good_sets_load_as_expected() {
    let files = yamls("sets");
    assert!(files.len() >= 2);
    for path in files {
        let kind = if path.file_name().unwrap() == "retired.yaml" {
            SetKind::Retire
        } else {
            SetKind::Update
        };
        let set = ImageSet::load(&path, kind).unwrap();
        let got = serde_json::json!({"type": set.image_type, "images": set.images});
        let expected_path = path.with_extension("expected.json");
        if std::env::var_os("GOLD_IMAGES_BLESS").is_some() {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&got).unwrap() + "\n",
            )
            .unwrap();
        }
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        assert_eq!(got, expected, "{}", path.display());
    }
}

#[test]
fn retire_sets_do_not_need_the_update_keys_but_update_does() {
    let retired = common::fixtures().join("sets/retired.yaml");
    let err = ImageSet::load(&retired, SetKind::Update)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("images.centos7.url: missing mandatory key"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 8, "{err}");
}

#[test]
fn retired_entries_are_left_out_of_update() {
    let set = ImageSet::load(
        &common::fixtures().join("sets/default.yaml"),
        SetKind::Update,
    )
    .unwrap();
    let names: Vec<_> = set
        .update_entries(None)
        .map(|e| e.short_name.as_str())
        .collect();
    assert_eq!(names, ["ubuntu_2404", "debian12", "winsrv2022std"]);
    let one: Vec<_> = set
        .update_entries(Some("debian12"))
        .map(|e| e.short_name.as_str())
        .collect();
    assert_eq!(one, ["debian12"]);
}

#[test]
fn unparsable_yaml_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.yaml");
    std::fs::write(&p, "type: 'gold'\nimages:\n  a: [unclosed\n").unwrap();
    let err = ImageSet::load(&p, SetKind::Update).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: invalid YAML: ", p.display())),
        "{err}"
    );
    assert!(err.contains("line"), "{err}");
}
