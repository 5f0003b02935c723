//! Octavia's amphora image build (`diskimage-create/diskimage-create.sh` and
//! `image-tests.sh`) as plain values.
//!
//! Owns: the original's options with their defaults, validation, messages
//! and exit codes ([`options`]), the environment it reads and exports and
//! the element sequence it assembles per base OS ([`plan`]), its host
//! pre-flight checks ([`preflight`]), its image tests parameterised by the
//! build options ([`image_tests`]), and this workspace's own amphora
//! elements (`crates/amphora/elements/`, written for this project).
//! Must not: build images itself (the `diskimage` crate's builder does),
//! talk to OpenStack, or log the root password.
//!
//! ```no_run
//! use amphora::{options::parse_args, plan::{plan, Env}};
//! let inv = parse_args(&["-i", "debian-minimal"], std::path::Path::new("/tmp"))?;
//! let p = plan(&inv.options, &Env::from_process(), std::path::Path::new("/tmp"))?;
//! println!("{}", p.expanded_elements()?.join(" "));
//! # Ok::<(), amphora::Error>(())
//! ```

pub mod apt;
mod error;
pub mod image_tests;
pub mod options;
pub mod plan;
pub mod preflight;

pub use error::{Error, Result};
pub use options::{parse_args, BaseOs, ImageType, Invocation, Mode, Options, RootPassword};
pub use plan::{plan, AmphoraPlan, Env};
