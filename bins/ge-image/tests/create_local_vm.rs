//! `ge-image create/test/gc --backend local`, real: the Debian test image
//! (`scripts/test-image/build.sh`) uploaded to the local Glance as the base,
//! QEMU (TCG) VMs, the fixture folder `fixtures/ge-image/webdemo` (its
//! `data.tgz` built here with dpkg-deb), then `publish` and `inspect`.
//! Each VM boot takes about a minute under TCG: the tests boot few.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use cloud_test_support::{cloud_name, clouds_yaml, session, unique, unique_nid, ImageCleanup};
use openstack_client::glance::{CreateImage, GlanceClient, ImageFilter, Visibility};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn test_image() -> PathBuf {
    let out = Command::new(repo().join("scripts/test-image/build.sh"))
        .output()
        .expect("run scripts/test-image/build.sh");
    assert!(out.status.success(), "scripts/test-image/build.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

struct Env {
    glance: GlanceClient,
    images: ImageCleanup,
    root: tempfile::TempDir,
    settings: PathBuf,
}

/// The test image uploaded as a uniquely named base `testdeb`, a folder
/// root and a settings file using them.
async fn setup() -> Env {
    let glance = session().await.image(None).await.unwrap();
    let mut images = ImageCleanup::new(&glance);
    let base_name = unique("ipt-gebase");
    let base = glance
        .create_image(
            &CreateImage::new(&base_name)
                .disk_format("qcow2")
                .container_format("bare")
                .visibility(Visibility::Private),
        )
        .await
        .unwrap();
    images.track(base.id.clone());
    glance.upload_file(&base.id, &test_image()).await.unwrap();
    let root = tempfile::Builder::new()
        .prefix("gei")
        .tempdir_in("/tmp")
        .unwrap();
    let settings = root.path().join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "backend = \"local\"\nbase = \"testdeb\"\nboot_timeout_secs = 600\nssh_attempts = 60\n\
             [bases.testdeb]\nimage = \"{base_name}\"\nuser = \"root\"\n"
        ),
    )
    .unwrap();
    Env {
        glance,
        images,
        root,
        settings,
    }
}

/// A copy of the webdemo fixture as folder `name`, with data.tgz built.
fn webdemo(root: &Path, name: &str) -> PathBuf {
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

fn ge_image(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ge-image"));
    c.args(args)
        .arg("--settings")
        .arg(&env.settings)
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

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// QEMU processes whose command line mentions `dir`.
fn qemus_in(dir: &Path) -> Vec<String> {
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

fn outstanding(dir: &Path) -> usize {
    image_pipeline::ResourceLedger::open(dir.join("ledger.jsonl"))
        .unwrap()
        .outstanding()
        .unwrap()
        .len()
}

async fn images_named(glance: &GlanceClient, name: &str) -> Vec<String> {
    glance
        .list_images(&ImageFilter {
            name: Some(name.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// The whole life on the local backend: create (create.sh with data.tgz,
/// snapshot, prepare, upload, test.sh through $IP), publish, inspect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_test_publish_and_inspect_on_the_local_backend() {
    let mut env = setup().await;
    let name = unique("webdemo");
    let dir = webdemo(env.root.path(), &name);

    let start = Instant::now();
    let out = ge_image(&env, &["-v", "create", &name]).output().unwrap();
    let took = start.elapsed();
    let t = text(&out);
    // Track the candidate for deletion whatever happened.
    for id in images_named(&env.glance, &format!("{name}_rc")).await {
        env.images.track(id);
    }
    assert!(out.status.success(), "{t}");
    eprintln!("create + test took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let rc_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Success. UUID: "))
        .unwrap_or_else(|| panic!("no Success line: {t}"))
        .to_string();
    assert!(stdout.contains(&format!("ge-image publish {rc_id}")), "{t}");
    // The folder records the run; nothing is left behind.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["rc_image_id"], rc_id.as_str());
    assert_eq!(state["vm"], serde_json::Value::Null);
    assert_eq!(
        std::fs::read_to_string(dir.join("dist_type")).unwrap(),
        "root\n"
    );
    assert_eq!(outstanding(&dir), 0, "ledger not empty: {t}");
    assert!(qemus_in(&dir).is_empty(), "QEMU left: {:?}", qemus_in(&dir));
    let log = std::fs::read_to_string(dir.join("create.log")).unwrap();
    assert!(log.contains("dpkg -i"), "create.log: {log}");
    let tlog = std::fs::read_to_string(dir.join("test.log")).unwrap();
    assert!(tlog.contains("webdemo ok"), "test.log: {tlog}");
    let vms = dir.join(".ge-image/vms");
    let left: Vec<_> = std::fs::read_dir(&vms)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "VM directories left: {left:?}");
    let rc = env.glance.get_image(&rc_id).await.unwrap();
    assert_eq!(rc.name.as_deref(), Some(format!("{name}_rc").as_str()));
    assert_eq!(rc.visibility, Visibility::Private);

    // Publish it (no earlier public image: NID and TYPE given).
    let nid = unique_nid();
    let out = Command::new(env!("CARGO_BIN_EXE_ge-image"))
        .args(["publish", &rc_id, &nid, "baseimage", "--os-cloud"])
        .arg(cloud_name())
        .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let published = env.glance.get_image(&rc_id).await.unwrap();
    assert_eq!(published.name.as_deref(), Some(name.as_str()));
    assert_eq!(published.visibility, Visibility::Public);

    // Inspect the published image: the package create.sh installed is there.
    let file = env.root.path().join("published.qcow2");
    env.glance.download_to_file(&rc_id, &file).await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ge-image"))
        .args(["inspect", "--output", "json"])
        .arg(&file)
        .env("LIBGUESTFS_BACKEND", "direct")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let inspection = String::from_utf8_lossy(&out.stdout);
    assert!(inspection.contains("\"webdemo\""), "{inspection}");
    assert!(inspection.contains("debian"), "{inspection}");
    let _ = std::fs::remove_file(&file);
}
