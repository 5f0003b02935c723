//! himlarcli `image.py` commands of `imagebuilder` on the real local cloud
//! (`scripts/cloud/up.sh`): `update` with a himlarcli `config.ini` (`-c`),
//! and `--dry-run` of update, retire and purge sending no write request,
//! checked in Glance's access log (`<cloud dir>/logs/glance-r1-access.log`,
//! gunicorn's, with the user agent `imagebuilder/<version> pid/<pid>`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use md5::Digest;
use openstack_client::glance::{GlanceClient, ImageFilter, ImageStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The builder: files served over HTTP on 127.0.0.1.
#[derive(Clone, Default)]
struct Builder {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    url: String,
}

impl Builder {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = Builder {
            url: format!("http://{}/", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let files = b.files.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let files = files.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let p = text
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .trim_start_matches('/')
                        .to_owned();
                    let body = files.lock().unwrap().get(&p).cloned();
                    let (status, body) = match body {
                        Some(b) => ("200 OK", b),
                        None => ("404 Not Found", Vec::new()),
                    };
                    let h = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(h.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        b
    }

    fn publish(&self, short: &str, data: &[u8]) -> String {
        let md5 = hex::encode(md5::Md5::digest(data));
        let mut f = self.files.lock().unwrap();
        f.insert(format!("{short}-latest.raw"), data.to_vec());
        f.insert(
            format!("{short}-latest.md5"),
            format!("{md5}  {short}.qcow2\n").into_bytes(),
        );
        md5
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gold-images/cloud")
}

/// `fixtures/gold-images/cloud/<name>.tmpl` into `dir/config/images/<name>`.
fn render(name: &str, dir: &Path, url: &str, ty: &str) {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.tmpl"))).unwrap();
    let images = dir.join("config/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(
        images.join(name),
        text.replace("@URL@", url).replace("@TYPE@", ty),
    )
    .unwrap();
}

/// himlarcli's config.ini for the local cloud's admin.
fn config_ini(dir: &Path) -> PathBuf {
    let p = dir.join("config.ini");
    std::fs::write(
        &p,
        "[openstack]\nauth_url=http://127.0.0.1:5000/v3\nusername=admin\npassword=secret\nproject_name=admin\ndefault_domain=Default\nregion=RegionOne\n\n[log]\npath=./\n",
    )
    .unwrap();
    p
}

/// `imagebuilder ARGS` in `dir` (so `config/images/` is found there), with
/// no OpenStack variables; returns (status, stdout, stderr, pid).
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String, u32) {
    // Inside the test's runtime the builder server must keep running while
    // this thread waits for the child.
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(|| run_blocking(dir, args, env))
    } else {
        run_blocking(dir, args, env)
    }
}

fn run_blocking(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String, u32) {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("imagebuilder"));
    cmd.current_dir(dir)
        .args(args)
        .env("HIMLARCLI_ROOT", dir.join("nowhere"));
    for k in ["OS_CLOUD", "OS_AUTH_URL", "OS_REGION_NAME"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        pid,
    )
}

/// Glance RegionOne's access-log lines of the run with `pid`.
fn glance_requests(pid: u32) -> Vec<String> {
    let log = cloud_test_support::local_cloud_dir().join("logs/glance-r1-access.log");
    let marker = format!("imagebuilder/{} pid/{pid}\"", env!("CARGO_PKG_VERSION"));
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&marker))
        .map(str::to_owned)
        .collect()
}

fn writes(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| {
            ["\"POST ", "\"PUT ", "\"PATCH ", "\"DELETE "]
                .iter()
                .any(|m| l.contains(m))
        })
        .collect()
}

