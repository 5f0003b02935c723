//! package-installs squashing against diskimage-builder's
//! `package-installs-squash`: every `<case>.env` of
//! `fixtures/diskimage/package-installs` (element list + environment) beside
//! the squash output recorded by `record.sh`, and a live re-recording when the
//! reference venv is installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use diskimage::package_installs::squash;
use diskimage::{ElementTree, Error};

fn dir() -> PathBuf {
    common::fixtures().join("package-installs")
}

fn env_cases() -> Vec<(String, Vec<String>, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "env"))
        .collect();
    files.sort();
    for f in files {
        let mut env = BTreeMap::new();
        let mut els = Vec::new();
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let (k, v) = line.split_once('=').unwrap();
            if k == "ELEMENTS" {
                els = v.split_whitespace().map(String::from).collect();
            } else {
                env.insert(k.to_string(), v.to_string());
            }
        }
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        out.push((name, els, env));
    }
    out
}

#[test]
fn squash_matches_recorded_package_installs_squash() {
    let tree = ElementTree::discover(&[common::fixtures().join("elements")]).unwrap();
    let cases = env_cases();
    assert!(cases.len() >= 4);
    for (name, els, env) in cases {
        let elements: Vec<_> = els.iter().map(|e| tree.get(e).unwrap().clone()).collect();
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir().join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        match squash(&elements, &env) {
            Ok(got) => assert_eq!(got.to_json(), expected, "case {name}"),
            Err(e) => {
                let dib = expected["error"]
                    .as_str()
                    .unwrap_or_else(|| panic!("case {name}: we fail ({e}), DIB did not"));
                let Error::WhenVariable {
                    variable, package, ..
                } = &e
                else {
                    panic!("case {name}: {e}")
                };
                assert!(
                    dib.contains(&format!("<{variable}>")),
                    "case {name}: {dib} vs {e}"
                );
                assert_eq!(package, "needs-var");
                assert!(
                    e.to_string().contains("fx-pkgs-c/package-installs.yaml"),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn recordings_match_live_package_installs_squash() {
    if common::dib_venv().is_none() {
        common::no_venv("recordings_match_live_package_installs_squash");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let st = Command::new("bash")
        .arg(dir().join("record.sh"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(st.success());
    for (name, _, _) in env_cases() {
        let f = format!("{name}.expected.json");
        assert_eq!(
            std::fs::read_to_string(out.path().join(&f)).unwrap(),
            std::fs::read_to_string(dir().join(&f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn each_key_has_its_effect() {
    let tree = ElementTree::discover(&[common::fixtures().join("elements")]).unwrap();
    let a = vec![tree.get("fx-pkgs-a").unwrap().clone()];
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let base = [
        ("ARCH", "amd64"),
        ("DIB_FX_FLAG", "on"),
        ("DIB_FX_OTHER", "yes"),
        ("DIB_PYTHON_VERSION", "3"),
    ];
    let p = squash(&a, &env(&base)).unwrap();
    let names = |phase: &str, uninstall: bool| {
        let ph = p.phase(phase);
        let l = if uninstall { ph.uninstall } else { ph.install };
        l.into_iter().map(|r| r.package).collect::<Vec<_>>()
    };
    // phase
    assert!(names("pre-install.d", false).contains(&"pre-pkg".to_string()));
    assert!(names("post-install.d", false).contains(&"post-pkg".to_string()));
    // uninstall (presence counts, even `false`), build-only installs and uninstalls
    assert!(names("install.d", true).contains(&"remove-me".to_string()));
    assert!(names("install.d", true).contains(&"both-ways".to_string()));
    assert!(names("install.d", false).contains(&"build-tool".to_string()));
    assert!(names("install.d", true).contains(&"build-tool".to_string()));
    // installtype: default source
    assert!(names("install.d", false).contains(&"src-only".to_string()));
    assert!(!names("install.d", false).contains(&"pkg-only".to_string()));
    // arch / not-arch
    assert!(names("install.d", false).contains(&"amd-only".to_string()));
    assert!(names("install.d", false).contains(&"not-arm".to_string()));
    assert!(!names("install.d", false).contains(&"arm-list".to_string()));
    // dib_python_version
    assert!(names("install.d", false).contains(&"py3-only".to_string()));
    assert!(!names("install.d", false).contains(&"py2-only".to_string()));
    // when: =, !=, AND
    assert!(names("install.d", false).contains(&"when-eq".to_string()));
    assert!(!names("install.d", false).contains(&"when-ne".to_string()));
    assert!(names("install.d", false).contains(&"when-and".to_string()));
    // a list of parameter maps
    assert!(names("pre-install.d", false).contains(&"multi".to_string()));
    assert!(!names("install.d", false).contains(&"multi".to_string()));
    assert!(names("post-install.d", true).contains(&"multi".to_string()));

    let mut e = env(&base);
    e.insert("DIB_INSTALLTYPE_fx_pkgs_a".into(), "package".into());
    e.insert("ARCH".into(), "armhf".into());
    let p = squash(&a, &e).unwrap();
    let inst: Vec<String> = p
        .phase("install.d")
        .install
        .into_iter()
        .map(|r| r.package)
        .collect();
    assert!(inst.contains(&"pkg-only".to_string()) && !inst.contains(&"src-only".to_string()));
    assert!(inst.contains(&"arm-list".to_string()) && !inst.contains(&"amd-only".to_string()));

    // a missing variable names it; ARCH is needed for arch keys
    let err = squash(&a, &env(&[("ARCH", "amd64"), ("DIB_PYTHON_VERSION", "3")])).unwrap_err();
    assert!(
        err.to_string().contains("<DIB_FX_FLAG> is not set"),
        "{err}"
    );
    let err = squash(&a, &env(&[("DIB_FX_FLAG", "on")])).unwrap_err();
    assert!(err.to_string().contains("ARCH is not set"), "{err}");
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let el = d.path().join("bad");
    std::fs::create_dir(&el).unwrap();
    for (text, want) in [
        (
            "pkg:\n  arch: amd64\n  not-arch: arm64\n",
            "arch and not-arch",
        ),
        ("pkg:\n  when: 'no operator'\n", "malformed when"),
        ("- a\n- b\n", "mapping of package names"),
        ("pkg: [1]\n", "must be a mapping"),
        ("pkg: {\n", "package-installs.yaml"),
    ] {
        std::fs::write(el.join("package-installs.yaml"), text).unwrap();
        let tree = ElementTree::discover(&[d.path().to_path_buf()]).unwrap();
        let env: BTreeMap<String, String> = [("ARCH".to_string(), "amd64".to_string())].into();
        let err = squash(&[tree.get("bad").unwrap().clone()], &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want) && err.contains("bad/package-installs.yaml"),
            "{text}: {err}"
        );
    }
}
