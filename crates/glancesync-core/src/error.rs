//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the GlanceSync engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The INI text is malformed, or an option's value cannot be used
    /// (names the file, line, section and option; never the value).
    #[error(transparent)]
    Ini(#[from] ini_config::Error),
    /// A configuration-wide problem not tied to one option.
    #[error("{}{message}", if file.is_empty() { String::new() } else { format!("{file}: ") })]
    Config {
        /// File (or `<string>`) holding the configuration.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A `--config KEY=VALUE` override is invalid.
    #[error("--config {arg}: {message}")]
    Override {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        message: String,
    },
    /// A backup/state CSV file is malformed.
    #[error("{file}:{line}: {message}")]
    Csv {
        /// The CSV file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A Python literal (CSV column 9) could not be parsed.
    #[error("invalid Python literal at offset {offset}: {message}")]
    PyLiteral {
        /// Byte offset in the literal.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A region string names a target missing from the configuration.
    #[error("unknown target '{target}' in region '{region}'")]
    UnknownTarget {
        /// The target name.
        target: String,
        /// The region string as given.
        region: String,
    },
    /// A region is not known to the backend.
    #[error("region '{region}' not found{detail}")]
    UnknownRegion {
        /// The region's full name.
        region: String,
        /// Extra detail (may be empty).
        detail: String,
    },
    /// An image is not known to the backend.
    #[error("{region}: image {id} not found")]
    ImageNotFound {
        /// The region's full name.
        region: String,
        /// The image id.
        id: String,
    },
    /// The backend (Glance, Keystone) failed.
    #[error("{region}: {operation} failed: {message}")]
    Backend {
        /// The region's full name.
        region: String,
        /// What was being done.
        operation: String,
        /// Why it failed (HTTP status, URL and request id when known).
        message: String,
    },
    /// A request to the cloud (Keystone, Glance) failed.
    #[cfg(feature = "glance")]
    #[error("{region}: {operation} failed: {source}")]
    Cloud {
        /// The region's (or, before a region is known, the target's) name.
        region: String,
        /// What was being done.
        operation: String,
        /// The client's error: HTTP status, method, URL and request id when
        /// the cloud answered.
        #[source]
        source: Box<openstack_client::Error>,
    },
    /// A write was attempted on a read-only (dry-run) backend.
    #[error("{region}: refusing to {operation} in dry-run mode")]
    DryRunWrite {
        /// The region's full name.
        region: String,
        /// The write that was refused.
        operation: String,
    },
}

impl Error {
    /// The HTTP status of a failed cloud request, when the cloud answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            #[cfg(feature = "glance")]
            Error::Cloud { source, .. } => source.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// The OpenStack request id of a failed cloud request, when known.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            #[cfg(feature = "glance")]
            Error::Cloud { source, .. } => source.request_id(),
            _ => None,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(all(test, feature = "glance"))]
mod tests {
    use super::*;

    #[test]
    fn cloud_errors_read_as_before_and_keep_the_client_error() {
        let client = openstack_client::Error::InvalidInput("no such thing".into());
        let e = Error::Cloud {
            region: "RegionTwo".into(),
            operation: "list images".into(),
            source: Box::new(client),
        };
        assert!(
            e.to_string() == "RegionTwo: list images failed: invalid input: no such thing",
            "{e}"
        );
        assert_eq!(e.status(), None);
        assert_eq!(e.request_id(), None);
        assert!(std::error::Error::source(&e).is_some());
    }
}
