//! Shrink (the original `shrink.py` + `virt-resize --shrink`, in the same
//! appliance) and in-place sparsify (fstrim).
//!
//! The root ext2/3/4 filesystem is checked and shrunk to its minimum
//! (`e2fsck -fy`, `resize2fs -M`); the virtual size is picked from its size
//! (see [`crate::size::target_size_for`]) or given by the caller; the
//! partition table is recreated on an empty drive of that size attached to
//! the same session (same start sectors, types, flags, GUIDs; the root, which
//! must be the last partition, ends at the end of the disk); the boot code of
//! the MBR and the gap before the first partition (GRUB's core image) are
//! copied byte for byte, every other partition is copied whole and the root
//! filesystem up to its shrunk size; then the root is grown to fill its new
//! partition. Filesystem UUIDs, partition numbers, the MBR disk signature and
//! GPT GUIDs are unchanged, so `/etc/fstab` (by UUID, LABEL, PARTUUID or device
//! name) and the GRUB configuration stay valid and the bootloader still finds
//! its core image and `/boot/grub`.
//!
//! An ext2/3/4 root on an LVM logical volume is shrunk in place when its
//! volume group has a single physical volume, the last primary partition of
//! an MBR disk: filesystem to its minimum, LV to that plus a small margin
//! (whole extents), PV to its allocated extents (refused when the free
//! extents are not at its end), the partition re-ended at the virtual size
//! picked from the used size, then PV, LV and filesystem grown to fill it.
//! Other LVM layouts are refused with the reason.
//!
//! This module: the checks, the in-place cut of MBR and whole-disk layouts,
//! the copy of GPT layouts into a smaller drive, and sparsify; `mbr`:
//! re-ending a partition in the MBR; `lvm`: the single-PV LVM layout.

use guestfs::{CopyDeviceToDeviceOptArgs, E2fsckOptArgs};
use serde::Serialize;

use crate::error::{Error, GfsContext, Result};

mod lvm;
mod mbr;

use crate::inspect::ensure_root;
use crate::size::{human, target_size_for, MIB};
use crate::worker::{is_partition_of, Step, Worker};
use lvm::shrink_lvm;
use mbr::reend_mbr_partition;

/// Sectors at the end of a GPT disk for the backup header and table.
/// What shrinking did.
#[derive(Debug, Clone, Serialize)]
pub struct ShrinkReport {
    /// Root filesystem device that was shrunk.
    pub device: String,
    /// Filesystem size at its minimum, bytes.
    pub min_fs_bytes: u64,
    /// The virtual size picked; `None` when the disk keeps its size.
    pub target_size: Option<u64>,
    /// Index in [`SessionOptions::drives`] of the disk that now holds the image.
    pub drive_index: usize,
    /// When set, the image was shrunk in place: only the first this-many bytes
    /// of that drive are the image (cut it there when converting).
    pub cut_at: Option<u64>,
}

const GPT_TAIL_SECTORS: u64 = 34;

fn part_dev(disk: &str, n: i32) -> String {
    format!("{disk}{n}")
}

fn copy(
    g: &guestfs::Handle,
    src: &str,
    dst: &str,
    srcoffset: Option<u64>,
    size: Option<u64>,
) -> Result<()> {
    g.copy_device_to_device(
        src,
        dst,
        CopyDeviceToDeviceOptArgs {
            srcoffset: srcoffset.map(|o| o as i64),
            destoffset: srcoffset.map(|o| o as i64),
            size: size.map(|s| s as i64),
            sparse: Some(true),
            append: None,
        },
    )
    .ctx(|| format!("copy {src} to {dst}"))
}

/// Check an ext filesystem, shrink it to its minimum (`resize2fs -M`) and
/// return its new size in bytes, read back from `tune2fs -l`.
fn shrink_fs_to_minimum(g: &guestfs::Handle, dev: &str) -> Result<u64> {
    fsck(g, dev)?;
    g.resize2fs_M(dev).ctx(|| format!("resize2fs -M {dev}"))?;
    let tl = g.tune2fs_l(dev).ctx(|| format!("tune2fs -l {dev}"))?;
    let field = |k: &str| -> Result<u64> {
        tl.get(k)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::Parse {
                program: "tune2fs -l".into(),
                reason: format!("no `{k}`"),
            })
    };
    Ok(field("Block count")? * field("Block size")?)
}

fn fsck(g: &guestfs::Handle, dev: &str) -> Result<()> {
    g.e2fsck(
        dev,
        E2fsckOptArgs {
            correct: None,
            forceall: Some(true),
        },
    )
    .ctx(|| format!("e2fsck {dev}"))
}

