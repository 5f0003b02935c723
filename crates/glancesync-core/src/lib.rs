//! GlanceSync engine: targets and regions, image selection, sync status and sync plans.
//!
//! Owns: the GlanceSync configuration format, the image model and backup CSV
//! format, status computation and the sync algorithm over a region backend.
//! Must not: parse command lines or set up logging (that is `bins/glancesync`).

pub mod apply;
pub mod backend;
pub mod condition;
pub mod config;
pub mod csv_backend;
pub mod engine;
pub mod error;
pub mod glance_backend;
pub mod image;
pub mod ini;
pub mod log;
pub mod plan;
pub mod pyvalue;
pub mod rules;

pub use backend::{RegionBackend, RegionRef, UploadRequest};
pub use config::{ConfigSource, GlanceSyncConfig, LoadOptions, TargetConfig};
pub use csv_backend::CsvBackend;
pub use engine::{GlanceSync, StatusLine, SyncReport};
pub use error::{Error, Result};
pub use glance_backend::{GlanceBackend, NoProgress, TransferObserver};
pub use image::Image;
pub use log::SyncLog;
pub use plan::{plan_region, Action, RegionPlan};
pub use rules::SyncStatus;
