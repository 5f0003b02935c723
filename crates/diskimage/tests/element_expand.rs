//! Element dependency expansion against diskimage-builder's element-info:
//! the element sets of `fixtures/diskimage/expand/cases.in`, with the
//! expansions element-info gave recorded in `cases.expected` (by
//! `record.sh`), on DIB's own tree and on the fixture trees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use diskimage::{image_element_args, ElementTree, Error, ImageElementOptions};

/// Requests whose expansion has a dependency cycle: element-info accepts
/// them, we refuse with an error naming the cycle.
const CYCLES: &[&str] = &["os-alpha fx-cycle-a", "os-alpha fx-cycle-b fx-utils"];

struct Case {
    tree: String,
    elements: Vec<String>,
    expected: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(common::fixtures().join("expand/cases.expected")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(" | ").collect();
            assert_eq!(f.len(), 3, "bad line {l}");
            Case {
                tree: f[0].to_string(),
                elements: f[1].split_whitespace().map(String::from).collect(),
                expected: f[2].to_string(),
            }
        })
        .collect()
}

fn tree_paths(tree: &str) -> Option<Vec<PathBuf>> {
    let fx = common::fixtures();
    Some(match tree {
        "fixture" => vec![fx.join("elements")],
        "override" => vec![fx.join("elements-override"), fx.join("elements")],
        "dib" => vec![common::dib_elements()?],
        "dib+fixture" => vec![fx.join("elements"), common::dib_elements()?],
        other => panic!("unknown tree {other}"),
    })
}

fn error_class(e: &Error) -> String {
    match e {
        Error::UnknownElement { element, .. } => format!("error MissingElementException {element}"),
        Error::AlreadyProvided { .. } => "error AlreadyProvidedException".into(),
        Error::MissingOperatingSystem { .. } => "error MissingOSException".into(),
        other => format!("error {other}"),
    }
}

#[test]
fn expansion_matches_element_info_recordings() {
    let mut checked = 0;
    for case in cases() {
        let Some(paths) = tree_paths(&case.tree) else {
            common::no_venv("expansion_matches_element_info_recordings");
            continue;
        };
        let tree = ElementTree::discover(&paths).unwrap();
        let got = tree.expand(&case.elements);
        let request = case.elements.join(" ");
        if CYCLES.contains(&request.as_str()) {
            let Err(Error::ElementCycle { cycle }) = &got else {
                panic!("{request}: expected a cycle error, got {got:?}");
            };
            let msg = got.as_ref().unwrap_err().to_string();
            assert!(
                msg.contains("fx-cycle-a -> fx-cycle-b")
                    || msg.contains("fx-cycle-b -> fx-cycle-c"),
                "{msg}"
            );
            // element-info accepted it: every element of the cycle is in its expansion
            for c in cycle {
                assert!(case.expected.split(' ').any(|e| e == c), "{request}: {c}");
            }
            checked += 1;
            continue;
        }
        let shown = match &got {
            Ok(els) => {
                let mut names: Vec<&str> = els.iter().map(|e| e.name.as_str()).collect();
                names.sort_unstable();
                names.join(" ")
            }
            Err(e) => error_class(e),
        };
        assert_eq!(
            shown, case.expected,
            "tree {} elements {request}",
            case.tree
        );
        checked += 1;
    }
    assert!(checked >= 19, "only {checked} cases checked");
}

#[test]
fn recordings_match_live_element_info() {
    if common::dib_venv().is_none() {
        common::no_venv("recordings_match_live_element_info");
        return;
    }
    let script = common::fixtures().join("expand/record.sh");
    let out = Command::new("bash").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recorded =
        std::fs::read_to_string(common::fixtures().join("expand/cases.expected")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        recorded.trim_end()
    );
}

#[test]
fn expansion_order_is_requested_then_discovered() {
    let tree = ElementTree::discover(&tree_paths("fixture").unwrap()).unwrap();
    let req: Vec<String> = ["fx-app", "os-alpha"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names: Vec<String> = tree
        .expand(&req)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        ["fx-app", "os-alpha", "fx-db", "fx-web", "fx-base", "fx-utils", "fx-init"]
    );
}

#[test]
fn earlier_path_wins_and_paths_are_resolved() {
    let fx = common::fixtures();
    let tree = ElementTree::discover(&tree_paths("override").unwrap()).unwrap();
    let web = tree.get("fx-web").unwrap();
    assert_eq!(
        web.path,
        std::fs::canonicalize(fx.join("elements-override/fx-web")).unwrap()
    );
    assert_eq!(web.depends.iter().collect::<Vec<_>>(), ["fx-db"]);
    assert_eq!(
        tree.get("fx-app").unwrap().path,
        std::fs::canonicalize(fx.join("elements/fx-app")).unwrap()
    );
}

