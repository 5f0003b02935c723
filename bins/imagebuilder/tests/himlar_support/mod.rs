//! Helpers of the himlarcli-command tests (`himlar_*.rs`): the builder
//! HTTP server, image set rendering, config.ini, running `imagebuilder`,
//! Glance's access log, clean-up by tag, Keystone projects and a mocked Nova.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use md5::Digest;
use openstack_client::glance::{GlanceClient, ImageFilter, ImagePatch, ImageStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The builder: files served over HTTP on 127.0.0.1.
#[derive(Clone, Default)]
pub struct Builder {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub url: String,
}

impl Builder {
    pub async fn start() -> Self {
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

    pub fn publish(&self, short: &str, data: &[u8]) -> String {
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

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gold-images/cloud")
}

/// `fixtures/gold-images/cloud/<name>.tmpl` into `dir/config/images/<name>`.
pub fn render(name: &str, dir: &Path, url: &str, ty: &str) {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.tmpl"))).unwrap();
    let images = dir.join("config/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(
        images.join(name),
        text.replace("@URL@", url).replace("@TYPE@", ty),
    )
    .unwrap();
}

/// Runs `scenario` with a Glance client of the shared cloud, under the
/// cloud-test lock, then deletes every image tagged with one of `tags`
/// whatever happened, and re-raises the scenario's panic.
pub async fn with_tagged_cleanup<F, Fut>(tags: &[String], scenario: F)
where
    F: FnOnce(GlanceClient) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let _lock = cloud_test_support::cloud_lock().await;
    let glance = cloud_test_support::session()
        .await
        .image(None)
        .await
        .unwrap();
    let outcome = tokio::spawn(scenario(glance.clone())).await;
    for tag in tags {
        delete_tagged(&glance, tag).await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// himlarcli's config.ini for the local cloud's admin, from the generated
/// `clouds.yaml` (URL, user, password and project are never literals here).
pub fn config_ini(dir: &Path) -> PathBuf {
    use openstack_client::config::{Credentials, Scope};
    let c = cloud_test_support::config();
    let Credentials::Password { user, password } = &c.credentials else {
        panic!("the local cloud's clouds.yaml should use a password");
    };
    let Scope::Project {
        name: Some(project),
        ..
    } = &c.scope
    else {
        panic!("the local cloud's clouds.yaml should scope to a project by name");
    };
    let region = c.regions.first().map_or("RegionOne", String::as_str);
    let p = dir.join("config.ini");
    std::fs::write(
        &p,
        format!(
            "[openstack]\nauth_url={}\nusername={}\npassword={}\nproject_name={project}\ndefault_domain=Default\nregion={region}\n\n[log]\npath=./\n",
            c.auth_url,
            user.name.as_deref().unwrap_or("admin"),
            password.expose(),
        ),
    )
    .unwrap();
    p
}

/// `imagebuilder ARGS` in `dir` (so `config/images/` is found there), with
/// no OpenStack variables; returns (status, stdout, stderr, pid).
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String, RunMark) {
    // Inside the test's runtime the builder server must keep running while
    // this thread waits for the child.
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(|| run_blocking(dir, args, env))
    } else {
        run_blocking(dir, args, env)
    }
}

pub fn run_blocking(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String, RunMark) {
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
    // Where RegionOne's access log ends before the run: PIDs wrap (32768
    // here), so an older run with the same PID may be in the log.
    let log_offset = std::fs::metadata(glance_access_log()).map_or(0, |m| m.len());
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mark = RunMark {
        pid: child.id(),
        log_offset,
    };
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        mark,
    )
}

/// One run of the binary: its PID (in its user agent) and the length of
/// RegionOne's access log when it started.
#[derive(Debug, Clone, Copy)]
pub struct RunMark {
    pid: u32,
    log_offset: u64,
}

fn glance_access_log() -> std::path::PathBuf {
    cloud_test_support::local_cloud_dir().join("logs/glance-r1-access.log")
}

/// Glance RegionOne's access-log lines of the run `mark` (its user agent,
/// logged after it started). Glance writes a line after it sent the
/// response, so the run may have ended before its last lines are in the
/// file: read until two reads 200 ms apart agree and found something (at
/// most 5 s).
pub fn glance_requests(mark: RunMark) -> Vec<String> {
    let marker = format!(
        "imagebuilder/{} pid/{}\"",
        env!("CARGO_PKG_VERSION"),
        mark.pid
    );
    let read = || {
        let log = std::fs::read(glance_access_log()).unwrap();
        let start = usize::try_from(mark.log_offset).unwrap().min(log.len());
        String::from_utf8_lossy(&log[start..])
            .lines()
            .filter(|l| l.contains(&marker))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut lines = read();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let again = read();
        if (again == lines && !again.is_empty()) || std::time::Instant::now() > deadline {
            return again;
        }
        lines = again;
    }
}

pub fn writes(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| {
            ["\"POST ", "\"PUT ", "\"PATCH ", "\"DELETE "]
                .iter()
                .any(|m| l.contains(m))
        })
        .collect()
}

