//! Upload or download one image through the crate (used by
//! `scripts/bench/openstack-client.sh`).
//!
//! ```text
//! glance_transfer upload   CLOUD REGION FILE NAME   # prints the new image id
//! glance_transfer download CLOUD REGION IMAGE_ID OUT   # verifies os_hash_value
//! glance_transfer download-unverified CLOUD REGION IMAGE_ID OUT
//! ```

use std::path::Path;

use openstack_client::glance::CreateImage;
use openstack_client::{CloudConfig, Session};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("glance_transfer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [mode, cloud, region, a, b] = args else {
        return Err("usage: glance_transfer upload CLOUD REGION FILE NAME | download CLOUD REGION IMAGE_ID OUT".into());
    };
    let session = Session::connect(CloudConfig::from_clouds_yaml(cloud)?).await?;
    let glance = session.image(Some(region)).await?;
    match mode.as_str() {
        "upload" => {
            let image = glance
                .create_image(
                    &CreateImage::new(b.as_str())
                        .disk_format("raw")
                        .container_format("bare"),
                )
                .await?;
            // Only the transfer is timed here (curl is handed a ready token).
            let started = std::time::Instant::now();
            glance.upload_file(&image.id, Path::new(a)).await?;
            eprintln!("transfer_seconds={:.3}", started.elapsed().as_secs_f64());
            println!("{}", image.id);
        }
        "download" => {
            let started = std::time::Instant::now();
            let summary = glance.download_to_file(a, Path::new(b)).await?;
            eprintln!("transfer_seconds={:.3}", started.elapsed().as_secs_f64());
            eprintln!(
                "{} bytes, verified with {}",
                summary.bytes,
                summary.algorithm.as_deref().unwrap_or("nothing")
            );
        }
        "download-unverified" => {
            // Transport only (no hash), to compare the HTTP path with curl.
            let started = std::time::Instant::now();
            let image = glance.get_image(a).await?;
            let summary = glance
                .download_image_unverified(&image)
                .await?
                .save_to_file(Path::new(b))
                .await?;
            eprintln!("transfer_seconds={:.3}", started.elapsed().as_secs_f64());
            eprintln!("{} bytes, not verified", summary.bytes);
        }
        other => return Err(format!("unknown mode '{other}' (upload or download)").into()),
    }
    Ok(())
}
