//! Helpers of the local-backend tests: the test image as a Glance base, a
//! folder root and settings file, the webdemo fixture folder.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cloud_test_support::{
    cloud_lock, cloud_name, clouds_yaml, session, unique, CloudLock, ImageCleanup,
};
use openstack_client::glance::GlanceClient;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub use cloud_test_support::test_image;

pub struct Env {
    pub glance: GlanceClient,
    pub images: ImageCleanup,
    pub root: tempfile::TempDir,
    pub settings: PathBuf,
    /// The cross-process lock on the shared local cloud, held for the whole
    /// test (declared last: dropped after the images were deleted).
    _lock: CloudLock,
}

/// The test image uploaded as a uniquely named base `testdeb`, a folder
/// root and a settings file using them; holds the cloud-test lock
/// (these tests create and delete images in the shared local Glance).
pub async fn setup() -> Env {
    let lock = cloud_lock().await;
    let glance = session().await.image(None).await.unwrap();
    let mut images = ImageCleanup::new(&glance);
    let base_name = unique("ipt-gebase");
    images.upload_test_image(&base_name).await;
    let root = tempfile::Builder::new()
        .prefix("gei")
        .tempdir_in("/tmp")
        .unwrap();
    let settings = root.path().join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "backend = \"local\"\nbase = \"testdeb\"\nboot_timeout_secs = 600\nssh_attempts = 60\n\
             [bases.testdeb]\nimage = \"{base_name}\"\nuser = \"root\"\nsystemd_credentials = true\n"
        ),
    )
    .unwrap();
    Env {
        glance,
        images,
        root,
        settings,
        _lock: lock,
    }
}

/// A copy of the webdemo fixture as folder `name`, with data.tgz built.
pub fn webdemo(root: &Path, name: &str) -> PathBuf {
    let src = repo().join("fixtures/ge-image/webdemo");
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["create.sh", "test.sh"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let build = root.join(format!("{name}-build"));
    std::fs::create_dir_all(&build).unwrap();
    let ok = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(src.join("pkg"))
        .arg(build.join("webdemo_1.0_all.deb"))
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(dir.join("data.tgz"))
        .arg("-C")
        .arg(&build)
        .arg("webdemo_1.0_all.deb")
        .status()
        .unwrap();
    assert!(ok.success());
    dir
}

pub fn ge_image(env: &Env, args: &[&str]) -> Command {
    ge_image_with(env, &env.settings, args)
}

/// `ge-image ARGS` with settings file `settings`.
pub fn ge_image_with(env: &Env, settings: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ge-image"));
    c.args(args)
        .arg("--settings")
        .arg(settings)
        .arg("--folder-root")
        .arg(env.root.path())
        .arg("--os-cloud")
        .arg(cloud_name())
        .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .env("LIBGUESTFS_BACKEND", "direct")
        .env_remove("FLAVOR")
        .env_remove("TEST_ONLY")
        .env_remove("TEST_USING_VM");
    c
}

pub use cloud_test_support::text;

pub use cloud_test_support::qemus_in;

pub fn outstanding(dir: &Path) -> usize {
    image_pipeline::ResourceLedger::open(dir.join("ledger.jsonl"))
        .unwrap()
        .outstanding()
        .unwrap()
        .len()
}

pub use cloud_test_support::image_ids_named;
