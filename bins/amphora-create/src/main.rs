//! `amphora-create`: Octavia's `diskimage-create.sh`, option for option.
//!
//! Argument parsing and wiring only; the logic lives in the `amphora` crate
//! (options, environment, element sequence, checks, image tests) and the
//! `diskimage` crate (the build). The parser is getopts-compatible rather
//! than clap: the original's options take effect left to right and its exit
//! codes (3 invalid value, 1 usage/`-h`/`-v`/missing dependency, 2 unknown
//! host OS) win over the workspace's CLI conventions. `--help` and
//! `--version` still print the usage and `amphora-create <version>` and exit
//! 0; logging flags are long-only (`--verbose`, `--quiet`, `--log-format`)
//! because `-v` is the original's version flag.
//!
//! `AMPHORA_HOST_ROOT` (default `/`) is the root whose `etc/os-release` and
//! dpkg database the host checks read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use amphora::image_tests::Expectations;
use amphora::{AmphoraPlan, Env, Error, Invocation, Mode};
use cli_common::Failure;
use tracing::Instrument;

/// An `amphora::Error` as the original reports it: its exit code, the usage
/// after a usage error, the version line on standard output.
#[derive(Debug)]
struct Failed(Error);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed(e)
    }
}

impl Failure for Failed {
    fn exit_code(&self) -> u8 {
        self.0.exit_code()
    }

    fn report(&self, bin: &str) {
        match &self.0 {
            Error::Usage { message } if message.is_empty() => {
                // -h: the usage on standard output, exit 1 (as the original).
                println!("\n{}", amphora::options::USAGE);
            }
            Error::Usage { message } => {
                eprintln!("{bin}: {message}");
                eprintln!("\n{}", amphora::options::USAGE);
            }
            e @ Error::Version { .. } => println!("{e}"),
            e => eprintln!("{e}"),
        }
    }
}

const BIN: &str = "amphora-create";

/// A failure before the command runs (the command line).
fn fail(e: Error) -> ExitCode {
    let f = Failed(e);
    f.report(BIN);
    ExitCode::from(f.exit_code())
}

/// The long-only logging flags as the workspace's logging flags.
fn log_args(inv: &Invocation) -> cli_common::LogArgs {
    cli_common::LogArgs {
        verbose: inv.log.verbose,
        quiet: inv.log.quiet,
        log_format: if inv.log.json {
            cli_common::LogFormat::Json
        } else {
            cli_common::LogFormat::Text
        },
    }
}

