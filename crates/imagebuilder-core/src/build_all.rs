//! `imagebuilder build-all`: NREC's build-all wrapper. The images come
//! from the builder's image hash (`profile::application::builder::images`
//! in hieradata, or that hash alone); each selected image is bootstrapped
//! and built (`-d -x`) by this program as child processes with
//! `IMAGEBUILDER_REPORT=true` and the class's `IB_TEMPLATE_DIR`
//! (`<template_base>/default`, `<template_base>/nv_vgpu`, or the entry's
//! own `environment`), one after the other; a time-out (`-t`) or any
//! failure appends `{"result":"failed"}` to the image's report.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_yaml::Value;

use crate::error::{Error, Result};
use crate::report;

/// Key of the image hash in hieradata.
pub const HIERA_KEY: &str = "profile::application::builder::images";

/// Class of an image, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Standard images (`-S`).
    Standard,
    /// vGPU images (`-G`, name ends `_nv_vgpu`).
    Vgpu,
    /// Windows images (`-W`, `winsrv_*`): refused.
    Windows,
}

/// The class of image `name`.
pub fn class_of(name: &str) -> Class {
    if name.starts_with("winsrv_") {
        Class::Windows
    } else if name.ends_with("_nv_vgpu") {
        Class::Vgpu
    } else {
        Class::Standard
    }
}

/// One image of the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageEntry {
    /// Short name (`debian12`).
    pub name: String,
    /// Upstream image's Glance name (`image_name`).
    pub image_name: String,
    /// Base URL.
    pub url: String,
    /// File under `url`.
    pub latest: String,
    /// Checksum file under `url`.
    pub checksum_file: Option<String>,
    /// Digest type.
    pub checksum: Option<String>,
    /// MB.
    pub min_ram: u64,
    /// GB.
    pub min_disk: u64,
    /// Flavor.
    pub flavor: String,
    /// UEFI.
    pub efi: bool,
    /// SSH user.
    pub username: String,
    /// Network name.
    pub network: String,
    /// Extra environment (`KEY=VALUE`).
    pub environment: Vec<(String, String)>,
}

/// Read the image hash; every problem is reported with the image and key.
pub fn load_images(
    file: &Path,
    default_flavor: &str,
    default_network: &str,
) -> Result<Vec<ImageEntry>> {
    let err = |message: String| Error::ImageSpec {
        file: file.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(crate::error::io_err("reading", file))?;
    let root: Value =
        serde_yaml::from_str(&text).map_err(|e| err(format!("not valid YAML: {e}")))?;
    // Hieradata's builder flavor is the default of images that name none.
    let default_flavor = root
        .get("profile::application::builder::flavor")
        .and_then(Value::as_str)
        .unwrap_or(default_flavor);
    let map = root
        .get(HIERA_KEY)
        .unwrap_or(&root)
        .as_mapping()
        .ok_or_else(|| err("not a map of images".into()))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            problems.push("an image name is not a string".to_string());
            continue;
        };
        let s = |key: &str| -> Option<String> {
            v.get(key).and_then(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
        };
        let mut need = |key: &str| -> String {
            s(key).unwrap_or_else(|| {
                problems.push(format!("image '{name}': missing key '{key}'"));
                String::new()
            })
        };
        let image_name = need("image_name");
        let url = need("url");
        let latest = need("latest");
        let username = need("username");
        let min_ram_s = need("min_ram");
        let min_disk_s = need("min_disk");
        let num = |key: &str, t: &str, problems: &mut Vec<String>| -> u64 {
            if t.is_empty() {
                return 0;
            }
            t.parse().unwrap_or_else(|_| {
                problems.push(format!("image '{name}': key '{key}' is not a number"));
                0
            })
        };
        let min_ram = num("min_ram", &min_ram_s, &mut problems);
        let min_disk = num("min_disk", &min_disk_s, &mut problems);
        let mut environment = Vec::new();
        if let Some(list) = v.get("environment").and_then(Value::as_sequence) {
            for e in list {
                match e.as_str().and_then(|e| e.split_once('=')) {
                    Some((a, b)) => environment.push((a.to_string(), b.to_string())),
                    None => problems.push(format!(
                        "image '{name}': key 'environment': entries are KEY=VALUE"
                    )),
                }
            }
        }
        out.push(ImageEntry {
            name: name.to_string(),
            image_name,
            url,
            latest,
            checksum_file: s("checksum_file").filter(|c| !c.is_empty()),
            checksum: s("checksum"),
            min_ram,
            min_disk,
            flavor: s("flavor").unwrap_or_else(|| default_flavor.to_string()),
            efi: s("efi").as_deref() == Some("true"),
            username,
            network: s("network").unwrap_or_else(|| default_network.to_string()),
            environment,
        });
    }
    if !problems.is_empty() {
        return Err(err(problems.join("; ")));
    }
    Ok(out)
}

