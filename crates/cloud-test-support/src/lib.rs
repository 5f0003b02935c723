//! Plumbing shared by the integration tests that run against the real local
//! cloud started by `scripts/cloud/up.sh` (Keystone on :5000, Glance
//! RegionOne on :9292 and RegionTwo on :9293).
//!
//! This crate is for tests only: it is a `[dev-dependencies]` entry of the
//! crates whose tests talk to the local cloud, and is never published nor
//! linked into a shipped binary. It owns:
//!
//! - locating `clouds.yaml` ([`clouds_yaml`], [`local_cloud_dir`]):
//!   `$OS_CLIENT_CONFIG_FILE`, else `$LOCAL_CLOUD_DIR/clouds.yaml`, else
//!   `~/.cache/openstack-image-tools/local-cloud/clouds.yaml`;
//! - the name of the cloud under test ([`cloud_name`]): `$OS_TEST_CLOUD`,
//!   default `local`;
//! - loading its configuration and connecting a [`Session`] ([`config`],
//!   [`config_named`], [`session`], [`session_named`], [`session_for`]); when
//!   the cloud is absent these panic with a message telling to run
//!   `scripts/cloud/up.sh`, so that a test needing the cloud fails instead
//!   of being skipped;
//! - the cross-process lock that serialises every test writing to the local
//!   Glance ([`cloud_lock`]);
//! - unique names for test resources ([`unique`], [`unique_nid`]);
//! - an image clean-up guard that deletes the images of a test when dropped,
//!   even when the test panics ([`ImageCleanup`]), with the images of a
//!   publication (an old public image, a `_rc` candidate) and the lines a
//!   publication prints ([`publish_lines`]);
//! - a test's lock, session, Glance and image guard in one ([`glance_test`]);
//! - booting a built image under QEMU TCG to its login prompt
//!   ([`boot_to_login`]), for the image-build tests (diskimage, amphora-create),
//!   and finding the QEMU processes a test left ([`qemus_in`]);
//! - a finished command's status, stdout and stderr for assertion messages
//!   ([`text`]);
//! - looking for known secrets in a run's outputs and files ([`leaks`]), for
//!   the binaries' secret-leak tests;
//! - a stateful fake Nova + Neutron on wiremock ([`nova_mock`]) and a
//!   private local sshd ([`sshd`]) playing its servers, for the tests of the
//!   OpenStack compute backend and of what runs on it, and the two set up
//!   together with a source image and a snapshot image ([`fake_cloud`]);
//! - writing an executable stand-in script ([`write_executable`]);
//! - with the `amqp` feature, taking acknowledged messages off a RabbitMQ
//!   queue (`amqp`), for the packuilon tests.

// Test support fails the test that calls it by panicking, with a message
// saying what to do: `unwrap`, `expect` and `panic!` are its error reporting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod fake_cloud;
pub mod leaks;
pub mod nova_mock;
pub mod sshd;

use openstack_client::glance::{CreateImage, GlanceClient, Image, Visibility};
use openstack_client::{CloudConfig, Session};

/// Write `text` to `path` as an executable script (a stand-in for Packer,
/// sendmail, a gate...).
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 755 {}: {e}", path.display()));
}

/// Create an empty qcow2 disk of `size` (`qemu-img` syntax: `16M`, `1G`)
/// at `path`.
pub fn blank_qcow2(path: &Path, size: &str) {
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size)
        .status()
        .unwrap_or_else(|e| panic!("qemu-img: {e}"));
    assert!(status.success(), "qemu-img create {}", path.display());
}

/// Name of the lock file, in the system temporary directory, that
/// [`cloud_lock`] holds. Every test binary that writes to the local cloud
/// uses this same file, so that they serialise with each other.
pub const LOCK_FILE_NAME: &str = "openstack-client-cloud-tests.lock";

/// The directory `scripts/cloud/up.sh` writes the local cloud to:
/// `$LOCAL_CLOUD_DIR`, else `~/.cache/openstack-image-tools/local-cloud`.
pub fn local_cloud_dir() -> PathBuf {
    std::env::var("LOCAL_CLOUD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            dirs::home_dir()
                .expect("no home directory")
                .join(".cache/openstack-image-tools/local-cloud")
        })
}

