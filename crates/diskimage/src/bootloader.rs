//! GRUB for BIOS (`i386-pc`) installed without a block device: what
//! `grub-install` + `grub-bios-setup` do, done on the root tree and on the
//! image file directly (no libguestfs appliance, no loop device, no
//! device-mapper). The root tree must contain GRUB (`grub-pc-bin` and
//! `grub2-common` on Debian) and a kernel.
//!
//! 1. [`prepare_tree`], before the filesystem is made from the tree: the
//!    guest's GRUB modules are copied to `/boot/grub/i386-pc`, an empty
//!    `grubenv` is written, the guest's `grub-mkconfig` writes
//!    `/boot/grub/grub.cfg` (from `/etc/default/grub` and `/etc/grub.d`,
//!    with `grub-probe` answered by a shim that describes the disk being
//!    assembled: the kernel's `root=` is `LABEL=<root label>`, as
//!    diskimage-builder's bootloader element writes it, and GRUB searches
//!    the root by filesystem UUID), and the guest's `grub-mkimage` builds
//!    `core.img` (`biosdisk`, the partition map, `ext2`, prefix
//!    `(hd0,<partition>)/boot/grub`).
//! 2. [`write_boot_code`], after the filesystem: `core.img` goes into the
//!    gap before the first partition (MBR) or into the BIOS boot partition
//!    (GPT), its first sector's block list pointing at the rest; `boot.img`
//!    goes into sector 0 with the partition table kept, its kernel-sector
//!    field pointing at `core.img` and the boot-drive check replaced by
//!    no-ops for a hard disk (what `grub-bios-setup` does; without
//!    Reed-Solomon codes, as `grub-install --no-rs-codes`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::cmd::{io, run_logged};
use crate::disk::{DiskPlan, TableType, SECTOR};
use crate::error::{Error, Result};
use crate::rootfs::{self, Chroot};

/// `/etc/default/grub` for a serial-console cloud image (what
/// diskimage-builder's `bootloader` element writes): console on tty0 and
/// ttyS0, `DIB_GRUB_TIMEOUT` (default 5) seconds.
pub fn default_grub(timeout: &str) -> String {
    format!(
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT={timeout}\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
         GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n\
         GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200 no_timer_check nofb nomodeset gfxpayload=text\"\n\
         GRUB_TERMINAL=\"serial console\"\nGRUB_SERIAL_COMMAND=\"serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1\"\n\
         GRUB_DISABLE_OS_PROBER=true\n"
    )
}

/// The GPT type of a BIOS boot partition.
const BIOS_BOOT_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
/// boot.img: end of the BIOS parameter block copied from the disk.
const BPB: std::ops::Range<usize> = 0x3..0x5a;
/// boot.img: the sector of core.img's first sector (u64 LE).
const KERNEL_SECTOR: usize = 0x5c;
/// boot.img: the boot drive (0xff: the one the BIOS passes).
const BOOT_DRIVE: usize = 0x64;
/// boot.img: the jump over the "buggy BIOS" drive check.
const DRIVE_CHECK: usize = 0x66;
/// boot.img: disk signature and partition table, kept from the disk.
const TABLE: std::ops::Range<usize> = 0x1b8..0x1fe;
/// core.img: its first block-list entry ends its first sector:
/// start (u64), length (u16), segment (u16).
const BLOCKLIST: usize = 512 - 12;
/// core.img: the segment its second sector is loaded at.
const CORE_SEGMENT: u16 = 0x820;

/// Where `core.img` goes and how GRUB names the root partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubPlacement {
    /// First sector of `core.img`.
    pub core_sector: u64,
    /// Sectors available there.
    pub core_room: u64,
    /// GRUB's partition map (`msdos`, `gpt`).
    pub partmap: &'static str,
    /// GRUB's name of the root partition (`hd0,msdos1`).
    pub root: String,
}