/// What `build-all` was asked (the wrapper's options).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `-S`.
    pub standard: bool,
    /// `-G`.
    pub vgpu: bool,
    /// `-W`.
    pub windows: bool,
    /// `-i` (repeatable).
    pub images: Vec<String>,
}

/// One image build of a build-all run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Short name.
    pub name: String,
    /// Class.
    pub class: Class,
    /// Environment for both commands.
    pub env: BTreeMap<String, String>,
    /// `imagebuilder bootstrap …` arguments.
    pub bootstrap: Vec<String>,
    /// `imagebuilder build …` arguments (`-s` is the bootstrap's output).
    pub build: Vec<String>,
    /// The report that gets `{"result":"failed"}` on a failure.
    pub report: PathBuf,
}

/// A build-all plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildAllPlan {
    /// The builds, in order.
    pub jobs: Vec<Job>,
    /// Time limit per image build.
    pub timeout_secs: Option<u64>,
}

/// Choose the jobs: refuses Windows ("Poke Tor", as the wrapper) and
/// unknown `-i` names.
pub fn plan(
    images: &[ImageEntry],
    sel: &Selection,
    az: &str,
    template_base: &Path,
    report_dir: &Path,
    timeout_secs: Option<u64>,
) -> Result<BuildAllPlan> {
    if sel.windows {
        return Err(Error::Config(
            "-W: Windows images are not built here (Poke Tor)".into(),
        ));
    }
    if !sel.standard && !sel.vgpu && sel.images.is_empty() {
        return Err(Error::Config(
            "nothing to build: give -S, -G or -i IMAGE".into(),
        ));
    }
    for i in &sel.images {
        if !images.iter().any(|e| &e.name == i) {
            return Err(Error::Config(format!(
                "-i {i}: no such image in the image list"
            )));
        }
        if class_of(i) == Class::Windows {
            return Err(Error::Config(format!(
                "-i {i}: Windows images are not built here (Poke Tor)"
            )));
        }
    }
    let mut jobs = Vec::new();
    for e in images {
        let class = class_of(&e.name);
        let chosen = sel.images.contains(&e.name)
            || (sel.standard && class == Class::Standard)
            || (sel.vgpu && class == Class::Vgpu);
        if !chosen {
            continue;
        }
        let mut env = BTreeMap::new();
        env.insert("IMAGEBUILDER_REPORT".to_string(), "true".to_string());
        let tdir = match class {
            Class::Vgpu => template_base.join("nv_vgpu"),
            _ => template_base.join("default"),
        };
        env.insert("IB_TEMPLATE_DIR".to_string(), tdir.display().to_string());
        for (k, v) in &e.environment {
            env.insert(k.clone(), v.clone());
        }
        let mut bootstrap = vec![
            "bootstrap".to_string(),
            "-a".into(),
            az.to_string(),
            "-u".into(),
            format!("{}{}", e.url, e.latest),
        ];
        if let Some(c) = &e.checksum_file {
            bootstrap.extend(["-c".to_string(), format!("{}{c}", e.url)]);
            bootstrap.extend([
                "-t".to_string(),
                e.checksum.clone().unwrap_or_else(|| "sha256".into()),
            ]);
        }
        bootstrap.extend([
            "-n".to_string(),
            e.image_name.clone(),
            "-r".into(),
            e.min_ram.to_string(),
            "-d".into(),
            e.min_disk.to_string(),
        ]);
        if e.efi {
            bootstrap.push("-e".into());
        }
        bootstrap.extend(["-f".to_string(), "qcow2".into()]);
        let build = vec![
            "build".to_string(),
            "-n".into(),
            e.name.clone(),
            "-N".into(),
            e.network.clone(),
            "-a".into(),
            az.to_string(),
            "-u".into(),
            e.username.clone(),
            "-f".into(),
            e.flavor.clone(),
            "-d".into(),
            "-x".into(),
        ];
        jobs.push(Job {
            name: e.name.clone(),
            class,
            env,
            bootstrap,
            build,
            report: report_dir.join(format!("{}-report.jsonl", e.name)),
        });
    }
    Ok(BuildAllPlan { jobs, timeout_secs })
}

