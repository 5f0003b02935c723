//! A known password and a known token never leave `imagebuilder`: its
//! himlarcli commands (`list`, `usage`; credentials from `-c config.ini`)
//! and its builder commands (`bootstrap`, `build` native and `--packer`;
//! credentials from the `OS_*` variables or `clouds.yaml`) run at the most
//! verbose level (`--debug --verbose --verbose`, text and JSON log records)
//! over configurations and clouds that fail in every way we can provoke
//! cheaply (malformed `config.ini` / `clouds.yaml` around the password,
//! Keystone down, Keystone refusing the credentials, Glance answering 500
//! after a successful login), and neither the password nor the token
//! appears on stdout, stderr or in any file the run wrote. `build --packer
//! --dry-run` prints packer's command line: the password is not on it.
//! `build --packer` runs a fake `packer` (on `PATH`, waiting until the test
//! has looked): neither secret is on the command line of imagebuilder or of
//! any process under it; the password reaches packer only through its
//! environment (`OS_PASSWORD`), the token not at all. No VM is booted:
//! every build fails before one is asked for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use cloud_test_support::leaks::{
    assert_cmdlines_free, assert_token_used, closed_port, environ, keystone_token_services,
    keystone_with_failing_glance, malformed_clouds_yamls, os_env_with_password, parent,
    refusing_keystone, unreachable_keystone, Binary, PASSWORD, TOKEN,
};

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The password as config.ini spells it (`%` doubled for interpolation).
const PASSWORD_INI: &str = "Kn0wn-Pa55%%word;(zq)s";

const IMAGEBUILDER: Binary = Binary {
    program: env!("CARGO_BIN_EXE_imagebuilder"),
    verbose: &["--debug", "--verbose", "--verbose"],
    secrets: &[PASSWORD, PASSWORD_INI, TOKEN],
};

fn template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/imagebuilder/templates/nrec-default")
}

/// Run imagebuilder with `args` in `dir` with only `env` (plus PATH, HOME
/// and the builder's directories), in both log formats; it must exit as
/// `succeed` says, and its outputs and the files it wrote (not the inputs,
/// which live outside the run directories) must be clean. Returns the text
/// run's stderr.
async fn run(dir: &Path, env: &[(&str, String)], args: &[&str], succeed: bool) -> String {
    IMAGEBUILDER
        .run_case(dir, args, succeed, |work, cmd| {
            // The template's scripts are found from the working directory, as
            // Packer does (a link: not one of the files the run wrote).
            let scripts = work.join("scripts");
            if !scripts.exists() {
                std::os::unix::fs::symlink(template_dir().join("scripts"), &scripts).unwrap();
            }
            cmd.env("HOME", work)
                .env("HIMLARCLI_ROOT", work.join("himlarcli"))
                .env("IB_TEMPLATE_DIR", template_dir())
                .env("IB_DOWNLOAD_DIR", work.join("dl"))
                .env("IMAGEBUILDER_STATE_DIR", work.join("state"))
                .env("IMAGEBUILDER_DOWNLOAD_CACHE", work.join("cache"))
                .env("IMAGEBUILDER_LOG_DIR", work.join("log"))
                .env("IMAGEBUILDER_REPORT", "true")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        })
        .await
}

fn config_ini(auth_url: &str) -> String {
    format!(
        "[openstack]\nauth_url={auth_url}\nusername=admin\npassword={PASSWORD_INI}\n\
         project_name=admin\ndefault_domain=Default\nregion=RegionOne\n"
    )
}

fn os_env(auth_url: &str) -> Vec<(&'static str, String)> {
    os_env_with_password(auth_url, PASSWORD)
}

/// The himlarcli commands, credentials from `-c <ini>`.
fn himlar_commands(ini: &Path) -> Vec<Vec<String>> {
    let ini = ini.display().to_string();
    [&["list"][..], &["usage", "--detailed"][..]]
        .iter()
        .map(|c| {
            c.iter()
                .map(|s| s.to_string())
                .chain(["-c".to_string(), ini.clone()])
                .collect()
        })
        .collect()
}

/// The builder commands that reach the cloud (bootstrap's download URL
/// is a closed port: whichever comes first, it fails).
fn build_commands() -> Vec<Vec<String>> {
    let url = format!("http://127.0.0.1:{}/debian.qcow2", closed_port());
    let build: Vec<&str> = vec![
        "build", "-a", "nova", "-n", "debian12", "-s", "src", "-u", "debian", "-v",
    ];
    let mut local = build.clone();
    local.extend(["--backend", "local"]);
    let mut packer = build.clone();
    packer.push("--packer");
    let bootstrap: Vec<&str> = vec![
        "bootstrap",
        "-a",
        "nova",
        "-u",
        &url,
        "-n",
        "debian12",
        "-r",
        "1",
        "-d",
        "1",
        "-f",
        "qcow2",
    ];
    [bootstrap, local, packer]
        .into_iter()
        .map(|c| c.into_iter().map(str::to_string).collect())
        .collect()
}