pub(crate) fn shrink(w: &mut Worker, size: Option<u64>) -> Result<ShrinkReport> {
    let root = ensure_root(w)?;
    w.layout_changed();
    let g = &w.g;
    g.umount_all().ctx(|| "unmount".into())?;
    let cannot = |reason: String| Error::CannotShrink {
        device: root.clone(),
        reason,
    };
    if g.is_lv(&root).ctx(|| format!("is_lv {root}"))? {
        return shrink_lvm(w, &root, size);
    }
    let fstype = g.vfs_type(&root).ctx(|| format!("vfs_type {root}"))?;
    if !matches!(fstype.as_str(), "ext2" | "ext3" | "ext4") {
        return Err(cannot(format!(
            "only ext2/3/4 can be shrunk, the root is {fstype}"
        )));
    }
    let src_disk = w.devices.first().cloned().unwrap_or_default();
    let whole = g
        .is_whole_device(&root)
        .ctx(|| format!("is_whole_device {root}"))?;

    // Partition layout of the source (empty when the root is the whole disk).
    let mut parttype = String::new();
    let mut parts = Vec::new();
    let mut root_num = 0;
    if !whole {
        let disk = g.part_to_dev(&root).ctx(|| format!("part_to_dev {root}"))?;
        if disk != src_disk {
            return Err(cannot(format!(
                "the root is on {disk}, not on the image disk {src_disk}"
            )));
        }
        parttype = g
            .part_get_parttype(&disk)
            .ctx(|| format!("partition table of {disk}"))?;
        if parttype != "msdos" && parttype != "gpt" {
            return Err(cannot(format!(
                "unsupported partition table type {parttype}"
            )));
        }
        parts = g.part_list(&disk).ctx(|| format!("partitions of {disk}"))?;
        parts.sort_by_key(|p| p.part_start);
        root_num = g
            .part_to_partnum(&root)
            .ctx(|| format!("part_to_partnum {root}"))?;
        if parttype == "msdos" && parts.iter().any(|p| p.part_num > 4) {
            return Err(cannot("MBR logical partitions are not supported".into()));
        }
        if parts.last().map(|p| p.part_num) != Some(root_num) {
            return Err(cannot(
                "the root is not the last partition on the disk".into(),
            ));
        }
        for (i, p) in parts.iter().enumerate() {
            if p.part_num != i as i32 + 1 {
                return Err(cannot("partition numbers are not in disk order".into()));
            }
        }
    }

    w.report(
        Step::Shrink,
        format!("checking and shrinking {root} to its minimum size"),
    );
    let min_fs_bytes = shrink_fs_to_minimum(g, &root)?;
    let src_size = w.drive_sizes.first().copied().unwrap_or(0);
    let target = size.or_else(|| target_size_for(min_fs_bytes));
    w.report(
        Step::Shrink,
        format!(
            "{root} is {} at its minimum; virtual size: {}",
            human(min_fs_bytes),
            target.map_or("unchanged".to_string(), human)
        ),
    );

    let root_start = parts.last().map_or(0, |p| p.part_start);
    let tail = if parttype == "gpt" {
        GPT_TAIL_SECTORS * 512
    } else {
        0
    };
    let needed = root_start + min_fs_bytes + tail + MIB;
    // Candidate drives: every attached drive but the first.
    let candidates: Vec<(usize, u64)> = w.drive_sizes.iter().copied().enumerate().skip(1).collect();
    let chosen = match target {
        Some(t) if t < src_size => {
            let exact = candidates.iter().find(|(_, s)| *s == t).copied();
            match exact {
                Some((i, s)) if s >= needed => Some((i, s)),
                _ => {
                    let bigger = candidates
                        .iter()
                        .filter(|(_, s)| *s >= needed && *s < src_size)
                        .min_by_key(|(_, s)| *s)
                        .copied();
                    match (bigger, size) {
                        (Some(b), None) => {
                            tracing::warn!(
                                "{} does not hold {}; using {}",
                                human(t),
                                human(needed),
                                human(b.1)
                            );
                            Some(b)
                        }
                        (_, Some(given)) => {
                            return Err(cannot(format!(
                                "the requested size {} cannot hold the {} needed (or no such empty drive is attached)",
                                human(given),
                                human(needed)
                            )));
                        }
                        (None, None) => None,
                    }
                }
            }
        }
        _ => None,
    };
    // MBR and whole-disk layouts record no disk size: shrink in place and let
    // the conversion cut the disk (no copy through the emulated CPU). GPT
    // keeps a backup header at the end of the disk, so it is copied instead.
    if let Some(t) = target.filter(|t| *t < src_size && parttype != "gpt") {
        let cut = if size.is_some() {
            t
        } else {
            chosen.map_or(t, |(_, s)| s)
        };
        start_cut_in_place(w, &root, cut, needed - tail)?;
        if whole {
            g.resize2fs_size(&root, cut as i64)
                .ctx(|| format!("resize2fs {root}"))?;
        } else {
            let start = parts
                .last()
                .map(|p| p.part_start)
                .ok_or_else(|| cannot("no partitions".into()))?;
            reend_mbr_partition(g, &src_disk, root_num, start, cut, &|| Ok(()))?;
            w.report(
                Step::Shrink,
                format!("growing {root} to fill its partition"),
            );
            g.resize2fs(&root).ctx(|| format!("resize2fs {root}"))?;
        }
        return Ok(ShrinkReport {
            device: root,
            min_fs_bytes,
            target_size: Some(cut),
            drive_index: 0,
            cut_at: Some(cut),
        });
    }
    let Some((idx, dst_size)) = chosen else {
        w.report(
            Step::Shrink,
            "keeping the virtual size; growing the filesystem back",
        );
        g.resize2fs(&root).ctx(|| format!("resize2fs {root}"))?;
        return Ok(ShrinkReport {
            device: root,
            min_fs_bytes,
            target_size: None,
            drive_index: 0,
            cut_at: None,
        });
    };
    let dst = w.devices[idx].clone();
    w.report(
        Step::Shrink,
        format!("copying into a {} disk", human(dst_size)),
    );

    let new_root = if whole {
        copy(g, &root, &dst, None, Some(min_fs_bytes))?;
        dst.clone()
    } else {
        g.part_init(&dst, &parttype)
            .ctx(|| format!("part_init {dst}"))?;
        if parttype == "gpt" {
            let guid = g.part_get_disk_guid(&src_disk).ctx(|| "disk GUID".into())?;
            g.part_set_disk_guid(&dst, &guid)
                .ctx(|| "set disk GUID".into())?;
        }
        let sectors = dst_size / 512;
        let last = if parttype == "gpt" {
            sectors - GPT_TAIL_SECTORS - 1
        } else {
            sectors - 1
        };
        for p in &parts {
            let n = p.part_num;
            let end = if n == root_num {
                last
            } else {
                p.part_end / 512
            };
            g.part_add(&dst, "p", (p.part_start / 512) as i64, end as i64)
                .ctx(|| format!("add partition {n} on {dst}"))?;
            if parttype == "msdos" {
                if g.part_get_bootable(&src_disk, n)
                    .ctx(|| "bootable flag".into())?
                {
                    g.part_set_bootable(&dst, n, true)
                        .ctx(|| "set bootable flag".into())?;
                }
                let id = g.part_get_mbr_id(&src_disk, n).ctx(|| "MBR id".into())?;
                g.part_set_mbr_id(&dst, n, id).ctx(|| "set MBR id".into())?;
            } else {
                let ty = g
                    .part_get_gpt_type(&src_disk, n)
                    .ctx(|| "GPT type".into())?;
                g.part_set_gpt_type(&dst, n, &ty)
                    .ctx(|| "set GPT type".into())?;
                let guid = g
                    .part_get_gpt_guid(&src_disk, n)
                    .ctx(|| "GPT GUID".into())?;
                g.part_set_gpt_guid(&dst, n, &guid)
                    .ctx(|| "set GPT GUID".into())?;
                let name = g.part_get_name(&src_disk, n).unwrap_or_default();
                if !name.is_empty() {
                    g.part_set_name(&dst, n, &name)
                        .ctx(|| "set GPT name".into())?;
                }
                let attrs = g
                    .part_get_gpt_attributes(&src_disk, n)
                    .ctx(|| "GPT attributes".into())?;
                g.part_set_gpt_attributes(&dst, n, attrs)
                    .ctx(|| "set GPT attributes".into())?;
            }
        }
        // Boot code (keeping the new table) and the gap before the first partition.
        let boot_code = if parttype == "gpt" { 440 } else { 446 };
        copy(g, &src_disk, &dst, None, Some(boot_code))?;
        let gap_start = if parttype == "gpt" {
            GPT_TAIL_SECTORS * 512
        } else {
            512
        };
        if let Some(first) = parts.first() {
            if first.part_start > gap_start {
                copy(
                    g,
                    &src_disk,
                    &dst,
                    Some(gap_start),
                    Some(first.part_start - gap_start),
                )?;
            }
        }
        for p in &parts {
            let (s, d) = (part_dev(&src_disk, p.part_num), part_dev(&dst, p.part_num));
            if p.part_num == root_num {
                copy(g, &s, &d, None, Some(min_fs_bytes))?;
            } else {
                copy(g, &s, &d, None, None)?;
            }
        }
        part_dev(&dst, root_num)
    };
    w.report(
        Step::Shrink,
        format!("growing {new_root} to fill its partition"),
    );
    fsck(g, &new_root)?;
    g.resize2fs(&new_root)
        .ctx(|| format!("resize2fs {new_root}"))?;
    Ok(ShrinkReport {
        device: root,
        min_fs_bytes,
        target_size: Some(dst_size),
        drive_index: idx,
        cut_at: None,
    })
}

