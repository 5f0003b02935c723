//! diskimage-builder compatible element assembly and image building.
//!
//! Owns: element discovery and dependency expansion ([`element`]), DIB's
//! phases and their hooks ([`phases`], [`executor`], run in a private mount
//! and PID namespace, [`namespace`]), Debian roots with debootstrap and the
//! `.deb` cache ([`rootfs`]), tree snapshots keyed on their inputs
//! ([`cache`], [`phase_cache`]; packed in the background, [`snapshot`]),
//! diskimage-builder's shared apt cache per build ([`apt_cache`]), the disk layout written with `sfdisk` and
//! `mkfs.ext4 -d` ([`disk`]), GRUB for BIOS without a block device ([`bootloader`]), the
//! output formats and checksum files ([`output`]); [`ImageBuilder`] plans
//! ([`ImageBuilder::plan`]) and builds ([`ImageBuilder::build`]) an image.
//! Must not: upload images or talk to OpenStack; use kpartx, device-mapper
//! or loop partitions.

pub mod apt_cache;
pub mod bootloader;
pub mod builder;
pub mod cache;
mod cmd;
pub mod disk;
pub mod element;
pub mod element_build;
mod error;
pub mod executor;
pub mod namespace;
pub mod output;
pub mod package_installs;
pub mod phase_cache;
pub mod phases;
pub mod pkg_map;
pub mod rootfs;
pub mod snapshot;
pub mod source_repo;
pub mod svc_map;
pub mod tmpfs;

pub use builder::{BuildReport, BuildSummary, ImageBuilder, Stage, StageReport};
pub use cache::{Cache, KeyChain};
pub use disk::{DiskLayout, DiskPlan, TableType};
pub use element::{
    builtin_elements_dir, elements_search_path, expand_image_elements, image_element_args,
    parse_elements_path, Element, ElementTree, ImageElementOptions,
};
pub use error::{Error, Result};
pub use executor::{ExecOptions, Executor, PhaseReport};
pub use namespace::MountNamespace;
pub use output::{ImageType, OutputFile, OutputOptions};
pub use phases::{BuildPlan, Step, PHASES};
pub use rootfs::{Distro, RootfsSpec};
