//! The phase executor on real scripts: DIB's phase order, dib-run-parts
//! ordering (compared with DIB's own `dib-run-parts --list` when the
//! reference venv is there), environment.d sourcing and environment
//! filtering on the host, a failing hook, and the in-chroot phases on a tiny
//! real root (bash + a few binaries and their libraries, no debootstrap)
//! with the native package-installs, install-static and install-bin steps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use diskimage::executor::filter_environment;
use diskimage::phases::{merge_hooks, NativeStep, PHASES};
use diskimage::{BuildPlan, ElementTree, Error, ExecOptions, Executor, Step};

fn exec_tree() -> ElementTree {
    ElementTree::discover(&[common::fixtures().join("exec-elements")]).unwrap()
}

fn plan(elements: &[&str], env: BTreeMap<String, String>) -> BuildPlan {
    let tree = exec_tree();
    let req: Vec<String> = elements.iter().map(|s| s.to_string()).collect();
    BuildPlan::new(tree.expand(&req).unwrap(), env, &[]).unwrap()
}

fn host_env() -> BTreeMap<String, String> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.push(("DIB_FX_VAR".into(), "from-caller".into()));
    vars.push(("FX_NOT_PASSED".into(), "secret-ish".into()));
    vars.push(("ARCH".into(), "amd64".into()));
    filter_environment(vars)
}

fn opts(dir: &Path) -> ExecOptions {
    ExecOptions {
        build_dir: dir.join("build"),
        trace: 0,
        log: Some(dir.join("build.log")),
        image_cache: dir.join("cache"),
    }
}

#[test]
fn phases_run_in_dib_order() {
    let dirs: Vec<&str> = PHASES.iter().map(|p| p.dir).collect();
    assert_eq!(
        dirs,
        [
            "root.d",
            "extra-data.d",
            "pre-install.d",
            "install.d",
            "post-install.d",
            "post-root.d",
            "block-device.d",
            "pre-finalise.d",
            "finalise.d",
            "cleanup.d"
        ]
    );
    let in_target: Vec<&str> = PHASES
        .iter()
        .filter(|p| p.in_target)
        .map(|p| p.dir)
        .collect();
    assert_eq!(
        in_target,
        ["pre-install.d", "install.d", "post-install.d", "finalise.d"]
    );
    let p = plan(&["fx-os", "fx-app"], host_env());
    let order: Vec<&str> = p.phases.iter().map(|p| p.phase.dir).collect();
    assert_eq!(order, dirs);
}

#[test]
fn run_parts_order_matches_dib_run_parts() {
    let p = plan(&["fx-os", "fx-order"], host_env());
    let names: Vec<&str> = p
        .phase("root.d")
        .unwrap()
        .steps
        .iter()
        .map(Step::name)
        .collect();
    assert_eq!(
        names,
        [
            "_under",
            "abc",
            "9-nine",
            "010-zero-ten",
            "10-ten",
            "50-record-env",
            "100-hundred"
        ]
    );
    let skipped: Vec<&str> = p
        .phase("root.d")
        .unwrap()
        .skipped
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(skipped, ["20-bad.name", "30-noexec"]);

    let Some(pkg) = common::dib_package() else {
        common::no_venv("run_parts_order_matches_dib_run_parts");
        return;
    };
    // DIB's own dib-run-parts over the same merged directory
    let d = tempfile::tempdir().unwrap();
    let ex = Executor::prepare(&p, &d.path().join("root"), opts(d.path())).unwrap();
    let out = Command::new("bash")
        .arg(pkg.join("lib/dib-run-parts"))
        .arg("--list")
        .arg(ex.hooks_path().join("root.d"))
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(out.status.success());
    let dib: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            Path::new(l)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(dib, names);
}

