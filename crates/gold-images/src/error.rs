//! The crate's one error type.

use std::path::PathBuf;

/// One problem found in an image set file (several are reported at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `images.ubuntu_2404.min_ram`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file named on the command line was not found where it is looked for.
    #[error("could not find {what} {name} (looked in: {})", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// What kind of file.
        what: &'static str,
        /// The name given.
        name: String,
        /// The places searched.
        searched: Vec<PathBuf>,
    },
    /// The YAML of an image set does not parse.
    #[error("{}: invalid YAML: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An image set parsed but has problems; one line per problem.
    #[error("{}", problems.iter().map(|p| format!("{}: {p}", path.display())).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// himlarcli's config.ini is unusable.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file (with `:line` when known, in `message`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An OpenStack request failed.
    #[error("{context}: {source}")]
    OpenStack {
        /// What was being done (image id/name, project ...).
        context: String,
        /// The client's error (status, method, URL, request id).
        source: Box<openstack_client::Error>,
    },
    /// The builder's HTTP server answered badly.
    #[error("{url}: {message}")]
    Http {
        /// The URL fetched.
        url: String,
        /// What went wrong (status, size, transport error).
        message: String,
    },
    /// Downloaded data does not match what was announced.
    #[error("{what}: {message}")]
    Checksum {
        /// The image entry or URL.
        what: String,
        /// Expected and actual digests.
        message: String,
    },
    /// The command cannot proceed (unknown project, missing entry, ...).
    #[error("{0}")]
    Refused(String),
    /// Some entries of a run failed (each was reported as it happened).
    #[error("{failed} of {total} {what} failed")]
    Partial {
        /// What was being processed (`images`, `image sets`).
        what: &'static str,
        /// How many failed.
        failed: usize,
        /// How many were tried.
        total: usize,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Wrap an OpenStack error with what was being done.
pub(crate) fn os(context: impl Into<String>) -> impl FnOnce(openstack_client::Error) -> Error {
    let context = context.into();
    move |source| Error::OpenStack {
        context,
        source: Box::new(source),
    }
}
