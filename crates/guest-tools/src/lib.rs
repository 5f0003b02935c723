//! Disk image inspection, sysprep, shrink and sparsify in one libguestfs session.
//!
//! Owns: everything done inside a guest disk image through libguestfs.
//! Must not: talk to OpenStack or boot the image as a VM (that is `image-pipeline`).