#[test]
fn host_phases_source_environment_and_filter_variables() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let p = plan(&["fx-os", "fx-order"], host_env());
    let o = opts(d.path());
    let ex = Executor::prepare(&p, &root, o.clone()).unwrap();
    let rep = ex.run_phase("root.d").unwrap();
    assert_eq!(rep.ran.len(), 7);
    let order = std::fs::read_to_string(o.build_dir.join("order")).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        [
            "_under",
            "abc",
            "9-nine",
            "010-zero-ten",
            "10-ten",
            "100-hundred"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/fx-os-release")).unwrap(),
        "fx-os\n"
    );

    let env: BTreeMap<String, String> = std::fs::read_to_string(o.build_dir.join("root.d.env"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(env["TARGET_ROOT"], root.display().to_string());
    assert_eq!(env["TMP_MOUNT_PATH"], root.display().to_string());
    assert_eq!(env["TMP_HOOKS_PATH"], ex.hooks_path().display().to_string());
    assert_eq!(env["TMP_BUILD_DIR"], o.build_dir.display().to_string());
    assert_eq!(env["ARCH"], "amd64");
    assert_eq!(env["DIB_FX_VAR"], "from-caller");
    assert_eq!(env["DIB_FX_FROM_ENVD"], "envd:from-caller");
    assert_eq!(env["DISTRO_NAME"], "debian");
    assert_eq!(env["FX_ENV_ORDER"], "05 20");
    assert_eq!(env["DIB_DEBUG_TRACE"], "0");
    assert_eq!(env["IMAGE_ELEMENT"], "fx-os fx-order");
    assert!(!env.contains_key("FX_NOT_PASSED"));
    assert!(!env.contains_key("NOT_EXPORTED"));
    // the sourcing is traced into the build log, as dib-run-parts does
    let log = std::fs::read_to_string(d.path().join("build.log")).unwrap();
    assert!(
        log.contains("Sourcing environment file") && log.contains("+ export DISTRO_NAME=debian"),
        "{log}"
    );

    // TARGET_ROOT only in root.d and cleanup.d
    let base = ex.base_environment(diskimage::phases::phase("extra-data.d").unwrap());
    assert!(!base.contains_key("TARGET_ROOT"));
    assert!(ex
        .base_environment(diskimage::phases::phase("cleanup").unwrap())
        .contains_key("TARGET_ROOT"));
}

#[test]
fn a_failing_hook_stops_the_phase_and_is_named() {
    let d = tempfile::tempdir().unwrap();
    let p = plan(&["fx-os", "fx-fail"], host_env());
    let o = opts(d.path());
    let ex = Executor::prepare(&p, &d.path().join("root"), o.clone()).unwrap();
    let err = ex.run_phase("extra-data").unwrap_err();
    let Error::Script {
        phase,
        script,
        element,
        status,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (phase.as_str(), script.as_str(), element.as_str()),
        ("extra-data.d", "50-fail", "fx-fail")
    );
    assert!(status.contains('3'), "{status}");
    assert!(!o.build_dir.join("after-fail").exists());
    assert!(std::fs::read_to_string(d.path().join("build.log"))
        .unwrap()
        .contains("failing"));
}

#[test]
fn duplicate_hooks_are_refused() {
    let d = tempfile::tempdir().unwrap();
    for e in ["one", "two"] {
        let h = d.path().join(e).join("install.d");
        std::fs::create_dir_all(&h).unwrap();
        std::fs::write(h.join("50-same"), "#!/bin/sh\n").unwrap();
    }
    let tree = ElementTree::discover(&[d.path().to_path_buf()]).unwrap();
    let els = vec![
        tree.get("one").unwrap().clone(),
        tree.get("two").unwrap().clone(),
    ];
    let err = merge_hooks(&els).unwrap_err();
    assert_eq!(
        err.to_string(),
        "There is a duplicated hook in your elements: install.d/50-same (elements one and two)"
    );
}

#[test]
fn package_installs_become_native_steps() {
    let p = plan(&["fx-os", "fx-app"], host_env());
    let steps = |ph: &str| -> Vec<(String, Option<NativeStep>)> {
        p.phase(ph)
            .unwrap()
            .steps
            .iter()
            .map(|s| match s {
                Step::Script(h) => (h.name.clone(), None),
                Step::Native { name, step, .. } => (name.clone(), Some(step.clone())),
            })
            .collect()
    };
    let install = steps("install.d");
    let names: Vec<&str> = install.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "01-package-installs",
            "10-install-static-files",
            "50-fx-app-install",
            "60-fx-app-source",
            "99-package-uninstalls"
        ]
    );
    let Some(NativeStep::PackageInstalls {
        uninstall: false,
        packages,
    }) = &install[0].1
    else {
        panic!()
    };
    let pk: Vec<&str> = packages.iter().map(|r| r.package.as_str()).collect();
    assert_eq!(pk, ["generic-tool", "build-dep"]);
    let Some(NativeStep::PackageInstalls {
        uninstall: true,
        packages,
    }) = &install[4].1
    else {
        panic!()
    };
    assert_eq!(
        packages
            .iter()
            .map(|r| r.package.as_str())
            .collect::<Vec<_>>(),
        ["build-dep"]
    );
    let pre: Vec<String> = steps("pre-install.d").into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        pre,
        [
            "01-install-bin",
            "10-package-installs",
            "99-package-uninstalls"
        ]
    );
    assert!(p.describe().contains("50-fx-app-install [fx-app]"));
}

