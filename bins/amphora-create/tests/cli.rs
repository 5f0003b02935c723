//! Command-line contract of `amphora-create`: the original's options and
//! exit codes through the real binary (3 invalid value, 1 usage/`-h`/`-v`/
//! missing dependency, 2 unknown host OS), `--help`/`--version`, and the
//! `--print-elements` fixtures.
//!
//! The shared `cli_contract_tests!` runs with Octavia's codes: an unknown
//! option shows the usage and exits 1, `-v` prints the script version and
//! `-h` the usage, both exiting 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::dib_repo;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn bin() -> Command {
    let mut c = Command::cargo_bin("amphora-create").unwrap();
    for v in [
        "DIB_ELEMENTS",
        "DIB_LOCAL_ELEMENTS",
        "DIB_LOCAL_ELEMENTS_PATH",
        "ELEMENTS_PATH",
        "OCTAVIA_REPO_PATH",
        "AMP_element_sequence",
        "DIB_REPOREF_amphora_agent",
        "DIB_REPOLOCATION_upper_constraints",
        "DIB_LOCAL_IMAGE",
        "CLOUD_INIT_DATASOURCES",
    ] {
        c.env_remove(v);
    }
    c
}

/// `amphora-create ARGS --print-elements`.
fn print_elements(args: &[&str]) -> Command {
    let mut c = bin();
    c.args(args).arg("--print-elements");
    c
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/amphora")
}

cli_common::cli_contract_tests!("amphora-create", {
    unknown_argument: (1, "illegal option -- --no-such-flag"),
    short_version: ("-v", 1, "Amphora disk image creation script version:"),
    short_help: ("-h", 1, "'-y' enable FIPS 140-2 mode"),
});

#[test]
fn unknown_options_and_stray_words_show_the_usage_and_exit_1() {
    for (args, needle) in [
        (vec!["--no-such-flag"], "illegal option -- --no-such-flag"),
        (vec!["-z"], "illegal option -- z"),
        (vec!["-q"], "illegal option -- q"),
        (vec!["-a"], "option requires an argument -- a"),
        (vec!["-m", "extra"], "unexpected argument 'extra'"),
    ] {
        bin()
            .args(&args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(needle))
            .stderr(predicate::str::contains("Usage: amphora-create"));
    }
}

#[test]
fn invalid_values_exit_3_naming_the_option() {
    // (option, value, what the message calls it): "<what> <value> specified
    // (option <option>)".
    for (opt, value, what) in [
        ("-a", "sparc", "Unsupported architecture"),
        ("-b", "nginx", "Unsupported backend type"),
        ("-i", "gentoo", "Unsupported base OS"),
        ("-s", "2G", "Invalid image size"),
        ("-s", "-1", "Invalid image size"),
        ("-t", "vmdk", "Unsupported image type"),
    ] {
        print_elements(&[opt, value])
            .assert()
            .code(3)
            .stderr(predicate::str::contains(format!(
                "{what} {value} specified (option {opt})"
            )));
    }
    for (args, needle) in [
        (
            vec!["-o", "/nonexistent-dir/x.qcow2"],
            "Directory /nonexistent-dir does not exist (option -o)",
        ),
        // Left to right: the invalid value stops before -h is seen.
        (vec!["-a", "x", "-h"], "(option -a)"),
    ] {
        print_elements(&args)
            .assert()
            .code(3)
            .stderr(predicate::str::contains(needle));
    }
    // -h first: usage, exit 1.
    bin().args(["-h", "-a", "x"]).assert().code(1);
}

#[test]
fn option_checks_exit_1() {
    for (args, needle) in [
        (vec!["-i", "fedora"], "at least 3GB (option -s)"),
        (
            vec!["-i", "rhel", "-s", "3"],
            "DIB_LOCAL_IMAGE variable must be set",
        ),
    ] {
        print_elements(&args)
            .env("DIB_REPO_PATH", dib_repo())
            .assert()
            .code(1)
            .stderr(predicate::str::contains(needle));
    }
}

/// Bad element inputs fail as disk-image-create does (exit 1) with a
/// message naming the element: one nobody provides, and a dependency
/// cycle among `DIB_LOCAL_ELEMENTS_PATH`'s elements.
#[test]
fn unknown_element_and_dependency_cycle_exit_1_naming_the_element() {
    print_elements(&["-i", "debian-minimal"])
        .env("DIB_REPO_PATH", dib_repo())
        .env("DIB_LOCAL_ELEMENTS", "no-such-element")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no-such-element"));
    let local = tempfile::tempdir().unwrap();
    for (name, dep) in [("cycle-a", "cycle-b"), ("cycle-b", "cycle-a")] {
        let d = local.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("element-deps"), format!("{dep}\n")).unwrap();
    }
    let out = print_elements(&["-i", "debian-minimal"])
        .env("DIB_REPO_PATH", dib_repo())
        .env("DIB_LOCAL_ELEMENTS_PATH", local.path())
        .env("DIB_LOCAL_ELEMENTS", "cycle-a")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cycle-a") || err.contains("cycle-b"), "{err}");
    assert!(err.to_lowercase().contains("cycl"), "{err}");
}

