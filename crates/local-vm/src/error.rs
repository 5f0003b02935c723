//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while running a local VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A VM name that cannot be used as a file name.
    #[error("invalid VM name `{name}`: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A boot specification value is unusable (size, user, key line).
    #[error("VM `{name}`: invalid {field}: {reason}")]
    InvalidSpec {
        /// The VM.
        name: String,
        /// Which field of the [`crate::BootSpec`].
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The base image is missing or not a usable disk image.
    #[error("VM `{name}`: base image: {source}")]
    BaseImage {
        /// The VM.
        name: String,
        /// What guest-tools found.
        #[source]
        source: guest_tools::Error,
    },
    /// The VM's directory already exists: a VM of that name was not cleaned up.
    #[error("VM `{name}`: {} already exists (delete the old VM first)", path.display())]
    AlreadyExists {
        /// The VM.
        name: String,
        /// Its directory.
        path: PathBuf,
    },
    /// A guest-tools operation (overlay, key injection, conversion) failed.
    #[error("VM `{name}`: {op}: {source}")]
    GuestTools {
        /// The VM.
        name: String,
        /// What we were doing.
        op: &'static str,
        /// The guest-tools error.
        #[source]
        source: guest_tools::Error,
    },
    /// The image has no operating system to inject the key into.
    #[error("VM `{name}`: cannot inject the SSH key: no operating system found in {}", image.display())]
    NoOs {
        /// The VM.
        name: String,
        /// The overlay inspected.
        image: PathBuf,
    },
    /// The login user is not in the image's `/etc/passwd`.
    #[error("VM `{name}`: cannot inject the SSH key: user `{user}` is not in /etc/passwd of {}", image.display())]
    NoSuchUser {
        /// The VM.
        name: String,
        /// The user asked for.
        user: String,
        /// The overlay inspected.
        image: PathBuf,
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
    /// `qemu-system-x86_64` could not be started or stopped at once.
    #[error("VM `{name}`: qemu-system-x86_64 {what}: {detail}")]
    Qemu {
        /// The VM.
        name: String,
        /// What failed (`not started`, `exited at start (exit status: 1)`).
        what: String,
        /// The error, or the last lines of QEMU's standard error.
        detail: String,
    },
    /// The VM stopped before it became active.
    #[error("VM `{name}` died during boot ({status}); serial console tail:\n{serial_tail}")]
    DiedDuringBoot {
        /// The VM.
        name: String,
        /// QEMU's exit status.
        status: String,
        /// The last lines of the serial console log.
        serial_tail: String,
    },
    /// No SSH banner within the timeout.
    #[error("VM `{name}` not active after {timeout:?} (no SSH banner on 127.0.0.1:{port}); serial console tail:\n{serial_tail}")]
    NotActive {
        /// The VM.
        name: String,
        /// The forwarded port.
        port: u16,
        /// How long we waited.
        timeout: Duration,
        /// The last lines of the serial console log.
        serial_tail: String,
    },
    /// Talking QMP to QEMU failed (socket, protocol, timeout).
    #[error("QMP {}: {reason}", socket.display())]
    Qmp {
        /// The QMP socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// QEMU answered a QMP command with an error.
    #[error("QMP command `{command}` failed: {class}: {desc}")]
    QmpCommand {
        /// The command sent.
        command: String,
        /// The error class (`GenericError`, `CommandNotFound`, ...).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The operation needs a stopped VM.
    #[error("VM `{name}` is still running: {op} needs a stopped VM (shut it down first)")]
    Running {
        /// The VM.
        name: String,
        /// The operation refused.
        op: &'static str,
    },
    /// The VM was deleted: its disk is gone.
    #[error("VM `{name}` was deleted: cannot {op}")]
    Deleted {
        /// The VM.
        name: String,
        /// The operation refused.
        op: &'static str,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
