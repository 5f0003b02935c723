//! The test step (`ge-image test NAME`, the original's `test_template` /
//! `test_only.sh`): boot `test-<name>` from `<name>_rc` with every port
//! open, wait for SSH, run `test.sh` with `IP` and `USERNAME`, output to
//! `test.log`.
//!
//! `test.sh` runs on the operator's machine, in a sandbox: never as root
//! (when ge-image runs as root it drops to `test_user`, `nobody` by
//! default, with `setpriv`), a private temporary `HOME` holding the run's
//! key, a known_hosts with the VM's key and an ssh config, `ssh`/`scp`
//! wrappers first in `PATH` that use that config (OpenSSH reads the passwd
//! home, not `$HOME`), a cleaned environment (`IP`, `USERNAME`, `HOME`,
//! `PATH`, `LANG`, `TMPDIR`, `GIT_SSH_COMMAND`) and a time limit after which
//! its whole process group is killed. With `TEST_USING_VM` it runs inside a
//! tester VM instead, booted from `tester_base` with `tester_flavor`, as the
//! original: the run's key, `testenv` (`IP`, `USERNAME`, `TESTSCRIPT`) and
//! `test.sh` are uploaded there and `. ./testenv; ./test.sh` runs over SSH.
//! On the local backend the tester reaches the tested VM at
//! [`crate::compute::local::PEER_GUEST_ADDR`] inside its own user-mode
//! network (`guestfwd` to the tested VM's loopback address, its forwarded
//! ports only).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cleanup::release_all;
use crate::compute::{AccessProfile, ComputeBackend, VmAddress, VmHandle, VmSpec};
use crate::create::{find_base, follow_log, Pipeline, RunKey};
use crate::error::{Error, Result};
use crate::folder::log_tail;
use crate::ledger::{ResourceKind, ResourceLedger};
use crate::ssh::{RunOptions, UploadSource};

/// How to reach a VM kept for debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAccess {
    /// The address `test.sh` got as `IP`.
    pub ip: String,
    /// `ssh -i KEY -o UserKnownHostsFile=… [-p PORT] USER@HOST` (the run's key).
    pub ssh_command: String,
}

/// How a test step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// Whether `test.sh` exited 0 in time.
    pub success: bool,
    /// The image tested.
    pub rc_image_id: String,
    /// How `test.sh` ended, in words.
    pub detail: String,
    /// The test VM when kept (`--keep-on-failure`).
    pub kept_vm: Option<String>,
    /// Where the kept VM is reached: `IP` and the SSH command to log in.
    pub kept_access: Option<KeptAccess>,
    /// `test.log`.
    pub log: PathBuf,
}

impl TestOutcome {
    /// What `ge-image test` prints: the original's last lines, then on
    /// success how to publish the image.
    pub fn to_text(&self, name: &str) -> String {
        let mut s = self.result_text(name);
        s.push_str(&self.publish_hint());
        s
    }

    /// `To publish it: …` after a passed test, else nothing.
    pub(crate) fn publish_hint(&self) -> String {
        if self.success {
            format!("To publish it: ge-image publish {}\n", self.rc_image_id)
        } else {
            String::new()
        }
    }

    /// The original's last lines: `Success. UUID: <uuid>`, or `Failed.` and its hints.
    pub(crate) fn result_text(&self, name: &str) -> String {
        if self.success {
            return format!("Success. UUID: {}\n", self.rc_image_id);
        }
        let mut s = format!(
            "Failed. test.sh {} (log {}); last lines:\n{}\n",
            self.detail,
            self.log.display(),
            log_tail(&self.log, 15)
        );
        match &self.kept_vm {
            Some(vm) => {
                s.push_str(&format!(
                    "The test VM {vm} and the image {name}_rc ({}) are kept for analysis: delete them \
                     with `ge-image gc {name}`, or rename the image, or transfer it to another project \
                     for analysis.\n",
                    self.rc_image_id
                ));
                if let Some(a) = &self.kept_access {
                    s.push_str(&format!(
                        "The VM runs at IP={}; log in with: {}\n",
                        a.ip, a.ssh_command
                    ));
                }
            }
            None => s.push_str(
                "The test VM was deleted (use --keep-on-failure to keep it and the _rc image for analysis).\n",
            ),
        }
        s
    }
}

