#![allow(clippy::unwrap_used)]
use super::*;

const GPT: &str = "
- local_loop:
    name: image0

- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: root
        flags: [ boot ]
        size: 100%
        mkfs:
          type: ext4
          mount:
            mount_point: /
            fstab:
              options: \"defaults\"
              fsck-passno: 1
";

const MBR_GRAPH: &str = "
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: mbr
    partitions:
      - name: root
        flags: [ boot, primary ]
        size: 100%
- mkfs:
    name: mkfs_root
    base: root
    type: ext4
    label: myroot
    opts: \"-i 16384\"
- mount:
    name: mount_root
    base: mkfs_root
    mount_point: /
- fstab:
    name: fstab_root
    base: mount_root
    options: \"noatime\"
    fsck-passno: 2
";

#[test]
fn gpt_yaml_is_dibs_default_gpt() {
    let l = DiskLayout::from_yaml(GPT, "block-device-gpt", "cloudimg-rootfs").unwrap();
    assert_eq!(l, DiskLayout::gpt("cloudimg-rootfs"));
}

#[test]
fn graph_notation_mkfs_mount_fstab() {
    let l = DiskLayout::from_yaml(MBR_GRAPH, "x.yaml", "cloudimg-rootfs").unwrap();
    assert_eq!(l.table, Some(TableType::Mbr));
    assert_eq!(l.root.label, "myroot");
    assert_eq!(l.root.opts, vec!["-i", "16384"]);
    assert_eq!(l.root.fstab_options, "noatime");
    assert_eq!(l.root.passno, 2);
    assert!(l.partitions[0].bootable);
}

#[test]
fn bad_yaml_names_source_and_key() {
    let cases = [
        ("- lvm: {name: x}", "lvm"),
        ("- partitioning: {label: bsd, partitions: []}", "bsd"),
        (
            "- partitioning: {label: mbr, partitions: [{name: r, size: 7XB}]}",
            "7XB",
        ),
        (
            "- partitioning: {label: mbr, partitions: [{name: r, flags: [foo]}]}",
            "foo",
        ),
        (
            "- partitioning: {label: mbr, partitions: [{name: r}]}",
            "no filesystem mounted at /",
        ),
        ("- frobnicate: {}", "frobnicate"),
    ];
    for (y, want) in cases {
        let e = DiskLayout::from_yaml(y, "my.yaml", "l")
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.yaml") && e.contains(want), "{y}: {e}");
    }
}

#[test]
fn sizes() {
    assert_eq!(parse_size("8MiB").unwrap(), SizeSpec::Bytes(8 << 20));
    assert_eq!(parse_size("1G").unwrap(), SizeSpec::Bytes(1 << 30));
    assert_eq!(parse_size("10MB").unwrap(), SizeSpec::Bytes(10_000_000));
    assert_eq!(parse_size("100%").unwrap(), SizeSpec::Percent(100));
    assert!(parse_size("0%").is_err());
    assert!(parse_size("abc").is_err());
}

#[test]
fn gpt_plan_aligns_and_leaves_backup_table_room() {
    let p = plan(&DiskLayout::gpt("cloudimg-rootfs"), 2 << 30, "u").unwrap();
    assert_eq!(p.partitions[0].start, 2048);
    assert_eq!(p.partitions[0].sectors, 16384);
    assert_eq!(p.partitions[1].start, 18432);
    let end = p.partitions[1].start + p.partitions[1].sectors;
    assert!(end <= (2u64 << 30) / 512 - 34);
    assert_eq!(p.partitions[1].sectors % 2048, 0);
    let s = sfdisk_script(&p).unwrap();
    assert!(s.contains("label: gpt") && s.contains("21686148-6449-6E6F-744E-656564454649"));
    assert!(s.contains("LegacyBIOSBootable"));
    assert_eq!(p.fstab(), "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n");
}

#[test]
fn mbr_plan_and_bare_filesystem() {
    let p = plan(&DiskLayout::mbr("r"), 1 << 30, "u").unwrap();
    let s = sfdisk_script(&p).unwrap();
    assert!(
        s.contains("label: dos") && s.contains("type=83, bootable"),
        "{s}"
    );
    assert_eq!(p.root_extent().0, 2048 * 512);
    let f = plan(&DiskLayout::filesystem("r"), 1 << 30, "u").unwrap();
    assert_eq!(f.root_extent(), (0, 1 << 30));
    assert!(sfdisk_script(&f).is_none());
    assert!(plan(&DiskLayout::gpt("r"), 4 << 20, "u").is_err());
}

/// Real sfdisk and mkfs.ext4 on a small tree: the partition table and the
/// filesystem (label, UUID, content) are what the plan says.
#[test]
fn create_writes_table_and_filesystem_from_tree() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "t\n").unwrap();
    let uuid = random_uuid().unwrap();
    let p = plan(&DiskLayout::gpt("cloudimg-rootfs"), 64 << 20, &uuid).unwrap();
    let out = d.path().join("disk.raw");
    create(&p, &root, &out).unwrap();
    let js = run(Command::new("sfdisk").arg("--json").arg(&out)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let parts = v["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(v["partitiontable"]["label"], "gpt");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["type"], "21686148-6449-6E6F-744E-656564454649");
    assert_eq!(parts[1]["start"], 18432);
    // The filesystem at the root partition's offset.
    let fs = d.path().join("fs.img");
    run(Command::new("dd")
        .arg(format!("if={}", out.display()))
        .arg(format!("of={}", fs.display()))
        .args(["bs=512", "skip=18432", "status=none"]))
    .unwrap();
    let info = run(Command::new("dumpe2fs").arg("-h").arg(&fs)).unwrap();
    assert!(info.contains("cloudimg-rootfs"), "{info}");
    assert!(info.contains(&uuid), "{info}");
    let cat = run(Command::new("debugfs")
        .args(["-R", "cat /etc/fstab"])
        .arg(&fs))
    .unwrap();
    assert_eq!(cat, "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n");
    let host = run(Command::new("debugfs")
        .args(["-R", "cat /etc/hostname"])
        .arg(&fs))
    .unwrap();
    assert_eq!(host, "t\n");
}