/// The `clouds.yaml` of the cloud under test: `$OS_CLIENT_CONFIG_FILE`,
/// else `clouds.yaml` in [`local_cloud_dir`].
pub fn clouds_yaml() -> PathBuf {
    if let Ok(p) = std::env::var("OS_CLIENT_CONFIG_FILE") {
        return PathBuf::from(p);
    }
    local_cloud_dir().join("clouds.yaml")
}

/// Name of the cloud under test: `$OS_TEST_CLOUD`, default `local`.
pub fn cloud_name() -> String {
    std::env::var("OS_TEST_CLOUD").unwrap_or_else(|_| "local".into())
}

/// Configuration of cloud `name` from [`clouds_yaml`].
///
/// # Panics
/// When the file does not exist or has no usable cloud `name`, with a
/// message telling to run `scripts/cloud/up.sh`.
pub fn config_named(name: &str) -> CloudConfig {
    let path = clouds_yaml();
    assert!(
        path.is_file(),
        "{} does not exist: start the local cloud with scripts/cloud/up.sh",
        path.display()
    );
    CloudConfig::from_files(&path, None, name)
        .unwrap_or_else(|e| panic!("{e} (run scripts/cloud/up.sh)"))
}

/// Configuration of the cloud under test ([`cloud_name`]).
///
/// # Panics
/// As [`config_named`].
pub fn config() -> CloudConfig {
    config_named(&cloud_name())
}

/// Authenticate `config`.
///
/// # Panics
/// When Keystone cannot be reached or refuses the credentials, with a
/// message telling to run `scripts/cloud/up.sh`.
pub async fn session_for(config: CloudConfig) -> Session {
    match Session::connect(config).await {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot authenticate against the local cloud: {e}\nstart it with scripts/cloud/up.sh"
        ),
    }
}

/// An authenticated session on cloud `name` of [`clouds_yaml`] (for example
/// `local-demo`, the "other project").
///
/// # Panics
/// As [`config_named`] and [`session_for`].
pub async fn session_named(name: &str) -> Session {
    session_for(config_named(name)).await
}

/// An authenticated session on the cloud under test ([`cloud_name`]).
///
/// # Panics
/// As [`config_named`] and [`session_for`].
pub async fn session() -> Session {
    session_named(&cloud_name()).await
}