/// How a build-all job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Bootstrap and build succeeded.
    Succeeded,
    /// Bootstrap or build failed, or the time limit stopped them.
    Failed,
    /// A signal (the `stop` future) stopped it: build no more.
    Interrupted,
}

/// How long a child stopped with SIGTERM gets to clean up (the build
/// deletes its VM, keypair and security group) before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(600);

/// Why a child stopped running.
enum Exit {
    Status(std::process::ExitStatus),
    TimedOut,
    Interrupted(Option<std::process::ExitStatus>),
}

impl Exit {
    fn success(&self) -> bool {
        matches!(self, Exit::Status(s) if s.success())
    }

    /// The exit code as the build script saw it (`timeout`'s 124; 128 +
    /// signal for a killed child).
    fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt as _;
        let of = |s: &std::process::ExitStatus| {
            s.code()
                .or_else(|| s.signal().map(|n| 128 + n))
                .unwrap_or(1)
        };
        match self {
            Exit::Status(s) => of(s),
            Exit::TimedOut => 124,
            Exit::Interrupted(s) => s.as_ref().map(of).unwrap_or(130),
        }
    }
}

/// Wait for `child` until `deadline` or `stop`; then SIGTERM it and give it
/// [`STOP_GRACE`] to finish before SIGKILL.
async fn wait_child(
    child: &mut tokio::process::Child,
    deadline: Option<tokio::time::Instant>,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Exit> {
    let timed_out = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let timed_out = tokio::select! {
        r = child.wait() => {
            return r
                .map(Exit::Status)
                .map_err(|e| Error::Config(format!("waiting for a child: {e}")));
        }
        () = timed_out => true,
        () = stop.as_mut() => false,
    };
    if let Some(pid) = child.id() {
        tracing::warn!(pid, timed_out, "stopping the child with SIGTERM");
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let status = match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(r) => r.ok(),
        Err(_) => {
            tracing::warn!("the child did not stop in time: SIGKILL");
            let _ = child.kill().await;
            None
        }
    };
    Ok(if timed_out {
        Exit::TimedOut
    } else {
        Exit::Interrupted(status)
    })
}

/// Copy a child's output to our standard error as it comes, and keep it.
fn drain<R>(reader: Option<R>) -> tokio::task::JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut kept = Vec::new();
        let Some(mut r) = reader else {
            return kept;
        };
        let mut buf = vec![0u8; 8192];
        let mut err = tokio::io::stderr();
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let _ = err.write_all(&buf[..n]).await;
            kept.extend_from_slice(&buf[..n]);
        }
        kept
    })
}

/// The report's modification time and length (to see whether the build
/// wrote it).
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Whether the report was rewritten since `before` and ends with a
/// `result` line (the build wrote its three lines).
fn finished_since(path: &Path, before: Option<(std::time::SystemTime, u64)>) -> bool {
    let now = stamp(path);
    if now.is_none() || now == before {
        return false;
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().last().map(str::to_string))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .is_some_and(|v| v.get("result").is_some())
}

