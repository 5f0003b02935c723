//! Helpers of the secret-leak tests (`bins/*/tests/secrets.rs`): look for
//! known secrets in outputs, in every file a run wrote and on the command
//! lines of a process and its descendants (`/proc`); the bodies a mocked
//! Keystone and Glance answer with when a run is made to fail.

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

/// A Keystone URL (`http://127.0.0.1:<closed port>/v3`) nothing answers on.
pub fn unreachable_keystone() -> String {
    format!("http://127.0.0.1:{}/v3", closed_port())
}

/// The `OS_*` variables of an admin login on `auth_url` (password
/// `unused-password`), for runs that must fail at Keystone.
pub fn os_env(auth_url: &str) -> Vec<(&'static str, String)> {
    [
        ("OS_AUTH_URL", auth_url),
        ("OS_USERNAME", "admin"),
        ("OS_PASSWORD", "unused-password"),
        ("OS_PROJECT_NAME", "admin"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_REGION_NAME", "RegionOne"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// Asserts the contract of a run whose Keystone at `auth_url` is
/// unreachable, at the default verbosity: exit status 1 and exactly one
/// line on stderr, `<program>: ...` naming `<auth_url>/auth/tokens`.
/// `what` labels the run in failure messages.
pub fn assert_one_line_keystone_error(
    out: &std::process::Output,
    program: &str,
    auth_url: &str,
    what: &str,
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stderr:\n{stderr}");
    assert!(
        lines[0].starts_with(&format!("{program}: "))
            && lines[0].contains(&format!("{auth_url}/auth/tokens")),
        "{what}: the error names the URL: {stderr}"
    );
}

/// Keystone's answer to refused credentials (401).
pub fn keystone_unauthorized() -> serde_json::Value {
    serde_json::json!({"error": {"code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}})
}

/// A Keystone v3 token body (project and user `admin`, never expiring)
/// whose catalog offers the image service at each `(region, url)`.
pub fn keystone_token(images: &[(&str, String)]) -> serde_json::Value {
    let services: Vec<(&str, &str, String)> = images
        .iter()
        .map(|(region, url)| ("image", *region, url.clone()))
        .collect();
    keystone_token_services(&services)
}

/// [`keystone_token`] with any services: the catalog offers each
/// `(type, region, url)` (endpoints of one type grouped under one service).
pub fn keystone_token_services(services: &[(&str, &str, String)]) -> serde_json::Value {
    let mut catalog: Vec<(&str, Vec<serde_json::Value>)> = Vec::new();
    for (kind, region, url) in services {
        let endpoint = serde_json::json!({"interface": "public", "region_id": region,
            "region": region, "url": url});
        match catalog.iter_mut().find(|(k, _)| k == kind) {
            Some((_, endpoints)) => endpoints.push(endpoint),
            None => catalog.push((kind, vec![endpoint])),
        }
    }
    let catalog: Vec<serde_json::Value> = catalog
        .into_iter()
        .map(|(kind, endpoints)| serde_json::json!({"type": kind, "name": kind, "endpoints": endpoints}))
        .collect();
    serde_json::json!({"token": {
        "expires_at": "2099-01-01T00:00:00.000000Z",
        "project": {"id": "p", "name": "admin"},
        "user": {"id": "u", "name": "admin"},
        "catalog": catalog}})
}

/// The command line of process `pid`, its arguments joined by spaces;
/// `None` once the process is gone.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " "),
    )
}

/// The environment of process `pid` (`NAME=value` entries); empty once
/// the process is gone.
pub fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|e| !e.is_empty())
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The parent of process `pid` (`PPid` of `/proc/<pid>/status`).
pub fn parent(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Every live process descending from `pid` (children, grandchildren, …).
pub fn descendants(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| Some((p, parent(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, _) in all.iter().filter(|(_, pp)| *pp == p) {
            out.push(*child);
            frontier.push(*child);
        }
    }
    out
}

/// [`assert_no_secret`] over the command lines of `pid` and of every
/// process descending from it; returns the command lines seen (`pid`'s
/// first), for the caller to check that the child it meant was there.
pub fn assert_cmdlines_free(pid: u32, secrets: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    for p in std::iter::once(pid).chain(descendants(pid)) {
        if let Some(line) = cmdline(p) {
            assert_no_secret(&format!("command line of process {p}"), &line, secrets);
            seen.push(line);
        }
    }
    seen
}

/// Glance's answer when it fails (500).
pub fn glance_internal_error() -> serde_json::Value {
    serde_json::json!({"message": "internal error", "code": "500 Internal Server Error"})
}
