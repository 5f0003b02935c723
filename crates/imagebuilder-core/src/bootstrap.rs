//! `imagebuilder bootstrap`: download an upstream cloud image (resumable,
//! with progress), check its size and its digest against a checksum file,
//! and upload it to Glance as a private image with the `hw_*` properties
//! NREC boots its builds with. The caller prints only the new image's id.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use md5::Digest as _;
use openstack_client::glance::{CreateImage, GlanceClient, Visibility};
use tokio::io::AsyncWriteExt as _;

use crate::error::{io_err, os_err, Error, Result};

/// The original refused downloads announcing fewer bytes than this.
pub const MIN_IMAGE_BYTES: u64 = 1000;

/// The User-Agent the original sent (some mirrors refuse unknown agents).
pub const USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0";

/// Digest type of a checksum file (`-t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestKind {
    /// MD5.
    Md5,
    /// SHA-256 (the default).
    Sha256,
    /// SHA-512.
    Sha512,
}

impl std::str::FromStr for DigestKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "md5" => Ok(DigestKind::Md5),
            "sha256" => Ok(DigestKind::Sha256),
            "sha512" => Ok(DigestKind::Sha512),
            other => Err(format!("'{other}' is not a digest: md5, sha256 or sha512")),
        }
    }
}

impl std::fmt::Display for DigestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DigestKind::Md5 => "md5",
            DigestKind::Sha256 => "sha256",
            DigestKind::Sha512 => "sha512",
        })
    }
}

/// What a bootstrap does (the plan `--dry-run` prints).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BootstrapPlan {
    /// Image URL (`-u`).
    pub url: String,
    /// Checksum file URL (`-c`).
    pub checksum_url: Option<String>,
    /// Digest type (`-t`).
    pub digest: DigestKind,
    /// Glance name (`-n`).
    pub name: String,
    /// `min_ram` in MB (`-r`).
    pub min_ram: u64,
    /// `min_disk` in GB (`-d`).
    pub min_disk: u64,
    /// Disk format (`-f`).
    pub disk_format: String,
    /// Properties set on the image.
    pub properties: BTreeMap<String, String>,
    /// Where the download is kept while in progress (resumed from there).
    pub download_path: PathBuf,
}

/// The properties of the original: SCSI unless `no_scsi`, UEFI + q35 with
/// `efi`, always the virtio RNG.
pub fn properties(no_scsi: bool, efi: bool) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    if !no_scsi {
        p.insert("hw_disk_bus".into(), "scsi".into());
        p.insert("hw_scsi_model".into(), "virtio-scsi".into());
    }
    if efi {
        p.insert("hw_firmware_type".into(), "uefi".into());
        p.insert("hw_machine_type".into(), "q35".into());
    }
    p.insert("hw_rng_model".into(), "virtio".into());
    p
}

/// Where a download of `url` is kept under `cache_dir`: a name derived
/// from the URL, so that a rerun resumes it.
pub fn download_path(cache_dir: &Path, url: &str) -> PathBuf {
    let digest = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    let base = url
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("image");
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache_dir.join(format!("{}-{base}", &digest[..16]))
}

/// `~/.cache/openstack-image-tools/imagebuilder/downloads`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/openstack-image-tools/imagebuilder/downloads")
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Config(format!("cannot make an HTTP client: {e}")))
}

