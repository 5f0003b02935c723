//! MBR layouts: re-ending the root partition in place (its entry in sector 0).

use crate::error::{Error, GfsContext, Result};
use crate::size::human;

/// CHS address of `lba` in the MBR's 3-byte encoding (255 heads, 63
/// sectors per track; `FE FF FF` past cylinder 1023, as partitioners write).
fn chs(lba: u64) -> [u8; 3] {
    let cyl = lba / (255 * 63);
    if cyl > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / 63) % 255;
    let sector = lba % 63 + 1;
    [
        head as u8,
        (sector as u8 & 0x3f) | ((cyl >> 2) as u8 & 0xc0),
        cyl as u8,
    ]
}

/// Re-end MBR primary partition `num` of `disk` (starting at byte `start`)
/// at byte `cut` (the end of the cut disk), keeping its type, bootable flag
/// and start, then make the kernel re-read the table.
///
/// The entry is edited in sector 0 rather than deleted and re-added with
/// parted: parted's change events make udev re-activate an LVM volume group
/// on the partition while parted still tells the kernel about the change,
/// which then fails with "in use". `before_reread` runs before each try to
/// re-read the table (the LVM path deactivates the volume group there).
pub(super) fn reend_mbr_partition(
    g: &guestfs::Handle,
    disk: &str,
    num: i32,
    start: u64,
    cut: u64,
    before_reread: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let bad = |reason: String| Error::Parse {
        program: format!("MBR of {disk}"),
        reason,
    };
    let mut mbr = g
        .pread_device(disk, 512, 0)
        .ctx(|| format!("read the MBR of {disk}"))?;
    if mbr.len() != 512 || mbr[510..512] != [0x55, 0xaa] {
        return Err(bad("no MBR signature".into()));
    }
    if !(1..=4).contains(&num) {
        return Err(bad(format!("partition {num} is not a primary partition")));
    }
    let at = 446 + 16 * (num as usize - 1);
    let first = u32::from_le_bytes([mbr[at + 8], mbr[at + 9], mbr[at + 10], mbr[at + 11]]);
    let start_lba = start / 512;
    let end_lba = (cut / 512).saturating_sub(1);
    if u64::from(first) != start_lba || end_lba < start_lba {
        return Err(bad(format!(
            "partition {num} starts at sector {first}, expected {start_lba} before {end_lba}"
        )));
    }
    let count = u32::try_from(end_lba - start_lba + 1)
        .map_err(|_| bad(format!("partition {num} would exceed 2 TiB")))?;
    mbr[at + 5..at + 8].copy_from_slice(&chs(end_lba));
    mbr[at + 12..at + 16].copy_from_slice(&count.to_le_bytes());
    g.pwrite_device(disk, &mbr, 0)
        .ctx(|| format!("write the MBR of {disk}"))?;
    let mut tries = 0;
    loop {
        before_reread()?;
        match g.blockdev_rereadpt(disk) {
            Ok(()) => break,
            Err(e) if tries < 20 => {
                tracing::debug!(
                    disk,
                    "partition table busy: {}",
                    crate::error::guestfs_message(&e)
                );
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(e).ctx(|| format!("re-read the partition table of {disk}")),
        }
    }
    let end = g
        .part_list(disk)
        .ctx(|| format!("partitions of {disk}"))?
        .into_iter()
        .find(|p| p.part_num == num)
        .map(|p| p.part_end);
    if end != Some(end_lba * 512 + 511) {
        return Err(bad(format!(
            "partition {num} does not end at {} after re-ending it",
            human(cut)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::chs;

    #[test]
    fn chs_encoding() {
        assert_eq!(chs(0), [0, 1, 0]);
        // 2048 = 32 tracks of 63 + 32: head 32, sector 33, cylinder 0.
        assert_eq!(chs(2048), [32, 33, 0]);
        // Cylinder 300 = 0b1_0010_1100: high bits go into the sector byte.
        assert_eq!(chs(300 * 255 * 63), [0, 0x41, 0x2c]);
        assert_eq!(chs(1024 * 255 * 63), [0xfe, 0xff, 0xff]);
    }
}