fn main() -> ExitCode {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => {
                return fail(Error::Usage {
                    message: format!("argument {bad:?} is not valid UTF-8"),
                })
            }
        }
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let inv = match amphora::parse_args(&args, &cwd) {
        Ok(inv) => inv,
        Err(e) => return fail(e),
    };
    match inv.mode {
        Mode::Help => {
            println!("Build Octavia amphora images (diskimage-create.sh compatible).\n");
            println!("{}", amphora::options::USAGE);
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("amphora-create {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let spec =
        cli_common::MainSpec::new(BIN, log_args(&inv)).log_defaults(cli_common::LogDefaults {
            level: "info",
            quiet_targets: &[],
        });
    cli_common::run_main(
        spec,
        |_| async move { run(&inv, &cwd).await.map_err(Failed) },
    )
}

async fn run(inv: &Invocation, cwd: &Path) -> Result<(), Error> {
    let env = Env::from_process();
    if let Mode::Test(image) = &inv.mode {
        let expect = Expectations::for_options(&inv.options);
        amphora::image_tests::run(image, &expect, guest_tools::Accel::Auto).await?;
        println!("Amphora image looks good.");
        return Ok(());
    }
    let plan = amphora::plan(&inv.options, &env, cwd)?;
    match inv.mode {
        Mode::PrintElements => {
            let mut out = std::io::stdout().lock();
            for e in plan.expanded_elements()? {
                let _ = writeln!(out, "{e}");
            }
            Ok(())
        }
        Mode::DryRun => {
            print_plan(&plan);
            Ok(())
        }
        _ => build(inv, &plan).await,
    }
}

fn print_plan(plan: &AmphoraPlan) {
    for n in &plan.notices {
        println!("{n}");
    }
    println!("ELEMENTS_PATH={}", join_paths(&plan.search_path()));
    for (k, v) in &plan.exports {
        println!("{k}={v}");
    }
    if plan.root_password.is_some() {
        println!("DIB_PASSWORD=<set, not shown>");
    }
    println!(
        "disk-image-create {}",
        plan.disk_image_create_args().join(" ")
    );
}

fn join_paths(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

async fn build(inv: &Invocation, plan: &AmphoraPlan) -> Result<(), Error> {
    let host_root = std::env::var_os("AMPHORA_HOST_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    amphora::preflight::check_host(&host_root, inv.options.root_password.is_some())?;
    for n in &plan.notices {
        println!("{n}");
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(&plan.cache_dir).map_err(io(&plan.cache_dir))?;
    std::fs::create_dir_all(&plan.working_dir).map_err(io(&plan.working_dir))?;
    let temp = tempfile::Builder::new()
        .prefix("diskimage-create.")
        .tempdir_in(&plan.working_dir)
        .map_err(io(&plan.working_dir))?;
    // The hooks read their settings from the environment, as under the
    // original (the password too: never on a command line). Nothing else
    // runs on the runtime's other threads yet.
    for (k, v) in &plan.exports {
        std::env::set_var(k, v);
    }
    std::env::set_var("ELEMENTS_PATH", join_paths(&plan.elements_path));
    if let Some(pw) = &plan.root_password {
        std::env::set_var("DIB_PASSWORD", pw.expose());
    }
    // disk-image-create exports its arguments; diskimage-builder's
    // `manifests` element records them (the diskimage builder does not set it).
    std::env::set_var("DIB_ARGS", plan.disk_image_create_args().join(" "));
    let ext = format!(".{}", plan.image_type.as_str());
    let out = plan.output.display().to_string();
    let base = out.strip_suffix(&ext).unwrap_or(&out);
    let mut b = diskimage::ImageBuilder::new(plan.elements.clone());
    b.output = PathBuf::from(base);
    b.types = vec![match plan.image_type {
        amphora::ImageType::Qcow2 => diskimage::ImageType::Qcow2,
        amphora::ImageType::Tar => diskimage::ImageType::Tar,
        amphora::ImageType::Vhd => diskimage::ImageType::Vhd,
        amphora::ImageType::Raw => diskimage::ImageType::Raw,
    }];
    b.image_size = Some(plan.image_size * 1024 * 1024 * 1024);
    b.cache_dir = plan.cache_dir.clone();
    b.arch = plan.dib_arch();
    b.release = Some(plan.release.clone());
    b.grub_timeout = plan
        .exports
        .get("DIB_GRUB_TIMEOUT")
        .cloned()
        .unwrap_or_else(|| "0".into());
    // -l: the whole build log (every hook's and tool's output) goes to that
    // file, as disk-image-create's --logfile; otherwise it stays in the
    // temporary directory (kept after a failure).
    b.log_dir = Some(temp.path().to_path_buf());
    b.log_file = plan.logfile.clone();
    // -x: the hooks trace themselves (DIB_DEBUG_TRACE), as under DIB's -x.
    b.trace = u32::from(plan.trace);
    // -f: --no-tmpfs.
    b.tmpfs = !plan.no_tmpfs;
    b.elements_path = plan.search_path();
    // The builder installs GRUB's packages after cleanup.d, when the image's
    // own resolver (no-resolvconf's loopback one) is already back in place:
    // install them with the other packages instead, while the build still
    // resolves names (the builder then finds them and skips its own step).
    if plan.elements.iter().any(|e| e == "vm") && matches!(b.arch.as_str(), "amd64" | "x86_64") {
        b.packages = vec!["grub-pc-bin".into(), "grub2-common".into()];
    }
    let span = tracing::info_span!("amphora_build", base_os = %plan.base_os);
    let report = match b.build().instrument(span).await {
        Ok(r) => r,
        Err(e) => {
            // As the original under `set -e`: the temporary directory (with
            // the build's logs) stays for inspection after a failure.
            let kept = temp.keep();
            match &plan.logfile {
                Some(l) => eprintln!("build log: {}", l.display()),
                None => eprintln!("build logs kept in {}", kept.display()),
            }
            return Err(e.into());
        }
    };
    tracing::info!(seconds = report.seconds, "image built");
    drop(temp);
    match plan.exports.get("DIB_REPOREF_amphora_agent") {
        None if std::env::var("DIB_REPOREF_amphora_agent").is_err() => println!(
            "Successfully built the amphora image using amphora-agent from the master branch."
        ),
        r => println!(
            "Successfully built the amphora using the {} amphora-agent.",
            r.cloned()
                .or_else(|| std::env::var("DIB_REPOREF_amphora_agent").ok())
                .unwrap_or_default()
        ),
    }
    let size = std::fs::metadata(&plan.output)
        .map(|m| m.len())
        .map_err(io(&plan.output))?;
    println!("Amphora image size: {} {size}", plan.output.display());
    Ok(())
}
