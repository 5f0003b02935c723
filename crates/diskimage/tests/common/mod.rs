//! Shared helpers of the diskimage element tests: the fixture directory and
//! the diskimage-builder reference venv (`scripts/dib-venv.sh`).
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace's `fixtures/diskimage`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/diskimage")
}

/// The reference venv, when installed.
pub fn dib_venv() -> Option<PathBuf> {
    let venv = std::env::var_os("DIB_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::home_dir()
                .unwrap_or_default()
                .join(".cache/openstack-image-tools/dib-venv")
        });
    venv.join("bin/disk-image-create").exists().then_some(venv)
}

/// `site-packages/diskimage_builder` inside the venv.
pub fn dib_package() -> Option<PathBuf> {
    let lib = dib_venv()?.join("lib");
    for e in std::fs::read_dir(&lib).ok()?.flatten() {
        let p = e.path().join("site-packages/diskimage_builder");
        if p.is_dir() {
            return Some(p);
        }
    }
    None
}

/// DIB's own element tree.
pub fn dib_elements() -> Option<PathBuf> {
    dib_package().map(|p| p.join("elements"))
}

/// Say why a reference comparison is skipped (the venv is installed by
/// `scripts/setup.sh`; without it only the recorded expectations are used).
pub fn no_venv(test: &str) {
    eprintln!("{test}: diskimage-builder venv not found (run scripts/dib-venv.sh); live comparison skipped");
}
