//! `ge-image create`: the original's `create_template`, on any
//! [`ComputeBackend`], with every resource in the folder's ledger.
//!
//! Boot the base (SSH only) → wait for SSH → upload `data.tgz` and
//! `create.sh` (0700) → run it, output to `create.log` → power off →
//! snapshot to a file → guest-tools `prepare` in one session (sysprep removes
//! the `support` account and the uploaded files offline; shrink; sparsify) →
//! upload private as `<name>_rc` (streamed, hash-checked) → the test step.
//! An earlier `<name>_rc` is deleted only once the new one passed its test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openstack_client::glance::{CreateImage, GlanceClient, ImageFilter, ImageStatus, Visibility};
use sha2::Digest;

use crate::cleanup::{release_all, CleanupReport, GLANCE};
use crate::compute::{AccessProfile, ComputeBackend, OnError, VmAddress, VmHandle, VmSpec};
use crate::error::{Error, Result};
use crate::folder::{log_tail, ImageFolder};
use crate::ledger::{ResourceKind, ResourceLedger};
use crate::settings::{Base, Settings};
use crate::ssh::{
    wait_for_ssh, ChangedKeyPolicy, KnownHosts, RunOptions, SshKey, SshSession, SshTarget,
    UploadSource, WaitPolicy,
};
use crate::test_run::{run_test_step, TestOutcome};

/// Lines of `create.log` quoted when `create.sh` fails.
const TAIL_LINES: usize = 20;

/// Everything a create or test run works with.
#[derive(Debug)]
pub struct Pipeline<'a, B: ComputeBackend> {
    /// Where VMs run.
    pub backend: &'a B,
    /// Glance of the region (base images, `_rc` uploads).
    pub glance: &'a GlanceClient,
    /// Effective settings.
    pub settings: &'a Settings,
    /// The image folder.
    pub folder: &'a ImageFolder,
    /// Copy command output to standard error as it arrives (`-v`).
    pub verbose: bool,
}

/// What `create` produced.
#[derive(Debug)]
pub struct CreateReport {
    /// Id of the new `<name>_rc`.
    pub rc_image_id: String,
    /// Result of the test step.
    pub test: TestOutcome,
    /// Earlier `<name>_rc` images deleted after the new one passed.
    pub replaced: Vec<String>,
}

impl CreateReport {
    /// What `ge-image create` prints for the image `name`: the test's
    /// result, the earlier `<name>_rc` images deleted, and on success the new
    /// image and how to publish it.
    pub fn to_text(&self, name: &str) -> String {
        let test = &self.test;
        let mut s = test.result_text(name);
        for old in &self.replaced {
            s.push_str(&format!("Deleted the earlier {name}_rc {old}\n"));
        }
        if test.success {
            s.push_str(&format!("{name}_rc: {}\n", self.rc_image_id));
            s.push_str(&test.publish_hint());
        }
        s
    }
}

/// What `create --no-test` produced: a verified, untested `<name>_rc`.
#[derive(Debug)]
pub struct UntestedReport {
    /// Id of the new `<name>_rc`.
    pub rc_image_id: String,
}

impl UntestedReport {
    /// The new image and how to test, then publish it.
    pub fn to_text(&self, name: &str) -> String {
        format!(
            "{name}_rc: {id}\nNot tested (--no-test): test it with `ge-image test {name}`, \
             then publish it with `ge-image publish {id}`\n",
            id = self.rc_image_id
        )
    }
}

/// The candidate's id, the test's outcome (`None`: not tested) and the
/// earlier candidates deleted.
type CreateOutcome = (String, Option<TestOutcome>, Vec<String>);

/// The run's SSH key and known_hosts (in the folder's `.ge-image/`).
#[derive(Debug, Clone)]
pub struct RunKey {
    /// The private key.
    pub key: SshKey,
    /// Its OpenSSH public line.
    pub public: String,
    /// The private key file (0600).
    pub key_file: PathBuf,
    /// The pipeline's known_hosts (changed keys replaced: VMs are recreated).
    pub known_hosts: KnownHosts,
}

