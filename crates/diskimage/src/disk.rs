//! Disk assembly in user space: a partition table written into a plain file
//! with `sfdisk` (MBR or GPT with a BIOS boot partition), the root
//! filesystem made by `mkfs.ext4 -d` straight from the root tree at the
//! partition's offset (`-E offset=`), fstab written into the tree first,
//! and GRUB written into the file by [`crate::bootloader`]. No loop
//! partitions, no kpartx, no device-mapper, no appliance.
//!
//! The layout is diskimage-builder's block-device YAML subset
//! ([`DiskLayout::from_yaml`]): `local_loop`, `partitioning` (`mbr`/`gpt`,
//! partitions with `name`, `type`, `size`, `flags`), `mkfs` (`type`,
//! `label`, `opts`), `mount` (`mount_point`) and `fstab` (`options`,
//! `fsck-passno`), nested (tree) or linked by `base` (graph). One root
//! filesystem is supported; LVM and extra filesystems are refused with an
//! error naming the key.

use std::path::Path;
use std::process::Command;

use serde_yaml::Value;

use crate::cmd::{io, run};
use crate::error::{Error, Result};

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Partition alignment: 1 MiB.
const ALIGN: u64 = 2048;

/// A partition table type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableType {
    /// MS-DOS MBR.
    Mbr,
    /// GUID partition table.
    Gpt,
}

/// A partition size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    /// Fixed size in bytes.
    Bytes(u64),
    /// Percent of the space left by the fixed-size partitions.
    Percent(u8),
}

/// One partition of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Name (GPT partition name; the block-device node name).
    pub name: String,
    /// Type: MBR hex byte (`0x83`), GPT sgdisk code (`EF02`, `8300`) or GUID.
    pub type_code: Option<String>,
    /// Size.
    pub size: SizeSpec,
    /// `boot` flag (MBR active flag, GPT legacy-BIOS-bootable attribute).
    pub bootable: bool,
}

/// The root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemSpec {
    /// Type (`ext4`, `ext3`, `ext2`).
    pub fs_type: String,
    /// Label (`cloudimg-rootfs` by default, `--root-label`).
    pub label: String,
    /// Extra mkfs options.
    pub opts: Vec<String>,
    /// fstab options.
    pub fstab_options: String,
    /// fstab pass number.
    pub passno: u32,
}

/// A disk layout: a partition table with one root partition, or a bare
/// filesystem (no `vm` element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// `None`: the image is the filesystem alone.
    pub table: Option<TableType>,
    /// Partitions in order.
    pub partitions: Vec<PartitionSpec>,
    /// Index into `partitions` of the root filesystem.
    pub root_index: usize,
    /// The root filesystem.
    pub root: FilesystemSpec,
}

impl FilesystemSpec {
    /// ext4 labelled `label`, fstab `defaults`, pass 1.
    pub fn ext4(label: &str) -> FilesystemSpec {
        FilesystemSpec {
            fs_type: "ext4".into(),
            label: label.into(),
            opts: Vec::new(),
            fstab_options: "defaults".into(),
            passno: 1,
        }
    }
}

impl DiskLayout {
    /// `block-device-mbr`: one bootable root partition.
    pub fn mbr(label: &str) -> DiskLayout {
        DiskLayout {
            table: Some(TableType::Mbr),
            partitions: vec![PartitionSpec {
                name: "root".into(),
                type_code: None,
                size: SizeSpec::Percent(100),
                bootable: true,
            }],
            root_index: 0,
            root: FilesystemSpec::ext4(label),
        }
    }

    /// `block-device-gpt`: 8 MiB BIOS boot partition, then the root.
    pub fn gpt(label: &str) -> DiskLayout {
        DiskLayout {
            table: Some(TableType::Gpt),
            partitions: vec![
                PartitionSpec {
                    name: "BSP".into(),
                    type_code: Some("EF02".into()),
                    size: SizeSpec::Bytes(8 << 20),
                    bootable: false,
                },
                PartitionSpec {
                    name: "root".into(),
                    type_code: None,
                    size: SizeSpec::Percent(100),
                    bootable: true,
                },
            ],
            root_index: 1,
            root: FilesystemSpec::ext4(label),
        }
    }