/// Download `url` to `dest`, resuming from `<dest>.part` when the server
/// honours ranges. Returns the size. Progress goes to the log every 10 %.
#[tracing::instrument(skip_all, fields(url))]
pub async fn download(url: &str, dest: &Path) -> Result<u64> {
    let derr = |message: String| Error::Download {
        url: url.to_string(),
        message,
    };
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io_err("creating", dir))?;
    }
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let have = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let client = http_client()?;
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(|e| derr(e.to_string()))?;
    let status = resp.status();
    let (mut file, mut done, total) = if status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0
    {
        let total = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.parse::<u64>().ok());
        tracing::info!(resumed_at = have, "resuming the download");
        let f = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&part)
            .await
            .map_err(io_err("opening", &part))?;
        (f, have, total)
    } else if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        // The part file is already complete (or bigger than the file): start over.
        let _ = tokio::fs::remove_file(&part).await;
        return Box::pin(download(url, dest)).await;
    } else if status.is_success() {
        let total = resp.content_length();
        let f = tokio::fs::File::create(&part)
            .await
            .map_err(io_err("creating", &part))?;
        (f, 0, total)
    } else {
        return Err(derr(format!("HTTP {status}")));
    };
    if let Some(t) = total {
        if t < MIN_IMAGE_BYTES {
            drop(file);
            let _ = tokio::fs::remove_file(&part).await;
            return Err(derr(format!(
                "File is too small: {t} bytes (an image has at least {MIN_IMAGE_BYTES})"
            )));
        }
    }
    let mut stream = resp.bytes_stream();
    let mut next_report = 10u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| derr(format!("after {done} bytes: {e} (rerun to resume)")))?;
        file.write_all(&chunk)
            .await
            .map_err(io_err("writing", &part))?;
        done += chunk.len() as u64;
        if let Some(t) = total.filter(|t| *t > 0) {
            let pct = done * 100 / t;
            if pct >= next_report {
                tracing::info!(percent = pct, bytes = done, total = t, "downloading");
                next_report = (pct / 10 + 1) * 10;
            }
        }
    }
    file.flush().await.map_err(io_err("writing", &part))?;
    drop(file);
    if let Some(t) = total {
        if done != t {
            return Err(derr(format!("got {done} of {t} bytes (rerun to resume)")));
        }
    }
    if done < MIN_IMAGE_BYTES {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(derr(format!(
            "File is too small: {done} bytes (an image has at least {MIN_IMAGE_BYTES})"
        )));
    }
    tokio::fs::rename(&part, dest)
        .await
        .map_err(io_err("renaming", &part))?;
    Ok(done)
}

/// Hex digests (`kind`, then md5) of a file, in one read.
pub fn file_digests(path: &Path, kind: DigestKind) -> Result<(String, String)> {
    let mut f = std::fs::File::open(path).map_err(io_err("reading", path))?;
    let mut md5 = md5::Md5::new();
    let mut s256 = sha2::Sha256::new();
    let mut s512 = sha2::Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        match kind {
            DigestKind::Sha256 => s256.update(&buf[..n]),
            DigestKind::Sha512 => s512.update(&buf[..n]),
            DigestKind::Md5 => {}
        }
    }
    let md5 = hex::encode(md5.finalize());
    let main = match kind {
        DigestKind::Md5 => md5.clone(),
        DigestKind::Sha256 => hex::encode(s256.finalize()),
        DigestKind::Sha512 => hex::encode(s512.finalize()),
    };
    Ok((main, md5))
}

