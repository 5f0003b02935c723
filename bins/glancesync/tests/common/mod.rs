//! Helpers of glancesync's tests on real services: the `credential` line of
//! a glancesync.conf built from a cloud of `clouds.yaml` (never from
//! literals), private clouds for the tests that stop or restart services
//! (their own Keystone and Glance on another loopback address, started by
//! `scripts/cloud/up.sh` with parameters), and a throttling TCP proxy that
//! makes a Glance slow.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openstack_client::glance::{CreateImage, GlanceClient, Image, ImageFilter, Visibility};
use openstack_client::{CloudConfig, Credentials, Scope, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `user,base64(password),auth_url,project` of cloud config `c` (the
/// original's `credential` option), read from its clouds.yaml.
pub fn credential(c: &CloudConfig) -> String {
    use base64::Engine as _;
    let Credentials::Password { user, password } = &c.credentials else {
        panic!("password credentials expected")
    };
    let Scope::Project { name, .. } = &c.scope else {
        panic!("project scope expected")
    };
    format!(
        "{},{},{},{}",
        user.name.clone().unwrap(),
        base64::engine::general_purpose::STANDARD.encode(password.expose()),
        auth_url(c),
        name.clone().unwrap()
    )
}

/// The Keystone URL of `c`, without a trailing slash (`http://host:port/v3`).
pub fn auth_url(c: &CloudConfig) -> String {
    c.auth_url.as_str().trim_end_matches('/').to_string()
}

/// A Keystone and Glance RegionOne + RegionTwo of a test's own, started by
/// `scripts/cloud/up.sh` on loopback address `host` with state in
/// `~/.cache/openstack-image-tools/test-clouds/<name>` (kept between runs,
/// so a second start takes seconds) and the shared cloud's venv. The test
/// holds a lock on that directory while it runs; every server is stopped
/// when the value is dropped. The shared cloud is never touched.
pub struct PrivateCloud {
    /// The state directory.
    pub dir: PathBuf,
    /// The loopback address the servers listen on.
    pub host: String,
    env: Vec<(String, String)>,
    _lock: std::fs::File,
}

impl PrivateCloud {
    /// Start (or reuse) the private cloud `name` on `host` with the extra
    /// `up.sh` environment `env` (e.g. `KS_TOKEN_EXPIRATION`,
    /// `GLANCE_R2_ENDPOINT`).
    pub fn start(name: &str, host: &str, env: &[(&str, &str)]) -> PrivateCloud {
        let dir = PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache/openstack-image-tools/test-clouds")
            .join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // Rust opens files close-on-exec: the servers do not inherit the lock.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".test.lock"))
            .unwrap();
        lock.lock().unwrap();
        let mut all = vec![
            ("LOCAL_CLOUD_DIR".to_string(), dir.display().to_string()),
            ("CLOUD_HOST".to_string(), host.to_string()),
            (
                "CLOUD_VENV".to_string(),
                cloud_test_support::local_cloud_dir()
                    .join("venv")
                    .display()
                    .to_string(),
            ),
            ("REGION_COUNT".to_string(), "2".to_string()),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cloud = PrivateCloud {
            dir,
            host: host.to_string(),
            env: all,
            _lock: lock,
        };
        cloud.up();
        cloud
    }

    fn script(&self, name: &str) -> Command {
        let mut c = Command::new(repo().join("scripts/cloud").join(name));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(std::process::Stdio::null());
        c
    }

    /// Run `up.sh` (starts what is not running; idempotent).
    pub fn up(&self) {
        let out = self.script("up.sh").output().unwrap();
        assert!(
            out.status.success(),
            "scripts/cloud/up.sh for {} failed:\n{}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop the named servers (`keystone`, `glance-r1`, `glance-r2`).
    pub fn stop(&self, names: &[&str]) {
        let out = self.script("down.sh").args(names).output().unwrap();
        assert!(
            out.status.success(),
            "down.sh {names:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Its clouds.yaml.
    pub fn clouds_yaml(&self) -> PathBuf {
        self.dir.join("clouds.yaml")
    }

    /// Cloud `name` (`local`, `local-demo`) of its clouds.yaml.
    pub fn config(&self, name: &str) -> CloudConfig {
        CloudConfig::from_files(&self.clouds_yaml(), None, name).unwrap()
    }

    /// A server's log file (`keystone-access.log`, `glance-r2.log`, ...).
    pub fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(file)).unwrap_or_default()
    }
}

impl Drop for PrivateCloud {
    fn drop(&mut self) {
        let _ = self.script("down.sh").output();
    }
}

/// A TCP proxy on `host`:0 in front of `upstream` that passes at most
/// `rate` bytes per second from the client to the server (the answers pass
/// freely): a slow link to a Glance for uploads. Connections made while the
/// upstream is down are closed at once, like a server that is away.
pub struct Throttle {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Bytes passed from clients to the upstream so far.
    pub sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Throttle {
    /// Start the proxy (on the current Tokio runtime).
    pub async fn start(host: &str, upstream: SocketAddr, rate: u64) -> Throttle {
        let listener = TcpListener::bind((host, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, rate, s.clone()));
            }
        });
        Throttle { addr, sent, stop }
    }

    /// The proxy's URL (`http://addr`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn pipe(client: TcpStream, server: TcpStream, rate: u64, sent: Arc<AtomicU64>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        // 1/20 s worth of bytes per step.
        let step = (rate / 20).max(1024) as usize;
        let mut buf = vec![0u8; step];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            sent.fetch_add(n as u64, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Lines of an access log `text` written for glancesync process `pid`
/// (its user agent ends with `pid/N`).
pub fn lines_of_pid(text: &str, pid: u32) -> Vec<String> {
    let marker = format!("pid/{pid}\"");
    text.lines()
        .filter(|l| l.ends_with(&marker))
        .map(str::to_string)
        .collect()
}

/// `glancesync` (the binary under test) run in `cwd`, without the caller's
/// `GLANCESYNC_CONFIG` and `RUST_LOG`.
pub fn glancesync(cwd: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("glancesync"));
    c.current_dir(cwd)
        .env_remove("GLANCESYNC_CONFIG")
        .env_remove("RUST_LOG");
    c
}

/// Run `cmd` with its stdout and stderr captured: (exit code, -1 when a
/// signal ended it; stdout; stderr; its pid, which Glance's access logs
/// record in the user agent).
pub fn output_with_pid(cmd: &mut Command) -> (i32, String, String, u32) {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        pid,
    )
}

/// `size` random bytes.
pub fn random_data(size: usize) -> Vec<u8> {
    (0..size).map(|_| rand::random::<u8>()).collect()
}

/// A raw/bare image `name` in `g`, public or private, with the properties
/// `props`, holding `data`; as Glance shows it after the upload.
pub async fn create_image(
    g: &GlanceClient,
    name: &str,
    data: &[u8],
    public: bool,
    props: &[(&str, &str)],
) -> Image {
    let mut req = CreateImage::new(name)
        .disk_format("raw")
        .container_format("bare")
        .visibility(if public {
            Visibility::Public
        } else {
            Visibility::Private
        });
    for (k, v) in props {
        req = req.property(*k, *v);
    }
    let img = g.create_image(&req).await.unwrap();
    g.upload(
        &img.id,
        std::io::Cursor::new(data.to_vec()),
        Some(data.len() as u64),
    )
    .await
    .unwrap();
    g.get_image(&img.id).await.unwrap()
}

/// The images of `g` named `name`.
pub async fn named(g: &GlanceClient, name: &str) -> Vec<Image> {
    g.list_images(&ImageFilter::default().name(name))
        .await
        .unwrap()
}

/// Delete every image whose name starts with `prefix` that each of
/// `sessions` sees in each of `regions` (a clean-up: failures are ignored).
pub async fn delete_prefixed(sessions: &[&Session], regions: &[&str], prefix: &str) {
    for region in regions {
        for s in sessions {
            let g = s.image(Some(region)).await.unwrap();
            for img in g
                .list_images(&ImageFilter::default())
                .await
                .unwrap_or_default()
            {
                if img.name.as_deref().is_some_and(|n| n.starts_with(prefix)) {
                    let _ = g.delete_image(&img.id).await;
                }
            }
        }
    }
}

/// A fresh name prefix for the images of one test: `<tag>-<8 hex digits>-`.
pub fn image_prefix(tag: &str) -> String {
    format!("{tag}-{:08x}-", rand::random::<u32>())
}

/// Run `body` on `rt`, then `cleanup`, even when `body` panicked; its panic
/// is raised again once the clean-up is done.
pub fn run_then_clean_up(
    rt: &tokio::runtime::Runtime,
    body: impl std::future::Future<Output = ()>,
    cleanup: impl std::future::Future<Output = ()>,
) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(body)));
    rt.block_on(cleanup);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