/// A tiny real root: bash, env, cat and their shared libraries.
fn tiny_root(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    for bin in ["/bin/bash", "/usr/bin/env", "/bin/cat", "/bin/sleep"] {
        let out = Command::new("ldd").arg(bin).output().unwrap();
        let mut files = vec![bin.to_string()];
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(p) = l.split_whitespace().find(|w| w.starts_with('/')) {
                files.push(p.to_string());
            }
        }
        for f in files {
            let st = Command::new("cp")
                .args(["-L", "--parents", &f])
                .arg(root)
                .status()
                .unwrap();
            assert!(st.success(), "cp {f}");
        }
    }
    std::fs::create_dir_all(root.join("tmp")).unwrap();
}

fn mounts_under(root: &Path) -> Vec<String> {
    let root = std::fs::canonicalize(root).unwrap().display().to_string();
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(1).map(String::from))
        .filter(|m| m.starts_with(&format!("{root}/")))
        .collect()
}

#[test]
fn in_chroot_phases_on_a_tiny_root() {
    if unsafe_not_root() {
        eprintln!("in_chroot_phases_on_a_tiny_root: needs root (chroot, mount); skipped");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    tiny_root(&root);
    let p = plan(&["fx-os", "fx-app"], host_env());
    let ex = Executor::prepare(&p, &root, opts(d.path())).unwrap();
    for ph in [
        "extra-data.d",
        "pre-install.d",
        "install.d",
        "post-install.d",
    ] {
        ex.run_phase(ph).unwrap_or_else(|e| {
            panic!(
                "{ph}: {e}\n{}",
                std::fs::read_to_string(d.path().join("build.log")).unwrap_or_default()
            )
        });
        assert!(
            mounts_under(&root).is_empty(),
            "{ph} left mounts: {:?}",
            mounts_under(&root)
        );
    }
    let inst = std::fs::read_to_string(root.join("fx-install.out")).unwrap();
    let lines: Vec<&str> = inst.lines().collect();
    assert_eq!(
        lines[0],
        "install envd:from-caller debian /root extra envd:from-caller"
    );
    assert_eq!(lines[1], "proc-mounted");
    assert!(
        lines[2].starts_with("path /tmp/in_target.d/bin:"),
        "{}",
        lines[2]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("fx-post.out")).unwrap(),
        "post 05 20 not-exported\n"
    );
    // native steps: bin installed, static copied, packages mapped through pkg-map
    assert!(root.join("usr/local/bin/install-packages").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/fx/fx-app.conf")).unwrap(),
        "fx static file\n"
    );
    let pk = std::fs::read_to_string(root.join("fx-packages.log")).unwrap();
    assert_eq!(
        pk.lines().collect::<Vec<_>>(),
        ["early-real", "real-tool build-dep", "-e build-dep"]
    );
    assert!(!root.join("tmp/in_target.d").exists());
    // install-types: the source variant (the default) ran, linked from its sub-directory
    assert_eq!(
        std::fs::read_to_string(root.join("fx-installtype.out")).unwrap(),
        "source\n"
    );

    // a failing in-chroot hook still unmounts everything
    std::fs::write(root.join("fx-post.out"), "").unwrap();
    let hooks_post = ex.hooks_path().join("post-install.d/10-fx-post");
    std::fs::write(&hooks_post, "#!/bin/bash\nexit 7\n").unwrap();
    let err = ex.run_phase("post-install.d").unwrap_err();
    assert!(
        err.to_string()
            .contains("10-fx-post (element fx-app) failed"),
        "{err}"
    );
    assert!(
        mounts_under(&root).is_empty(),
        "left mounts: {:?}",
        mounts_under(&root)
    );
}

