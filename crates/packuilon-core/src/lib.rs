//! Packuilon: build OpenStack images with Packer when a Quattor profile
//! arrives on a RabbitMQ queue.
//!
//! Owns: the `config.ini` of the original tool, turning a profile message
//! into a build plan (source image, templates, instance metadata), rendering
//! Packer templates into valid JSON, running Packer with the OpenStack
//! credentials in its environment, the queue consumer (`rabbit2packer`)
//! with its failure handling (bounded retries, `<QUEUE>.failed`) and its
//! persisted record of builds (duplicates build once), the producers
//! (`trigger`, `cdb2rabbit`), and the rotation of old images after a
//! successful build (`rename-old-images`, through `openstack-client`'s
//! Glance), and the test gate before it (a script, or the new image booted
//! on `image-pipeline`'s compute backends: local QEMU or OpenStack).
//!
//! Must not: put a credential on a command line or in a log, acknowledge a
//! message before it is settled (built, recognised as a duplicate, or handed
//! on with the broker's confirmation), or substitute values into a template
//! as plain text. It does not run Rally.

pub mod amqp;
pub mod cdb2rabbit;
pub mod compute_gate;
pub mod config;
pub mod error;
pub mod gate;
pub mod notify;
pub mod profile;
pub mod record;
pub mod rotate;
pub mod runner;
pub mod service;
pub mod template;
pub mod trigger;
pub mod validate;

pub use amqp::{shutdown_signal, Broker, Shutdown, ShutdownTrigger};
pub use cdb2rabbit::{Cdb2Rabbit, Cdb2RabbitReport};
pub use config::{Config, Secret};
pub use error::{Error, Result};
pub use profile::{BuildPlan, Profile, SourceImages, TemplateMap};
pub use record::{BuildRecord, BuildState};
pub use runner::{AuthEnv, BuildOutcome, Runner};
pub use service::Service;
pub use trigger::{Branch, TriggerRequest};
