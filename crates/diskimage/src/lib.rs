//! diskimage-builder compatible element assembly and image building.
//!
//! Owns: element discovery and dependency expansion, phase ordering and the
//! build of a root filesystem into a disk image.
//! Must not: upload images or talk to OpenStack.

/// Errors raised while assembling or building an image.
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