/// Where GRUB goes on the disk of `plan`: the MBR gap (sector 1 up to the
/// first partition) or the GPT BIOS boot partition.
pub fn placement(plan: &DiskPlan) -> Result<GrubPlacement> {
    let bad = |reason: String| Error::BlockDevice {
        source_name: "bootloader".into(),
        reason,
    };
    let root_part = plan
        .partitions
        .get(plan.layout.root_index)
        .ok_or_else(|| bad("GRUB needs a partitioned disk (the `vm` element)".into()))?;
    let (core_sector, core_room, partmap) = match plan.layout.table {
        Some(TableType::Mbr) => {
            let first = plan.partitions.iter().map(|p| p.start).min().unwrap_or(0);
            (1, first.saturating_sub(1), "msdos")
        }
        Some(TableType::Gpt) => {
            let bsp = plan
                .partitions
                .iter()
                .find(|p| p.sfdisk_type.eq_ignore_ascii_case(BIOS_BOOT_GUID))
                .ok_or_else(|| {
                    bad("a GPT disk needs a BIOS boot partition (type EF02) for GRUB".into())
                })?;
            (bsp.start, bsp.sectors, "gpt")
        }
        None => {
            return Err(bad(
                "GRUB needs a partitioned disk (the `vm` element)".into()
            ))
        }
    };
    Ok(GrubPlacement {
        core_sector,
        core_room,
        partmap,
        root: format!("hd0,{partmap}{}", root_part.number),
    })
}

/// The `grub-probe` stand-in bound over the guest's while `grub-mkconfig`
/// runs: answers for the disk being assembled.
fn probe_shim(plan: &DiskPlan, at: &GrubPlacement) -> String {
    format!(
        r#"#!/bin/sh
# grub-probe for an image being assembled (diskimage): no block device yet.
target=
while [ $# -gt 0 ]; do
  case "$1" in
    --target=*) target=${{1#--target=}} ;;
    -t|--target) shift; target=$1 ;;
    -t*) target=${{1#-t}} ;;
  esac
  shift
done
case "$target" in
  device) echo 'LABEL={label}' ;;
  fs) echo ext2 ;;
  fs_uuid) echo '{uuid}' ;;
  fs_label) echo '{label}' ;;
  partmap) echo '{partmap}' ;;
  abstraction|cryptodisk_uuid) ;;
  drive) echo '({root})' ;;
  compatibility_hint) echo '{root}' ;;
  hints_string|bios_hints) echo '--hint-bios={root} ' ;;
  disk) echo /dev/sda ;;
  *) echo "grub-probe (image assembly): target '$target' is unknown" >&2; exit 1 ;;
esac
"#,
        label = plan.layout.root.label,
        uuid = plan.fs_uuid,
        partmap = at.partmap,
        root = at.root,
    )
}

/// An empty GRUB environment block (what `grub-editenv create` writes).
fn grubenv() -> Vec<u8> {
    let mut b = b"# GRUB Environment Block\n".to_vec();
    b.resize(1024, b'#');
    b
}

