//! NREC himlarcli's `image.py` as a library: the GOLD image life cycle on
//! Glance that `imagebuilder`'s himlarcli-compatible commands run.
//!
//! * [`imageset`]: the image set YAML files (`type`, `images:`, the
//!   `depricated` spelling, `retired.yaml`), checked with one error per
//!   problem naming the file and key.
//! * [`update`]: `update` as a plan ([`update::plan_update`], reads only:
//!   the builder's `-latest` md5 first, so an unchanged image is never
//!   downloaded) and its application ([`update::apply_update`]: streamed
//!   upload with hashing, tags only once verified, rotation of the old image
//!   to its `depricated` name, stamp and deactivation, members copied and
//!   accepted; the new image is deleted on any failure).
//! * [`retire`], [`usage`] (`list`, `usage`, `purge`), [`access`]
//!   (`grant`, `revoke`, `list-access`), [`schedule`] (`image-update`, the
//!   `bin/image_update.sh` schedule).
//! * [`himlar_config`]: himlarcli's `config.ini` as a
//!   [`openstack_client::CloudConfig`]; [`output`]: himlarcli's printer
//!   (`--format text|json|csv`); [`fetch`]: the builder's HTTP files.
//!
//! Every writing command is a plan value first (serialisable, printed by a
//! dry run) and then applied; computing a plan sends no write request.
//!
//! Owns: image sets, the update/rotation/retire/purge/access logic, the
//! himlarcli output. Must not: parse command lines, prompt, or build images
//! (the builder half of imagebuilder does that).

pub mod access;
pub mod cloud;
mod error;
pub mod fetch;
pub mod himlar_config;
pub mod imageset;
pub mod output;
pub mod retire;
pub mod schedule;
pub mod update;
pub mod usage;

pub use cloud::Cloud;
pub use error::{Error, Problem, Result};
pub use imageset::{ImageEntry, ImageSet, SetKind};
