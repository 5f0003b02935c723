//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while working on a disk image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input image does not exist.
    #[error("{}: no such file", path.display())]
    MissingFile {
        /// The path given.
        path: PathBuf,
    },
    /// The input is not a disk image (unreadable by `qemu-img`, a directory, or far too small).
    #[error("{}: not a disk image: {reason}", path.display())]
    NotADisk {
        /// The path given.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The image has no partitions, no filesystems or no data at all.
    #[error("{}: empty disk: {reason}", path.display())]
    EmptyDisk {
        /// The path given.
        path: PathBuf,
        /// What was found missing.
        reason: String,
    },
    /// Filesystems were found but no operating system could be inspected.
    #[error("{}: no operating system found in the image (filesystems: {filesystems})", path.display())]
    NoOs {
        /// The path given.
        path: PathBuf,
        /// The filesystems seen, `device:type` comma-separated.
        filesystems: String,
    },
    /// The image (or a filesystem in it) is encrypted.
    #[error("{}: encrypted image ({what}); decrypt it first", path.display())]
    Encrypted {
        /// The path given.
        path: PathBuf,
        /// What is encrypted (qcow2 encryption or the LUKS device).
        what: String,
    },
    /// The image is opened for writing by another process (a running VM, another tool).
    #[error("{}: image is in use by another process: {detail}", path.display())]
    InUse {
        /// The path given.
        path: PathBuf,
        /// The locking message from `qemu-img`.
        detail: String,
    },
    /// The disk layout cannot be shrunk (LVM root, root not last, not ext2/3/4, ...).
    #[error("cannot shrink {device}: {reason} (use --no-shrink to skip shrinking)")]
    CannotShrink {
        /// The root device inside the appliance.
        device: String,
        /// Why.
        reason: String,
    },
    /// A sysprep operation list names an unknown operation.
    #[error("--operations: unknown operation `{name}` (see --list-operations)")]
    UnknownOperation {
        /// The name given.
        name: String,
    },
    /// A size argument could not be parsed.
    #[error("invalid size `{value}`: {reason}")]
    BadSize {
        /// The text given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A libguestfs call failed.
    #[error("libguestfs {op}: {message}")]
    Guestfs {
        /// What we were doing.
        op: String,
        /// The libguestfs error message.
        message: String,
    },
    /// An external program (qemu-img, qemu-system) failed.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// Program and arguments.
        program: String,
        /// Exit status.
        status: String,
        /// Last lines of its standard error.
        stderr: String,
    },
    /// Local I/O failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Output of an external program could not be understood.
    #[error("cannot parse output of {program}: {reason}")]
    Parse {
        /// The program.
        program: String,
        /// What was wrong.
        reason: String,
    },
    /// The session's worker thread stopped (a libguestfs call panicked or the session was closed).
    #[error("libguestfs session worker is gone")]
    WorkerGone,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Extract the human message from a `guestfs::Error` (its fields are private; only `Debug` exists).
pub(crate) fn guestfs_message(e: &guestfs::Error) -> String {
    let dbg = format!("{e:?}");
    if let Some(start) = dbg.find("message: \"") {
        let rest = &dbg[start + 10..];
        if let Some(end) = rest.find("\", errno") {
            return rest[..end].replace("\\n", " ").replace("\\\"", "\"");
        }
    }
    dbg
}

/// Extension to turn `guestfs::Error` into [`Error::Guestfs`] with the operation named.
pub(crate) trait GfsContext<T> {
    /// Attach what we were doing.
    fn ctx(self, op: impl FnOnce() -> String) -> Result<T>;
}

impl<T> GfsContext<T> for std::result::Result<T, guestfs::Error> {
    fn ctx(self, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Guestfs {
            op: op(),
            message: guestfs_message(&e),
        })
    }
}
