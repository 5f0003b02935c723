//! The one error type of the crate.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in packuilon, with the file, line, key,
/// queue or build it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An INI file is malformed (names the file and line, never a value).
    #[error(transparent)]
    Ini(#[from] ini_config::Error),
    /// A configuration value is not acceptable.
    #[error("{path}: [{section}] {key}: {message}")]
    ConfigValue {
        /// The configuration file.
        path: PathBuf,
        /// The section of the key.
        section: String,
        /// The key, as written in the spec (upper case).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Several configuration values are not acceptable (each line names
    /// the file, section, key and line).
    #[error("{path}: {} problems:\n{}", problems.len(), problems.join("\n"))]
    ConfigProblems {
        /// The configuration file.
        path: PathBuf,
        /// One message per problem.
        problems: Vec<String>,
    },
    /// A JSON document (a message or a file) does not parse.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// The message or file that holds the JSON.
        what: String,
        /// The parser's error (with line and column).
        source: serde_json::Error,
    },
    /// A profile lacks a field the build needs, or the field is not a string.
    #[error("{what}: missing or non-string field {field}")]
    MissingField {
        /// The message or file.
        what: String,
        /// Dotted path of the field, e.g. `system.os.architecture`.
        field: String,
    },
    /// The build name derived from a message cannot name a file.
    #[error("{what}: build name {name:?} cannot be used as a file name (contains '/' or NUL, or is '.'/'..')")]
    BadName {
        /// The message.
        what: String,
        /// The derived name.
        name: String,
    },
    /// A JSON file does not have the expected shape.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No source image is configured for an OS/version/architecture.
    #[error("{path}: no source image for {key}")]
    NoSourceImage {
        /// The source image file.
        path: PathBuf,
        /// The key looked up (`<os><os_ver>-<arch>`).
        key: String,
    },
    /// A template rendered into text that is not valid JSON.
    #[error("{path}: rendered template is not valid JSON: {source}")]
    RenderedNotJson {
        /// The template file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The credentials file has a line that is not a variable assignment.
    #[error("{path}:{line}: {message}")]
    AuthFile {
        /// The credentials file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the value).
        message: String,
    },
    /// Packer could not be started or waited for.
    #[error("build {build}: cannot run {program}: {source}")]
    Spawn {
        /// The build name (`<name>.<template>`).
        build: String,
        /// The program that was run.
        program: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A RabbitMQ operation failed.
    #[error("RabbitMQ {operation} on queue {queue}: {source}")]
    Amqp {
        /// What was being done (connect, declare, consume, publish, ack...).
        operation: &'static str,
        /// The queue concerned.
        queue: String,
        /// The client library's error.
        source: lapin::Error,
    },
    /// An HTTP download failed (connection, or a non-success status).
    #[error("GET {url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// The status or the transport error.
        message: String,
    },
    /// `profiles-info.xml` is not well-formed.
    #[error("{url}: invalid profiles-info XML at byte {position}: {message}")]
    ProfilesInfo {
        /// Where the document came from.
        url: String,
        /// Byte offset of the error.
        position: u64,
        /// The parser's message.
        message: String,
    },
    /// An OpenStack (Glance, Keystone) request failed.
    #[error("OpenStack: {operation}: {source}")]
    OpenStack {
        /// What was being done, naming the image or member.
        operation: String,
        /// The client's error (with the HTTP status and URL).
        source: Box<openstack_client::Error>,
    },
    /// A notification could not be sent.
    #[error("{what}: {message}")]
    Notify {
        /// The mail command or the hook.
        what: String,
        /// What went wrong (never the hook's URL).
        message: String,
    },
    /// The broker did not confirm a published message.
    #[error("RabbitMQ publish on queue {queue}: the broker refused the message")]
    NotConfirmed {
        /// The queue.
        queue: String,
    },
    /// An image-pipeline step of the test gate failed (booting, the
    /// ledger, the gate's folder).
    #[error("test gate: {operation}: {source}")]
    Pipeline {
        /// What was being done.
        operation: String,
        /// image-pipeline's error.
        source: Box<image_pipeline::Error>,
    },
    /// The test gate could not run for image `image` (the image is left as
    /// built).
    #[error("test gate of image {image}: {message}")]
    Gate {
        /// The image id.
        image: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