/// Fetch the checksum file at `url`.
pub async fn fetch_text(url: &str) -> Result<String> {
    let derr = |message: String| Error::Download {
        url: url.to_string(),
        message,
    };
    let resp = http_client()?
        .get(url)
        .send()
        .await
        .map_err(|e| derr(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(derr(format!("HTTP {}", resp.status())));
    }
    resp.text().await.map_err(|e| derr(e.to_string()))
}

/// Run a bootstrap plan: download (resumed), verify, upload private.
/// Returns the new image's id. The download is removed once uploaded; a
/// failed upload deletes the half-made image.
pub async fn run(plan: &BootstrapPlan, glance: &GlanceClient) -> Result<String> {
    run_until(plan, glance, std::future::pending()).await
}

/// [`run`], stopped when `stop` resolves (SIGINT/SIGTERM) with
/// [`Error::Interrupted`]: the download is kept for the next run to resume,
/// a half-made Glance image is deleted.
pub async fn run_until(
    plan: &BootstrapPlan,
    glance: &GlanceClient,
    stop: impl std::future::Future<Output = ()>,
) -> Result<String> {
    tokio::pin!(stop);
    let mut image_id = None;
    let r = tokio::select! {
        r = run_inner(plan, glance, &mut image_id) => r,
        () = &mut stop => Err(Error::Interrupted),
    };
    if r.is_err() {
        if let Some(id) = image_id {
            if let Err(d) = glance.delete_image(&id).await {
                tracing::warn!(image = %id, error = %d, "could not delete the failed upload");
            }
        }
    }
    r
}

async fn run_inner(
    plan: &BootstrapPlan,
    glance: &GlanceClient,
    image_id: &mut Option<String>,
) -> Result<String> {
    tracing::info!(url = %plan.url, "Downloading image...");
    download(&plan.url, &plan.download_path).await?;
    let path = plan.download_path.clone();
    let kind = plan.digest;
    let (digest, md5) = tokio::task::spawn_blocking(move || file_digests(&path, kind))
        .await
        .map_err(|e| Error::Config(format!("hashing task failed: {e}")))??;
    if let Some(curl) = &plan.checksum_url {
        let sums = fetch_text(curl).await?;
        if !sums.contains(&digest) {
            let _ = std::fs::remove_file(&plan.download_path);
            return Err(Error::Checksum {
                file: plan.download_path.clone(),
                digest: plan.digest.to_string(),
                actual: digest,
                checksum_url: curl.clone(),
            });
        }
        tracing::info!(%digest, "Checksum ok");
    }
    tracing::info!(name = %plan.name, "Uploading image to Glance...");
    let mut req = CreateImage::new(&plan.name)
        .visibility(Visibility::Private)
        .disk_format(&plan.disk_format)
        .container_format("bare")
        .min_disk(plan.min_disk)
        .min_ram(plan.min_ram);
    for (k, v) in &plan.properties {
        req = req.property(k, v);
    }
    let image = glance
        .create_image(&req)
        .await
        .map_err(os_err(format!("creating image '{}'", plan.name)))?;
    *image_id = Some(image.id.clone());
    let uploaded = async {
        glance
            .upload_file(&image.id, &plan.download_path)
            .await
            .map_err(os_err(format!("uploading to image {}", image.id)))?;
        let stored = glance
            .get_image(&image.id)
            .await
            .map_err(os_err(format!("reading image {}", image.id)))?;
        if stored.checksum.as_deref() != Some(md5.as_str()) {
            return Err(Error::Config(format!(
                "image {}: Glance stored md5 {} but the download has {md5}",
                image.id,
                stored.checksum.as_deref().unwrap_or("<none>")
            )));
        }
        Ok(())
    }
    .await;
    uploaded?;
    let _ = std::fs::remove_file(&plan.download_path);
    tracing::info!(id = %image.id, "Successfully uploaded");
    Ok(image.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_the_flags() {
        let p = properties(false, false);
        assert_eq!(p.get("hw_disk_bus").map(String::as_str), Some("scsi"));
        assert_eq!(p.get("hw_rng_model").map(String::as_str), Some("virtio"));
        assert!(!p.contains_key("hw_firmware_type"));
        let p = properties(true, true);
        assert!(!p.contains_key("hw_disk_bus"));
        assert_eq!(p.get("hw_machine_type").map(String::as_str), Some("q35"));
        assert_eq!(p.get("hw_firmware_type").map(String::as_str), Some("uefi"));
    }

    #[test]
    fn download_paths_are_per_url() {
        let a = download_path(Path::new("/c"), "http://x/a/deb.qcow2");
        let b = download_path(Path::new("/c"), "http://y/a/deb.qcow2");
        assert_ne!(a, b);
        assert!(a.display().to_string().ends_with("-deb.qcow2"));
    }
}