    /// A bare filesystem image (what diskimage-builder makes without `vm`).
    pub fn filesystem(label: &str) -> DiskLayout {
        DiskLayout {
            table: None,
            partitions: Vec::new(),
            root_index: 0,
            root: FilesystemSpec::ext4(label),
        }
    }

    /// Parse diskimage-builder block-device YAML (`source` names it in
    /// errors). `root_label` is used when the root `mkfs` has no `label`.
    pub fn from_yaml(text: &str, source: &str, root_label: &str) -> Result<DiskLayout> {
        let bad = |reason: String| Error::BlockDevice {
            source_name: source.into(),
            reason,
        };
        let doc: Value = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let items = match doc {
            Value::Sequence(s) => s,
            Value::Mapping(_) => vec![doc],
            _ => return Err(bad("expected a list of block-device nodes".into())),
        };
        let mut table = None;
        let mut parts: Vec<(PartitionSpec, Option<Value>)> = Vec::new();
        let mut flat_mkfs: Vec<Value> = Vec::new();
        let mut flat_other: Vec<(String, Value)> = Vec::new();
        for item in items {
            let Value::Mapping(m) = item else {
                return Err(bad("each node must be a mapping".into()));
            };
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default().to_string();
                match k.as_str() {
                    "local_loop" => {}
                    "partitioning" => {
                        let label = v.get("label").and_then(Value::as_str).unwrap_or("mbr");
                        table = Some(match label {
                            "mbr" => TableType::Mbr,
                            "gpt" => TableType::Gpt,
                            o => return Err(bad(format!("partitioning.label `{o}` (mbr or gpt)"))),
                        });
                        let list = v
                            .get("partitions")
                            .and_then(Value::as_sequence)
                            .ok_or_else(|| bad("partitioning without partitions".into()))?;
                        for p in list {
                            parts.push((partition(p).map_err(bad)?, p.get("mkfs").cloned()));
                        }
                    }
                    "mkfs" => flat_mkfs.push(v),
                    "mount" | "fstab" => flat_other.push((k, v)),
                    "lvm" => {
                        return Err(bad("`lvm` is not supported (one root filesystem)".into()))
                    }
                    o => return Err(bad(format!("unknown block-device node `{o}`"))),
                }
            }
        }
        // Find the root filesystem: a nested mkfs, or a flat one whose base
        // is a partition name (or the loop device for a bare filesystem).
        let mut root = None;
        for (i, (_, mkfs)) in parts.iter().enumerate() {
            if let Some(m) = mkfs {
                if mount_point(m, &flat_other).as_deref() == Some("/") {
                    root = Some((i, m.clone()));
                } else {
                    return Err(bad(
                        "only the root filesystem (mount_point /) is supported".into()
                    ));
                }
            }
        }
        for m in &flat_mkfs {
            if mount_point(m, &flat_other).as_deref() != Some("/") {
                return Err(bad(
                    "only the root filesystem (mount_point /) is supported".into()
                ));
            }
            let base = m.get("base").and_then(Value::as_str).unwrap_or("");
            let idx = parts.iter().position(|(p, _)| p.name == base);
            match (idx, table) {
                (Some(i), _) => root = Some((i, m.clone())),
                (None, None) => root = Some((0, m.clone())),
                (None, Some(_)) => {
                    return Err(bad(format!("mkfs base `{base}` is not a partition")))
                }
            }
        }
        let (root_index, mkfs) = root.ok_or_else(|| bad("no filesystem mounted at /".into()))?;
        let fs_type = mkfs
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ext4")
            .to_string();
        if !fs_type.starts_with("ext") {
            return Err(bad(format!(
                "mkfs type `{fs_type}`: only ext2/3/4 roots are built here"
            )));
        }
        let fstab = fstab_of(&mkfs, &flat_other);
        let opts = match mkfs.get("opts") {
            Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            Some(Value::Sequence(l)) => l
                .iter()
                .filter_map(|o| o.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        Ok(DiskLayout {
            table,
            partitions: parts.into_iter().map(|(p, _)| p).collect(),
            root_index,
            root: FilesystemSpec {
                fs_type,
                label: mkfs
                    .get("label")
                    .and_then(Value::as_str)
                    .unwrap_or(root_label)
                    .to_string(),
                opts,
                fstab_options: fstab
                    .as_ref()
                    .and_then(|f| f.get("options"))
                    .and_then(Value::as_str)
                    .unwrap_or("defaults")
                    .to_string(),
                passno: fstab
                    .as_ref()
                    .and_then(|f| f.get("fsck-passno"))
                    .and_then(Value::as_u64)
                    .unwrap_or(1) as u32,
            },
        })
    }
}

fn mount_point(mkfs: &Value, flat: &[(String, Value)]) -> Option<String> {
    if let Some(m) = mkfs.get("mount") {
        return m
            .get("mount_point")
            .and_then(Value::as_str)
            .map(String::from);
    }
    let name = mkfs.get("name").and_then(Value::as_str)?;
    flat.iter()
        .find(|(k, v)| k == "mount" && v.get("base").and_then(Value::as_str) == Some(name))
        .and_then(|(_, v)| {
            v.get("mount_point")
                .and_then(Value::as_str)
                .map(String::from)
        })
}

fn fstab_of(mkfs: &Value, flat: &[(String, Value)]) -> Option<Value> {
    if let Some(f) = mkfs.get("mount").and_then(|m| m.get("fstab")) {
        return Some(f.clone());
    }
    let name = mkfs.get("name").and_then(Value::as_str)?;
    let mount = flat
        .iter()
        .find(|(k, v)| k == "mount" && v.get("base").and_then(Value::as_str) == Some(name))?;
    if let Some(f) = mount.1.get("fstab") {
        return Some(f.clone());
    }
    let mname = mount.1.get("name").and_then(Value::as_str)?;
    flat.iter()
        .find(|(k, v)| k == "fstab" && v.get("base").and_then(Value::as_str) == Some(mname))
        .map(|(_, v)| v.clone())
}

fn partition(p: &Value) -> std::result::Result<PartitionSpec, String> {
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a partition without a name")?
        .to_string();
    let size = match p.get("size") {
        None => SizeSpec::Percent(100),
        Some(v) => {
            parse_size(&yaml_scalar(v)).map_err(|e| format!("partition `{name}`: size {e}"))?
        }
    };
    let flags: Vec<String> = p
        .get("flags")
        .and_then(Value::as_sequence)
        .map(|l| {
            l.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for f in &flags {
        if !matches!(f.as_str(), "boot" | "primary") {
            return Err(format!("partition `{name}`: unknown flag `{f}`"));
        }
    }
    Ok(PartitionSpec {
        type_code: p.get("type").map(yaml_scalar),
        bootable: flags.iter().any(|f| f == "boot"),
        name,
        size,
    })
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Parse a block-device size: `100%`, `8MiB`, `1GiB`, `512KiB`, `1G`, `10MB`, bytes.
pub fn parse_size(s: &str) -> std::result::Result<SizeSpec, String> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let n: u8 = p
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: bad percentage"))?;
        if n == 0 || n > 100 {
            return Err(format!("`{s}`: percentage out of 1..100"));
        }
        return Ok(SizeSpec::Percent(n));
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("`{s}`: not a size"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        u => return Err(format!("`{s}`: unknown unit `{u}`")),
    };
    Ok(SizeSpec::Bytes((num * mult as f64) as u64))
}

/// A partition placed on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPartition {
    /// 1-based partition number.
    pub number: u32,
    /// Name.
    pub name: String,
    /// First sector.
    pub start: u64,
    /// Length in sectors.
    pub sectors: u64,
    /// sfdisk type (MBR hex byte or GPT GUID).
    pub sfdisk_type: String,
    /// Boot flag.
    pub bootable: bool,
}

/// The computed disk: what [`create`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    /// Total size in bytes.
    pub size: u64,
    /// The layout.
    pub layout: DiskLayout,
    /// Placed partitions (empty for a bare filesystem).
    pub partitions: Vec<PlacedPartition>,
    /// UUID given to the root filesystem.
    pub fs_uuid: String,
}

impl DiskPlan {
    /// Byte offset and length of the root filesystem.
    pub fn root_extent(&self) -> (u64, u64) {
        match self.partitions.get(self.layout.root_index) {
            Some(p) => (p.start * SECTOR, p.sectors * SECTOR),
            None => (0, self.size),
        }
    }