pub async fn delete_tagged(glance: &GlanceClient, tag: &str) {
    for status in [
        ImageStatus::Active,
        ImageStatus::Deactivated,
        ImageStatus::Queued,
    ] {
        let f = ImageFilter::default().tag(tag).status(status);
        for i in glance.list_images(&f).await.unwrap_or_default() {
            if i.protected {
                let patch = ImagePatch::for_image(&i).protected(false);
                let _ = glance.update_image(&i.id, &patch).await;
            }
            if let Err(e) = glance.delete_image(&i.id).await {
                eprintln!("clean-up: cannot delete image {}: {e}", i.id);
            }
        }
    }
}

/// A type tag unique to the run (`gt<hex>`).
pub fn unique_type() -> String {
    format!("gt{:08x}", rand::random::<u32>())
}

/// The local cloud's clouds.yaml with Nova (`compute`) pointed at `url`
/// (openstacksdk's `compute_endpoint_override`), written into `dir`; use
/// it with `OS_CLIENT_CONFIG_FILE` and `OS_CLOUD`.
pub fn clouds_yaml_with_compute(dir: &Path, url: &str) -> PathBuf {
    let cloud = cloud_test_support::cloud_name();
    let text = std::fs::read_to_string(cloud_test_support::clouds_yaml()).unwrap();
    let marker = format!("\n  {cloud}:\n");
    assert!(text.contains(&marker), "cloud {cloud} in clouds.yaml");
    let text = text.replacen(
        &marker,
        &format!("{marker}    compute_endpoint_override: {url}\n"),
        1,
    );
    let p = dir.join("clouds.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A Nova answering its version document at `/v2.1/` (microversion 2.90).
pub async fn nova() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    let nova = wiremock::MockServer::start().await;
    let uri = nova.uri();
    wiremock::Mock::given(method("GET"))
        .and(path("/v2.1/"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"version": {
                "id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1",
                "updated": "2013-07-23T11:33:21Z",
                "links": [{"href": format!("{uri}/v2.1/"), "rel": "self"}]
            }}),
        ))
        .mount(&nova)
        .await;
    nova
}

/// Nova's `GET /servers/detail?image=<image>&all_tenants=1` answers
/// `servers` (api-ref shaped) from now on.
pub async fn mock_servers(nova: &wiremock::MockServer, image: &str, servers: &[&str]) {
    use wiremock::matchers::{method, path, query_param};
    let list: Vec<serde_json::Value> = servers
        .iter()
        .map(|id| {
            serde_json::json!({
                "id": id, "name": format!("vm-{id}"), "status": "ACTIVE",
                "tenant_id": "6f70656e737461636b20342065766572", "user_id": "admin",
                "image": {"id": image, "links": []},
                "flavor": {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0, "original_name": "m1.tiny", "extra_specs": {}},
                "addresses": {}, "metadata": {}, "key_name": null,
                "OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:power_state": 1,
                "created": "2026-11-01T00:00:00Z", "updated": "2026-11-01T00:00:01Z", "hostId": "", "progress": 0
            })
        })
        .collect();
    wiremock::Mock::given(method("GET"))
        .and(path("/v2.1/servers/detail"))
        .and(query_param("image", image))
        .and(query_param("all_tenants", "1"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "servers": list })),
        )
        .mount(nova)
        .await;
}

/// An active (or, with `deactivate`, deactivated) raw image with a few
/// bytes of data, `visibility` and `tags`; returns its id.
pub async fn image(
    glance: &GlanceClient,
    name: &str,
    visibility: openstack_client::glance::Visibility,
    tags: &[&str],
    protected: bool,
    deactivate: bool,
) -> String {
    let mut req = openstack_client::glance::CreateImage::new(name)
        .disk_format("raw")
        .container_format("bare")
        .visibility(visibility)
        .protected(protected);
    for t in tags {
        req = req.tag(*t);
    }
    let image = glance.create_image(&req).await.unwrap();
    let data = format!("data of {name}").into_bytes();
    let len = data.len() as u64;
    glance
        .upload(&image.id, std::io::Cursor::new(data), Some(len))
        .await
        .unwrap();
    if deactivate {
        glance.deactivate_image(&image.id).await.unwrap();
    }
    image.id
}
