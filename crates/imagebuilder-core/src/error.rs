//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in a bootstrap, a build or a build-all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A template is not a usable Packer JSON template.
    #[error("{file}: {message}")]
    Template {
        /// The template file.
        file: PathBuf,
        /// What is wrong (names the provisioner and key).
        message: String,
    },
    /// A provisioner type this builder cannot run natively.
    #[error(
        "{file}: provisioner {index} has type '{kind}', which imagebuilder does not run natively \
         (only 'shell' and 'file'); use --packer to run the template with packer"
    )]
    UnsupportedProvisioner {
        /// The template file.
        file: PathBuf,
        /// Position of the provisioner (0-based, as in Packer's messages).
        index: usize,
        /// Its `type`.
        kind: String,
    },
    /// A setting is missing or unusable (option, environment variable or config file key).
    #[error("{0}")]
    Config(String),
    /// An HTTP download failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What happened (status, size, I/O).
        message: String,
    },
    /// The downloaded file's digest is not in the checksum file.
    #[error("checksum not ok: the {digest} of {file} ({actual}) is not in {checksum_url}")]
    Checksum {
        /// The downloaded file.
        file: PathBuf,
        /// Digest type.
        digest: String,
        /// Its digest.
        actual: String,
        /// The checksum file's URL.
        checksum_url: String,
    },
    /// A local file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An OpenStack call failed.
    #[error("{action}: {source}")]
    OpenStack {
        /// What was being done (names the image or resource).
        action: String,
        /// The cause.
        source: Box<openstack_client::Error>,
    },
    /// The compute backend, SSH or ledger failed.
    #[error("{0}")]
    Pipeline(#[from] Box<image_pipeline::Error>),
    /// A provisioner step failed on the build VM.
    #[error("provisioner {index} ({kind}) failed: {message}")]
    Provision {
        /// Position of the provisioner.
        index: usize,
        /// Its type.
        kind: String,
        /// What failed (script, how it ended, log file).
        message: String,
    },
    /// An external program failed (packer, qemu-img).
    #[error("{program} {outcome}{detail}")]
    Command {
        /// Program name.
        program: String,
        /// How it ended.
        outcome: String,
        /// Extra detail (log tail).
        detail: String,
    },
    /// A SIGINT/SIGTERM stopped the build (its clean-up ran).
    #[error("interrupted by a signal")]
    Interrupted,
    /// An image spec file (build-all) is unusable.
    #[error("{file}: {message}")]
    ImageSpec {
        /// The file.
        file: PathBuf,
        /// What is wrong (names the image and key).
        message: String,
    },
}

impl From<image_pipeline::Error> for Error {
    fn from(e: image_pipeline::Error) -> Self {
        Error::Pipeline(Box::new(e))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

pub(crate) fn os_err(action: impl Into<String>) -> impl FnOnce(openstack_client::Error) -> Error {
    let action = action.into();
    move |source| Error::OpenStack {
        action,
        source: Box::new(source),
    }
}