/// Does appliance device `dev` live on disk `disk`? `devices` are the
/// appliance's disks: they and their partitions are never logical volumes.
fn on_disk(g: &guestfs::Handle, devices: &[String], dev: &str, disk: &str, first: bool) -> bool {
    if dev == disk || is_partition_of(dev, disk) {
        return true;
    }
    if devices
        .iter()
        .any(|d| dev == d.as_str() || is_partition_of(dev, d))
    {
        return false;
    }
    // Logical volumes: only the image disk can carry them.
    first && g.is_lv(dev).unwrap_or(false)
}

pub(crate) fn sparsify(w: &mut Worker, drive_index: usize) -> Result<()> {
    let disk = w
        .devices
        .get(drive_index)
        .cloned()
        .ok_or_else(|| Error::Parse {
            program: "sparsify".into(),
            reason: format!("no drive #{drive_index}"),
        })?;
    let mut fss: Vec<(String, String)> = w.filesystems(false)?.into_iter().collect();
    fss.sort();
    let g = &w.g;
    g.umount_all().ctx(|| "unmount".into())?;
    for (dev, ty) in fss {
        if !on_disk(g, &w.devices, &dev, &disk, drive_index == 0) {
            continue;
        }
        match ty.as_str() {
            "unknown" | "crypto_LUKS" | "LVM2_member" | "BitLocker" => continue,
            "swap" => {
                let uuid = g.vfs_uuid(&dev).unwrap_or_default();
                let label = g.vfs_label(&dev).unwrap_or_default();
                if let Err(e) = g.blkdiscard(&dev) {
                    tracing::warn!(device = %dev, "cannot discard swap: {}", crate::error::guestfs_message(&e));
                    continue;
                }
                g.mkswap(
                    &dev,
                    guestfs::MkswapOptArgs {
                        label: (!label.is_empty()).then_some(label.as_str()),
                        uuid: (!uuid.is_empty()).then_some(uuid.as_str()),
                    },
                )
                .ctx(|| format!("mkswap {dev}"))?;
                w.report(
                    Step::Sparsify,
                    format!("{dev}: swap discarded and recreated"),
                );
            }
            _ => {
                if let Err(e) = g.mount(&dev, "/") {
                    tracing::warn!(device = %dev, "cannot mount to trim: {}", crate::error::guestfs_message(&e));
                    continue;
                }
                let how = match g.fstrim("/", Default::default()) {
                    Ok(()) => "trimmed",
                    Err(e) => {
                        tracing::info!(device = %dev, "fstrim failed ({}); zeroing free space", crate::error::guestfs_message(&e));
                        g.zero_free_space("/")
                            .ctx(|| format!("zero free space on {dev}"))?;
                        "free space zeroed"
                    }
                };
                g.umount_all().ctx(|| "unmount".into())?;
                w.report(Step::Sparsify, format!("{dev} ({ty}): {how}"));
            }
        }
    }
    g.sync().ctx(|| "sync".into())?;
    Ok(())
}

/// Refuse a cut at `cut` bytes that cannot hold the `needed` ones, else
/// report that the disk of `root` is being cut in place there.
fn start_cut_in_place(w: &Worker, root: &str, cut: u64, needed: u64) -> Result<()> {
    if cut < needed {
        return Err(Error::CannotShrink {
            device: root.to_string(),
            reason: format!(
                "the size {} cannot hold the {} needed",
                human(cut),
                human(needed)
            ),
        });
    }
    w.report(
        Step::Shrink,
        format!("cutting the disk to {} in place", human(cut)),
    );
    Ok(())
}