    /// The `/etc/fstab` line of the root filesystem.
    pub fn fstab(&self) -> String {
        let r = &self.layout.root;
        format!(
            "LABEL={} / {} {} 0 {}\n",
            r.label, r.fs_type, r.fstab_options, r.passno
        )
    }
}

fn sfdisk_type(table: TableType, code: Option<&str>) -> std::result::Result<String, String> {
    let code = code.map(str::trim);
    Ok(match table {
        TableType::Mbr => match code {
            None => "83".into(),
            Some(c) => {
                let hex = c.trim_start_matches("0x").trim_start_matches("0X");
                u8::from_str_radix(hex, 16)
                    .map_err(|_| format!("MBR type `{c}` is not a hex byte"))?;
                hex.to_lowercase()
            }
        },
        TableType::Gpt => match code.map(|c| c.to_uppercase()) {
            None => "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
            Some(c) => match c.as_str() {
                "8300" => "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                "EF02" => "21686148-6449-6E6F-744E-656564454649".into(),
                "EF00" => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".into(),
                "8200" => "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F".into(),
                "8E00" => "E6D6D379-F507-44C2-A23C-238F2A3DF928".into(),
                "4100" => "9E1A2D38-C612-4316-AA26-8B49521E5A8B".into(),
                "0700" => "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7".into(),
                g if g.len() == 36 && g.chars().filter(|&ch| ch == '-').count() == 4 => {
                    g.to_string()
                }
                other => return Err(format!("GPT type `{other}` (an sgdisk code or a GUID)")),
            },
        },
    })
}

/// Place the layout's partitions on a disk of `size` bytes.
pub fn plan(layout: &DiskLayout, size: u64, fs_uuid: &str) -> Result<DiskPlan> {
    let bad = |reason: String| Error::BlockDevice {
        source_name: "layout".into(),
        reason,
    };
    let total = size / SECTOR;
    let mut placed = Vec::new();
    if let Some(table) = layout.table {
        let end = match table {
            TableType::Gpt => total.saturating_sub(34),
            TableType::Mbr => total,
        };
        if table == TableType::Mbr && layout.partitions.len() > 4 {
            return Err(bad("more than 4 MBR partitions".into()));
        }
        let fixed: u64 = layout
            .partitions
            .iter()
            .map(|p| match p.size {
                SizeSpec::Bytes(b) => b.div_ceil(SECTOR).div_ceil(ALIGN) * ALIGN,
                SizeSpec::Percent(_) => 0,
            })
            .sum();
        let flexible = end.saturating_sub(ALIGN).saturating_sub(fixed);
        let mut start = ALIGN;
        for (i, p) in layout.partitions.iter().enumerate() {
            let want = match p.size {
                SizeSpec::Bytes(b) => b.div_ceil(SECTOR),
                SizeSpec::Percent(pc) => flexible * pc as u64 / 100 / ALIGN * ALIGN,
            };
            let sectors = want.min(end.saturating_sub(start));
            if sectors < ALIGN / 2 {
                return Err(bad(format!(
                    "partition `{}` does not fit in a {} MiB disk",
                    p.name,
                    size >> 20
                )));
            }
            placed.push(PlacedPartition {
                number: i as u32 + 1,
                name: p.name.clone(),
                start,
                sectors,
                sfdisk_type: sfdisk_type(table, p.type_code.as_deref()).map_err(bad)?,
                bootable: p.bootable,
            });
            start = (start + sectors).div_ceil(ALIGN) * ALIGN;
        }
    }
    Ok(DiskPlan {
        size,
        layout: layout.clone(),
        partitions: placed,
        fs_uuid: fs_uuid.into(),
    })
}

/// The sfdisk script of a plan.
pub fn sfdisk_script(plan: &DiskPlan) -> Option<String> {
    let table = plan.layout.table?;
    let mut s = format!(
        "label: {}\nunit: sectors\n",
        if table == TableType::Gpt {
            "gpt"
        } else {
            "dos"
        }
    );
    for p in &plan.partitions {
        s.push_str(&format!(
            "start={}, size={}, type={}",
            p.start, p.sectors, p.sfdisk_type
        ));
        match table {
            TableType::Gpt => {
                s.push_str(&format!(", name=\"{}\"", p.name));
                if p.bootable {
                    s.push_str(", attrs=\"LegacyBIOSBootable\"");
                }
            }
            TableType::Mbr if p.bootable => s.push_str(", bootable"),
            TableType::Mbr => {}
        }
        s.push('\n');
    }
    Some(s)
}

/// Bytes used by the tree at `root` (`du -sx`).
pub fn tree_bytes(root: &Path) -> Result<u64> {
    let out = run(Command::new("du")
        .args(["-s", "-x", "--block-size=1"])
        .arg(root))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Command {
            program: "du".into(),
            status: "unparsable output".into(),
            stderr: out.clone(),
        })
}