#[test]
fn errors_name_the_element() {
    let tree = ElementTree::discover(&tree_paths("fixture").unwrap()).unwrap();
    let err = tree
        .expand(&["os-alpha".into(), "fx-broken".into()])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Element 'fx-does-not-exist' not found (required by 'fx-broken')"
    );
    let err = tree
        .expand(&["os-alpha".into(), "os-beta".into()])
        .unwrap_err();
    assert!(
        err.to_string().contains("'operating-system'") && err.to_string().contains("os-alpha"),
        "{err}"
    );
    let err = ElementTree::discover(&[common::fixtures().join("no-such-dir")]).unwrap_err();
    assert!(
        err.to_string().contains("no-such-dir' is not a directory"),
        "{err}"
    );
}

fn args(v: &[&str], arch: &str, skip_base: bool) -> Vec<String> {
    let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    let o = ImageElementOptions {
        arch: arch.into(),
        skip_base,
        ramdisk_element: None,
    };
    image_element_args(&v, &o)
}

#[test]
fn disk_image_create_adds_base_and_block_device() {
    assert_eq!(
        args(&["vm", "debian-minimal"], "amd64", false),
        ["base", "vm", "debian-minimal", "block-device-mbr"]
    );
    assert_eq!(
        args(&["vm", "debian-minimal"], "arm64", false),
        ["base", "vm", "debian-minimal", "block-device-efi"]
    );
    assert_eq!(
        args(&["vm", "debian-minimal"], "aarch64", true),
        ["vm", "debian-minimal", "block-device-efi"]
    );
    assert_eq!(
        args(&["vm", "debian-minimal"], "ppc64le", false),
        ["base", "vm", "debian-minimal", "block-device-mbr"]
    );
    assert_eq!(
        args(
            &["vm", "block-device-gpt", "debian-minimal"],
            "amd64",
            false
        ),
        ["base", "vm", "block-device-gpt", "debian-minimal"]
    );
    assert_eq!(
        args(&["debian-minimal"], "amd64", false),
        ["base", "debian-minimal"]
    );
    let o = ImageElementOptions {
        ramdisk_element: Some("ramdisk".into()),
        ..Default::default()
    };
    assert_eq!(
        image_element_args(&["debian-minimal".into()], &o),
        ["ramdisk", "base", "debian-minimal"]
    );
}

#[test]
fn expand_image_elements_on_dib_tree() {
    let Some(dib) = common::dib_elements() else {
        common::no_venv("expand_image_elements_on_dib_tree");
        return;
    };
    let els = diskimage::expand_image_elements(
        &[dib],
        &["vm".into(), "debian-minimal".into()],
        &ImageElementOptions::default(),
    )
    .unwrap();
    let mut names: Vec<&str> = els.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["base", "vm", "debian-minimal", "block-device-mbr"]
    );
    names.sort_unstable();
    let recorded = cases()
        .into_iter()
        .find(|c| {
            c.tree == "dib" && c.elements.join(" ") == "base vm debian-minimal block-device-mbr"
        })
        .unwrap();
    assert_eq!(names.join(" "), recorded.expected);
}

#[test]
fn builtin_infrastructure_elements_come_last() {
    let builtin = diskimage::builtin_elements_dir().unwrap();
    let fx = common::fixtures().join("elements");
    let path = diskimage::elements_search_path(Some(&format!("{}:", fx.display())), &[]);
    assert_eq!(path, [fx.clone(), builtin.clone()]);
    let tree = ElementTree::discover(&path).unwrap();
    let names: Vec<String> = tree
        .expand(&[
            "os-alpha".into(),
            "install-static".into(),
            "source-repositories".into(),
            "svc-map".into(),
        ])
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    for n in [
        "install-static",
        "package-installs",
        "install-bin",
        "pkg-map",
        "source-repositories",
        "svc-map",
    ] {
        assert!(names.contains(&n.to_string()), "{n}: {names:?}");
    }
    // DIB's tree first: its elements win over the stand-ins
    if let Some(dib) = common::dib_elements() {
        let tree = ElementTree::discover(&diskimage::elements_search_path(
            Some(&dib.display().to_string()),
            &[],
        ))
        .unwrap();
        assert!(tree
            .get("package-installs")
            .unwrap()
            .path
            .starts_with(std::fs::canonicalize(&dib).unwrap()));
        assert!(tree.get("svc-map").unwrap().depends.contains("dib-python"));
    }
}

#[test]
fn image_element_args_match_dib_arg_defaults_hack() {
    let Some(pkg) = common::dib_package() else {
        common::no_venv("image_element_args_match_dib_arg_defaults_hack");
        return;
    };
    let lib = pkg.join("lib/common-functions");
    for arch in [
        "amd64", "arm64", "aarch64", "armhf", "ppc64le", "i386", "s390x",
    ] {
        for els in [
            "vm debian-minimal",
            "vm block-device-gpt debian-minimal",
            "debian-minimal",
            "ubuntu vm growroot",
        ] {
            // DIB: _arg_defaults_hack, then "base" put first (arg_to_elements)
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "source {}; ARCH={arch}; echo base $(_arg_defaults_hack {els})",
                    lib.display()
                ))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dib = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let ours = args(&els.split(' ').collect::<Vec<_>>(), arch, false).join(" ");
            assert_eq!(ours, dib, "ARCH={arch} {els}");
        }
    }
}
