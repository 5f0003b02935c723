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
    /// A bad builder option (names the option, as the CLI spells it).
    #[error("{option}: {reason}")]
    Option {
        /// The option (`-t`, `--image-size`, ...).
        option: String,
        /// What is wrong.
        reason: String,
    },
    /// An `ELEMENTS_PATH` entry that is not a directory.
    #[error("ELEMENTS_PATH entry '{}' is not a directory", path.display())]
    ElementsPath {
        /// The entry.
        path: PathBuf,
    },
    /// An element that no `ELEMENTS_PATH` entry holds.
    #[error("Element '{element}' not found{}", required_by.as_ref().map(|r| format!(" (required by '{r}')")).unwrap_or_default())]
    UnknownElement {
        /// The missing element.
        element: String,
        /// The element whose `element-deps` names it (none: requested).
        required_by: Option<String>,
    },
    /// `element-deps` entries that form a cycle.
    #[error("element dependency cycle: {}", cycle.join(" -> "))]
    ElementCycle {
        /// The elements on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// An element provided twice, or requested while another provides it.
    #[error("element '{element}' requested by {by} is already provided by {}", provided_by.join(", "))]
    AlreadyProvided {
        /// The provided element name.
        element: String,
        /// Elements that already provide it.
        provided_by: Vec<String>,
        /// The element (or the requested list) that clashes.
        by: String,
    },
    /// No element provides `operating-system`.
    #[error("Please include an operating system element (none of the elements [{requested}] provides operating-system)")]
    MissingOperatingSystem {
        /// The requested elements.
        requested: String,
    },
    /// A malformed element file (`package-installs.*`, `pkg-map`, `svc-map`,
    /// `source-repository-*`, ...).
    #[error("{}{}: {reason}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    ElementFile {
        /// The file.
        file: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A `when:` condition names a variable that is not set.
    #[error("{}: package '{package}': when: the variable <{variable}> is not set", file.display())]
    WhenVariable {
        /// The package-installs file.
        file: PathBuf,
        /// The package.
        package: String,
        /// The unset variable.
        variable: String,
    },
    /// Two elements ship the same hook file name in one directory.
    #[error(
        "There is a duplicated hook in your elements: {dir}/{name} (elements {first} and {second})"
    )]
    DuplicateHook {
        /// The phase (or other) directory, e.g. `install.d`.
        dir: String,
        /// The file name.
        name: String,
        /// The element copied first.
        first: String,
        /// The element that clashes.
        second: String,
    },
    /// A phase script failed.
    #[error("{phase}/{script} (element {element}) failed: {status}")]
    Script {
        /// The phase directory.
        phase: String,
        /// The script name.
        script: String,
        /// The element that ships it.
        element: String,
        /// Exit status.
        status: String,
    },
    /// Sourcing `environment.d` failed.
    #[error("sourcing environment.d before {phase} failed: {reason}")]
    Environment {
        /// The phase about to run.
        phase: String,
        /// The shell's error output.
        reason: String,
    },
}
