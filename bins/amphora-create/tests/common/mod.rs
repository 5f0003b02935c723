//! Helpers shared by the `amphora-create` tests: the diskimage-builder
//! reference venv (`scripts/dib-venv.sh`).
#![allow(dead_code)]

use std::path::PathBuf;

/// `site-packages` of the diskimage-builder reference venv (`$DIB_VENV`,
/// else `~/.cache/openstack-image-tools/dib-venv`), usable as
/// `DIB_REPO_PATH`; panics telling to run `scripts/dib-venv.sh` when absent.
pub fn dib_repo() -> PathBuf {
    let venv = std::env::var_os("DIB_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/openstack-image-tools/dib-venv")
        });
    for e in std::fs::read_dir(venv.join("lib"))
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/dib-venv.sh", venv.display()))
        .flatten()
    {
        let sp = e.path().join("site-packages");
        if sp.join("diskimage_builder/elements").is_dir() {
            return sp;
        }
    }
    panic!(
        "no diskimage-builder in {}: run scripts/dib-venv.sh",
        venv.display()
    );
}