/// diskimage-builder's automatic size: the tree ÷ 0.6, plus the fixed
/// partitions, rounded up to a MiB.
pub fn auto_size(tree: u64, layout: &DiskLayout) -> u64 {
    let fixed: u64 = layout
        .partitions
        .iter()
        .map(|p| match p.size {
            SizeSpec::Bytes(b) => b,
            SizeSpec::Percent(_) => 0,
        })
        .sum();
    let extra = if layout.table.is_some() { 2 << 20 } else { 0 };
    (tree * 10 / 6 + fixed + extra).div_ceil(1 << 20) << 20
}

/// Write `plan` into the raw file `out` (created, sparse) with the root
/// filesystem filled from `root` (fstab is written into `root` first).
#[tracing::instrument(skip_all, fields(out = %out.display(), size = plan.size))]
pub fn create(plan: &DiskPlan, root: &Path, out: &Path) -> Result<()> {
    if plan.layout.table.is_some() {
        let fstab = root.join("etc/fstab");
        std::fs::write(&fstab, plan.fstab()).map_err(io(&fstab))?;
    }
    let _ = std::fs::remove_file(out);
    let f = std::fs::File::create(out).map_err(io(out))?;
    f.set_len(plan.size).map_err(io(out))?;
    drop(f);
    if let Some(script) = sfdisk_script(plan) {
        let mut child = Command::new("sfdisk")
            .args(["-q", "--no-reread", "--no-tell-kernel"])
            .arg(out)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Command {
                program: "sfdisk".into(),
                status: "not started".into(),
                stderr: e.to_string(),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(script.as_bytes()).map_err(io(out))?;
        }
        let o = child.wait_with_output().map_err(io(out))?;
        if !o.status.success() {
            return Err(Error::Command {
                program: format!("sfdisk {}", out.display()),
                status: o.status.to_string(),
                stderr: crate::cmd::tail(&String::from_utf8_lossy(&o.stderr), 5),
            });
        }
    }
    let (offset, len) = plan.root_extent();
    let r = &plan.layout.root;
    let mut cmd = Command::new(format!("mkfs.{}", r.fs_type));
    cmd.args(["-F", "-q", "-L", &r.label, "-U", &plan.fs_uuid])
        .args(&r.opts)
        .arg("-E")
        .arg(format!("offset={offset}"))
        .arg("-d")
        .arg(root)
        .arg(out)
        .arg(format!("{}k", len / 1024));
    run(&mut cmd)?;
    Ok(())
}

/// A fresh random UUID (from the kernel).
pub fn random_uuid() -> Result<String> {
    let p = Path::new("/proc/sys/kernel/random/uuid");
    Ok(std::fs::read_to_string(p)
        .map_err(io(p))?
        .trim()
        .to_string())
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