async fn run_all(
    dir: &Path,
    ini: &Path,
    env: &[(&str, String)],
    expect_in_himlar: &str,
) -> Vec<String> {
    let mut stderrs = Vec::new();
    for (i, args) in himlar_commands(ini)
        .into_iter()
        .chain(build_commands())
        .enumerate()
    {
        let case = dir.join(format!("cmd{i}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: &[(&str, String)] = if args[0] == "list" || args[0] == "usage" {
            &[]
        } else {
            env
        };
        let stderr = run(&case, env, &args, false).await;
        if env.is_empty() {
            assert!(stderr.contains(expect_in_himlar), "{args:?}: {stderr}");
        }
        stderrs.push(stderr);
    }
    stderrs
}

#[tokio::test]
async fn malformed_config_ini_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let down = unreachable_keystone();
    let cases = [
        // `%` not doubled: an interpolation error on the password's key.
        format!("[openstack]\nauth_url={down}\nusername=admin\npassword={PASSWORD}\nproject_name=admin\n"),
        // No `=`: a line that is not an option.
        format!("[openstack]\nauth_url={down}\nusername=admin\npassword {PASSWORD_INI}\nproject_name=admin\n"),
        // The password twice (strict).
        format!("[openstack]\nauth_url={down}\npassword={PASSWORD_INI}\npassword={PASSWORD_INI}\n"),
        // Before any section header.
        format!("password={PASSWORD_INI}\n[openstack]\nauth_url={down}\n"),
        // A broken section header on the password's line.
        format!("[openstack {PASSWORD_INI}\nauth_url={down}\n"),
        // The password where the URL belongs.
        format!("[openstack]\nauth_url={PASSWORD_INI}\nusername=admin\npassword={PASSWORD_INI}\nproject_name=admin\n"),
        // Everything but the auth URL.
        format!("[openstack]\nusername=admin\npassword={PASSWORD_INI}\nproject_name=admin\n"),
    ];
    for (i, ini) in cases.iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let file = case.join("config.ini");
        std::fs::write(&file, ini).unwrap();
        for args in himlar_commands(&file) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let stderr = run(&case.join(args[0]), &[], &args, false).await;
            assert!(stderr.contains("config.ini"), "case {i}: {stderr}");
        }
    }
}

#[tokio::test]
async fn malformed_clouds_yaml_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    for (case, file) in malformed_clouds_yamls(dir.path()) {
        let env = [
            ("OS_CLIENT_CONFIG_FILE", file.display().to_string()),
            ("OS_CLOUD", "bad".to_string()),
        ];
        for (j, args) in build_commands().into_iter().enumerate() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let stderr = run(&case.join(format!("cmd{j}")), &env, &args, false).await;
            assert!(
                stderr.contains("clouds.yaml"),
                "{}: {stderr}",
                case.display()
            );
        }
        // The himlarcli commands take OS_CLOUD too (no -c given).
        let stderr = run(&case.join("list"), &env, &["list"], false).await;
        assert!(
            stderr.contains("clouds.yaml"),
            "{}: {stderr}",
            case.display()
        );
    }
}

#[tokio::test]
async fn keystone_down_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let auth_url = unreachable_keystone();
    let ini = dir.path().join("config.ini");
    std::fs::write(&ini, config_ini(&auth_url)).unwrap();
    let stderrs = run_all(dir.path(), &ini, &os_env(&auth_url), "127.0.0.1").await;
    assert!(
        stderrs.iter().all(|s| s.contains("127.0.0.1")),
        "{stderrs:?}"
    );
}

#[tokio::test]
async fn refused_credentials_are_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let keystone = refusing_keystone().await;
    let auth_url = format!("{}/v3", keystone.uri());
    let ini = dir.path().join("config.ini");
    std::fs::write(&ini, config_ini(&auth_url)).unwrap();
    run_all(dir.path(), &ini, &os_env(&auth_url), "401").await;
}

#[tokio::test]
async fn glance_errors_are_reported_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = keystone_with_failing_glance(&["RegionOne"]).await;
    let auth_url = format!("{}/v3", server.uri());
    let ini = dir.path().join("config.ini");
    std::fs::write(&ini, config_ini(&auth_url)).unwrap();
    run_all(dir.path(), &ini, &os_env(&auth_url), "500").await;
    assert_token_used(&server).await;
}

