//! An ext root on LVM (one PV, the last MBR partition): filesystem, LV and
//! PV shrunk, the partition re-ended, then all grown back to fill it.

use super::mbr::reend_mbr_partition;
use super::ShrinkReport;
use super::{fsck, shrink_fs_to_minimum, start_cut_in_place};
use crate::error::{Error, GfsContext, Result};
use crate::size::{human, target_size_for, MIB};
use crate::worker::{Step, Worker};

/// Head room left in a shrunk logical volume above the minimal filesystem.
const LV_MARGIN: u64 = 4 * MIB;

/// Shrink an ext2/3/4 root on logical volume `root` whose volume group has a
/// single physical volume, the last primary partition of an MBR image disk:
/// the filesystem, the LV and the PV are shrunk to their minimum, the
/// partition is re-ended at the new end of the disk (cut in place by the
/// conversion) and the PV, LV and filesystem are grown back to fill it.
pub(super) fn shrink_lvm(w: &mut Worker, root: &str, size: Option<u64>) -> Result<ShrinkReport> {
    let g = &w.g;
    let cannot = |reason: String| Error::CannotShrink {
        device: root.to_string(),
        reason,
    };
    let fstype = g.vfs_type(root).ctx(|| format!("vfs_type {root}"))?;
    if !matches!(fstype.as_str(), "ext2" | "ext3" | "ext4") {
        return Err(cannot(format!(
            "the root is an LVM logical volume with {fstype}; only ext2/3/4 on LVM can be shrunk"
        )));
    }
    let canonical = g
        .lvm_canonical_lv_name(root)
        .ctx(|| format!("lvm_canonical_lv_name {root}"))?;
    let vg = canonical
        .strip_prefix("/dev/")
        .and_then(|r| r.split('/').next())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::Parse {
            program: "lvm_canonical_lv_name".into(),
            reason: format!("no volume group in `{canonical}`"),
        })?
        .to_string();
    let pv_uuids = g.vgpvuuids(&vg).ctx(|| format!("vgpvuuids {vg}"))?;
    if pv_uuids.len() != 1 {
        return Err(cannot(format!(
            "volume group {vg} has {} physical volumes; only a single-PV volume group can be shrunk",
            pv_uuids.len()
        )));
    }
    let mut pv = None;
    for dev in g.pvs().ctx(|| "pvs".into())? {
        if g.pvuuid(&dev).ctx(|| format!("pvuuid {dev}"))? == pv_uuids[0] {
            pv = Some(dev);
        }
    }
    let pv = pv.ok_or_else(|| cannot(format!("the physical volume of {vg} was not found")))?;
    let src_disk = w.devices.first().cloned().unwrap_or_default();
    if g.is_whole_device(&pv)
        .ctx(|| format!("is_whole_device {pv}"))?
    {
        return Err(cannot(format!(
            "the physical volume {pv} is a whole disk, not a partition"
        )));
    }
    let disk = g.part_to_dev(&pv).ctx(|| format!("part_to_dev {pv}"))?;
    if disk != src_disk {
        return Err(cannot(format!(
            "the physical volume {pv} is on {disk}, not on the image disk {src_disk}"
        )));
    }
    let parttype = g
        .part_get_parttype(&disk)
        .ctx(|| format!("partition table of {disk}"))?;
    if parttype != "msdos" {
        return Err(cannot(format!(
            "an LVM root can only be shrunk on an MBR disk, this one is {parttype}"
        )));
    }
    let mut parts = g.part_list(&disk).ctx(|| format!("partitions of {disk}"))?;
    parts.sort_by_key(|p| p.part_start);
    let pv_num = g
        .part_to_partnum(&pv)
        .ctx(|| format!("part_to_partnum {pv}"))?;
    if parts.iter().any(|p| p.part_num > 4) {
        return Err(cannot("MBR logical partitions are not supported".into()));
    }
    let pv_start = match parts.last() {
        Some(p) if p.part_num == pv_num => p.part_start,
        _ => {
            return Err(cannot(format!(
                "the physical volume {pv} is not the last partition on the disk"
            )))
        }
    };
    let extent = g
        .vgs_full()
        .ctx(|| "vgs".into())?
        .into_iter()
        .find(|v| v.vg_name == vg)
        .map(|v| v.vg_extent_size)
        .filter(|e| *e > 0)
        .ok_or_else(|| cannot(format!("volume group {vg} not listed by vgs")))?;

    w.report(
        Step::Shrink,
        format!("checking and shrinking {root} to its minimum size"),
    );
    let min_fs_bytes = shrink_fs_to_minimum(g, root)?;
    let lv_bytes = (min_fs_bytes + LV_MARGIN).div_ceil(extent) * extent;
    w.report(
        Step::Shrink,
        format!("shrinking {root} to {}", human(lv_bytes)),
    );
    g.lvresize(root, (lv_bytes / MIB) as i32)
        .ctx(|| format!("lvresize {root}"))?;
    // `pvs_full` reports the kernel's device names untranslated (the
    // appliance disk may have taken `sda`), so the PV is found by its UUID.
    let pvs = g.pvs_full().ctx(|| "pvs".into())?;
    let names: Vec<String> = pvs.iter().map(|p| p.pv_name.clone()).collect();
    let info = pvs
        .into_iter()
        .find_map(|p| {
            lvm_uuid_eq(&p.pv_uuid.to_bytes(), &pv_uuids[0])
                .then_some((p.pe_start, p.pv_pe_alloc_count))
        })
        .ok_or_else(|| {
            cannot(format!(
                "{pv} (UUID {}) not listed by pvs (it lists {names:?})",
                pv_uuids[0]
            ))
        })?;
    let pv_min = info.0 + info.1 as u64 * extent;
    if let Err(e) = g.pvresize_size(&pv, pv_min as i64) {
        return Err(cannot(format!(
            "the free extents of {pv} are not at its end, so it cannot be shrunk to {} ({})",
            human(pv_min),
            crate::error::guestfs_message(&e)
        )));
    }
    let used = pv_start + pv_min;
    let src_size = w.drive_sizes.first().copied().unwrap_or(0);
    let needed = used + MIB;
    let target = match size {
        Some(s) => Some(s),
        None => target_size_for(used).map(|t| {
            if t >= needed {
                t
            } else {
                crate::size::RULE_SIZES
                    .iter()
                    .copied()
                    .find(|s| *s >= needed)
                    .unwrap_or(t)
            }
        }),
    };
    w.report(
        Step::Shrink,
        format!(
            "{root} is {} at its minimum, {} used on the disk; virtual size: {}",
            human(min_fs_bytes),
            human(used),
            target.map_or("unchanged".to_string(), human)
        ),
    );
    let cut = target.filter(|t| *t < src_size);
    if let Some(cut) = cut {
        start_cut_in_place(w, root, cut, needed)?;
        // The kernel cannot re-read the partition while device-mapper holds it.
        let deactivate = || {
            g.vg_activate(false, &[vg.as_str()])
                .ctx(|| format!("deactivate {vg}"))
        };
        reend_mbr_partition(g, &disk, pv_num, pv_start, cut, &deactivate)?;
        g.vg_activate(true, &[vg.as_str()])
            .ctx(|| format!("activate {vg}"))?;
    }
    w.report(
        Step::Shrink,
        format!("growing {pv}, {root} and its filesystem to fill the partition"),
    );
    g.pvresize(&pv).ctx(|| format!("pvresize {pv}"))?;
    g.lvresize_free(root, 100)
        .ctx(|| format!("lvresize {root} to 100%FREE"))?;
    fsck(g, root)?;
    g.resize2fs(root).ctx(|| format!("resize2fs {root}"))?;
    Ok(ShrinkReport {
        device: root.to_string(),
        min_fs_bytes,
        target_size: cut,
        drive_index: 0,
        cut_at: cut,
    })
}

/// Whether an LVM UUID as `pvs_full` returns it (32 bytes, no dashes)
/// is the one `vgpvuuids`/`pvuuid` print (with or without dashes).
fn lvm_uuid_eq(raw: &[u8; 32], printed: &str) -> bool {
    printed
        .bytes()
        .filter(|b| *b != b'-')
        .eq(raw.iter().copied().take_while(|b| *b != 0))
}

#[cfg(test)]
mod tests {
    use super::lvm_uuid_eq;

    #[test]
    fn lvm_uuids_match_with_or_without_dashes() {
        let raw = *b"aBcDeF0123456789abcdef0123456789";
        assert!(lvm_uuid_eq(&raw, "aBcDeF-0123-4567-89ab-cdef-0123-456789"));
        assert!(lvm_uuid_eq(&raw, "aBcDeF0123456789abcdef0123456789"));
        assert!(!lvm_uuid_eq(&raw, "aBcDeF-0123-4567-89ab-cdef-0123-456780"));
        assert!(!lvm_uuid_eq(&raw, "aBcDeF"));
    }
}
