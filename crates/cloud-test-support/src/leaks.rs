//! Helpers of the secret-leak tests (`bins/*/tests/secrets.rs`): look for
//! known secrets in outputs and in every file a run wrote; the bodies a
//! mocked Keystone and Glance answer with when a run is made to fail.

use std::path::{Path, PathBuf};

/// Every regular file under `dir`, recursively (symbolic links not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_symlink() {
            continue;
        }
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}

/// Panics, naming `what` and showing `text`, when `text` holds any of `secrets`.
pub fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

/// [`assert_no_secret`] over every file under `dir` whose name is not in
/// `inputs` (the files that hold the secrets on purpose).
pub fn assert_files_free(dir: &Path, inputs: &[&str], secrets: &[&str]) {
    for file in files_under(dir) {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if inputs.contains(&name) {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
        assert_no_secret(&file.display().to_string(), &text, secrets);
    }
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    l.local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port()
}

/// Keystone's answer to refused credentials (401).
pub fn keystone_unauthorized() -> serde_json::Value {
    serde_json::json!({"error": {"code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}})
}

/// A Keystone v3 token body (project and user `admin`, never expiring)
/// whose catalog offers the image service at each `(region, url)`.
pub fn keystone_token(images: &[(&str, String)]) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = images
        .iter()
        .map(|(region, url)| {
            serde_json::json!({"interface": "public", "region_id": region,
                "region": region, "url": url})
        })
        .collect();
    serde_json::json!({"token": {
        "expires_at": "2099-01-01T00:00:00.000000Z",
        "project": {"id": "p", "name": "admin"},
        "user": {"id": "u", "name": "admin"},
        "catalog": [{"type": "image", "name": "glance", "endpoints": endpoints}]}})
}

/// Glance's answer when it fails (500).
pub fn glance_internal_error() -> serde_json::Value {
    serde_json::json!({"message": "internal error", "code": "500 Internal Server Error"})
}