fn unsafe_not_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() != "0")
        .unwrap_or(true)
}

#[test]
fn trace_level_reaches_hooks_and_lists_ignored_files() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let p = plan(&["fx-os", "fx-order"], host_env());
    let mut o = opts(d.path());
    o.trace = 2;
    let ex = Executor::prepare(&p, &root, o.clone())
        .unwrap()
        .skip_scripts(["root.d/10-ten".to_string()]);
    ex.run_phase("root.d").unwrap();
    let env = std::fs::read_to_string(o.build_dir.join("root.d.env")).unwrap();
    assert!(env.lines().any(|l| l == "DIB_DEBUG_TRACE=2"), "{env}");
    let log = std::fs::read_to_string(d.path().join("build.log")).unwrap();
    assert!(
        log.contains(
            "Ignoring non-executable files or non-conforming names: 20-bad.name 30-noexec"
        ),
        "{log}"
    );
}

#[test]
fn install_types_pick_the_variant_per_element() {
    let names = |env: BTreeMap<String, String>| -> Vec<String> {
        plan(&["fx-os", "fx-app"], env)
            .phase("install.d")
            .unwrap()
            .steps
            .iter()
            .map(|s| s.name().to_string())
            .collect()
    };
    let n = names(host_env());
    assert!(
        n.contains(&"60-fx-app-source".into())
            && !n.contains(&"60-fx-app-package".into())
            && !n.contains(&"70-other".into()),
        "{n:?}"
    );
    let mut e = host_env();
    e.insert("DIB_INSTALLTYPE_fx_app".into(), "package".into());
    let n = names(e);
    assert!(
        n.contains(&"60-fx-app-package".into()) && !n.contains(&"60-fx-app-source".into()),
        "{n:?}"
    );
    let mut e = host_env();
    e.insert("DIB_DEFAULT_INSTALLTYPE".into(), "package".into());
    let n = names(e);
    assert!(
        n.contains(&"60-fx-app-package".into()) && n.contains(&"70-other".into()),
        "{n:?}"
    );
}

#[test]
fn plan_serialises_without_secrets() {
    let mut env = host_env();
    env.insert("DIB_PASSWORD".into(), "hunter2-do-not-show".into());
    let p = plan(&["fx-os", "fx-app"], env);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["environment"]["DIB_PASSWORD"], "<redacted>");
    assert_eq!(json["environment"]["DIB_FX_VAR"], "from-caller");
    assert!(!json.to_string().contains("hunter2"));
    assert_eq!(json["elements"][0]["name"], "fx-os");
    assert_eq!(json["phases"][3]["phase"]["dir"], "install.d");
    assert_eq!(
        json["packages"]["phases"]["install.d"]["install"][0]["package"],
        "generic-tool"
    );
}

#[test]
fn static_directories_of_two_elements_merge() {
    let d = tempfile::tempdir().unwrap();
    for (e, f) in [("one", "a.conf"), ("two", "b.conf")] {
        let st = d.path().join(e).join("static/etc/app");
        std::fs::create_dir_all(&st).unwrap();
        std::fs::write(st.join(f), e).unwrap();
    }
    let tree = ElementTree::discover(&[d.path().to_path_buf()]).unwrap();
    let els = vec![
        tree.get("one").unwrap().clone(),
        tree.get("two").unwrap().clone(),
    ];
    let p = BuildPlan::new(els, host_env(), &[]).unwrap();
    let root = d.path().join("root");
    let ex = Executor::prepare(&p, &root, opts(d.path())).unwrap();
    let merged = ex.hooks_path().join("static/etc/app");
    assert_eq!(
        std::fs::read_to_string(merged.join("a.conf")).unwrap(),
        "one"
    );
    assert_eq!(
        std::fs::read_to_string(merged.join("b.conf")).unwrap(),
        "two"
    );
}

/// Every mount point at or under `dir` in this process's (the host's)
/// mount table, from `/proc/self/mountinfo`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap().display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .collect()
}

