//! Async OpenStack client for the image tools: Keystone v3 authentication and
//! service catalog, Glance v2 images, and the Nova and Neutron calls the image
//! pipeline needs.
//!
//! # Usage
//!
//! ```no_run
//! use openstack_client::{CloudConfig, Session, glance::{CreateImage, ImageFilter}};
//!
//! # async fn demo() -> openstack_client::Result<()> {
//! // clouds.yaml (+ secure.yaml) on the openstacksdk search path, or
//! // `CloudConfig::from_env()` for OS_CLOUD / plain OS_* variables.
//! let config = CloudConfig::from_clouds_yaml("local")?;
//! let session = Session::connect(config).await?;      // cheap to clone, share it
//! for region in session.regions().await? {
//!     let glance = session.image(Some(&region)).await?;
//!     for image in glance.list_images(&ImageFilter::default()).await? {
//!         println!("{region} {} {:?} {}", image.id, image.name, image.status);
//!     }
//! }
//! let glance = session.image(None).await?;            // default region
//! let image = glance
//!     .create_image(&CreateImage::new("demo").disk_format("raw").container_format("bare"))
//!     .await?;
//! glance.upload_file(&image.id, std::path::Path::new("disk.raw")).await?;
//! let summary = glance.download_to_file(&image.id, std::path::Path::new("copy.raw")).await?;
//! println!("verified {:?} over {} bytes", summary.algorithm, summary.bytes);
//! # Ok(()) }
//! ```
//!
//! * Configuration: [`CloudConfig`] (`clouds.yaml`, `secure.yaml`, `OS_*`).
//! * [`Session`]: token + catalog, proactive refresh, single-flight
//!   re-authentication on 401, retries with backoff and jitter for idempotent
//!   requests, connect and idle timeouts (never a total deadline on a stream),
//!   a `tracing` span per request.
//! * Services: [`glance::GlanceClient`] (`session.image(region)`),
//!   [`nova::ComputeClient`] (`session.compute(region)`),
//!   [`neutron::NetworkClient`] (`session.network(region)`),
//!   [`identity::IdentityClient`] (`session.identity()`).
//! * Glance ([`glance::GlanceClient`]): `images`/`list_images` (filters,
//!   lazy pagination), `get_image`, `find_image`, `create_image`
//!   ([`glance::CreateImage`]), `upload` (any `AsyncRead`, never replayed;
//!   `upload_chunked` sends it chunked, as python-glanceclient does),
//!   `upload_file` and `upload_reopenable` (reopen the source and retry),
//!   `stage`/`stage_file`,
//!   `download`/`download_image` (verifying [`glance::ImageDownload`] stream),
//!   `download_to`, `download_to_file`, `update_image`
//!   ([`glance::ImagePatch`]), `delete_image`, `deactivate_image`,
//!   `reactivate_image`, `add_tag`/`remove_tag`, members, `stores`,
//!   `import_methods`, `import_image` ([`glance::ImportMethod`],
//!   [`glance::ImportOptions`]), `wait_for_import`, `delete_from_store`,
//!   `wait_for_status`.
//! * Nova ([`nova::ComputeClient`]): flavors (`find_flavor` by name or id),
//!   `create_server`, `get_server`, `list_servers`, `delete_server`,
//!   `wait_for_server_status`, `wait_for_server_deleted`, `stop_server`,
//!   `start_server`, `create_image` (snapshot), keypairs, `console_log`.
//! * Neutron ([`neutron::NetworkClient`]): `find_network`, security groups and
//!   rules, floating IPs (create, with a description, list by any filter,
//!   associate, disassociate, delete),
//!   `server_ports`.
//! * Errors: one [`Error`] enum with status, method, URL, request id and the
//!   server's message; see [`Error::is_not_found`], [`Error::is_conflict`],
//!   [`Error::is_retryable`].
//!
//! Owns: configuration loading, tokens, endpoint selection, HTTP behaviour and
//! typed resources. Must not: know about GlanceSync, image pipelines or any
//! tool's config files.

#[macro_use]
mod macros;

pub mod catalog;
pub mod config;
mod error;
pub mod glance;
pub mod identity;
pub mod neutron;
pub mod nova;
mod paging;
mod secret;
mod session;
mod wait;

pub use catalog::Catalog;
pub use config::{CloudConfig, Credentials, DomainRef, HttpOptions, Interface, Scope, UserRef};
pub use error::{Error, Result};
pub use secret::Secret;
pub use session::{Session, TokenInfo};