impl RunKey {
    /// A fresh key for this run.
    pub fn generate(folder: &ImageFolder) -> Result<RunKey> {
        let work = folder.work_dir()?;
        let (key, public) = SshKey::generate_ed25519(&format!("ge-image-{}", folder.name()))?;
        let key_file = work.join("id_ed25519");
        let _ = std::fs::remove_file(&key_file);
        key.write_private(&key_file)?;
        let known_hosts =
            KnownHosts::new(work.join("known_hosts")).with_policy(ChangedKeyPolicy::Replace);
        Ok(RunKey {
            key,
            public,
            key_file,
            known_hosts,
        })
    }
}

/// The active Glance image named (or with id) `name_or_id`.
pub async fn find_base(glance: &GlanceClient, os: &str, base: &Base) -> Result<String> {
    let filter = ImageFilter {
        name: Some(base.image.clone()),
        ..Default::default()
    };
    let mut found = glance
        .list_images(&filter)
        .await
        .map_err(Error::glance("looking up", &base.image))?;
    found.retain(|i| i.status == ImageStatus::Active);
    if found.is_empty() {
        if let Ok(i) = glance.get_image(&base.image).await {
            if i.status == ImageStatus::Active {
                return Ok(i.id);
            }
        }
        return Err(Error::Pipeline(format!(
            "base image '{}' (base {os}) not found in Glance (no active image of that name)",
            base.image
        )));
    }
    found.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    Ok(found.remove(0).id)
}

/// Hex digest of `path` with Glance's `os_hash_algo` (sha512 by default).
fn file_hash(path: &Path, algo: &str) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|source| Error::LocalFile {
        action: "reading",
        path: path.display().to_string(),
        source,
    })?;
    let mut buf = vec![0u8; 1 << 20];
    macro_rules! hash_with {
        ($h:expr) => {{
            let mut h = $h;
            loop {
                let n = f.read(&mut buf).map_err(|source| Error::LocalFile {
                    action: "reading",
                    path: path.display().to_string(),
                    source,
                })?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            hex::encode(h.finalize())
        }};
    }
    Ok(match algo {
        "sha256" => hash_with!(sha2::Sha256::new()),
        _ => hash_with!(sha2::Sha512::new()),
    })
}

/// Create the private image record `name` (qcow2, bare, no data yet),
/// recorded in the ledger before creation.
pub async fn create_private(
    glance: &GlanceClient,
    ledger: &ResourceLedger,
    name: &str,
) -> Result<String> {
    let key = ledger.intent(ResourceKind::Image, name, GLANCE, glance.region())?;
    let request = CreateImage::new(name)
        .disk_format("qcow2")
        .container_format("bare")
        .visibility(Visibility::Private);
    let image = glance
        .create_image(&request)
        .await
        .map_err(Error::glance("creating", name))?;
    ledger.created(key, &image.id)?;
    Ok(image.id)
}

/// Upload `file` as the data of image `id` (named `name`), streamed; the
/// file's hash is computed meanwhile and compared with Glance's.
#[tracing::instrument(skip_all, fields(id, name))]
pub async fn upload_verified(
    glance: &GlanceClient,
    id: &str,
    name: &str,
    file: &Path,
) -> Result<()> {
    let hash = |algo: &'static str| {
        let owned = file.to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || file_hash(&owned, algo))
                .await
                .map_err(|e| Error::Pipeline(format!("hashing {}: {e}", file.display())))?
        }
    };
    // Glance's default algorithm, hashed while the data goes up (chunked:
    // what Glance takes with the least work).
    let upload = async {
        glance
            .upload_file_chunked(id, file)
            .await
            .map_err(Error::glance("uploading", id))
    };
    let ((), guessed) = tokio::try_join!(upload, hash("sha512"))?;
    let stored = glance
        .get_image(id)
        .await
        .map_err(Error::glance("reading", id))?;
    let algo = stored
        .os_hash_algo
        .clone()
        .unwrap_or_else(|| "sha512".into());
    let local = if algo == "sha512" {
        guessed
    } else {
        hash(if algo == "sha256" { "sha256" } else { "sha512" }).await?
    };
    match &stored.os_hash_value {
        Some(remote) if *remote == local => {}
        other => {
            return Err(Error::Pipeline(format!(
                "image {id} ({name}): Glance reports {algo} {} but the uploaded file has {local}",
                other.as_deref().unwrap_or("<none>")
            )))
        }
    }
    tracing::info!(id, name, "uploaded and verified");
    Ok(())
}