/// Processes still in the mount namespace `ns` (`mnt:[inode]`).
fn namespace_members(ns: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            std::fs::read_link(e.path().join("ns/mnt"))
                .is_ok_and(|l| l.to_string_lossy() == ns.trim())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Wait (the kernel reaps a dead namespace asynchronously) until no
/// process is left in `ns`; the processes still there otherwise.
fn wait_namespace_gone(ns: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = namespace_members(ns);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A hook's leftover mount and the executor's chroot mounts live in the
/// build's private namespace: the host never sees them, and after a failed
/// phase and the executor's end nothing is mounted and no process is left.
#[test]
fn a_failed_build_leaves_no_mount_behind() {
    if unsafe_not_root() {
        eprintln!("a_failed_build_leaves_no_mount_behind: needs root; skipped");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    tiny_root(&root);
    let p = plan(&["fx-os", "fx-mounts"], host_env());
    let o = opts(d.path());
    let ex = Executor::prepare(&p, &root, o.clone()).unwrap();
    ex.run_phase("extra-data.d").unwrap();
    let ns = std::fs::read_to_string(o.build_dir.join("fx-mount-ns")).unwrap();
    assert_ne!(
        std::fs::read_link("/proc/self/ns/mnt")
            .unwrap()
            .to_string_lossy(),
        ns.trim(),
        "the hook ran in the host's mount namespace"
    );
    // The tmpfs the hook left is not on the host: its file is not visible.
    assert!(host_mounts_under(d.path()).is_empty());
    assert!(root.join("fx-mnt").is_dir() && !root.join("fx-mnt/marker").exists());
    // Inside the namespace the hook's mount is there until the executor
    // unmounts what hooks left (before the tree becomes the image).
    let ns_mounts = || ex.namespace().unwrap().mounts_under(&root);
    assert_eq!(ns_mounts(), vec![root.join("fx-mnt")]);
    ex.unmount_hook_mounts().unwrap();
    assert!(ns_mounts().is_empty(), "{:?}", ns_mounts());
    ex.run_phase("extra-data.d").unwrap();
    let err = ex.run_phase("pre-install.d").unwrap_err();
    assert!(
        matches!(&err, Error::Script { script, .. } if script == "50-fail-or-hang"),
        "{err}"
    );
    assert!(host_mounts_under(d.path()).is_empty());
    drop(ex);
    assert_eq!(wait_namespace_gone(&ns), Vec::<String>::new());
    assert!(host_mounts_under(d.path()).is_empty());
}

/// SIGKILL of a build in the middle of an in-chroot phase (a hook sleeping
/// with /proc, /sys, /dev and the hooks mounted in the chroot, and a
/// hook's tmpfs left from an earlier phase): the namespace dies with the
/// build, so no mount and no process of it remain.
#[test]
fn a_killed_build_leaves_no_mount_behind() {
    if unsafe_not_root() {
        eprintln!("a_killed_build_leaves_no_mount_behind: needs root; skipped");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "killed_build_child", "--ignored", "--nocapture"])
        .env("FX_KILLED_BUILD_DIR", d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let root = d.path().join("root");
    let hanging = root.join("fx-hanging");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !hanging.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "the build ended ({st}) before its hook hung: {}",
                std::fs::read_to_string(d.path().join("build.log")).unwrap_or_default()
            );
        }
        assert!(std::time::Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ns = std::fs::read_to_string(d.path().join("build/fx-mount-ns")).unwrap();
    assert!(!namespace_members(&ns).is_empty());
    assert!(host_mounts_under(d.path()).is_empty());
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert_eq!(wait_namespace_gone(&ns), Vec::<String>::new());
    assert!(host_mounts_under(d.path()).is_empty());
    assert!(!root.join("proc/self").exists(), "/proc still mounted");
}

/// The build `a_killed_build_leaves_no_mount_behind` kills (run by it in a
/// child process; does nothing useful on its own).
#[test]
#[ignore = "helper process of a_killed_build_leaves_no_mount_behind"]
fn killed_build_child() {
    let Some(dir) = std::env::var_os("FX_KILLED_BUILD_DIR") else {
        return;
    };
    let d = std::path::PathBuf::from(dir);
    let root = d.join("root");
    tiny_root(&root);
    let mut env = host_env();
    env.insert("DIB_FX_HANG".into(), "1".into());
    let p = plan(&["fx-os", "fx-mounts"], env);
    let ex = Executor::prepare(&p, &root, opts(&d)).unwrap();
    ex.run_phase("extra-data.d").unwrap();
    // Hangs until the parent kills this process.
    let _ = ex.run_phase("pre-install.d");
}