#[test]
fn missing_diskimage_builder_exits_1() {
    let cases: [(&[(&str, &str)], &str); 2] = [
        (
            // No diskimage-builder checkout, none on PATH either.
            &[("DIB_REPO_PATH", "/nonexistent"), ("PATH", "/usr/bin:/bin")],
            "diskimage-builder elements not found at: /nonexistent/diskimage_builder/elements",
        ),
        (
            &[("OCTAVIA_REPO_PATH", "/nonexistent/octavia")],
            "Octavia elements directory not found at: /nonexistent/octavia/elements",
        ),
    ];
    for (vars, needle) in cases {
        print_elements(&[])
            .envs(vars.iter().copied())
            .assert()
            .code(1)
            .stderr(predicate::str::contains(needle));
    }
}

fn host_root(os_release: Option<&str>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::create_dir_all(d.path().join("var/lib/dpkg/info")).unwrap();
    std::fs::write(d.path().join("var/lib/dpkg/status"), "").unwrap();
    if let Some(text) = os_release {
        std::fs::write(d.path().join("etc/os-release"), text).unwrap();
    }
    d
}

/// A build of `debian-minimal` in `work` on the host `root`.
fn build_on_host(root: &Path, work: &Path) -> assert_cmd::assert::Assert {
    bin()
        .current_dir(work)
        .args(["-i", "debian-minimal", "-c"])
        .arg(work.join("cache"))
        .env("DIB_REPO_PATH", dib_repo())
        .env("AMPHORA_HOST_ROOT", root)
        .assert()
}

#[test]
fn unknown_host_os_exits_2() {
    let root = host_root(None);
    let work = tempfile::tempdir().unwrap();
    build_on_host(root.path(), work.path())
        .code(2)
        .stderr(predicate::str::contains("Unknown Host OS"));
}

#[test]
fn missing_host_package_exits_1() {
    let root = host_root(Some(
        "PRETTY_NAME=\"Debian GNU/Linux 12\"\nNAME=\"Debian GNU/Linux\"\n",
    ));
    let work = tempfile::tempdir().unwrap();
    build_on_host(root.path(), work.path())
        .code(1)
        .stderr(predicate::str::contains(
            "Required package qemu-utils is not installed.  Exiting.",
        ));
    // Nothing was built, and no temporary directory is left behind.
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("diskimage-create."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn dry_run_shows_exports_without_the_password() {
    bin()
        .args([
            "-i",
            "debian-minimal",
            "-r",
            "hunter2-secret",
            "-g",
            "stable/2025.1",
            "--dry-run",
        ])
        .env("DIB_REPO_PATH", dib_repo())
        .env("CLOUD_INIT_DATASOURCES", "ConfigDrive, OpenStack")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "DIB_REPOREF_amphora_agent=stable/2025.1",
        ))
        .stdout(predicate::str::contains(
            "DIB_CLOUD_INIT_DATASOURCES=ConfigDrive, OpenStack",
        ))
        .stdout(predicate::str::contains("DIB_RELEASE=bookworm"))
        .stdout(predicate::str::contains("NOT FOR PRODUCTION USAGE"))
        .stdout(predicate::str::contains("DIB_PASSWORD=<set, not shown>"))
        .stdout(predicate::str::contains("hunter2-secret").not());
}

fn run_fixture(args_file: &Path) -> (String, String) {
    let text = std::fs::read_to_string(args_file).unwrap();
    let mut lines = text.lines();
    let args: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut cmd = bin();
    cmd.current_dir(fixtures())
        .env("DIB_REPO_PATH", dib_repo())
        .args(&args)
        .arg("--print-elements");
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let (k, v) = l.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}: exit {:?}: {}",
        args_file.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read_to_string(args_file.with_extension("expected"))
        .unwrap_or_else(|e| panic!("{}: {e}", args_file.with_extension("expected").display()));
    (String::from_utf8(out.stdout).unwrap(), expected)
}

#[test]
fn print_elements_matches_the_fixtures() {
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "args"))
        .collect();
    entries.sort();
    for f in entries {
        let (got, want) = run_fixture(&f);
        assert_eq!(got, want, "fixture {}", f.display());
        n += 1;
    }
    assert!(n >= 10, "only {n} fixtures");
}
