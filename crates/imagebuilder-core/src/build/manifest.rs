//! The manifest Packer's `manifest` post-processor writes, written by a
//! native build and read back after `--packer`.

use std::path::Path;

use crate::error::{io_err, Error, Result};
use crate::output::Published;
use crate::template::Resolved;

/// Write the manifest as Packer's `manifest` post-processor does.
pub fn write_manifest(
    path: &Path,
    r: &Resolved,
    artifact_id: &str,
    published: Option<&Published>,
) -> Result<()> {
    let run_uuid = uuid::Uuid::new_v4().to_string();
    let files = published.map(|p| {
        let size = std::fs::metadata(&p.image).map(|m| m.len()).unwrap_or(0);
        serde_json::json!([{ "name": p.image.display().to_string(), "size": size }])
    });
    let manifest = serde_json::json!({
        "builds": [{
            "name": r.builder_name,
            "builder_type": r.builder_type,
            "build_time": chrono::Utc::now().timestamp(),
            "files": files,
            "artifact_id": artifact_id,
            "packer_run_uuid": run_uuid,
            "custom_data": null,
        }],
        "last_run_uuid": run_uuid,
    });
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
    }
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(path, text).map_err(io_err("writing manifest", path))
}

/// `builds[0].artifact_id` of a Packer manifest.
pub fn manifest_artifact(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading manifest", path))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: not a Packer manifest: {e}", path.display())))?;
    v["builds"][0]["artifact_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Config(format!("{}: no builds[0].artifact_id", path.display())))
}
