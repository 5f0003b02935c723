//! The crate's one error type, each variant carrying the exit code of
//! Octavia's `diskimage-create.sh` for the same failure.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that stops `amphora-create`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `-h`/`--help`, an unknown option, a missing option argument or a
    /// stray positional argument: the usage text, exit 1.
    #[error("{message}")]
    Usage {
        /// Why the usage is shown (empty for `-h`).
        message: String,
    },
    /// `-v`: the version line, exit 1 (as the original).
    #[error("Amphora disk image creation script version: {version}")]
    Version {
        /// The version printed.
        version: String,
    },
    /// An option value the original refuses with exit 3.
    #[error("Error: {message} (option {option})")]
    InvalidValue {
        /// The option, e.g. `-a`.
        option: String,
        /// The original's message without its `Error: ` prefix.
        message: String,
    },
    /// A check the original fails with exit 1 (image size too small for the
    /// base OS, missing `DIB_LOCAL_IMAGE`, SELinux enforcing with `-r`).
    #[error("{message}")]
    Check {
        /// The message.
        message: String,
    },
    /// A required host package or tool is missing (exit 1).
    #[error("Required package {package} is not installed.  Exiting.\nBinary dependencies on this platform are: {list}")]
    MissingPackage {
        /// The missing package.
        package: String,
        /// The platform's whole list.
        list: String,
    },
    /// An element directory the build needs is missing (exit 1).
    #[error("ERROR: {what} not found at: {path}. Exiting.")]
    MissingElements {
        /// Which tree (Octavia elements, diskimage-builder elements).
        what: String,
        /// Where it was looked for.
        path: String,
    },
    /// The host OS cannot be identified (exit 2).
    #[error("Unknown Host OS. Impossible to build images.\nAborting")]
    UnknownHostOs,
    /// Element expansion or the build failed.
    #[error(transparent)]
    Diskimage(#[from] diskimage::Error),
    /// Image inspection failed.
    #[error(transparent)]
    GuestTools(#[from] guest_tools::Error),
    /// An image test failed (`image-tests.sh`'s ERROR lines), exit 1.
    #[error("ERROR: {message}")]
    ImageTest {
        /// What did not match.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Running a host program failed.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code the original uses for this failure: 3 for an
    /// invalid option value, 2 for an unknown host OS, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::InvalidValue { .. } => 3,
            Error::UnknownHostOs => 2,
            _ => 1,
        }
    }

    /// Whether the usage text follows the message.
    pub fn shows_usage(&self) -> bool {
        matches!(self, Error::Usage { .. })
    }
}
