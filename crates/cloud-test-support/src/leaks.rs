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
    os_env_with_password(auth_url, "unused-password")
}

/// [`os_env`] with the password `password`.
pub fn os_env_with_password(auth_url: &str, password: &str) -> Vec<(&'static str, String)> {
    [
        ("OS_AUTH_URL", auth_url),
        ("OS_USERNAME", "admin"),
        ("OS_PASSWORD", password),
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
/// whose catalog offers each `(type, region, url)` (endpoints of one type
/// grouped under one service).
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

/// Mount on `server` a Keystone (auth URL `<uri>/v3`) that issues `token`
/// to any login, with a catalog of `services` ([`keystone_token_services`]).
pub async fn mount_keystone(
    server: &wiremock::MockServer,
    token: &str,
    services: &[(&str, &str, String)],
) {
    use wiremock::matchers::{method, path};
    wiremock::Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(
            wiremock::ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", token)
                .set_body_json(keystone_token_services(services)),
        )
        .mount(server)
        .await;
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

/// The password the secret tests give the binaries: a `%` (an INI
/// interpolation error when not doubled) and shell metacharacters in it.
pub const PASSWORD: &str = "Kn0wn-Pa55%word;(zq)s";

/// The token the mocked Keystones of the secret tests issue.
pub const TOKEN: &str = "gAAAAA-known-token-7f3a9c1e";

/// A binary under a secret test: how to start it at its most verbose level
/// and which secrets must never show.
#[derive(Debug, Clone, Copy)]
pub struct Binary<'a> {
    /// The program (`env!("CARGO_BIN_EXE_<name>")`).
    pub program: &'a str,
    /// Its most verbose flags (`-vvv`, `--debug --verbose --verbose`).
    pub verbose: &'a [&'a str],
    /// The texts that must appear in no output, file or command line.
    pub secrets: &'a [&'a str],
}

impl Binary<'_> {
    /// [`assert_no_secret`] with this binary's secrets.
    pub fn assert_clean(&self, what: &str, text: &str) {
        assert_no_secret(what, text, self.secrets);
    }

    /// Run the binary with `args` once per log format (`text`, `json`), in
    /// `dir/run-<format>` as working directory, with an empty environment
    /// but `PATH` and `HOME` (`dir`), then what `prepare` adds given that
    /// working directory (variables, files, links). Each run must exit as
    /// `succeed` says (a failing one printing something on stderr), and its
    /// stdout, stderr and every file under its working directory must be
    /// free of the secrets. Returns the text run's stderr, for the caller to
    /// check that the failure was the one intended.
    pub async fn run_case(
        &self,
        dir: &Path,
        args: &[&str],
        succeed: bool,
        prepare: impl Fn(&Path, &mut tokio::process::Command),
    ) -> String {
        let mut text_stderr = String::new();
        for format in ["text", "json"] {
            let work = dir.join(format!("run-{format}"));
            std::fs::create_dir_all(&work).unwrap();
            let mut cmd = tokio::process::Command::new(self.program);
            cmd.current_dir(&work)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", dir);
            prepare(&work, &mut cmd);
            let out = cmd
                .args(self.verbose)
                .args(["--log-format", format])
                .args(args)
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.success(),
                succeed,
                "{args:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status
            );
            if !succeed {
                assert!(!stderr.is_empty(), "the most verbose level printed nothing");
            }
            self.assert_clean(&format!("{format} stdout of {args:?}"), &stdout);
            self.assert_clean(&format!("{format} stderr of {args:?}"), &stderr);
            for file in files_under(&work) {
                let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
                self.assert_clean(&file.display().to_string(), &text);
            }
            if format == "text" {
                text_stderr = stderr.into_owned();
            }
        }
        text_stderr
    }
}

/// Four `clouds.yaml` files malformed around [`PASSWORD`] (their cloud
/// `bad`: `auth` a scalar, an unclosed flow sequence, a string where a
/// number belongs, `clouds` a scalar), each written as
/// `dir/case<i>/clouds.yaml`; returns the case directories and the files.
pub fn malformed_clouds_yamls(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let auth = "auth:\n      auth_url: http://127.0.0.1:1/v3\n      password:";
    [
        format!("clouds:\n  bad:\n    auth: {PASSWORD}\n"),
        format!("clouds:\n  bad:\n    {auth} [{PASSWORD}\n"),
        format!("clouds:\n  bad:\n    {auth} {PASSWORD}\n    api_timeout: {PASSWORD}\n"),
        format!("clouds: {PASSWORD}\n"),
    ]
    .iter()
    .enumerate()
    .map(|(i, yaml)| {
        let case = dir.join(format!("case{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let file = case.join("clouds.yaml");
        std::fs::write(&file, yaml).unwrap();
        (case, file)
    })
    .collect()
}

/// A mocked Keystone refusing every login (`POST /v3/auth/tokens`: 401);
/// its auth URL is `<uri>/v3`.
pub async fn refusing_keystone() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    let keystone = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(wiremock::ResponseTemplate::new(401).set_body_json(keystone_unauthorized()))
        .mount(&keystone)
        .await;
    keystone
}

/// A mocked Keystone issuing [`TOKEN`] (auth URL `<uri>/v3`) whose catalog
/// offers the image service of each of `regions` on the same server
/// (`<uri>/image` for the first, `<uri>/image2`, `<uri>/image3`, … for the
/// others), every Glance request answered 500.
pub async fn keystone_with_failing_glance(regions: &[&str]) -> wiremock::MockServer {
    use wiremock::matchers::path_regex;
    let server = wiremock::MockServer::start().await;
    let uri = server.uri();
    let images: Vec<(&str, &str, String)> = regions
        .iter()
        .enumerate()
        .map(|(i, region)| match i {
            0 => ("image", *region, format!("{uri}/image")),
            _ => ("image", *region, format!("{uri}/image{}", i + 1)),
        })
        .collect();
    mount_keystone(&server, TOKEN, &images).await;
    wiremock::Mock::given(path_regex(r"^/image\d*/.*"))
        .respond_with(wiremock::ResponseTemplate::new(500).set_body_json(glance_internal_error()))
        .mount(&server)
        .await;
    server
}

/// Asserts that `server` received [`TOKEN`], in an `X-Auth-Token` header:
/// the failing runs did get past the login.
pub async fn assert_token_used(server: &wiremock::MockServer) {
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(
        requests.iter().any(|r| r
            .headers
            .get("x-auth-token")
            .is_some_and(|v| v.as_bytes() == TOKEN.as_bytes())),
        "no request carried the token"
    );
}

/// Asserts that `server` received `password` in a request body (the login
/// it refused): the password went to Keystone, and only there.
pub async fn assert_password_sent(server: &wiremock::MockServer, password: &str) {
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(
        requests
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(password)),
        "no login carried the password"
    );
}
