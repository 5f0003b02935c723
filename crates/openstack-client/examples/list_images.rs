//! List the images of every region of a cloud.
//!
//! ```text
//! cargo run -p openstack-client --example list_images -- [CLOUD]
//! ```
//! CLOUD is a clouds.yaml entry (default: `$OS_CLOUD`, else plain `OS_*`
//! variables). Set `RUST_LOG=openstack_client=debug` to see every request.

use futures::TryStreamExt;
use openstack_client::glance::ImageFilter;
use openstack_client::{CloudConfig, Session};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("list_images: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> openstack_client::Result<()> {
    // A cloud name selects a clouds.yaml entry; without one, OS_CLOUD or
    // plain OS_* variables are used.
    let config = CloudConfig::load(std::env::args().nth(1).as_deref(), None)?;
    let session = Session::connect(config).await?;
    for region in session.regions().await? {
        let glance = session.image(Some(&region)).await?;
        // `images()` streams and follows pagination lazily.
        let mut images = std::pin::pin!(glance.images(&ImageFilter::default()));
        while let Some(image) = images.try_next().await? {
            println!(
                "{region}\t{}\t{}\t{}\t{}",
                image.id,
                image.status,
                image
                    .size
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                image.name.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
