//! himlarcli `image.py`'s actions as imagebuilder subcommands, with the
//! original's options: `list`, `update`, `usage`, `purge`, `grant`,
//! `revoke`, `list-access`, `retire`, plus `image-update` (the schedule of
//! `bin/image_update.sh`). A cron line `/opt/himlarcli/image.py update -i
//! uio.yaml` becomes `imagebuilder update -i uio.yaml`.
//!
//! Credentials: `-c config.ini` (himlarcli's `[openstack]` section), else
//! `OS_CLOUD` (clouds.yaml), else himlarcli's `config.ini` locations
//! (`$HIMLARCLI_ROOT/config.ini`, `/etc/himlarcli/config.ini`), else plain
//! `OS_*` variables. Image sets: `-i FILE` as given, else under
//! `--image-dir`, `./config/images/`, `$HIMLARCLI_ROOT/config/images/`
//! (`HIMLARCLI_ROOT` defaults to `/opt/himlarcli`).
//!
//! Project names (`-p`, an image's `owner`) are looked up in `--domain`, a
//! Keystone domain name (or id) as in himlarcli. A domain that exists
//! binds (a name found only elsewhere is an error naming those domains);
//! only when the default `Dataporten` does not exist at all do clouds
//! without it find a project by its unique name (several are an error
//! asking for `--domain`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use gold_images::cloud::DomainChoice;
use gold_images::fetch::Builder;
use gold_images::output::{Format, Printer};
use gold_images::update::{ApplyOptions, EntryOutcome};
use gold_images::usage::ImageQuery;
use gold_images::{cloud, Cloud, ImageSet, SetKind};
use openstack_client::glance::{ImageStatus, Visibility};
use openstack_client::{CloudConfig, Session};
use tracing::Instrument;

/// The failures of these commands: the library's, and configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From the gold-images library.
    #[error(transparent)]
    Gold(#[from] gold_images::Error),
    /// Loading or using the cloud configuration.
    #[error("{context}: {source}")]
    Cloud {
        /// What was being done.
        context: String,
        /// The client's error.
        source: Box<openstack_client::Error>,
    },
    /// No credentials anywhere.
    #[error("{0}")]
    Config(String),
}

impl cli_common::Failure for CliError {
    fn report(&self, bin: &str) {
        // An invalid image set has one problem per line: keep them apart.
        for line in self.to_string().lines() {
            eprintln!("{bin}: {line}");
        }
    }
}

type Res<T = ()> = Result<T, CliError>;

/// himlarcli's default `--domain`.
const DEFAULT_DOMAIN: &str = "Dataporten";

/// Options every action has (himlarcli's generic parser, plus `--region`).
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Override config.ini path (himlarcli's [openstack] section)
    #[arg(short = 'c', value_name = "config.ini")]
    config: Option<PathBuf>,
    /// Print what would be done; send no write request at all
    #[arg(long)]
    dry_run: bool,
    /// Output format
    #[arg(long, default_value = "text", value_parser = ["text", "table", "json", "csv"])]
    format: String,
    /// Keystone domain (name or id) project names are looked up in [default: Dataporten, or any domain when that one has no such project]
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Region (default: config.ini's `region`, OS_REGION_NAME, the cloud's first)
    #[arg(long)]
    region: Option<String>,
}

/// `-t` and `-n`.
#[derive(Debug, Clone, Args)]
pub struct TagArgs {
    /// Image type tag
    #[arg(short = 't', default_value = "all", value_name = "TYPE")]
    image_type: String,
    /// Image name tag (short name)
    #[arg(short = 'n', value_name = "NAME")]
    name: Option<String>,
}

/// `-v`.
#[derive(Debug, Clone, Args)]
pub struct VisibilityArg {
    /// Image visibility
    #[arg(short = 'v', default_value = "public", value_parser = ["public", "private", "shared"])]
    visibility: String,
}

/// `-s`.
#[derive(Debug, Clone, Args)]
pub struct StatusArg {
    /// Image status (deactive = Glance's deactivated)
    #[arg(short = 's', default_value = "active", value_parser = ["active", "deactive"])]
    status: String,
}

/// Where image set files are looked for.
#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// Directory searched first for image set files (then ./config/images, $HIMLARCLI_ROOT/config/images)
    #[arg(long, value_name = "DIR")]
    image_dir: Option<PathBuf>,
}

