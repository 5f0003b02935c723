//! The crate's single error type.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the image pipeline.
///
/// Every variant names the image involved (id, and name when known); errors
/// that come from OpenStack keep the `openstack-client` error (HTTP status,
/// method, URL, request id) as their source and in their message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Glance request failed.
    #[error("{action} image {image}: {source}")]
    Glance {
        /// What was being done ("reading", "listing images named", "renaming", ...).
        action: String,
        /// The image id or, for listings, the name looked for.
        image: String,
        /// The client error (status, method, URL, request id, server message).
        #[source]
        source: Box<openstack_client::Error>,
    },
    /// Authentication failed (reading the token's project).
    #[error("authentication failed: {source}")]
    Auth {
        /// The client error.
        #[source]
        source: Box<openstack_client::Error>,
    },
    /// The cloud's configuration could not be loaded, or the session or its
    /// Glance endpoint could not be set up.
    #[error("{source}")]
    Cloud {
        /// The client error (file, option, URL, HTTP status).
        #[source]
        source: Box<openstack_client::Error>,
    },
    /// An argument that should be a Glance image id is not a UUID.
    #[error("'{value}' is not an image UUID")]
    InvalidImageId {
        /// The value given.
        value: String,
    },
    /// The token does not name a project, so "the caller's own images" has no meaning.
    #[error("the token is not scoped to a project: cannot tell which images are the caller's own")]
    NoProject,
    /// The image to publish does not exist (or is not visible to the caller).
    #[error("image {id} not found (or not visible to this project)")]
    ImageNotFound {
        /// The id that was asked for.
        id: String,
    },
    /// The image to publish is not a release candidate: its name does not end in `_rc`.
    #[error("image {id} is named '{name}', which does not end in '_rc': only release candidates are published")]
    NotReleaseCandidate {
        /// Image id.
        id: String,
        /// Its current name.
        name: String,
    },
    /// The image was already published (public, named without `_rc`, with `nid` and `type`).
    #[error("image {id} ('{name}') is already published (public, nid {nid}, type {image_type}): nothing to do")]
    AlreadyPublished {
        /// Image id.
        id: String,
        /// Its current name.
        name: String,
        /// Its `nid` property.
        nid: String,
        /// Its `type` property.
        image_type: String,
    },
    /// The image to publish holds no usable data yet (status other than `active`).
    #[error("image {id} ('{name}') has status '{status}', not 'active': only an image with data is published")]
    NotActive {
        /// Image id.
        id: String,
        /// Its name.
        name: String,
        /// Its status.
        status: String,
    },
    /// A name the publication would give is not acceptable to Glance.
    #[error("image {id}: {problem}")]
    InvalidName {
        /// The image the name is for.
        id: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The `nid` or `type` given in the request is unusable.
    #[error("invalid {field} '{value}': {problem}")]
    InvalidNidType {
        /// `nid` or `type`.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// No old public image provided `nid`/`type` and the request gave none.
    #[error("image {id} ('{name}'): no public image named '{old_name}' of this project carries nid and type; give them explicitly (IMAGE_UUID NID TYPE)")]
    MissingNidType {
        /// Image id of the release candidate.
        id: String,
        /// Its name.
        name: String,
        /// The old name that was searched.
        old_name: String,
    },
    /// A write failed after earlier writes of the same publication; they were
    /// undone (or the undo failed too, which the message says).
    #[error("{action} image {image} failed: {source}; {rollback}")]
    RolledBack {
        /// The write that failed.
        action: String,
        /// The image it was for.
        image: String,
        /// Why it failed.
        #[source]
        source: Box<openstack_client::Error>,
        /// What happened to the earlier writes.
        rollback: RollbackOutcome,
    },
    /// An SSH private key could not be read, parsed, generated or written.
    #[error("SSH key {path}: {message}")]
    SshKey {
        /// The key file (or `<generated>`).
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The pipeline's known_hosts file could not be read, parsed or written.
    #[error("known_hosts {path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    KnownHosts {
        /// The known_hosts file.
        path: String,
        /// The 1-based line at fault, when one is.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// The server's host key differs from the one recorded for `host:port`.
    #[error("host key for {host}:{port} CHANGED (recorded {recorded}, offered {offered}, in {path}): refusing to connect; forget the entry if the machine was recreated")]
    HostKeyChanged {
        /// Host name or address.
        host: String,
        /// SSH port.
        port: u16,
        /// Fingerprint of the recorded key.
        recorded: String,
        /// Fingerprint of the key the server offered.
        offered: String,
        /// The known_hosts file.
        path: String,
    },
    /// The SSH connection (TCP, handshake or transport) failed.
    #[error("ssh {host}:{port}: {message}")]
    SshConnect {
        /// Host name or address.
        host: String,
        /// SSH port.
        port: u16,
        /// What went wrong.
        message: String,
    },
    /// The server refused the public key.
    #[error("ssh {user}@{host}:{port}: public key authentication failed with key {key} (server still accepts: {remaining})")]
    SshAuth {
        /// Remote user.
        user: String,
        /// Host name or address.
        host: String,
        /// SSH port.
        port: u16,
        /// Algorithm and fingerprint of the key offered.
        key: String,
        /// Methods the server would still accept.
        remaining: String,
    },
    /// SSH never became reachable.
    #[error("ssh {host}:{port} not reachable after {attempts} attempts; last error: {last}")]
    SshWait {
        /// Host name or address.
        host: String,
        /// SSH port.
        port: u16,
        /// How many connection attempts were made.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        last: Box<Error>,
    },
    /// A remote command could not be started or followed (channel failure).
    #[error("ssh {host}:{port}: command `{command}`: {message}")]
    SshCommand {
        /// Host name or address.
        host: String,
        /// SSH port.
        port: u16,
        /// The command (environment values never appear here).
        command: String,
        /// What went wrong.
        message: String,
    },
    /// A remote command did not succeed (non-zero exit, signal or timeout).
    #[error("ssh {host}:{port}: command `{command}` {status} (output in {log})")]
    SshCommandFailed {
        /// Host name or address.
        host: String,
        /// SSH port.
        port: u16,
        /// The command (environment values never appear here).
        command: String,
        /// How it ended ("exited with status 3", "was killed by signal KILL", ...).
        status: String,
        /// Where its output went.
        log: String,
    },
    /// Uploading a file over SSH failed.
    #[error("ssh {host}:{port}: upload of {source_desc} to {remote}: {message}")]
    SshUpload {
        /// Host name or address.
        host: String,
        /// SSH port.
        port: u16,
        /// What was uploaded (local path or `<N bytes>`).
        source_desc: String,
        /// The remote path.
        remote: String,
        /// What went wrong.
        message: String,
    },
    /// The resource ledger of a run could not be read or written.
    #[error("ledger {}: {detail}", path.display())]
    Ledger {
        /// The ledger file.
        path: std::path::PathBuf,
        /// What went wrong (with the line number for unreadable content).
        detail: String,
    },
    /// A local file used by the SSH layer (command log, upload source) failed.
    #[error("{action} {path}: {source}")]
    LocalFile {
        /// What was being done ("creating command log", "reading upload source", ...).
        action: &'static str,
        /// The local path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A Nova or Neutron request of the OpenStack backend or of
    /// `setup-account` failed.
    #[error("{action} {resource}: {source}")]
    OpenStack {
        /// What was being done ("creating keypair", "deleting server", ...).
        action: String,
        /// The resource (name and/or id).
        resource: String,
        /// The client error (status, method, URL, request id, server message).
        #[source]
        source: Box<openstack_client::Error>,
    },
    /// A server went to `ERROR` while booting or changing state.
    #[error("server {name} ({id}) went to ERROR: {}", fault.as_deref().unwrap_or("Nova gave no fault message"))]
    ServerFailed {
        /// Server name.
        name: String,
        /// Server id.
        id: String,
        /// Nova's fault message.
        fault: Option<String>,
    },
    /// A wait for a cloud resource ran out of time.
    #[error("{kind} {resource}: still '{last}' after {waited:?}, waiting for '{wanted}' (timeout {option})")]
    WaitTimeout {
        /// What was waited for (server, snapshot, ...).
        kind: &'static str,
        /// Its name and id.
        resource: String,
        /// The state wanted.
        wanted: String,
        /// The last state seen.
        last: String,
        /// How long it was waited for.
        waited: std::time::Duration,
        /// The option that sets this timeout.
        option: &'static str,
    },
    /// The cloud lacks something the backend or `setup-account` needs (a
    /// named network, a given floating IP, a port of the server, ...).
    #[error("{0}")]
    CloudSetup(String),
    /// A local VM operation of the local backend failed.
    #[error("local VM {vm}: {action}: {source}")]
    LocalVm {
        /// The VM's name.
        vm: String,
        /// What was being done.
        action: &'static str,
        /// The local-vm error (with the serial console tail where relevant).
        #[source]
        source: Box<local_vm::Error>,
    },
    /// Preparing the snapshot with guest-tools failed.
    #[error("{action} {path}: {source}")]
    GuestTools {
        /// What was being done.
        action: &'static str,
        /// The disk image.
        path: std::path::PathBuf,
        /// The guest-tools error.
        #[source]
        source: Box<guest_tools::Error>,
    },
    /// The settings (built-in, file, environment, flags) are unusable.
    #[error("settings: {0}")]
    Settings(String),
    /// The image folder is unusable (missing script, leftover ledger, bad state file).
    #[error("image folder {}: {problem}", path.display())]
    Folder {
        /// The folder or file.
        path: std::path::PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// `create.sh` (or `test.sh`) failed; the tail of its log is quoted.
    #[error("{script} {outcome} (log {}); last lines:\n{tail}", log.display())]
    ScriptFailed {
        /// `create.sh` or `test.sh`.
        script: &'static str,
        /// How it ended (exit status, signal, timeout).
        outcome: String,
        /// Its log file.
        log: std::path::PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// A step of the pipeline failed for a reason of its own.
    #[error("{0}")]
    Pipeline(String),
}

/// What the roll-back of a failed publication achieved.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RollbackOutcome {
    /// Images restored to their former name and visibility (`id (name)`).
    pub restored: Vec<String>,
    /// Images whose restoration failed, with the error (`id (name): error`).
    pub failed: Vec<String>,
}

impl RollbackOutcome {
    /// Whether every earlier write was undone.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

impl std::fmt::Display for RollbackOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.restored.is_empty(), self.failed.is_empty()) {
            (true, true) => write!(f, "nothing had been changed"),
            (false, true) => write!(
                f,
                "rolled back: restored name and visibility of {}",
                self.restored.join(", ")
            ),
            (_, false) => {
                write!(f, "ROLLBACK FAILED for {}", self.failed.join("; "))?;
                if !self.restored.is_empty() {
                    write!(f, " (restored: {})", self.restored.join(", "))?;
                }
                write!(f, ": fix these images by hand")
            }
        }
    }
}

impl Error {
    /// Wrap a client error with what was being done to which image.
    pub(crate) fn glance(
        action: impl Into<String>,
        image: impl Into<String>,
    ) -> impl FnOnce(openstack_client::Error) -> Error {
        let action = action.into();
        let image = image.into();
        move |source| Error::Glance {
            action,
            image,
            source: Box::new(source),
        }
    }
}

/// Wrap an OpenStack client error with what was being done to which resource.
pub(crate) fn os_err(
    action: impl Into<String>,
    resource: impl Into<String>,
) -> impl FnOnce(openstack_client::Error) -> Error {
    let action = action.into();
    let resource = resource.into();
    move |source| Error::OpenStack {
        action,
        resource,
        source: Box::new(source),
    }
}