/// Serialises the tests that write to the local cloud, across test processes
/// too (nextest runs each test in its own process, and several test binaries
/// share the cloud): the local Glance keeps its data in SQLite, which
/// answers concurrent writes with "database is locked" (HTTP 500).
///
/// Waits (off the async runtime's workers) until the lock file
/// [`LOCK_FILE_NAME`] in the system temporary directory is free, then holds
/// it until the returned guard is dropped: keep it for the whole test.
///
/// # Panics
/// When the lock file cannot be opened or locked.
pub async fn cloud_lock() -> CloudLock {
    let path = std::env::temp_dir().join(LOCK_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    tokio::task::spawn_blocking(move || {
        file.lock()
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        CloudLock { _file: file }
    })
    .await
    .unwrap()
}

/// Holds the cross-process cloud test lock ([`cloud_lock`]) until dropped.
#[derive(Debug)]
pub struct CloudLock {
    /// The locked file; closing it releases the lock.
    _file: std::fs::File,
}

/// A test's hold on the shared cloud: the lock ([`cloud_lock`]), a session
/// on the cloud under test, its Glance in one region and an image clean-up
/// guard on it. The images are deleted before the lock is released.
#[derive(Debug)]
pub struct GlanceTest {
    /// Session on the cloud under test ([`session`]).
    pub session: Session,
    /// Its Glance in the region asked for.
    pub glance: GlanceClient,
    /// The images this test creates, deleted when it ends.
    pub images: ImageCleanup,
    /// Held until the images are gone (fields drop in order).
    _lock: CloudLock,
}

/// Take the cloud lock, connect to the cloud under test and its Glance in
/// `region`, with an empty [`ImageCleanup`].
///
/// # Panics
/// As [`session`], or when the catalog has no Glance in `region`.
pub async fn glance_test(region: &str) -> GlanceTest {
    let lock = cloud_lock().await;
    let session = session().await;
    let glance = session.image(Some(region)).await.unwrap();
    GlanceTest {
        images: ImageCleanup::new(&glance),
        session,
        glance,
        _lock: lock,
    }
}

/// What a publication prints (the original's lines) when it retires `old`
/// and publishes `rc` (`<name>_rc` -> `<name>`, public) with `nid` and
/// `kind` as its type.
pub fn publish_lines(old: &Image, rc: &Image, name: &str, nid: &str, kind: &str) -> [String; 3] {
    [
        format!(
            "Renamed and made private image {} ({name} -> {name}_obsolete)",
            old.id
        ),
        format!(
            "Add this checksum to replace, at /etc/glancesync.conf: {}",
            old.checksum.as_deref().unwrap()
        ),
        format!(
            "Published image {} ({name}_rc -> {name}, nid {nid}, type {kind}, public)",
            rc.id
        ),
    ]
}

/// The ids of the images named `name` that `glance` lists.
///
/// # Panics
/// When Glance refuses the listing.
pub async fn image_ids_named(glance: &GlanceClient, name: &str) -> Vec<String> {
    glance
        .list_images(&openstack_client::glance::ImageFilter::default().name(name))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// A unique name for a test resource: `prefix`, a dash and 12 random hex
/// digits (`ipt-happy-0123456789ab`).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A NID (the numeric image id of the publishing tools) unlikely to be used
/// by anything else on the cloud: a random number above one billion.
pub fn unique_nid() -> String {
    (u64::from(uuid::Uuid::new_v4().as_fields().0) + 1_000_000_000).to_string()
}

/// The images a test created, deleted when the guard is dropped, even when
/// the test panics. Images already gone are not an error; any other failure
/// to delete is printed to stderr and does not fail the test.
///
/// **Runtime requirement:** the guard must be dropped inside a
/// multi-thread Tokio runtime (`#[tokio::test(flavor = "multi_thread")]`).
/// `Drop` cannot await, so it blocks the current worker with
/// [`tokio::task::block_in_place`] while the deletions run, and the other
/// workers keep driving the client's connections; on a current-thread
/// runtime, or outside any runtime, dropping it panics.
#[derive(Debug)]
pub struct ImageCleanup {
    glance: GlanceClient,
    ids: Vec<String>,
}

impl ImageCleanup {
    /// A guard deleting, through `glance`, the images it is given.
    pub fn new(glance: &GlanceClient) -> Self {
        ImageCleanup {
            glance: glance.clone(),
            ids: Vec::new(),
        }
    }

    /// Delete the image `id` when the guard is dropped.
    pub fn track(&mut self, id: impl Into<String>) {
        self.ids.push(id.into());
    }

    /// Create an active `raw`/`bare` image named `name` with `visibility`,
    /// the extra properties `props` and a few bytes of data (`data of
    /// <name>`), deleted when the guard is dropped; returns it as Glance
    /// shows it after the upload.
    ///
    /// # Panics
    /// When Glance refuses any step.
    pub async fn create_active(
        &mut self,
        name: &str,
        visibility: Visibility,
        props: &[(&str, &str)],
    ) -> Image {
        let mut req = CreateImage::new(name)
            .disk_format("raw")
            .container_format("bare")
            .visibility(visibility);
        for (k, v) in props {
            req = req.property(*k, *v);
        }
        let image = self.glance.create_image(&req).await.unwrap();
        self.track(image.id.clone());
        let data = format!("data of {name}").into_bytes();
        let len = data.len() as u64;
        self.glance
            .upload(&image.id, std::io::Cursor::new(data), Some(len))
            .await
            .unwrap();
        self.glance.get_image(&image.id).await.unwrap()
    }

    /// A public image `name` with `nid` and `type` `kind`: the one a
    /// publication retires.
    pub async fn old_public(&mut self, name: &str, nid: &str, kind: &str) -> Image {
        self.create_active(name, Visibility::Public, &[("nid", nid), ("type", kind)])
            .await
    }

    /// The private publication candidate `<name>_rc`.
    pub async fn candidate(&mut self, name: &str) -> Image {
        self.create_active(&format!("{name}_rc"), Visibility::Private, &[])
            .await
    }

    /// Upload the Debian test image ([`test_image`], built when missing)
    /// as a private `qcow2`/`bare` image named `name`, deleted when the
    /// guard is dropped; returns its id. The caller holds [`cloud_lock`].
    ///
    /// # Panics
    /// When the test image cannot be built or Glance refuses any step.
    pub async fn upload_test_image(&mut self, name: &str) -> String {
        let image = self
            .glance
            .create_image(
                &CreateImage::new(name)
                    .disk_format("qcow2")
                    .container_format("bare")
                    .visibility(Visibility::Private),
            )
            .await
            .unwrap();
        self.track(image.id.clone());
        self.glance
            .upload_file(&image.id, &test_image())
            .await
            .unwrap();
        image.id
    }
}

impl Drop for ImageCleanup {
    fn drop(&mut self) {
        let glance = self.glance.clone();
        let ids = std::mem::take(&mut self.ids);
        if ids.is_empty() {
            return;
        }
        // Drop cannot await: block this worker (the tests run on a
        // multi-thread runtime, so the client's connections keep being driven).
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                for id in ids {
                    if let Err(e) = glance.delete_image(&id).await {
                        if !e.is_not_found() {
                            eprintln!("clean-up: cannot delete image {id}: {e}");
                        }
                    }
                }
            })
        });
    }
}

