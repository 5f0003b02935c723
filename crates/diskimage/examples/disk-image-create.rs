//! `disk-image-create` on the `diskimage` builder API: diskimage-builder's
//! main flags (`-o -t -x -a -u -n -p --image-size --image-cache --checksum
//! --root-label --logfile --no-tmpfs`) and the element list.
//!
//! ```text
//! cargo run -p diskimage --example disk-image-create -- -o debian -t qcow2,raw debian-minimal vm block-device-gpt
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser};
use diskimage::{ImageBuilder, ImageType};

/// Build a disk image from elements (diskimage-builder compatible flags).
#[derive(Parser, Debug)]
#[command(name = "disk-image-create", version)]
struct Args {
    /// Image name; `.<type>` is appended.
    #[arg(short = 'o', default_value = "image")]
    output: PathBuf,
    /// Image types, comma separated (qcow2, raw, tar, tgz, vhd).
    #[arg(short = 't', default_value = "qcow2")]
    types: String,
    /// Trace (more logging); repeat for more.
    #[arg(short = 'x', action = ArgAction::Count)]
    trace: u8,
    /// Architecture (amd64, arm64, ...).
    #[arg(short = 'a', default_value = "amd64")]
    arch: String,
    /// Do not compress the qcow2.
    #[arg(short = 'u')]
    uncompressed: bool,
    /// Extra packages, comma separated (repeatable).
    #[arg(short = 'p', action = ArgAction::Append)]
    packages: Vec<String>,
    /// Image size in GB (decimals allowed).
    #[arg(long = "image-size")]
    image_size: Option<String>,
    /// Cache directory (default $DIB_IMAGE_CACHE or ~/.cache/image-create).
    #[arg(long = "image-cache")]
    image_cache: Option<PathBuf>,
    /// Write .md5 and .sha256 files beside each image.
    #[arg(long)]
    checksum: bool,
    /// Do not add the `base` element.
    #[arg(short = 'n')]
    skip_base: bool,
    /// Append the build log (every hook's and tool's output) to this file.
    #[arg(long)]
    logfile: Option<PathBuf>,
    /// Do not build in a tmpfs.
    #[arg(long = "no-tmpfs")]
    no_tmpfs: bool,
    /// Label of the root filesystem.
    #[arg(long = "root-label", default_value = "cloudimg-rootfs")]
    root_label: String,
    /// Elements.
    #[arg(required = true)]
    elements: Vec<String>,
}

fn parse_gb(s: &str) -> Result<u64, String> {
    let gb: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("--image-size: `{s}` is not a number of GB"))?;
    if gb.is_nan() || gb <= 0.0 {
        return Err(format!("--image-size: `{s}` must be positive"));
    }
    Ok((gb * (1u64 << 30) as f64) as u64)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let level = match args.trace {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut b = ImageBuilder::new(args.elements.iter().cloned());
    b.output = args.output.clone();
    b.compress = !args.uncompressed;
    b.checksum = args.checksum || std::env::var("DIB_CHECKSUM").is_ok_and(|v| v == "1");
    b.arch = args.arch.clone();
    b.root_label = args.root_label.clone();
    b.trace = u32::from(args.trace);
    b.skip_base = args.skip_base;
    b.log_file = args.logfile.clone();
    if args.no_tmpfs {
        b.tmpfs = false;
    }
    b.packages = args
        .packages
        .iter()
        .flat_map(|p| p.split(','))
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    if let Some(c) = &args.image_cache {
        b.cache_dir = c.clone();
    }
    if let Ok(m) = std::env::var("DIB_DISTRIBUTION_MIRROR") {
        b.mirror = Some(m).filter(|m| !m.is_empty());
    }
    let result = async {
        b.types = ImageType::parse_list(&args.types)?;
        if let Some(s) = &args.image_size {
            b.image_size = Some(parse_gb(s).map_err(|reason| diskimage::Error::Option {
                option: "--image-size".into(),
                reason,
            })?);
        }
        b.build().await
    }
    .await;
    match result {
        Ok(report) => {
            for s in &report.stages {
                eprintln!(
                    "stage {:<10} {:>7.1} s{}",
                    s.name,
                    s.seconds,
                    if s.cached { " (cached)" } else { "" }
                );
            }
            eprintln!(
                "disk {:.1} s, total {:.1} s",
                report.disk_seconds, report.seconds
            );
            for o in &report.outputs {
                println!("{}", o.path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("disk-image-create: {e}");
            ExitCode::FAILURE
        }
    }
}