#[tokio::test]
async fn packer_dry_run_command_line_has_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let env = os_env(&unreachable_keystone());
    let mut args: Vec<String> = build_commands().pop().unwrap();
    args.push("--dry-run".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(dir.path(), &env, &args, true).await;
    // The dry run printed packer's argument list (checked clean above).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_imagebuilder"))
        .current_dir(dir.path().join("run-text"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("IB_TEMPLATE_DIR", template_dir())
        .env("IB_DOWNLOAD_DIR", dir.path().join("dl"))
        .env("IMAGEBUILDER_STATE_DIR", dir.path().join("state"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(&args)
        .output()
        .await
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(plan["mode"]["args"].is_array(), "{plan}");
}

/// `build --packer` starts `packer`: a fake one on `PATH` that says it
/// started, then waits to be released. While it waits, the command lines of
/// imagebuilder and of every process under it (packer and what packer
/// started) hold neither the password nor the token; the password reaches
/// packer only through its environment (`OS_PASSWORD`, inherited, as the
/// original passed it), the token not at all. Keystone is a wiremock
/// answering the known token; Nova and Neutron are image-pipeline's fake
/// (the temporary security group and keypair are made, then removed once
/// packer failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packer_child_sees_the_password_in_its_environment_only() {
    let dir = tempfile::tempdir().unwrap();
    let fake = cloud_test_support::nova_mock::Fake::start().await;
    let keystone = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", TOKEN)
                .set_body_json(keystone_token_services(&[
                    ("compute", "RegionOne", fake.compute_url()),
                    ("network", "RegionOne", fake.network_url()),
                    ("image", "RegionOne", format!("{}/image", fake.uri())),
                ])),
        )
        .mount(&keystone)
        .await;

    // The fake packer: `started-<pid>` says it runs, `release-<pid>` ends it.
    let signals = dir.path().join("signals");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&signals).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let packer = bin.join("packer");
    std::fs::write(
        &packer,
        format!(
            "#!/bin/sh\nd={d}\necho \"fake packer: $*\"\n: > $d/started-$$.tmp && mv $d/started-$$.tmp $d/started-$$\n\
             i=0; while [ ! -e $d/release-$$ ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n\
             echo 'fake packer: build failed'\nexit 1\n",
            d = signals.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&packer, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let watcher = {
        let signals = signals.clone();
        std::thread::spawn(move || watch_packers(&signals))
    };
    let mut env = os_env(&format!("{}/v3", keystone.uri()));
    env.push((
        "PATH",
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    ));
    let mut args: Vec<String> = build_commands().pop().unwrap();
    args.extend(["-N".to_string(), "node-int-net-01".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = run(&dir.path().join("packer"), &env, &args, false).await;
    std::fs::write(signals.join("done"), "").unwrap();
    let rounds = watcher.join().unwrap();
    assert!(stderr.contains("packer build"), "{stderr}");
    assert_eq!(rounds, 2, "packer ran once per log format");
    let ops = fake.ops();
    assert!(
        ops.iter().any(|o| o.starts_with("keypair.create")),
        "{ops:?}"
    );
    assert!(fake.leftovers().is_empty(), "{:?}", fake.leftovers());
}

/// For each fake packer that says it started (until `done` appears): check
/// the command lines of its parent imagebuilder and of everything under it,
/// and where the password went; then release it. Answers how many ran.
fn watch_packers(signals: &Path) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let started: Vec<u32> = std::fs::read_dir(signals)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("started-")?
                    .parse()
                    .ok()
            })
            .filter(|p| !seen.contains(p))
            .collect();
        for pid in started {
            seen.insert(pid);
            let imagebuilder = parent(pid).unwrap();
            let lines = assert_cmdlines_free(imagebuilder, IMAGEBUILDER.secrets);
            assert!(lines[0].contains("imagebuilder"), "{lines:?}");
            assert!(
                lines.iter().any(|l| l.contains("packer build")),
                "packer's command line not seen: {lines:?}"
            );
            let environ = environ(pid);
            assert!(
                environ
                    .iter()
                    .any(|e| *e == format!("OS_PASSWORD={PASSWORD}")),
                "the password reaches packer through OS_PASSWORD"
            );
            assert!(
                environ.iter().all(|e| !e.contains(TOKEN)),
                "the token is not in packer's environment"
            );
            std::fs::write(signals.join(format!("release-{pid}")), "").unwrap();
        }
        if signals.join("done").exists() {
            return seen.len();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "imagebuilder never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
