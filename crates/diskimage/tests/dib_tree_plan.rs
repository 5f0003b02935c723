//! Plans over diskimage-builder's own element tree (needs the reference
//! venv): the hook trees merge without duplicates, the phases hold DIB's
//! scripts, and the squashed package-installs equal what DIB's
//! `package-installs-squash` produces live for the same elements and the
//! same (environment.d-completed) environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use diskimage::executor::{dib_defaults, filter_environment, source_environment};
use diskimage::{expand_image_elements, BuildPlan, ImageElementOptions, Step};

const SETS: &[(&str, &[(&str, &str)])] = &[
    ("vm debian-minimal", &[("DIB_RELEASE", "bookworm")]),
    (
        "debian-minimal source-repositories svc-map install-static growroot cloud-init-datasources",
        &[("DIB_RELEASE", "trixie")],
    ),
    (
        "vm ubuntu-minimal",
        &[
            ("DIB_RELEASE", "noble"),
            ("DIB_UBUNTU_KERNEL", "linux-image-virtual"),
        ],
    ),
    (
        "vm centos-minimal block-device-gpt",
        &[("DIB_RELEASE", "9-stream")],
    ),
    ("vm fedora-minimal fips", &[]),
    (
        "debian-minimal fips openssh-server devuser",
        &[("DIB_RELEASE", "bookworm")],
    ),
];

fn normalise(v: serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (phase, kinds) in v.as_object().unwrap() {
        let mut k = serde_json::Map::new();
        for (kind, list) in kinds.as_object().unwrap() {
            if !list.as_array().unwrap().is_empty() {
                k.insert(kind.clone(), list.clone());
            }
        }
        if !k.is_empty() {
            out.insert(phase.clone(), serde_json::Value::Object(k));
        }
    }
    serde_json::Value::Object(out)
}

#[test]
fn dib_tree_plans_and_package_installs_match_squash() {
    let (Some(elements_dir), Some(venv)) = (common::dib_elements(), common::dib_venv()) else {
        common::no_venv("dib_tree_plans_and_package_installs_match_squash");
        return;
    };
    let squash_bin = elements_dir.join("package-installs/bin/package-installs-squash");
    for (set, vars) in SETS {
        let req: Vec<String> = set.split(' ').map(String::from).collect();
        let els = expand_image_elements(
            std::slice::from_ref(&elements_dir),
            &req,
            &ImageElementOptions::default(),
        )
        .unwrap();
        let mut env = filter_environment(std::env::vars());
        env.insert("ARCH".into(), "amd64".into());
        for (k, v) in *vars {
            env.insert(k.to_string(), v.to_string());
        }
        let plan = BuildPlan::with_element_environment(els.clone(), env.clone(), &[])
            .unwrap_or_else(|e| panic!("{set}: {e}"));
        // DIB's scripts are in the phases (package-installs' replaced by native steps)
        let install: Vec<&str> = plan
            .phase("install.d")
            .unwrap()
            .steps
            .iter()
            .map(Step::name)
            .collect();
        assert!(
            install.contains(&"01-package-installs"),
            "{set}: {install:?}"
        );
        assert!(
            plan.phase("root.d")
                .unwrap()
                .steps
                .iter()
                .any(|s| matches!(s, Step::Script(_))),
            "{set}"
        );

        // the same environment for the live squash
        let files: Vec<String> = plan
            .environment_files
            .iter()
            .map(|h| h.source.display().to_string())
            .collect();
        let mut senv = env.clone();
        dib_defaults(&mut senv, &els);
        let full = source_environment(&files, &senv, None, None).unwrap();
        let out = tempfile::NamedTempFile::new().unwrap();
        let names: Vec<&str> = els.iter().map(|e| e.name.as_str()).collect();
        let st = Command::new(venv.join("bin/python3"))
            .arg(&squash_bin)
            .arg(format!("--elements={}", names.join(" ")))
            .arg(format!("--path={}", elements_dir.display()))
            .arg(out.path())
            .env_clear()
            .envs(&full)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{set}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let dib: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path()).unwrap()).unwrap();
        assert_eq!(plan.packages.to_json(), normalise(dib), "{set}");
        let _: BTreeMap<String, String> = full;
    }
}
