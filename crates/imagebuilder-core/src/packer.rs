//! `imagebuilder build --packer`: exactly the original's way. A temporary
//! security group (TCP 22 in, IPv4 and IPv6) and keypair named
//! `imagebuilder-<hex>`, the network id looked up by name, `packer build
//! -color=false --var …` on the template, the artifact read from the
//! manifest, and with `-d` the image downloaded and published, then
//! deleted from Glance. The temporary resources are in the build's ledger
//! and released whatever happens.

use std::path::PathBuf;
use std::process::Stdio;

use image_pipeline::cleanup::release_all;
use image_pipeline::{OpenStackBackend, ResourceKind, ResourceLedger, SshKey};
use openstack_client::neutron::SecurityGroupRuleCreate;
use openstack_client::Session;
use tokio::io::AsyncBufReadExt as _;

use crate::build::{manifest_artifact, BuildOutcome, BuildPlan, Mode};
use crate::error::{io_err, os_err, Error, Result};
use crate::output;
use crate::provision::BuildLog;
use crate::report;

/// Run a `--packer` plan with the `packer` program on PATH.
pub async fn apply(
    plan: &BuildPlan,
    session: &Session,
    backend: &OpenStackBackend,
    verbose: bool,
) -> Result<BuildOutcome> {
    let Mode::Packer { args } = &plan.mode else {
        return Err(Error::Config("not a --packer plan".into()));
    };
    let _running = crate::build::BuildLock::acquire(&plan.ledger, &plan.name)?;
    std::fs::create_dir_all(&plan.work_dir).map_err(io_err("creating", &plan.work_dir))?;
    let log_path = plan
        .report
        .as_ref()
        .map(|r| r.log.clone())
        .unwrap_or_else(|| plan.work_dir.join("build.log"));
    if let Some(d) = log_path.parent() {
        std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
    }
    let log = BuildLog::create(&log_path, verbose)?;
    let ledger = ResourceLedger::open(&plan.ledger)?;
    let region = backend.region().map(str::to_string);
    let glance = session
        .image(region.as_deref())
        .await
        .map_err(os_err("connecting to Glance"))?;
    let result = run(plan, args, session, region.as_deref(), &ledger, &log).await;
    let cleanup = release_all(backend, &glance, &ledger).await;
    let mut result = match (result, cleanup) {
        (r, Ok(c)) if c.is_complete() => r,
        (r, Ok(c)) => Err(Error::Config(format!(
            "{}temporary resources left: {}",
            r.err().map(|e| format!("{e}; ")).unwrap_or_default(),
            c.failed.join("; ")
        ))),
        (_, Err(e)) => Err(e.into()),
    };
    if plan.purge_source {
        let purged = match glance.find_image(&plan.source_image).await {
            Ok(i) => glance
                .delete_image(&i.id)
                .await
                .map_err(os_err("deleting the source image")),
            Err(e) => Err(os_err("finding the source image")(e)),
        };
        if let (Err(e), true) = (purged, result.is_ok()) {
            result = Err(e);
        }
    }
    if let Some(r) = &plan.report {
        report::write_start(&r.report, if result.is_ok() { 0 } else { 1 }, &log.text())?;
        report::append_result(&r.report, result.is_ok())?;
    }
    let _ = std::fs::remove_dir_all(&plan.work_dir);
    result
}

async fn run(
    plan: &BuildPlan,
    args: &[String],
    session: &Session,
    region: Option<&str>,
    ledger: &ResourceLedger,
    log: &BuildLog,
) -> Result<BuildOutcome> {
    let nova = session
        .compute(region)
        .await
        .map_err(os_err("connecting to Nova"))?;
    let neutron = session
        .network(region)
        .await
        .map_err(os_err("connecting to Neutron"))?;
    let glance = session
        .image(region)
        .await
        .map_err(os_err("connecting to Glance"))?;
    let name = &plan.build_id;
    log.say("Creating Packer security group...");
    let k = ledger.intent(ResourceKind::SecurityGroup, name, "openstack", region)?;
    let group = neutron
        .create_security_group(name, "Temporary security group for image building")
        .await
        .map_err(os_err(format!("creating security group {name}")))?;
    ledger.created(k, &group.id)?;
    for ethertype in ["IPv4", "IPv6"] {
        let rule = SecurityGroupRuleCreate {
            security_group_id: group.id.clone(),
            direction: "ingress".into(),
            ethertype: ethertype.into(),
            protocol: Some("tcp".into()),
            port_range_min: Some(22),
            port_range_max: Some(22),
            remote_ip_prefix: None,
            remote_group_id: None,
        };
        neutron
            .create_security_group_rule(&rule)
            .await
            .map_err(os_err(format!("adding the SSH rule to {name}")))?;
    }
    log.say("Creating Packer keypair...");
    let (key, public) = SshKey::generate_ed25519(name)?;
    key.write_private(plan.work_dir.join(name))?;
    let k = ledger.intent(ResourceKind::Keypair, name, "openstack", region)?;
    nova.create_keypair(name, &public)
        .await
        .map_err(os_err(format!("creating keypair {name}")))?;
    ledger.created(k, name)?;
    let network = neutron
        .find_network(&plan.network)
        .await
        .map_err(os_err(format!("Cannot find network {}", plan.network)))?;
    // The original passes the network's id.
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.strip_prefix("network=") {
            Some(_) => format!("network={}", network.id),
            None => a.clone(),
        })
        .collect();
    // In this process's directory, as the original: a JSON template's
    // relative script paths are relative to it.
    log.say("Running Packer...");
    let mut child = tokio::process::Command::new("packer")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_err("running", PathBuf::from("packer")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let pump = |r: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| async move {
        if let Some(r) = r {
            let mut lines = tokio::io::BufReader::new(r).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.append(format!("{l}\n").as_bytes());
            }
        }
    };
    let (_, _, status) = tokio::join!(
        pump(stdout.map(|s| Box::new(s) as _)),
        pump(stderr.map(|s| Box::new(s) as _)),
        child.wait()
    );
    let status = status.map_err(io_err("waiting for", PathBuf::from("packer")))?;
    if !status.success() {
        log.say("Build failed");
        return Err(Error::Command {
            program: "packer build".into(),
            outcome: status.to_string(),
            detail: format!("; see {}", log.path().display()),
        });
    }
    let manifest = PathBuf::from(
        plan.variables
            .get("manifest_path")
            .cloned()
            .unwrap_or_default(),
    );
    let artifact = manifest_artifact(&manifest)?;
    log.say(&format!("Successfully created image id {artifact}"));
    let published = match &plan.download {
        None => None,
        Some(d) => {
            std::fs::create_dir_all(&d.dir).map_err(io_err("creating", &d.dir))?;
            let raw = plan.work_dir.join(format!("{}.download.qcow2", plan.name));
            log.say("Downloading image...");
            glance
                .download_to_file(&artifact, &raw)
                .await
                .map_err(os_err(format!("downloading image {artifact}")))?;
            let part = PathBuf::from(format!("{}.part", d.image.display()));
            output::compress(&raw, &part).await?;
            std::fs::rename(&part, &d.image).map_err(io_err("renaming", &part))?;
            let _ = std::fs::remove_file(&raw);
            let p = output::finish(&d.dir, &plan.name, &d.image)?;
            log.say("Download successful, deleting from Glance...");
            glance
                .delete_image(&artifact)
                .await
                .map_err(os_err(format!("deleting image {artifact}")))?;
            Some(p)
        }
    };
    Ok(BuildOutcome {
        artifact_id: artifact,
        published,
        manifest: Some(manifest),
    })
}
