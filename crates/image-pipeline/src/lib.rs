//! Create, test and publish VM images over a compute backend (OpenStack or
//! local QEMU), SSH and Glance: the original create_ge_images workflow.
//!
//! Owns: the create/test/publish pipeline ([`create`], [`test_run`],
//! [`publish`](mod@publish)), its compute backends ([`compute`]: Nova/Neutron, or local
//! QEMU VMs through `local-vm`), SSH to the VMs ([`ssh`]), the image folder
//! and its settings ([`folder`], [`settings`]), the account set-up
//! ([`account`]), its resource ledger and clean-up ([`ledger`], [`cleanup`]),
//! and connecting to the cloud a command names ([`Cloud`]). Each report
//! renders its own text (`to_text`) and serialises to JSON.
//! Must not: parse command lines; reach OpenStack other than through `openstack-client`.
//!
//! # Publishing
//!
//! [`publish`](fn@publish) turns a tested release candidate (`<name>_rc`) into the public
//! image `<name>`, retiring the public image it replaces as
//! `<name>_obsolete` (private) and keeping that image's `nid` and `type`;
//! [`locate_images`] lists the caller's published images and the NIDs in use.
//! Every check runs before the first write, a dry run writes nothing, and a
//! failed write undoes the earlier ones.
//!
//! ```no_run
//! use image_pipeline::{publish, PublishRequest};
//! use openstack_client::{CloudConfig, Session};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let session = Session::connect(CloudConfig::from_env()?).await?;
//! let project = image_pipeline::caller_project_id(&session).await?;
//! let glance = session.image(None).await?;
//! let request = PublishRequest {
//!     rc_image_id: "0b3f…".into(),
//!     ..Default::default()
//! };
//! let report = publish(&glance, &project, &request, false).await?;
//! print!("{}", report.to_text());
//! # Ok(()) }
//! ```
//!
//! # SSH
//!
//! [`ssh`] connects to build and test VMs over SSH (russh): the pipeline's
//! own known_hosts file, waiting for a booting VM, uploads, and commands run
//! with or without a pty, with their output in a log file.

pub mod account;
pub mod cleanup;
mod cloud;
pub mod compute;
pub mod create;
mod error;
pub mod folder;
pub mod ledger;
pub mod publish;
pub mod settings;
pub mod ssh;
pub mod test_run;

pub use cleanup::CleanupReport;
pub use cloud::Cloud;
pub use compute::local::{LocalBackend, LocalBackendOptions};
pub use compute::openstack::{OpenStackBackend, OpenStackBackendOptions, OpenStackVm};
pub use compute::{
    AccessProfile, BackendKind, ComputeBackend, OnError, VmAddress, VmHandle, VmSpec,
};
pub use create::{CreateReport, Pipeline, UntestedReport};
pub use error::{Error, Result, RollbackOutcome};
pub use folder::{FolderState, ImageFolder};
pub use ledger::{LedgerKey, ResourceKind, ResourceLedger, ResourceRecord, LEDGER_FILE};
pub use publish::{
    caller_project_id, execute_plan, locate_images, parse_image_id, plan_publish, publish,
    LocateReport, LocatedImage, NidType, NidTypeSource, ObsoleteStep, PublishPlan, PublishReport,
    PublishRequest, SkippedImage,
};
pub use settings::{Overrides, Settings};
pub use ssh::{
    wait_for_ssh, ChangedKeyPolicy, KnownHosts, RunOptions, RunOutcome, SshKey, SshSession,
    SshTarget, UploadSource, WaitPolicy,
};
pub use test_run::{KeptAccess, TestOutcome};