/// Release the ledger record of a local file after removing the file.
pub(crate) fn drop_file(ledger: &ResourceLedger, path: &Path) -> Result<()> {
    let name = path.display().to_string();
    let _ = std::fs::remove_file(path);
    for r in ledger.outstanding()? {
        if r.kind == ResourceKind::File && r.name == name {
            ledger.released(r.key)?;
        }
    }
    Ok(())
}

/// Copy a file's growth to standard error while `flag` is unset (`-v`).
pub(crate) fn follow_log(path: PathBuf) -> tokio::sync::oneshot::Sender<()> {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut offset = 0u64;
        loop {
            let stop = rx.try_recv().is_ok();
            if let Ok(mut f) = std::fs::File::open(&path) {
                if f.seek(SeekFrom::Start(offset)).is_ok() {
                    let mut buf = Vec::new();
                    if f.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
                        offset += buf.len() as u64;
                        let _ = std::io::stderr().write_all(&buf);
                    }
                }
            }
            if stop {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tx
}

/// What to wait for when connecting.
pub(crate) fn wait_policy(settings: &Settings, local: bool) -> WaitPolicy {
    WaitPolicy {
        initial_delay: Duration::ZERO,
        attempts: settings.ssh_attempts.max(1),
        interval: Duration::from_secs(if local { 5 } else { 10 }),
    }
}

impl<B: ComputeBackend> Pipeline<'_, B> {
    /// Run the whole create step on base OS `os`, then the test step.
    #[tracing::instrument(skip_all, fields(image = %self.folder.name(), base = os))]
    pub async fn create(&self, os: &str) -> Result<CreateReport> {
        let (rc_image_id, test, replaced) = self.create_run(os, true).await?;
        let test = test.ok_or_else(|| Error::Pipeline("the test step did not run".into()))?;
        Ok(CreateReport {
            rc_image_id,
            test,
            replaced,
        })
    }

    /// `create --no-test`: the create step only; `<name>_rc` is uploaded,
    /// verified and handed over untested (earlier candidates are kept).
    #[tracing::instrument(skip_all, fields(image = %self.folder.name(), base = os))]
    pub async fn create_untested(&self, os: &str) -> Result<UntestedReport> {
        let (rc_image_id, _, _) = self.create_run(os, false).await?;
        Ok(UntestedReport { rc_image_id })
    }

    async fn create_run(&self, os: &str, test: bool) -> Result<CreateOutcome> {
        let folder = self.folder;
        folder.require(&folder.create_script())?;
        if test {
            folder.require(&folder.test_script())?;
        }
        let base = self.settings.base_for(os)?.clone();
        let ledger = folder.open_ledger_for_run()?;
        let base_id = find_base(self.glance, os, &base).await?;
        let key = RunKey::generate(folder)?;
        let result = self
            .create_inner(os, &base, &base_id, &key, &ledger, test)
            .await;
        match result {
            Ok(report) => Ok(report),
            Err(e) => Err(self.after_failure(e, &ledger).await),
        }
    }

    /// Apply `--on-error` to the resources of a failed run; the error gets
    /// what was (not) cleaned appended.
    pub(crate) async fn after_failure(&self, e: Error, ledger: &ResourceLedger) -> Error {
        match self.settings.on_error {
            OnError::Cleanup => match release_all(self.backend, self.glance, ledger).await {
                Ok(CleanupReport { failed, .. }) if failed.is_empty() => e,
                Ok(r) => Error::Pipeline(format!(
                    "{e}\nclean-up incomplete ({}); run `ge-image gc {}`",
                    r.failed.join("; "),
                    self.folder.name()
                )),
                Err(c) => Error::Pipeline(format!(
                    "{e}\nclean-up failed: {c}; run `ge-image gc {}`",
                    self.folder.name()
                )),
            },
            OnError::Abort | OnError::Keep => Error::Pipeline(format!(
                "{e}\nresources kept (--on-error {}): see {}; remove them with `ge-image gc {}`",
                if self.settings.on_error == OnError::Abort {
                    "abort"
                } else {
                    "keep"
                },
                ledger.path().display(),
                self.folder.name()
            )),
        }
    }

    async fn create_inner(
        &self,
        os: &str,
        base: &Base,
        base_id: &str,
        key: &RunKey,
        ledger: &ResourceLedger,
        run_test: bool,
    ) -> Result<CreateOutcome> {
        let folder = self.folder;
        let name = folder.name();
        let local = self.backend.name() == "local";
        let mut state = folder.load_state()?;
        let spec = VmSpec {
            name: name.to_string(),
            image_id: base_id.to_string(),
            flavor: self.settings.flavor.clone(),
            login_user: base.user.clone(),
            public_key: key.public.clone(),
            access: AccessProfile::SshOnly,
            tcp_ports: Vec::new(),
        };
        eprintln!("ge-image: booting {name} from {} ({base_id})", base.image);
        // With prepare, a backend that can serve the running VM's disk lets
        // the prepare appliance boot beside the build (its launch overlaps
        // the VM's boot and create.sh) and read the disk once the VM stopped.
        let vm = if self.settings.prepare {
            self.backend.boot_exporting_disk(&spec, ledger).await?
        } else {
            self.backend.boot(&spec, ledger).await?
        };
        state.vm = Some(vm.id().to_string());
        state.base = Some(os.to_string());
        state.backend = Some(if local {
            crate::BackendKind::Local
        } else {
            crate::BackendKind::Openstack
        });
        folder.save_state(&state)?;
        let work = folder.work_dir()?;
        let live = if self.settings.prepare {
            self.backend.live_disk(&vm)
        } else {
            None
        };
        let upload_file = match live {
            Some(live) => {
                let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
                let build = async {
                    self.build(&vm, base, key).await?;
                    let _ = stopped_tx.send(());
                    Ok::<_, Error>(())
                };
                let prepare =
                    self.prepare_live(live, &work, ledger, async { stopped_rx.await.is_ok() });
                let ((), prepared) = tokio::try_join!(build, prepare)?;
                self.backend.delete(vm, ledger).await?;
                prepared
            }
            None => {
                self.build(&vm, base, key).await?;
                // Prepare reads the stopped VM's own disk when the backend
                // has it as a local file (no snapshot copy); otherwise the
                // snapshot first.
                let in_place = if self.settings.prepare {
                    self.backend.local_disk(&vm)
                } else {
                    None
                };
                match in_place {
                    Some(disk) => {
                        let prepared = self.prepare_disk(&disk, &work, ledger).await?;
                        self.backend.delete(vm, ledger).await?;
                        prepared
                    }
                    None => {
                        eprintln!("ge-image: snapshotting {name}");
                        let snapshot = work.join(format!("{name}-snapshot.qcow2"));
                        let snapshot = self
                            .backend
                            .snapshot_to_file(&vm, &snapshot, ledger)
                            .await?;
                        self.backend.delete(vm, ledger).await?;
                        if self.settings.prepare {
                            let prepared = self.prepare_disk(&snapshot, &work, ledger).await?;
                            drop_file(ledger, &snapshot)?;
                            prepared
                        } else {
                            snapshot
                        }
                    }
                }
            }
        };
        state.vm = None;
        folder.save_state(&state)?;

        let rc_name = format!("{name}_rc");
        eprintln!("ge-image: uploading {rc_name}");
        let rc_id = create_private(self.glance, ledger, &rc_name).await?;
        state.rc_image_id = Some(rc_id.clone());
        state.login_user = Some(base.user.clone());
        folder.save_state(&state)?;
        let upload = upload_verified(self.glance, &rc_id, &rc_name, &upload_file);
        let test = if !run_test {
            upload.await?;
            None
        } else if self.backend.boots_local_files() {
            // The test VM boots from the file being uploaded (the same bytes,
            // hash-checked against Glance's) while the upload runs.
            let test = run_test_step(self, &rc_id, Some(&upload_file), &base.user, key, ledger);
            let ((), test) = tokio::try_join!(upload, test)?;
            Some(test)
        } else {
            upload.await?;
            drop_file(ledger, &upload_file)?;
            Some(run_test_step(self, &rc_id, None, &base.user, key, ledger).await?)
        };
        // A kept test VM still runs on the file: `gc` removes both.
        if test.as_ref().is_none_or(|t| t.kept_vm.is_none()) {
            drop_file(ledger, &upload_file)?;
        }
        let mut replaced = Vec::new();
        match &test {
            Some(t) if !t.success => {
                if !self.settings.keep_on_failure {
                    // This run made the candidate: it goes with the failed test.
                    release_all(self.backend, self.glance, ledger).await?;
                }
            }
            passed_or_untested => {
                if passed_or_untested.is_some() {
                    replaced = self.delete_older_candidates(&rc_name, &rc_id).await?;
                }
                // The candidate is handed to the operator.
                for r in ledger.outstanding()? {
                    if r.kind == ResourceKind::Image && r.id.as_deref() == Some(rc_id.as_str()) {
                        ledger.released(r.key)?;
                    }
                }
            }
        }
        Ok((rc_id, test, replaced))
    }

    /// Wait until `vm` runs, forget the stale host key of its address (VMs
    /// are recreated) and wait for SSH as `user` with the run's key.
    pub(crate) async fn connect(
        &self,
        vm: &B::Vm,
        user: &str,
        key: &RunKey,
    ) -> Result<(VmAddress, SshSession)> {
        let local = self.backend.name() == "local";
        let boot_timeout = Duration::from_secs(self.settings.boot_timeout_secs);
        let addr = self.backend.wait_ready(vm, boot_timeout).await?;
        key.known_hosts.forget(&addr.ssh_host, addr.ssh_port)?;
        let target = SshTarget {
            host: addr.ssh_host.clone(),
            port: addr.ssh_port,
            user: user.to_string(),
            key: key.key.clone(),
        };
        let session =
            wait_for_ssh(&target, &key.known_hosts, wait_policy(self.settings, local)).await?;
        Ok((addr, session))
    }

    /// The build on the booted VM: wait for SSH, upload `data.tgz` and
    /// `create.sh`, run it (output to `create.log`), power the VM off.
    async fn build(&self, vm: &B::Vm, base: &Base, key: &RunKey) -> Result<()> {
        let folder = self.folder;
        let name = folder.name();
        let (addr, session) = self.connect(vm, &base.user, key).await?;
        eprintln!("ge-image: {name} answers at {}; running create.sh", addr.ip);
        if let Some(data) = folder.data() {
            session
                .upload(UploadSource::File(&data), "data.tgz", 0o600)
                .await?;
        }
        session
            .upload(
                UploadSource::File(&folder.create_script()),
                "create.sh",
                0o700,
            )
            .await?;
        let log = folder.create_log();
        let follower = self.verbose.then(|| follow_log(log.clone()));
        let outcome = session
            .run(
                "./create.sh",
                &RunOptions {
                    pty: base.sudo_pty,
                    env: Vec::new(),
                    log: Some(log.clone()),
                    timeout: Some(Duration::from_secs(self.settings.create_timeout_secs)),
                },
            )
            .await;
        if let Some(f) = follower {
            let _ = f.send(());
        }
        let outcome = outcome?;
        let _ = session.close().await;
        if !outcome.success() {
            return Err(Error::ScriptFailed {
                script: "create.sh",
                outcome: outcome.to_string(),
                tail: log_tail(&log, TAIL_LINES),
                log,
            });
        }
        eprintln!("ge-image: create.sh done; powering off");
        self.backend.power_off(vm, Duration::from_secs(180)).await?;
        Ok(())
    }

    /// `prepare` the disk of a VM that still runs (see
    /// `guest_tools::prepare_live`: the appliance boots now, reads the disk
    /// once `stopped` says the VM stopped) into
    /// `<work>/<name>-prepared.qcow2`, recorded in the ledger first.
    async fn prepare_live(
        &self,
        live: guest_tools::LiveDisk,
        work: &Path,
        ledger: &ResourceLedger,
        stopped: impl std::future::Future<Output = bool>,
    ) -> Result<PathBuf> {
        let disk = live.path.clone();
        self.prepared(&disk, work, ledger, |prepared, opts| async move {
            let stopped = async {
                let ok = stopped.await;
                if ok {
                    eprintln!("ge-image: preparing the disk (sysprep, shrink, sparsify)");
                }
                ok
            };
            guest_tools::prepare_live(live, &prepared, opts, None, stopped).await
        })
        .await
    }

    /// `prepare` `disk` (sysprep, shrink, sparsify in one appliance; `disk`
    /// itself is not modified) into `<work>/<name>-prepared.qcow2`, recorded
    /// in the ledger first.
    async fn prepare_disk(
        &self,
        disk: &Path,
        work: &Path,
        ledger: &ResourceLedger,
    ) -> Result<PathBuf> {
        eprintln!("ge-image: preparing the disk (sysprep, shrink, sparsify)");
        self.prepared(disk, work, ledger, |prepared, opts| async move {
            guest_tools::prepare(disk, &prepared, opts, None).await
        })
        .await
    }

    /// The one place a prepare is set up: `<work>/<name>-prepared.qcow2` is
    /// written to the ledger (intent first), `run` gets it and the options
    /// (sysprep with shrink), the ledger gets the result.
    async fn prepared<F, Fut>(
        &self,
        disk: &Path,
        work: &Path,
        ledger: &ResourceLedger,
        run: F,
    ) -> Result<PathBuf>
    where
        F: FnOnce(PathBuf, guest_tools::PrepareOptions) -> Fut,
        Fut: std::future::Future<Output = guest_tools::Result<guest_tools::PrepareReport>>,
    {
        let prepared = work.join(format!("{}-prepared.qcow2", self.folder.name()));
        let name = prepared.display().to_string();
        let k = ledger.intent(ResourceKind::File, &name, "local-file", None)?;
        let opts = guest_tools::PrepareOptions {
            shrink: true,
            ..Default::default()
        };
        let report = run(prepared.clone(), opts)
            .await
            .map_err(|source| Error::GuestTools {
                action: "preparing",
                path: disk.to_path_buf(),
                source: Box::new(source),
            })?;
        ledger.created(k, &name)?;
        tracing::info!(seconds = report.seconds, "prepared");
        Ok(prepared)
    }

    /// Delete the caller's other images named `rc_name` (the original
    /// deletes the old `_rc` before building; here only once the new one passed).
    async fn delete_older_candidates(&self, rc_name: &str, keep: &str) -> Result<Vec<String>> {
        let filter = ImageFilter {
            name: Some(rc_name.to_string()),
            visibility: Some(Visibility::Private),
            ..Default::default()
        };
        let mine = self.glance.get_image(keep).await.ok().and_then(|i| i.owner);
        let mut deleted = Vec::new();
        for image in self
            .glance
            .list_images(&filter)
            .await
            .map_err(Error::glance("listing", rc_name))?
        {
            if image.id == keep || image.owner != mine || image.protected {
                continue;
            }
            self.glance
                .delete_image(&image.id)
                .await
                .map_err(Error::glance("deleting old candidate", &image.id))?;
            deleted.push(image.id);
        }
        Ok(deleted)
    }
}
