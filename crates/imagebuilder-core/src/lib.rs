//! NREC's imagebuilder as a library: the weekly GOLD image builds.
//!
//! Owns: `bootstrap` (download an upstream image, verify, upload private
//! with the `hw_*` properties), `build` (a Packer JSON template's `shell`
//! and `file` provisioners run natively over SSH on an image-pipeline
//! compute backend, or the real `packer build`; snapshot; publish the
//! compressed qcow2 with md5, `-latest` links and two-build rotation; the
//! JSONL report), `build-all` (the wrapper), and the `config` lookup of
//! template and download directories.
//! Must not: parse command lines; boot VMs or speak SSH other than
//! through image-pipeline; talk to OpenStack other than through
//! openstack-client. The monthly Glance rotation (himlarcli `image.py`)
//! is not here.
//!
//! ```no_run
//! # fn demo(o: imagebuilder_core::build::BuildOptions) -> imagebuilder_core::Result<()> {
//! let plan = imagebuilder_core::build::plan(&o)?;
//! println!("{}", plan.to_text());
//! # Ok(()) }
//! ```

pub mod bootstrap;
pub mod build;
pub mod build_all;
pub mod config;
mod error;
pub mod output;
pub mod packer;
pub mod provision;
pub mod report;
pub mod template;

pub use error::{Error, Result};