/// A user's uid and gid from `/etc/passwd`.
pub fn lookup_user(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

/// Who runs `test.sh`: `None` = as ourselves (not root); `Some((uid, gid))`
/// = drop to that user (we are root). Refuses to run as root.
pub fn test_identity(euid: u32, test_user: &str, passwd: &str) -> Result<Option<(u32, u32)>> {
    if euid != 0 {
        return Ok(None);
    }
    match lookup_user(passwd, test_user) {
        Some((0, _)) | None => Err(Error::Settings(format!(
            "test_user '{test_user}': {} (test.sh never runs as root)",
            if lookup_user(passwd, test_user).is_none() {
                "no such user in /etc/passwd"
            } else {
                "is root"
            }
        ))),
        Some(ids) => Ok(Some(ids)),
    }
}

/// The environment `test.sh` gets (nothing else is inherited).
pub fn test_environment(ip: &str, user: &str, home: &Path) -> Vec<(String, String)> {
    let h = home.display();
    vec![
        ("IP".into(), ip.into()),
        ("USERNAME".into(), user.into()),
        ("HOME".into(), h.to_string()),
        (
            "PATH".into(),
            format!("{h}/bin:/usr/local/bin:/usr/bin:/bin"),
        ),
        ("LANG".into(), "C.UTF-8".into()),
        ("TMPDIR".into(), format!("{h}/tmp")),
        ("GIT_SSH_COMMAND".into(), format!("ssh -F {h}/.ssh/config")),
    ]
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::LocalFile {
        action,
        path: path.display().to_string(),
        source,
    }
}

fn find_program(name: &str) -> String {
    ["/usr/bin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| name.to_string())
}

/// `Host IP` with the SSH port when the VM's SSH is not on 22 (so that
/// `ssh $USERNAME@$IP` of an unchanged `test.sh` still reaches it).
fn port_stanza(addr: &VmAddress) -> String {
    if addr.ssh_port == 22 {
        String::new()
    } else {
        format!("Host {}\n  Port {}\n", addr.ip, addr.ssh_port)
    }
}

/// Build the sandbox home under `root`: `.ssh/{id_ed25519,known_hosts,config}`,
/// `bin/{ssh,scp}`, `tmp/`, `test.sh`.
fn build_sandbox(
    root: &Path,
    key: &RunKey,
    test_script: &Path,
    addr: &VmAddress,
) -> Result<PathBuf> {
    let home = root.join("home");
    let ssh = home.join(".ssh");
    let bin = home.join("bin");
    for d in [&home, &ssh, &bin, &home.join("tmp")] {
        std::fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", &ssh))?;
    key.key.write_private(ssh.join("id_ed25519"))?;
    let kh = ssh.join("known_hosts");
    let recorded = std::fs::read_to_string(key.known_hosts.path()).unwrap_or_default();
    std::fs::write(&kh, recorded).map_err(io("writing", &kh))?;
    let config = ssh.join("config");
    let h = home.display();
    std::fs::write(
        &config,
        format!(
            "{}Host *\n  IdentityFile {h}/.ssh/id_ed25519\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {h}/.ssh/known_hosts\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n  ConnectTimeout 30\n  LogLevel ERROR\n",
            port_stanza(addr)
        ),
    )
    .map_err(io("writing", &config))?;
    for (tool, real) in [("ssh", find_program("ssh")), ("scp", find_program("scp"))] {
        let p = bin.join(tool);
        std::fs::write(
            &p,
            format!("#!/bin/sh\nexec {real} -F \"$HOME/.ssh/config\" \"$@\"\n"),
        )
        .map_err(io("writing", &p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod", &p))?;
    }
    let script = home.join("test.sh");
    std::fs::copy(test_script, &script).map_err(io("copying", test_script))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", &script))?;
    Ok(home)
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io("chown", path))?;
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path)
            .map_err(io("reading", path))?
            .flatten()
        {
            chown_tree(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Run `test.sh` on this machine in the sandbox; returns how it ended.
async fn run_sandboxed(
    pipeline_verbose: bool,
    settings: &crate::settings::Settings,
    test_script: &Path,
    log: &Path,
    key: &RunKey,
    addr: &VmAddress,
    user: &str,
) -> Result<(bool, String)> {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ident = test_identity(euid, &settings.test_user, &passwd)?;
    let root = tempfile::Builder::new()
        .prefix("ge-image-test-")
        .tempdir()
        .map_err(io("creating", &std::env::temp_dir()))?;
    let home = build_sandbox(root.path(), key, test_script, addr)?;
    if let Some((uid, gid)) = ident {
        chown_tree(root.path(), uid, gid)?;
    }
    let out = std::fs::File::create(log).map_err(io("creating", log))?;
    let err = out.try_clone().map_err(io("opening", log))?;
    let script = home.join("test.sh");
    let mut cmd = match ident {
        Some((uid, gid)) => {
            let mut c = std::process::Command::new(find_program("setpriv"));
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(&script);
            c
        }
        None => std::process::Command::new(&script),
    };
    cmd.env_clear()
        .envs(test_environment(&addr.ip.to_string(), user, &home))
        .current_dir(&home)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let follower = pipeline_verbose.then(|| follow_log(log.to_path_buf()));
    let mut child = cmd.spawn().map_err(io("starting", &script))?;
    let limit = Duration::from_secs(settings.test_timeout_secs);
    let start = Instant::now();
    let result = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break Ok((
                    status.success(),
                    match status.code() {
                        Some(c) => format!("exited with status {c}"),
                        None => format!("was killed ({status})"),
                    },
                ))
            }
            Ok(None) if start.elapsed() >= limit => {
                let pgid = child.id();
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pgid}")])
                    .status();
                let _ = child.wait();
                let mut f = std::fs::OpenOptions::new().append(true).open(log).ok();
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "ge-image: test.sh killed after {limit:?}");
                }
                break Ok((false, format!("timed out after {limit:?} and was killed")));
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => break Err(io("waiting for", &script)(e)),
        }
    };
    if let Some(f) = follower {
        let _ = f.send(());
    }
    result
}

/// The OpenSSH command logging in to `addr` as `user` with the run's key
/// file and known_hosts.
pub fn ssh_command(key: &RunKey, addr: &VmAddress, user: &str) -> String {
    let port = if addr.ssh_port == 22 {
        String::new()
    } else {
        format!(" -p {}", addr.ssh_port)
    };
    let q = |p: &Path| crate::ssh::shell_quote(&p.display().to_string());
    format!(
        "ssh -i {} -o UserKnownHostsFile={}{port} {}@{}",
        q(&key.key_file),
        q(key.known_hosts.path()),
        user,
        addr.ssh_host
    )
}

/// The test step on image `rc_id` whose login user is `user`; the VM boots
/// from `local_image` when given (the candidate's own file, on a backend
/// that [boots local files](ComputeBackend::boots_local_files)), else from
/// the Glance image.
pub async fn run_test_step<B: ComputeBackend>(
    p: &Pipeline<'_, B>,
    rc_id: &str,
    local_image: Option<&Path>,
    user: &str,
    key: &RunKey,
    ledger: &ResourceLedger,
) -> Result<TestOutcome> {
    let folder = p.folder;
    folder.require(&folder.test_script())?;
    let name = format!("test-{}", folder.name());
    let spec = VmSpec {
        name: name.clone(),
        image_id: rc_id.to_string(),
        flavor: p.settings.flavor.clone(),
        login_user: user.to_string(),
        public_key: key.public.clone(),
        access: AccessProfile::AllOpen,
        tcp_ports: Vec::new(),
    };
    let vm = match local_image {
        Some(file) => {
            eprintln!(
                "ge-image: booting {name} from {} (the data of {rc_id})",
                file.display()
            );
            p.backend.boot_from_file(&spec, file, ledger).await?
        }
        None => {
            eprintln!("ge-image: booting {name} from {rc_id}");
            p.backend.boot(&spec, ledger).await?
        }
    };
    let mut state = folder.load_state()?;
    state.vm = Some(vm.id().to_string());
    folder.save_state(&state)?;
    let (addr, session) = p.connect(&vm, user, key).await?;
    let _ = session.close().await;
    let log = folder.test_log();
    eprintln!(
        "ge-image: running test.sh with IP={} USERNAME={user}",
        addr.ip
    );
    let (success, detail) = if p.settings.test_using_vm {
        run_in_tester(p, key, ledger, (&spec, &addr), user, &log).await?
    } else {
        run_sandboxed(
            p.verbose,
            p.settings,
            &folder.test_script(),
            &log,
            key,
            &addr,
            user,
        )
        .await?
    };
    let mut kept_vm = None;
    let mut kept_access = None;
    if success || !p.settings.keep_on_failure {
        p.backend.delete(vm, ledger).await?;
        state.vm = None;
    } else {
        kept_vm = Some(vm.id().to_string());
        kept_access = Some(KeptAccess {
            ip: addr.ip.to_string(),
            ssh_command: ssh_command(key, &addr, user),
        });
        p.backend.keep(vm).await?;
    }
    folder.save_state(&state)?;
    Ok(TestOutcome {
        success,
        rc_image_id: rc_id.to_string(),
        detail,
        kept_vm,
        kept_access,
        log,
    })
}

/// `TEST_USING_VM`: a tester VM runs `. testenv; ./test.sh` against the
/// tested VM's address.
async fn run_in_tester<B: ComputeBackend>(
    p: &Pipeline<'_, B>,
    key: &RunKey,
    ledger: &ResourceLedger,
    (tested_spec, tested): (&VmSpec, &VmAddress),
    user: &str,
    log: &Path,
) -> Result<(bool, String)> {
    let base = p.settings.base_for(&p.settings.tester_base)?.clone();
    let base_id = find_base(p.glance, &p.settings.tester_base, &base).await?;
    let spec = VmSpec {
        name: format!("tester-{}", p.folder.name()),
        image_id: base_id,
        flavor: p.settings.tester_flavor.clone(),
        login_user: base.user.clone(),
        public_key: key.public.clone(),
        access: AccessProfile::SshOnly,
        tcp_ports: Vec::new(),
    };
    let (tester, tested_ip) = p
        .backend
        .boot_tester(&spec, tested_spec, tested, ledger)
        .await?;
    // The tester reaches the tested VM at `tested_ip`, on the same SSH port.
    let tested_there = VmAddress {
        ip: tested_ip,
        ssh_host: tested_ip.to_string(),
        ssh_port: tested.ssh_port,
    };
    let run = async {
        let (_, s) = p.connect(&tester, &base.user, key).await?;
        let private = std::fs::read(&key.key_file).map_err(io("reading", &key.key_file))?;
        s.run_checked("mkdir -p .ssh && chmod 700 .ssh", &RunOptions::default())
            .await?;
        s.upload(UploadSource::Bytes(&private), ".ssh/id_ed25519", 0o600)
            .await?;
        let config = format!(
            "{}Host *\n  IdentityFile ~/.ssh/id_ed25519\n  StrictHostKeyChecking accept-new\n  BatchMode yes\n",
            port_stanza(&tested_there)
        );
        s.upload(UploadSource::Bytes(config.as_bytes()), ".ssh/config", 0o600)
            .await?;
        let testenv = format!(
            "export IP={}\nexport USERNAME={}\nexport TESTSCRIPT=test.sh\n",
            tested_there.ip,
            crate::ssh::shell_quote(user)
        );
        s.upload(UploadSource::Bytes(testenv.as_bytes()), "testenv", 0o600)
            .await?;
        s.upload(UploadSource::File(&p.folder.test_script()), "test.sh", 0o700)
            .await?;
        let outcome = s
            .run(
                ". ./testenv; ./test.sh",
                &RunOptions {
                    log: Some(log.to_path_buf()),
                    timeout: Some(Duration::from_secs(p.settings.test_timeout_secs)),
                    ..Default::default()
                },
            )
            .await?;
        let _ = s.close().await;
        Ok::<_, Error>((outcome.success(), outcome.to_string()))
    }
    .await;
    p.backend.delete(tester, ledger).await?;
    run
}

impl<B: ComputeBackend> Pipeline<'_, B> {
    /// `ge-image test NAME`: test the folder's `<name>_rc` (the id recorded
    /// by the last create, else the newest image of that name).
    pub async fn test_only(&self) -> Result<TestOutcome> {
        let folder = self.folder;
        folder.require(&folder.test_script())?;
        let state = folder.load_state()?;
        let rc_name = format!("{}_rc", folder.name());
        let rc_id = match &state.rc_image_id {
            Some(id) if self.glance.get_image(id).await.is_ok() => id.clone(),
            _ => {
                let base = crate::settings::Base {
                    image: rc_name.clone(),
                    user: String::new(),
                    sudo_pty: false,
                    systemd_credentials: false,
                };
                find_base(self.glance, &rc_name, &base).await.map_err(|_| {
                    Error::Pipeline(format!(
                        "no image {rc_name} to test (run `ge-image create {}` first)",
                        folder.name()
                    ))
                })?
            }
        };
        let user = match &state.login_user {
            Some(u) => u.clone(),
            None => self.settings.base_for(&self.settings.base)?.user.clone(),
        };
        let ledger = folder.open_ledger_for_run()?;
        let key = RunKey::generate(folder)?;
        match run_test_step(self, &rc_id, None, &user, &key, &ledger).await {
            Ok(o) => Ok(o),
            Err(e) => Err(self.after_failure(e, &ledger).await),
        }
    }

    /// `ge-image gc NAME`: release every outstanding record of the folder's ledger.
    pub async fn gc(&self) -> Result<crate::cleanup::CleanupReport> {
        let ledger = ResourceLedger::open(self.folder.ledger_path())?;
        let report = release_all(self.backend, self.glance, &ledger).await?;
        if report.is_complete() {
            let mut state = self.folder.load_state()?;
            state.vm = None;
            self.folder.save_state(&state)?;
        }
        Ok(report)
    }
}