/// Path of the cached Debian 12 test image (`scripts/test-image/build.sh`),
/// building it (minutes) when missing or stale. Panics when the script fails
/// or prints something that is not a file.
pub fn test_image() -> PathBuf {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-image/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(out.status.success(), "scripts/test-image/build.sh failed");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.is_file(), "build.sh printed {path:?}, not a file");
    path
}

/// Exit status, stdout and stderr of a finished command, for assertion
/// messages of the binaries' command-line tests.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The command lines (NULs as spaces) of the running QEMU processes that
/// mention `dir`: what a test's VMs left behind.
pub fn qemus_in(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains("qemu-system") && c.contains(&needle) {
                found.push(c);
            }
        }
    }
    found
}

/// Boot `image` (in `format`: `qcow2`, `raw`) under QEMU TCG with its serial
/// console in `dir/serial.log`, read-only (`snapshot=on`), until `login:`
/// shows; returns the console text. Panics with the console's tail when
/// QEMU exits first or no prompt shows within 15 minutes; QEMU is killed in
/// every case. Shared by the image-build tests that check a built image boots.
pub fn boot_to_login(image: &std::path::Path, format: &str, dir: &std::path::Path) -> String {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    struct Qemu(Child);
    impl Drop for Qemu {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let serial = dir.join("serial.log");
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "tcg", "-m", "1024", "-smp", "1", "-display", "none",
        ])
        .args(["-no-reboot", "-nic", "user,model=virtio-net-pci"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!(
            "file={},format={format},if=virtio,snapshot=on",
            image.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let mut qemu = Qemu(child);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("login:") {
            return text;
        }
        if let Some(st) = qemu.0.try_wait().unwrap() {
            panic!("QEMU exited ({st}) before a login prompt; console:\n{text}");
        }
        if Instant::now() > deadline {
            let tail: String = text
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("no login prompt within the boot deadline; console tail:\n{tail}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_is_the_prefix_then_twelve_hex_digits_and_differs_each_call() {
        let a = unique("ipt-x");
        let b = unique("ipt-x");
        let suffix = a.strip_prefix("ipt-x-").unwrap();
        assert_eq!(suffix.len(), 12);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn unique_nid_is_a_number_above_one_billion() {
        let nid: u64 = unique_nid().parse().unwrap();
        assert!(nid >= 1_000_000_000, "{nid}");
    }

    // The only test of this binary that reads or writes these variables, so
    // changing them cannot race with another test.
    #[test]
    fn clouds_yaml_and_cloud_name_follow_their_environment_variables() {
        std::env::remove_var("OS_CLIENT_CONFIG_FILE");
        std::env::remove_var("LOCAL_CLOUD_DIR");
        let home = dirs::home_dir().unwrap();
        assert_eq!(
            clouds_yaml(),
            home.join(".cache/openstack-image-tools/local-cloud/clouds.yaml")
        );
        std::env::set_var("LOCAL_CLOUD_DIR", "/srv/cloud");
        assert_eq!(local_cloud_dir(), PathBuf::from("/srv/cloud"));
        assert_eq!(clouds_yaml(), PathBuf::from("/srv/cloud/clouds.yaml"));
        std::env::set_var("OS_CLIENT_CONFIG_FILE", "/etc/openstack/x.yaml");
        assert_eq!(clouds_yaml(), PathBuf::from("/etc/openstack/x.yaml"));
        std::env::remove_var("OS_CLIENT_CONFIG_FILE");
        std::env::remove_var("LOCAL_CLOUD_DIR");

        std::env::remove_var("OS_TEST_CLOUD");
        assert_eq!(cloud_name(), "local");
        std::env::set_var("OS_TEST_CLOUD", "other");
        assert_eq!(cloud_name(), "other");
        std::env::remove_var("OS_TEST_CLOUD");
    }
}
