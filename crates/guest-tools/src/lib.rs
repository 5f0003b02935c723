//! Disk image inspection, sysprep, shrink and sparsify in one libguestfs session.
//!
//! Owns: everything done inside a guest disk image through libguestfs.
//! Must not: talk to OpenStack or boot the image as a VM (that is `image-pipeline`).
//!
//! Each [`Session`] boots one libguestfs appliance (about 30 s under TCG) on a
//! dedicated thread that owns the `!Send` handle; its async methods run
//! [`Session::inspect`], [`Session::sysprep`], [`Session::shrink`] and
//! [`Session::sparsify`] there and report [`Progress`] events on a channel;
//! [`Session::with_handle`] runs any other work on that thread (`local-vm`
//! injects SSH keys with it, `diskimage` installs GRUB). [`prepare`] chains
//! inspection, sysprep, shrink and sparsify and writes the output with
//! `qemu-img convert`; [`inspect`] inspects on its own.
//!
//! Modules: [`sysprep`] (the named operations, `--operations` syntax,
//! [`operations_text`] for `--list-operations`); shrink (ext roots on MBR,
//! GPT, whole-disk and single-PV LVM layouts); the size rule
//! ([`target_size_for`]); `qemu-img` helpers ([`check_input`], [`convert`],
//! [`info`]); the KVM probe ([`probe_kvm`]).

mod accel;
mod error;
mod image;
mod inspect;
mod prepare;
mod quick_inspect;
mod session;
mod shrink;
mod size;
pub mod sysprep;
mod worker;

pub use accel::{probe_kvm, Accel, PROBE_TIMEOUT};
pub use error::{Error, Result};
pub use image::{
    check_input, convert, create_nbd_overlay, create_overlay, create_qcow2, info, Compression,
    ImageInfo, OutputFormat,
};
pub use inspect::{Application, FilesystemInfo, Inspection};
pub use prepare::{inspect, prepare, prepare_live, LiveDisk, PrepareOptions, PrepareReport};
pub use session::Session;
pub use shrink::ShrinkReport;
pub use size::{human, parse_size, target_size_for, GIB, MIB, RULE_SIZES};
pub use sysprep::{operations_text, Operation, OperationResult, SysprepOptions, OPERATIONS};
pub use worker::{Drive, Progress, ProgressSender, SessionOptions, Step};