/// Step 1 (see the module documentation): GRUB's files in the tree, for
/// the disk of `plan`. `scratch` is a directory outside the tree.
#[tracing::instrument(skip_all, fields(root = %root.display()))]
pub fn prepare_tree(root: &Path, plan: &DiskPlan, scratch: &Path, log: &Path) -> Result<()> {
    let at = placement(plan)?;
    let lib = root.join("usr/lib/grub/i386-pc");
    if !lib.join("boot.img").is_file() {
        return Err(Error::BlockDevice {
            source_name: "bootloader".into(),
            reason: format!(
                "{} has no boot.img: the image needs GRUB for BIOS (grub-pc-bin)",
                lib.display()
            ),
        });
    }
    let dest = root.join("boot/grub/i386-pc");
    std::fs::create_dir_all(&dest).map_err(io(&dest))?;
    for e in std::fs::read_dir(&lib).map_err(io(&lib))? {
        let e = e.map_err(io(&lib))?;
        if e.file_type().map_err(io(&lib))?.is_file() {
            let to = dest.join(e.file_name());
            std::fs::copy(e.path(), &to).map_err(io(&to))?;
        }
    }
    let env = root.join("boot/grub/grubenv");
    if !env.exists() {
        std::fs::write(&env, grubenv()).map_err(io(&env))?;
    }
    let shim = scratch.join("grub-probe");
    std::fs::write(&shim, probe_shim(plan, &at)).map_err(io(&shim))?;
    rootfs::set_mode(&shim, 0o755)?;

    let mut chroot = Chroot::enter(root)?;
    chroot.bind_file(&shim, "/usr/sbin/grub-probe")?;
    let r = (|| {
        run_logged(
            &mut chroot.command(&["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]),
            log,
        )?;
        let prefix = format!("({})/boot/grub", at.root);
        let partmap = format!("part_{}", at.partmap);
        run_logged(
            &mut chroot.command(&[
                "grub-mkimage",
                "-O",
                "i386-pc",
                "-o",
                "/boot/grub/i386-pc/core.img",
                "-p",
                &prefix,
                "biosdisk",
                &partmap,
                "ext2",
            ]),
            log,
        )
    })();
    chroot.exit()?;
    r?;
    Ok(())
}

/// `core.img` ready for `sector`: padded to whole sectors, its block list
/// pointing at the sectors after its first.
pub fn place_core(core: &[u8], sector: u64) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::BlockDevice {
        source_name: "core.img".into(),
        reason,
    };
    if core.len() < 2 * SECTOR as usize {
        return Err(bad(format!("{} bytes: too small", core.len())));
    }
    let mut out = core.to_vec();
    out.resize(core.len().div_ceil(SECTOR as usize) * SECTOR as usize, 0);
    let rest = out.len() / SECTOR as usize - 1;
    let len = u16::try_from(rest).map_err(|_| bad(format!("{rest} sectors: too large")))?;
    let seg = u16::from_le_bytes([out[BLOCKLIST + 10], out[BLOCKLIST + 11]]);
    if seg != CORE_SEGMENT {
        return Err(bad(format!(
            "no i386-pc diskboot block list (segment {seg:#x})"
        )));
    }
    out[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(sector + 1).to_le_bytes());
    out[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Sector 0: `boot.img` with the disk's BPB area, disk signature and
/// partition table kept, booting `core.img` at `core_sector` from a hard
/// disk.
pub fn boot_sector(boot_img: &[u8], disk_mbr: &[u8], core_sector: u64) -> Result<Vec<u8>> {
    if boot_img.len() != SECTOR as usize || disk_mbr.len() != SECTOR as usize {
        return Err(Error::BlockDevice {
            source_name: "boot.img".into(),
            reason: format!(
                "boot.img is {} bytes and the disk's sector 0 {} (512 each)",
                boot_img.len(),
                disk_mbr.len()
            ),
        });
    }
    let mut s = boot_img.to_vec();
    s[BPB].copy_from_slice(&disk_mbr[BPB]);
    s[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_sector.to_le_bytes());
    s[BOOT_DRIVE] = 0xff;
    s[DRIVE_CHECK] = 0x90;
    s[DRIVE_CHECK + 1] = 0x90;
    s[TABLE].copy_from_slice(&disk_mbr[TABLE]);
    s[510] = 0x55;
    s[511] = 0xaa;
    Ok(s)
}

/// Step 2 (see the module documentation): the boot code into the raw disk
/// `disk` of `plan`, from the tree `root` that [`prepare_tree`] prepared.
#[tracing::instrument(skip_all, fields(disk = %disk.display()))]
pub fn write_boot_code(disk: &Path, plan: &DiskPlan, root: &Path) -> Result<()> {
    let at = placement(plan)?;
    let core_path = root.join("boot/grub/i386-pc/core.img");
    let boot_path = root.join("usr/lib/grub/i386-pc/boot.img");
    let core = std::fs::read(&core_path).map_err(io(&core_path))?;
    let boot = std::fs::read(&boot_path).map_err(io(&boot_path))?;
    let core = place_core(&core, at.core_sector)?;
    let sectors = core.len() as u64 / SECTOR;
    if sectors > at.core_room {
        return Err(Error::BlockDevice {
            source_name: "bootloader".into(),
            reason: format!(
                "core.img needs {sectors} sectors, the disk has {} for it",
                at.core_room
            ),
        });
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(io(disk))?;
    let mut mbr = vec![0u8; SECTOR as usize];
    f.read_exact(&mut mbr).map_err(io(disk))?;
    let sector0 = boot_sector(&boot, &mbr, at.core_sector)?;
    f.seek(SeekFrom::Start(at.core_sector * SECTOR))
        .map_err(io(disk))?;
    f.write_all(&core).map_err(io(disk))?;
    f.seek(SeekFrom::Start(0)).map_err(io(disk))?;
    f.write_all(&sector0).map_err(io(disk))?;
    f.sync_all().map_err(io(disk))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::disk::{self, DiskLayout};

    #[test]
    fn placement_mbr_gap_and_gpt_bios_boot_partition() {
        let p = disk::plan(&DiskLayout::mbr("r"), 1 << 30, "u").unwrap();
        let at = placement(&p).unwrap();
        assert_eq!(
            (at.core_sector, at.core_room, at.root.as_str()),
            (1, 2047, "hd0,msdos1")
        );
        let p = disk::plan(&DiskLayout::gpt("r"), 1 << 30, "u").unwrap();
        let at = placement(&p).unwrap();
        assert_eq!(
            (at.core_sector, at.core_room, at.root.as_str()),
            (2048, 16384, "hd0,gpt2")
        );
        let mut l = DiskLayout::gpt("r");
        l.partitions.remove(0);
        l.root_index = 0;
        let e = placement(&disk::plan(&l, 1 << 30, "u").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("EF02"), "{e}");
        let e = placement(&disk::plan(&DiskLayout::filesystem("r"), 1 << 30, "u").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("vm"), "{e}");
    }

    #[test]
    fn boot_sector_keeps_the_table_and_points_at_core() {
        let boot: Vec<u8> = (0..512).map(|i| (i % 251) as u8).collect();
        let mut mbr = vec![0u8; 512];
        mbr[0x1b8..0x1bc].copy_from_slice(&[1, 2, 3, 4]);
        mbr[0x1be] = 0x80;
        mbr[0x1c2] = 0x83;
        let s = boot_sector(&boot, &mbr, 2048).unwrap();
        assert_eq!(&s[0x1b8..0x1fe], &mbr[0x1b8..0x1fe]);
        assert_eq!(&s[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(&s[0x64..0x68], &[0xff, boot[0x65], 0x90, 0x90]);
        assert_eq!(&s[0x3..0x5a], &mbr[0x3..0x5a]);
        assert_eq!(&s[..3], &boot[..3]);
        assert_eq!(&s[0x68..0x1b8], &boot[0x68..0x1b8]);
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert!(boot_sector(&boot[..100], &mbr, 1).is_err());
    }

    #[test]
    fn core_block_list_points_after_its_first_sector() {
        let mut core = vec![0u8; 3 * 512 + 100];
        core[500..512].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x20, 0x08]);
        let c = place_core(&core, 2048).unwrap();
        assert_eq!(c.len(), 4 * 512);
        assert_eq!(&c[500..508], &2049u64.to_le_bytes());
        assert_eq!(&c[508..512], &[3, 0, 0x20, 0x08]);
        core[511] = 0;
        assert!(place_core(&core, 1).is_err(), "not a diskboot image");
        assert!(place_core(&core[..600], 1).is_err());
    }

    #[test]
    fn grubenv_is_one_kib() {
        let e = grubenv();
        assert_eq!(e.len(), 1024);
        assert!(e.starts_with(b"# GRUB Environment Block\n#"));
    }
}