async fn delete_tagged(glance: &GlanceClient, tag: &str) {
    for status in [
        ImageStatus::Active,
        ImageStatus::Deactivated,
        ImageStatus::Queued,
    ] {
        let f = ImageFilter::default().tag(tag).status(status);
        for i in glance.list_images(&f).await.unwrap_or_default() {
            let _ = glance.delete_image(&i.id).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn update_with_config_ini_then_dry_runs_send_no_write() {
    let _lock = cloud_test_support::cloud_lock().await;
    let glance = cloud_test_support::session()
        .await
        .image(None)
        .await
        .unwrap();
    let ty = format!("gt{:08x}", rand::random::<u32>());
    let outcome = tokio::spawn(scenario(ty.clone(), glance.clone())).await;
    delete_tagged(&glance, &ty).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn scenario(ty: String, glance: GlanceClient) {
    let ty = ty.as_str();
    let builder = Builder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ini = config_ini(d);
    let ini = ini.to_str().unwrap();
    render("update.yaml", d, &builder.url, ty);
    render("retired.yaml", d, &builder.url, ty);
    let data: Vec<u8> = (0..40_000).map(|_| rand::random::<u8>()).collect();
    let md5 = builder.publish("alpha", &data);

    // Dry run first: the plan, and only reads.
    let (code, out, err, pid) = run(
        d,
        &[
            "update",
            "-c",
            ini,
            "-i",
            "update.yaml",
            "-n",
            "alpha",
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "DRY-RUN: alpha: create image 'GOLD Alpha {ty}' (private) from {}alpha-latest.raw",
            builder.url
        )),
        "{out}"
    );
    let reqs = glance_requests(pid);
    assert!(!reqs.is_empty(), "the run's requests are in the access log");
    assert!(writes(&reqs).is_empty(), "{reqs:#?}");
    assert!(glance
        .list_images(&ImageFilter::default().tag(ty))
        .await
        .unwrap()
        .is_empty());

    // The real update, credentials from config.ini.
    let (code, out, err, _) = run(
        d,
        &["update", "-c", ini, "-i", "update.yaml", "-n", "alpha"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("alpha: created image "), "{out}");
    let listed = glance
        .list_images(&ImageFilter::default().tag(ty).tag("alpha"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].checksum.as_deref(), Some(md5.as_str()));
    let id = listed[0].id.clone();

    // Unchanged: nothing to do.
    let (code, out, err, _) = run(
        d,
        &["update", "-c", ini, "-i", "update.yaml", "-n", "alpha"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("alpha: no new image needed: checksum match found"),
        "{out}"
    );

    // A new build, dry run: rotation planned, nothing written.
    builder.publish("alpha", &data[..30_000]);
    let (code, out, err, pid) = run(
        d,
        &[
            "update",
            "-c",
            ini,
            "-i",
            "update.yaml",
            "-n",
            "alpha",
            "--dry-run",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["entries"][0]["action"], "upload");
    assert_eq!(plan["entries"][0]["replaces"]["id"], id.as_str());
    assert!(writes(&glance_requests(pid)).is_empty());

    // retire and purge dry runs.
    let (code, out, err, pid) = run(
        d,
        &[
            "retire",
            "-c",
            ini,
            "-i",
            "retired.yaml",
            "alpha",
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "DRY-RUN: retire image {id} 'GOLD Alpha {ty}': rename to 'Retired (Alpha {ty})'"
        )),
        "{out}"
    );
    assert!(writes(&glance_requests(pid)).is_empty());
    assert_eq!(
        glance.get_image(&id).await.unwrap().status,
        ImageStatus::Active
    );

    // Retire for real (--force: no prompt), then list the deactivated image.
    let (code, out, err, _) = run(
        d,
        &[
            "retire",
            "-c",
            ini,
            "-i",
            "retired.yaml",
            "alpha",
            "--force",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("Retire image GOLD Alpha {ty}")),
        "{out}"
    );
    let (code, out, err, _) = run(
        d,
        &[
            "list", "-c", ini, "-t", ty, "-v", "private", "-s", "deactive",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{id} ")), "{out}");
    assert!(out.contains("count = 1"), "{out}");

    // Without --force and no terminal, purge asks and the empty answer aborts.
    let (code, _, err, pid) = run(d, &["purge", "-c", ini, "-t", ty, "-v", "private"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("Purge unused private deactive images matching [")
            && err.contains("Action aborted by user."),
        "{err}"
    );
    assert!(glance_requests(pid).is_empty());
}

#[test]
fn bad_image_set_is_one_line_per_problem_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/gold-images/bad/missing-keys.yaml");
    let ini = config_ini(dir.path());
    let (code, _, err, _) = run(
        dir.path(),
        &[
            "update",
            "-c",
            ini.to_str().unwrap(),
            "-i",
            bad.to_str().unwrap(),
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("imagebuilder: "))
        .collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[2].ends_with("images.debian12.depricated: missing mandatory key (found 'deprecated': the format spells it 'depricated')"),
        "{err}"
    );
    for line in lines {
        assert!(
            line.starts_with(&format!("imagebuilder: {}: images.", bad.display())),
            "{line}"
        );
    }
}

#[test]
fn missing_image_set_names_the_places_searched() {
    let dir = tempfile::tempdir().unwrap();
    let ini = config_ini(dir.path());
    let (code, _, err, _) = run(
        dir.path(),
        &["update", "-c", ini.to_str().unwrap(), "-i", "uio.yaml"],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("could not find image config file uio.yaml (looked in: uio.yaml, config/images/uio.yaml"), "{err}");
}

#[test]
fn himlarcli_short_options_win() {
    // -v is the visibility, checked by clap before any connection.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err, _) = run(dir.path(), &["list", "-v", "everyone"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value 'everyone' for '-v"), "{err}");
    let (code, _, err, _) = run(dir.path(), &["grant", "-t", "gold"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-p <PROJECT>"), "{err}");
}
