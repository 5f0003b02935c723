//! GlanceSync engine: targets and regions, image selection, sync status and sync plans.
//!
//! Owns: the GlanceSync configuration format, the image model and backup CSV
//! format, status computation and the sync algorithm over a region backend.
//! It also owns what a run does around the engine (sequential and parallel
//! runs, backups, status reports: [`runner`]), so an embedding program gets
//! the tool's behaviour without the binary.
//! Must not: parse command lines or set up logging (that is `bins/glancesync`).
//!
//! Only `glance_backend` (cargo feature `glance`, on by default) touches
//! `openstack-client`; planning and the CSV backend need no HTTP stack.

pub mod apply;
pub mod backend;
pub mod condition;
pub mod config;
pub mod csv_backend;
pub mod engine;
pub mod error;
pub mod fanout;
#[cfg(feature = "glance")]
pub mod glance_backend;
pub mod image;
pub mod log;
pub mod multi;
pub mod plan;
pub mod pyvalue;
pub mod rules;
pub mod runner;

pub use backend::{RegionBackend, RegionRef, UploadRequest};
pub use config::{ConfigSource, GlanceSyncConfig, LoadOptions, TargetConfig, Transfer};
pub use csv_backend::CsvBackend;
pub use engine::{GlanceSync, StatusLine, SyncReport};
pub use error::{Error, Result};
#[cfg(feature = "glance")]
pub use glance_backend::{GlanceBackend, NoProgress, TransferCounters, TransferObserver};
pub use image::Image;
pub use log::SyncLog;
pub use multi::{RegionRun, RunEvent};
pub use plan::{plan_region, Action, RegionPlan};
pub use rules::SyncStatus;
