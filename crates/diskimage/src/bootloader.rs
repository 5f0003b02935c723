//! GRUB (BIOS, `i386-pc`) installed into an assembled disk through one
//! libguestfs appliance: the guest's own `grub-install` and `grub-mkconfig`
//! run against the appliance's whole-disk device, so no loop partitions or
//! device-mapper are needed on the host. The root tree must contain GRUB
//! (`grub-pc-bin`/`grub-pc` on Debian) and a kernel.

use std::path::Path;

use guest_tools::{Accel, Drive, Session, SessionOptions};

use crate::disk::DiskPlan;
use crate::error::Result;

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

/// Shell run in the guest (libguestfs binds /proc and /dev into it): find
/// the whole disk under the partition mounted at `/` and install GRUB there.
const GRUB_INSTALL_ON_ROOT_DISK: &str = r#"set -e
root=$(awk '$2 == "/" { dev = $1 } END { print dev }' /proc/mounts)
case "$root" in
  /dev/nvme*|/dev/mmcblk*|/dev/loop*) disk=${root%p[0-9]*} ;;
  *) disk=$(printf '%s' "$root" | sed 's/[0-9]*$//') ;;
esac
[ -b "$disk" ] || { echo "no disk device for the root $root" >&2; exit 1; }
grub-install --target=i386-pc --no-floppy "$disk"
"#;

/// Install GRUB into the raw disk `disk` laid out by `plan`.
#[tracing::instrument(skip_all, fields(disk = %disk.display()))]
pub async fn install_grub(disk: &Path, plan: &DiskPlan, accel: Accel) -> Result<()> {
    let part = plan
        .partitions
        .get(plan.layout.root_index)
        .map(|p| p.number)
        .unwrap_or(1);
    let session = Session::open(
        SessionOptions {
            drives: vec![Drive {
                path: disk.to_path_buf(),
                format: Some("raw".into()),
                readonly: false,
            }],
            accel,
        },
        None,
    )
    .await?;
    let r = session
        .with_handle(move |g| {
            let dev = format!("/dev/sda{part}");
            g.mount(&dev, "/")?;
            // The appliance's kernel may name the image `sdb` (its own disk
            // being `sda`), and commands see raw kernel names: install to
            // the disk that holds the mounted root, read from /proc/mounts.
            g.sh(GRUB_INSTALL_ON_ROOT_DISK)?;
            g.command(&["grub-mkconfig", "-o", "/boot/grub/grub.cfg"])?;
            g.sync()?;
            g.umount_all()?;
            Ok(())
        })
        .await;
    let closed = session.close().await;
    r?;
    closed?;
    Ok(())
}
