//! Sanity of the workspace's own amphora elements: every dependency
//! resolves over the workspace's element tree (these elements plus the
//! diskimage crate's infrastructure elements), hook scripts are executable,
//! named as dib-run-parts runs them and pass `bash -n`, and every element the
//! Octavia sequence names that is not diskimage-builder's is here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use amphora::plan::own_elements_dir;

const PHASES: &[&str] = &[
    "root.d",
    "extra-data.d",
    "pre-install.d",
    "install.d",
    "post-install.d",
    "post-root.d",
    "block-device.d",
    "pre-finalise.d",
    "finalise.d",
    "cleanup.d",
];

fn tree() -> diskimage::ElementTree {
    let own = own_elements_dir().unwrap();
    let mut paths = vec![own];
    paths.extend(diskimage::builtin_elements_dir());
    diskimage::ElementTree::discover(&paths).unwrap()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o111 != 0
}

fn hooks(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            // install-types sub-directories (`<element>-source-install/`).
            hooks(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_dependency_resolves_in_the_workspace_tree() {
    let t = tree();
    let own = own_elements_dir().unwrap();
    let mut n = 0;
    for (name, el) in t.all() {
        if !el.path.starts_with(&own) {
            continue;
        }
        n += 1;
        for d in &el.depends {
            assert!(
                t.get(d).is_some(),
                "{name}: element-deps names unknown `{d}`"
            );
        }
        assert!(
            el.path.join("README.rst").is_file(),
            "{name}: no README.rst"
        );
    }
    assert!(n >= 17, "only {n} amphora elements");
}

#[test]
fn the_sequence_elements_that_are_not_dibs_are_here() {
    let t = tree();
    for e in [
        "haproxy-octavia",
        "root-passwd",
        "rebind-sshd",
        "no-resolvconf",
        "amphora-agent",
        "octavia-lib",
        "sos",
        "remove-default-ints",
        "amphora-selinux",
        "amphora-apparmor",
        "disable-makecache",
        "keepalived-octavia",
        "ipvsadmin",
        "certs-ramfs",
        "cpu-pinning",
        "remove-sshd",
        "amphora-fips",
    ] {
        assert!(t.get(e).is_some(), "element {e} missing");
    }
}

#[test]
fn hooks_are_executable_well_named_bash() {
    let own = own_elements_dir().unwrap();
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let mut checked = 0;
    for el in std::fs::read_dir(&own).unwrap().flatten() {
        for phase in PHASES {
            let dir = el.path().join(phase);
            if !dir.is_dir() {
                continue;
            }
            let mut files = Vec::new();
            hooks(&dir, &mut files);
            for f in files {
                let fname = f.file_name().unwrap().to_string_lossy().to_string();
                assert!(name_ok(&fname), "{}: not a dib-run-parts name", f.display());
                assert!(is_executable(&f), "{} is not executable", f.display());
                let out = Command::new("bash").arg("-n").arg(&f).output().unwrap();
                assert!(
                    out.status.success(),
                    "{}: {}",
                    f.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
        // Scripts shipped through static/ keep their mode.
        for sub in ["static/usr/local/bin", "static/var/lib/octavia"] {
            let d = el.path().join(sub);
            if let Ok(rd) = std::fs::read_dir(&d) {
                for f in rd.flatten() {
                    assert!(
                        is_executable(&f.path()),
                        "{} is not executable",
                        f.path().display()
                    );
                    let out = Command::new("bash")
                        .arg("-n")
                        .arg(f.path())
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "{}", f.path().display());
                }
            }
        }
    }
    assert!(checked >= 15, "only {checked} hooks");
}

#[test]
fn package_installs_files_parse() {
    let own = own_elements_dir().unwrap();
    for el in std::fs::read_dir(&own).unwrap().flatten() {
        let f = el.path().join("package-installs.yaml");
        if f.is_file() {
            let text = std::fs::read_to_string(&f).unwrap();
            let v: serde_yaml::Value =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(v.is_mapping(), "{}: not a mapping", f.display());
        }
        let m = el.path().join("pkg-map");
        if m.is_file() {
            let text = std::fs::read_to_string(&m).unwrap();
            let _: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        }
    }
}

#[test]
fn root_password_never_traced() {
    let own = own_elements_dir().unwrap();
    let text = std::fs::read_to_string(own.join("root-passwd/post-install.d/99-setup")).unwrap();
    assert!(!text.contains("set -x"), "root-passwd must not trace");
    assert!(
        text.contains("| chpasswd"),
        "password goes to chpasswd on stdin"
    );
}