/// Whether a ledger record is one of the test step's (for reports).
pub fn is_vm(kind: ResourceKind) -> bool {
    matches!(kind, ResourceKind::LocalVm | ResourceKind::Server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_text_keeps_the_original_order() {
        let report = crate::create::CreateReport {
            rc_image_id: "abc".into(),
            test: TestOutcome {
                success: true,
                rc_image_id: "abc".into(),
                detail: "exited 0".into(),
                kept_vm: None,
                kept_access: None,
                log: PathBuf::from("test.log"),
            },
            replaced: vec!["old1".into()],
        };
        assert_eq!(
            report.to_text("web"),
            "Success. UUID: abc\nDeleted the earlier web_rc old1\nweb_rc: abc\n\
             To publish it: ge-image publish abc\n"
        );
        let untested = crate::create::UntestedReport {
            rc_image_id: "abc".into(),
        };
        assert_eq!(
            untested.to_text("web"),
            "web_rc: abc\nNot tested (--no-test): test it with `ge-image test web`, \
             then publish it with `ge-image publish abc`\n"
        );
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\ntester:x:1001:1001::/home/tester:/bin/sh\n";

    #[test]
    fn never_as_root() {
        assert_eq!(test_identity(1000, "nobody", PASSWD).unwrap(), None);
        assert_eq!(
            test_identity(0, "nobody", PASSWD).unwrap(),
            Some((65534, 65534))
        );
        assert_eq!(
            test_identity(0, "tester", PASSWD).unwrap(),
            Some((1001, 1001))
        );
        let e = test_identity(0, "root", PASSWD).unwrap_err().to_string();
        assert!(e.contains("is root"), "{e}");
        let e = test_identity(0, "ghost", PASSWD).unwrap_err().to_string();
        assert!(e.contains("no such user"), "{e}");
    }

    #[test]
    fn the_environment_is_small_and_complete() {
        let env = test_environment("127.9.8.7", "debian", Path::new("/tmp/h"));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "IP",
                "USERNAME",
                "HOME",
                "PATH",
                "LANG",
                "TMPDIR",
                "GIT_SSH_COMMAND"
            ]
        );
        assert!(env
            .iter()
            .any(|(k, v)| k == "PATH" && v.starts_with("/tmp/h/bin:")));
    }

    #[test]
    fn texts_follow_the_original() {
        let ok = TestOutcome {
            success: true,
            rc_image_id: "abc".into(),
            detail: "exited with status 0".into(),
            kept_vm: None,
            kept_access: None,
            log: "/nonexistent/test.log".into(),
        };
        assert_eq!(ok.result_text("web"), "Success. UUID: abc\n");
        assert_eq!(
            ok.to_text("web"),
            "Success. UUID: abc\nTo publish it: ge-image publish abc\n"
        );
        let bad = TestOutcome {
            success: false,
            kept_vm: Some("vm1".into()),
            kept_access: Some(KeptAccess {
                ip: "127.3.4.5".into(),
                ssh_command: "ssh -i '/f/id' debian@127.3.4.5".into(),
            }),
            detail: "exited with status 3".into(),
            ..ok
        };
        let t = bad.to_text("web");
        assert!(t.starts_with("Failed."), "{t}");
        assert!(
            t.contains("ge-image gc web") && t.contains("status 3"),
            "{t}"
        );
        assert!(
            t.contains("IP=127.3.4.5; log in with: ssh -i '/f/id' debian@127.3.4.5"),
            "{t}"
        );
    }
}
