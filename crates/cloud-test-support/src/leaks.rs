//! Helpers of the secret-leak tests (`bins/*/tests/secrets.rs`): look for
//! known secrets in outputs and in every file a run wrote.

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
