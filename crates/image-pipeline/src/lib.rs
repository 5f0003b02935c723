//! Create, test, publish and rotate VM images over a compute backend
//! (OpenStack or local QEMU) and SSH.
//!
//! Owns: the create/test/publish/rotate pipeline, its resource ledger and clean-up.
//! Must not: parse command lines; reach OpenStack other than through `openstack-client`.

/// Errors raised by the image pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
