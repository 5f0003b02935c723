//! The crate's one error type.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while assembling elements or building an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A host program failed.
    #[error("{program}: {status}: {stderr}")]
    Command {
        /// The command line.
        program: String,
        /// Exit status (or "not started").
        status: String,
        /// The tail of its error output.
        stderr: String,
    },
    /// No Debian mirror could be found.
    #[error("no {distro} mirror for {release}: set DIB_DISTRIBUTION_MIRROR or add the release to the apt sources")]
    NoMirror {
        /// Distribution.
        distro: String,
        /// Release.
        release: String,
    },
    /// The element names a distribution debootstrap does not build.
    #[error("element `{element}`: {reason}")]
    UnsupportedDistro {
        /// The element.
        element: String,
        /// Why.
        reason: String,
    },
    /// Bad block-device configuration.
    #[error("block-device configuration {source_name}: {reason}")]
    BlockDevice {
        /// Where the configuration came from (file, element or variable).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A libguestfs operation failed.
    #[error("libguestfs: {0}")]
    Guest(#[from] guest_tools::Error),
    /// A bad builder option (names the option, as the CLI spells it).
    #[error("{option}: {reason}")]
    Option {
        /// The option (`-t`, `--image-size`, ...).
        option: String,
        /// What is wrong.
        reason: String,
    },
}