/// Run one job with `program` (this binary): bootstrap, then build with
/// its output as `-s` (and `extra`, the build's own options), under the
/// time limit; `stop` (SIGINT/SIGTERM) ends it early. A child past the
/// limit or stopped gets SIGTERM (the build then cleans up and reports) and
/// [`STOP_GRACE`] before SIGKILL.
///
/// The report always ends with the original's lines: a failed bootstrap
/// (which the original's `bootstrap | xargs build` reported as exit code 0
/// with an empty log) writes `{"result_imagebuilder":"<its exit code>"}`,
/// `{"output_imagebuilder":"<its standard error>"}` (also the plain log
/// `<name>-build-YYYYMMDD.log`) and `{"result":"failed"}`; a build that
/// did not write its own report gets the same from its exit code and log.
pub async fn run_job(
    program: &Path,
    job: &Job,
    extra: &[String],
    timeout: Option<Duration>,
    stop: impl Future<Output = ()>,
) -> Result<JobEnd> {
    tokio::pin!(stop);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let date = chrono::Local::now().format("%Y%m%d").to_string();
    let log_dir = job.report.parent().unwrap_or(Path::new("."));
    let paths = report::ReportPaths::new(log_dir, &job.name, &date);
    let before = stamp(&job.report);
    let log_before = stamp(&paths.log);
    let spawn_err = crate::error::io_err("running", program);

    let mut child = tokio::process::Command::new(program)
        .args(&job.bootstrap)
        .envs(&job.env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let stdout = tokio::spawn({
        let out = child.stdout.take();
        async move {
            use tokio::io::AsyncReadExt as _;
            let mut kept = Vec::new();
            if let Some(mut o) = out {
                let _ = o.read_to_end(&mut kept).await;
            }
            kept
        }
    });
    let stderr = drain(child.stderr.take());
    let exit = wait_child(&mut child, deadline, &mut stop).await?;
    let id = String::from_utf8_lossy(&stdout.await.unwrap_or_default())
        .trim()
        .to_string();
    let mut boot_log = String::from_utf8_lossy(&stderr.await.unwrap_or_default()).to_string();
    if !exit.success() || id.is_empty() {
        let why = match &exit {
            Exit::TimedOut => "timed out".to_string(),
            Exit::Interrupted(_) => "interrupted by a signal".to_string(),
            Exit::Status(s) if s.success() => "printed no image id".to_string(),
            Exit::Status(_) => format!("failed (exit code {})", exit.code()),
        };
        tracing::warn!(image = %job.name, "bootstrap {why}");
        boot_log.push_str(&format!(
            "imagebuilder build-all: bootstrap of {} {why}\n",
            job.name
        ));
        let code = if exit.success() { 1 } else { exit.code() };
        write_failed(&paths, &job.report, code, &boot_log)?;
        return Ok(match exit {
            Exit::Interrupted(_) => JobEnd::Interrupted,
            _ => JobEnd::Failed,
        });
    }

    let mut child = tokio::process::Command::new(program)
        .args(&job.build)
        .args(["-s", &id])
        .args(extra)
        .envs(&job.env)
        .kill_on_drop(true)
        .spawn()
        .map_err(crate::error::io_err("running", program))?;
    let exit = wait_child(&mut child, deadline, &mut stop).await?;
    if !exit.success() {
        tracing::warn!(image = %job.name, code = exit.code(), "build failed");
    }
    if !exit.success() && !finished_since(&job.report, before) {
        // The build died before writing its report: the original's lines
        // from what it left.
        let log = if stamp(&paths.log) != log_before {
            std::fs::read_to_string(&paths.log).unwrap_or_default()
        } else {
            String::new()
        };
        let mut log = log;
        log.push_str(&format!(
            "imagebuilder build-all: build of {} ended without its report (exit code {})\n",
            job.name,
            exit.code()
        ));
        write_failed(&paths, &job.report, exit.code(), &log)?;
    }
    Ok(match exit {
        Exit::Status(s) if s.success() => JobEnd::Succeeded,
        Exit::Interrupted(_) => JobEnd::Interrupted,
        _ => JobEnd::Failed,
    })
}

/// The report of a job that failed without one: the plain log, then the
/// original's three lines.
fn write_failed(
    paths: &report::ReportPaths,
    report_file: &Path,
    code: i32,
    log: &str,
) -> Result<()> {
    if let Some(d) = paths.log.parent() {
        std::fs::create_dir_all(d).map_err(crate::error::io_err("creating", d))?;
    }
    std::fs::write(&paths.log, log).map_err(crate::error::io_err("writing", &paths.log))?;
    report::write_start(report_file, code, log)?;
    report::append_result(report_file, false)
}