/// himlarcli `image.py`'s actions.
#[derive(Debug, Subcommand)]
pub enum HimlarCommand {
    /// List images (id, created_at, tags) by visibility, tags and status
    List {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tags: TagArgs,
        #[command(flatten)]
        vis: VisibilityArg,
        #[command(flatten)]
        status: StatusArg,
    },
    /// Update images from an image set file: new GOLD image when the builder has a new build, the old one Outdated and deactivated
    Update {
        #[command(flatten)]
        common: Common,
        /// Image set file (config/images/<FILE>)
        #[arg(short = 'i', default_value = "default.yaml", value_name = "FILE")]
        image_config: String,
        /// Only this image (short name)
        #[arg(short = 'n', value_name = "NAME")]
        name: Option<String>,
        /// Keep files downloaded to compare checksums
        #[arg(long)]
        skip_cleanup: bool,
        /// Do not ask for confirmation (only asked on a terminal; cron never is)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        sets: SetArgs,
    },
    /// Count the instances using each image, by visibility, tags and status
    Usage {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tags: TagArgs,
        #[command(flatten)]
        vis: VisibilityArg,
        #[command(flatten)]
        status: StatusArg,
        /// Show instances, created_at and tags too
        #[arg(long)]
        detailed: bool,
    },
    /// Delete unused deactivated images
    Purge {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tags: TagArgs,
        #[command(flatten)]
        vis: VisibilityArg,
        /// Delete at most this many images (oldest first)
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Skip the interactive confirmation
        #[arg(long)]
        force: bool,
    },
    /// Grant a project access to the matching active shared images
    Grant {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tags: TagArgs,
        /// Project name
        #[arg(short = 'p', value_name = "PROJECT")]
        project: String,
        /// Skip the interactive confirmation
        #[arg(long)]
        force: bool,
    },
    /// Revoke a project's access to the matching active shared images
    Revoke {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tags: TagArgs,
        /// Project name (an id with --project-by-id)
        #[arg(short = 'p', value_name = "PROJECT")]
        project: String,
        /// -p is a project id: skip the project look-up
        #[arg(long)]
        project_by_id: bool,
        /// Skip the interactive confirmation
        #[arg(long)]
        force: bool,
    },
    /// List the projects with access to the matching active shared images
    ListAccess {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// Retire a managed image: rename to its depricated name and deactivate (move its entry to retired.yaml first)
    Retire {
        #[command(flatten)]
        common: Common,
        /// Image set file holding the entry (config/images/<FILE>)
        #[arg(short = 'i', default_value = "default.yaml", value_name = "FILE")]
        image_config: String,
        /// Image short name: in the file and the name tag of the active image
        name: String,
        /// Skip the interactive confirmation
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        sets: SetArgs,
    },
    /// Run the image_update.sh schedule: update each image set in turn with pauses between
    ImageUpdate {
        #[command(flatten)]
        common: Common,
        /// A set and the pause after it, FILE[:SECONDS], repeatable (default: default.yaml:60 uio.yaml:60 uib.yaml:60 vgpu.yaml:300 windows.yaml)
        #[arg(long = "set", value_name = "FILE[:SECONDS]")]
        sets_list: Vec<String>,
        /// Multiply every pause (0: no pauses)
        #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
        pause_scale: f64,
        /// Keep files downloaded to compare checksums
        #[arg(long)]
        skip_cleanup: bool,
        /// Do not ask for confirmation (only asked on a terminal)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        sets: SetArgs,
    },
}

/// The user agent of every request: Glance's access log tells runs apart.
fn user_agent() -> String {
    format!(
        "imagebuilder/{} pid/{}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

fn himlarcli_root() -> PathBuf {
    std::env::var_os("HIMLARCLI_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/himlarcli"))
}

/// The cloud configuration (see the module comment for the order).
fn cloud_config(common: &Common) -> Res<CloudConfig> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut config = if let Some(path) = &common.config {
        gold_images::himlar_config::load(path)?
    } else if env("OS_CLOUD").is_some() {
        CloudConfig::from_env().map_err(|source| CliError::Cloud {
            context: "loading OS_CLOUD".into(),
            source: Box::new(source),
        })?
    } else if let Some(path) = gold_images::himlar_config::default_locations(&himlarcli_root())
        .into_iter()
        .find(|p| p.is_file())
    {
        gold_images::himlar_config::load(&path)?
    } else if env("OS_AUTH_URL").is_some() {
        CloudConfig::from_env().map_err(|source| CliError::Cloud {
            context: "loading the OS_* variables".into(),
            source: Box::new(source),
        })?
    } else {
        return Err(CliError::Config(format!(
            "no credentials: give -c config.ini, set OS_CLOUD or OS_AUTH_URL, or install {}",
            gold_images::himlar_config::default_locations(&himlarcli_root())
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    };
    if let Some(r) = &common.region {
        config.set_default_region(r);
    }
    config.http.user_agent = user_agent();
    Ok(config)
}

async fn connect(common: &Common) -> Res<Cloud> {
    let config = cloud_config(common)?;
    let session = Session::new(config).map_err(|source| CliError::Cloud {
        context: "setting up the session".into(),
        source: Box::new(source),
    })?;
    Ok(Cloud::connect(session, None)
        .await?
        .with_domain(Some(domain_choice(common))))
}

/// himlarcli's `--domain`: as given (strict), else `Dataporten` (binding
/// when it exists; clouds without that domain still find unique names).
fn domain_choice(common: &Common) -> DomainChoice {
    match &common.domain {
        Some(name) => DomainChoice {
            name: name.clone(),
            strict: true,
        },
        None => DomainChoice {
            name: DEFAULT_DOMAIN.into(),
            strict: false,
        },
    }
}

fn printer(common: &Common) -> Res<Printer<std::io::Stdout>> {
    let format: Format = common.format.parse()?;
    Ok(Printer::stdout(format)?)
}

fn set_dirs(sets: &SetArgs) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = sets.image_dir.iter().cloned().collect();
    dirs.push(PathBuf::from("config/images"));
    dirs.push(himlarcli_root().join("config/images"));
    dirs
}

fn query(tags: &TagArgs, vis: &VisibilityArg, status: Option<&StatusArg>) -> ImageQuery {
    ImageQuery {
        status: match status.map(|s| s.status.as_str()) {
            Some("deactive") => ImageStatus::Deactivated,
            _ => ImageStatus::Active,
        },
        visibility: Visibility::from(vis.visibility.as_str()),
        tags: cloud::filter_tags(&tags.image_type, tags.name.as_deref()),
    }
}

/// himlarcli's `confirm_action`: `<question> (yes|no)? `; anything but
/// `yes` (or the end of input) aborts.
fn confirm(question: &str) -> bool {
    eprint!("{question} (yes|no)? ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let ok = std::io::stdin().lock().read_line(&mut answer).is_ok();
    if ok && answer.trim().eq_ignore_ascii_case("yes") {
        return true;
    }
    eprintln!("Action aborted by user.");
    false
}

/// Print a plan for `--dry-run`: its lines prefixed `DRY-RUN: `, or the plan as JSON.
fn show_plan<T: serde::Serialize>(
    p: &mut Printer<std::io::Stdout>,
    plan: &T,
    lines: &[String],
) -> Res {
    if p.format() == Format::Json {
        p.json(plan)?;
    } else {
        let lines: Vec<String> = lines.iter().map(|l| format!("DRY-RUN: {l}")).collect();
        p.lines(&lines)?;
    }
    Ok(())
}

impl HimlarCommand {
    /// Run the action.
    pub async fn run(self) -> Res {
        match self {
            HimlarCommand::List {
                common,
                tags,
                vis,
                status,
            } => {
                let cloud = connect(&common).await?;
                let mut p = printer(&common)?;
                gold_images::usage::list(&cloud, &query(&tags, &vis, Some(&status)), &mut p)
                    .await?;
                Ok(())
            }
            HimlarCommand::Usage {
                common,
                tags,
                vis,
                status,
                detailed,
            } => {
                let cloud = connect(&common).await?;
                let mut p = printer(&common)?;
                let q = query(&tags, &vis, Some(&status));
                gold_images::usage::usage(&cloud, &q, detailed, &mut p).await?;
                Ok(())
            }
            HimlarCommand::Purge {
                common,
                tags,
                vis,
                limit,
                force,
            } => purge(common, tags, vis, limit, force).await,
            HimlarCommand::Grant {
                common,
                tags,
                project,
                force,
            } => {
                access(
                    common,
                    tags,
                    project,
                    false,
                    force,
                    gold_images::access::AccessAction::Grant,
                )
                .await
            }
            HimlarCommand::Revoke {
                common,
                tags,
                project,
                project_by_id,
                force,
            } => {
                access(
                    common,
                    tags,
                    project,
                    project_by_id,
                    force,
                    gold_images::access::AccessAction::Revoke,
                )
                .await
            }
            HimlarCommand::ListAccess { common, tags } => {
                let cloud = connect(&common).await?;
                let mut p = printer(&common)?;
                let t = cloud::filter_tags(&tags.image_type, tags.name.as_deref());
                gold_images::access::list_access(&cloud, &t, &mut p).await?;
                Ok(())
            }
            HimlarCommand::Retire {
                common,
                image_config,
                name,
                force,
                sets,
            } => retire(common, image_config, name, force, sets).await,
            HimlarCommand::Update {
                common,
                image_config,
                name,
                skip_cleanup,
                force,
                sets,
            } => {
                let path = gold_images::imageset::resolve(&image_config, &set_dirs(&sets))?;
                let set = ImageSet::load(&path, SetKind::Update)?;
                let mut p = printer(&common)?;
                let cloud = connect(&common).await?;
                update_set(
                    &cloud,
                    &common,
                    &mut p,
                    &set,
                    name.as_deref(),
                    skip_cleanup,
                    force,
                )
                .await
            }
            HimlarCommand::ImageUpdate {
                common,
                sets_list,
                pause_scale,
                skip_cleanup,
                force,
                sets,
            } => image_update(common, sets_list, pause_scale, skip_cleanup, force, sets).await,
        }
    }
}

async fn purge(
    common: Common,
    tags: TagArgs,
    vis: VisibilityArg,
    limit: Option<usize>,
    force: bool,
) -> Res {
    let t = cloud::filter_tags(&tags.image_type, tags.name.as_deref());
    if !common.dry_run
        && !force
        && !confirm(&format!(
            "Purge unused {} deactive images matching {}",
            vis.visibility,
            cloud::tag_text(&t)
        ))
    {
        return Ok(());
    }
    let cloud = connect(&common).await?;
    let mut p = printer(&common)?;
    let plan = gold_images::usage::plan_purge(&cloud, &query(&tags, &vis, None), limit).await?;
    if common.dry_run {
        return show_plan(&mut p, &plan, &plan.lines());
    }
    gold_images::usage::apply_purge(&cloud, &plan, &mut p).await?;
    Ok(())
}

async fn access(
    common: Common,
    tags: TagArgs,
    project: String,
    by_id: bool,
    force: bool,
    action: gold_images::access::AccessAction,
) -> Res {
    let cloud = connect(&common).await?;
    let mut p = printer(&common)?;
    let t = cloud::filter_tags(&tags.image_type, tags.name.as_deref());
    let plan = gold_images::access::plan_access(&cloud, action, &project, by_id, &t).await?;
    if common.dry_run {
        return show_plan(&mut p, &plan, &plan.lines());
    }
    if !force
        && !confirm(&format!(
            "{} access to shared images matching {}",
            action.title(),
            cloud::tag_text(&t)
        ))
    {
        return Ok(());
    }
    gold_images::access::apply_access(&cloud, &plan, &mut p).await?;
    Ok(())
}

async fn retire(
    common: Common,
    image_config: String,
    name: String,
    force: bool,
    sets: SetArgs,
) -> Res {
    let path = gold_images::imageset::resolve(&image_config, &set_dirs(&sets))?;
    let set = ImageSet::load(&path, SetKind::Retire)?;
    let cloud = connect(&common).await?;
    let mut p = printer(&common)?;
    let plan = gold_images::retire::plan_retire(&cloud, &set, &name).await?;
    if common.dry_run {
        return show_plan(&mut p, &plan, &plan.lines());
    }
    if !force
        && !confirm(&format!(
            "Retire active images matching {}",
            cloud::tag_text(&plan.tags)
        ))
    {
        return Ok(());
    }
    for retired in gold_images::retire::apply_retire(&cloud, &plan).await? {
        p.msg(&format!("Retire image {retired}"))?;
    }
    if plan.images.is_empty() {
        p.lines(&plan.lines())?;
    }
    Ok(())
}

/// Plan one set, then show it (dry run) or apply it.
async fn update_set(
    cloud: &Cloud,
    common: &Common,
    p: &mut Printer<std::io::Stdout>,
    set: &ImageSet,
    name: Option<&str>,
    skip_cleanup: bool,
    force: bool,
) -> Res {
    let path = &set.path;
    let builder = Builder::new(&user_agent())?;
    let plan = gold_images::update::plan_update(cloud, &builder, set, name).await?;
    if common.dry_run {
        return show_plan(p, &plan, &plan.lines());
    }
    if plan.has_writes()
        && !force
        && std::io::stdin().is_terminal()
        && !confirm(&format!("Update images of {}", path.display()))
    {
        return Ok(());
    }
    let opts = ApplyOptions {
        keep_downloads: skip_cleanup,
        ..ApplyOptions::default()
    };
    let outcomes = gold_images::update::apply_update(cloud, &builder, &plan, &opts).await;
    if p.format() == Format::Json {
        let map: serde_json::Map<String, serde_json::Value> = outcomes
            .iter()
            .map(|(n, o)| (n.clone(), serde_json::to_value(o).unwrap_or_default()))
            .collect();
        p.json(&map)?;
    } else {
        let lines: Vec<String> = outcomes.iter().map(|(n, o)| outcome_line(n, o)).collect();
        p.lines(&lines)?;
    }
    let failed = outcomes
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                EntryOutcome::Failed { .. } | EntryOutcome::Skipped { .. }
            )
        })
        .count();
    if failed > 0 {
        return Err(gold_images::Error::Partial {
            what: "images",
            failed,
            total: outcomes.len(),
        }
        .into());
    }
    Ok(())
}

fn outcome_line(name: &str, o: &EntryOutcome) -> String {
    match o {
        EntryOutcome::UpToDate { image_id } => {
            format!("{name}: no new image needed: checksum match found ({image_id})")
        }
        EntryOutcome::Created { image_id, md5, bytes } => {
            format!("{name}: created image {image_id} ({bytes} bytes, md5 {md5})")
        }
        EntryOutcome::Rotated {
            image_id,
            old_id,
            md5,
            bytes,
            members,
        } => format!(
            "{name}: created image {image_id} ({bytes} bytes, md5 {md5}); {old_id} renamed and deactivated; {members} member(s) copied"
        ),
        EntryOutcome::Skipped { reason } => format!("{name}: skipped: {reason}"),
        EntryOutcome::Failed { error } => format!("{name}: FAILED: {error}"),
    }
}

async fn image_update(
    common: Common,
    sets_list: Vec<String>,
    pause_scale: f64,
    skip_cleanup: bool,
    force: bool,
    sets: SetArgs,
) -> Res {
    let mut steps = if sets_list.is_empty() {
        gold_images::schedule::default_schedule()
    } else {
        sets_list
            .iter()
            .map(|s| gold_images::schedule::parse_step(s, Duration::from_secs(60)))
            .collect::<Result<Vec<_>, _>>()?
    };
    gold_images::schedule::scale(&mut steps, pause_scale);
    let cloud = connect(&common).await?;
    let mut p = printer(&common)?;
    let dirs = set_dirs(&sets);
    let mut failed = 0;
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let span = tracing::info_span!("image-update", set = %step.file);
        let loaded = gold_images::imageset::resolve(&step.file, &dirs)
            .and_then(|path| ImageSet::load(&path, SetKind::Update));
        let result = match loaded {
            Ok(set) => {
                update_set(&cloud, &common, &mut p, &set, None, skip_cleanup, force)
                    .instrument(span)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            failed += 1;
            for line in e.to_string().lines() {
                eprintln!("imagebuilder: {}: {line}", step.file);
            }
        }
        if i + 1 < total && !step.pause.is_zero() && !common.dry_run {
            tracing::info!(
                seconds = step.pause.as_secs_f64(),
                "pausing before the next set"
            );
            tokio::time::sleep(step.pause).await;
        }
    }
    if failed > 0 {
        return Err(gold_images::Error::Partial {
            what: "image sets",
            failed,
            total,
        }
        .into());
    }
    Ok(())
}
