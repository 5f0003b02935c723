//! Cache keys for element builds: one key per phase that changes the root
//! tree, chained, so a rebuild restores the tree after the last phase whose
//! inputs did not change and reruns only the phases from the first change.
//!
//! Inputs shared by every phase (element names and order, the `DIB_*` and
//! documented variables, `environment.d`, `element-deps`,
//! `element-provides` and any file of unknown use) go into the first key;
//! each phase then adds every element's `<phase>.d` directory and the
//! element files first read in that phase ([`first_reader`]): `pkg-map`,
//! `svc-map` and `source-repository-*` in `extra-data.d` (where the native
//! steps copy or fetch them), `bin/` and `package-installs.*` in
//! `pre-install.d` (install-bin, the first package installs), `static/` in
//! `install.d` (install-static). A README changes no key. Changing one
//! element's `install.d` script or its package list therefore keeps the
//! snapshots of the phases before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::builder::Stage;
use crate::cache::KeyChain;
use crate::cmd::io;
use crate::error::Result;

/// The phases run before the disk exists, in order; the tree is
/// snapshotted after each.
pub const TREE_PHASES: &[&str] = &[
    "root",
    "extra-data",
    "pre-install",
    "install",
    "post-install",
    "post-root",
];

/// Every phase directory name (`<phase>.d`), tree phases and later ones.
pub const PHASE_DIRS: &[&str] = &[
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

/// Keys of the tree phases for `elements` (name, directory) in build order.
/// `seed` carries what came before the phases (the bootstrap key, or the
/// base image), `vars` the variables passed to the elements.
pub fn phase_keys(
    seed: &str,
    elements: &[(String, PathBuf)],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<Stage>> {
    let mut chain = KeyChain::new(seed);
    for (k, v) in vars {
        chain.push_str("var", &format!("{k}={v}"));
    }
    let mut sorted: Vec<&(String, PathBuf)> = elements.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    chain.push_str(
        "elements",
        &elements
            .iter()
            .map(|e| e.0.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    );
    for (name, dir) in &sorted {
        for entry in shared_entries(dir)? {
            if first_reader(&entry).is_none() {
                chain.push_tree(&format!("{name}/{}", entry.display()), &dir.join(&entry))?;
            }
        }
    }
    let mut stages = Vec::new();
    for phase in TREE_PHASES {
        for (name, dir) in &sorted {
            let d = dir.join(format!("{phase}.d"));
            if d.exists() {
                chain.push_tree(&format!("{name}/{phase}.d"), &d)?;
            }
            for entry in shared_entries(dir)? {
                if first_reader(&entry) == Some(phase) {
                    chain.push_tree(&format!("{name}/{}", entry.display()), &dir.join(&entry))?;
                }
            }
        }
        stages.push(Stage {
            name: format!("{phase}.d"),
            key: chain.key(),
        });
    }
    Ok(stages)
}

/// The tree phase that first reads an element's top-level `entry` (other
/// than a phase directory), when it is not every phase's input; see the
/// module documentation. `Some("")` for documentation, which no phase reads.
pub fn first_reader(entry: &Path) -> Option<&'static str> {
    let name = entry.to_str()?;
    if name.starts_with("README") {
        return Some("");
    }
    if name.starts_with("source-repository-") {
        return Some("extra-data");
    }
    match name {
        "pkg-map" | "svc-map" => Some("extra-data"),
        "bin" | "package-installs.yaml" | "package-installs.json" => Some("pre-install"),
        "static" => Some("install"),
        _ => None,
    }
}

/// Top-level entries of an element other than its phase directories, sorted.
fn shared_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !PHASE_DIRS.contains(&name.as_str()) {
            out.push(PathBuf::from(name));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn element(root: &Path, name: &str, files: &[(&str, &str)]) -> (String, PathBuf) {
        let d = root.join(name);
        for (rel, content) in files {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        std::fs::create_dir_all(&d).unwrap();
        (name.to_string(), d)
    }

    #[test]
    fn a_changed_install_script_keeps_earlier_phases() {
        let t = tempfile::tempdir().unwrap();
        let a = element(
            t.path(),
            "a",
            &[("root.d/10-x", "r"), ("install.d/50-y", "i1")],
        );
        let b = element(
            t.path(),
            "b",
            &[
                ("environment.d/10-e", "export X=1"),
                ("post-install.d/10-z", "p"),
            ],
        );
        let vars = BTreeMap::from([("DIB_RELEASE".to_string(), "bookworm".to_string())]);
        let k0 = phase_keys("seed", &[a.clone(), b.clone()], &vars).unwrap();
        assert_eq!(k0.len(), TREE_PHASES.len());
        assert_eq!(k0[3].name, "install.d");
        assert_eq!(
            k0,
            phase_keys("seed", &[a.clone(), b.clone()], &vars).unwrap()
        );

        std::fs::write(a.1.join("install.d/50-y"), "i2").unwrap();
        let k1 = phase_keys("seed", &[a.clone(), b.clone()], &vars).unwrap();
        assert_eq!(k1[..3], k0[..3], "root, extra-data, pre-install unchanged");
        assert!(k1[3..].iter().zip(&k0[3..]).all(|(x, y)| x.key != y.key));

        // A package list is first read in pre-install.d, static files in
        // install.d; a README is read by no phase.
        std::fs::write(b.1.join("package-installs.yaml"), "vim:\n").unwrap();
        let kp = phase_keys("seed", &[a.clone(), b.clone()], &vars).unwrap();
        assert_eq!(kp[..2], k1[..2], "root and extra-data unchanged");
        assert_ne!(kp[2], k1[2]);
        std::fs::create_dir_all(b.1.join("static/etc")).unwrap();
        std::fs::write(b.1.join("static/etc/x"), "x").unwrap();
        std::fs::write(b.1.join("README.rst"), "docs").unwrap();
        let ks = phase_keys("seed", &[a.clone(), b.clone()], &vars).unwrap();
        assert_eq!(ks[..3], kp[..3], "up to pre-install unchanged");
        assert_ne!(ks[3], kp[3]);
        std::fs::write(b.1.join("README.rst"), "other docs").unwrap();
        assert_eq!(
            phase_keys("seed", &[a.clone(), b.clone()], &vars).unwrap(),
            ks
        );
        let k1 = ks;

        // A shared file (environment.d) or a variable changes every phase.
        std::fs::write(b.1.join("environment.d/10-e"), "export X=2").unwrap();
        let k2 = phase_keys("seed", &[a.clone(), b.clone()], &vars).unwrap();
        assert_ne!(k2[0], k1[0]);
        let vars2 = BTreeMap::from([("DIB_RELEASE".to_string(), "trixie".to_string())]);
        assert_ne!(
            phase_keys("seed", &[a.clone(), b.clone()], &vars2).unwrap()[0],
            k2[0]
        );
        // Order of elements matters (it is the build order), and the seed.
        assert_ne!(
            phase_keys("seed", &[b.clone(), a.clone()], &vars).unwrap()[0],
            k2[0]
        );
        assert_ne!(phase_keys("other", &[a, b], &vars).unwrap()[0], k2[0]);
    }
}
