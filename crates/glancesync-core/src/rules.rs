//! The synchronisation rules, as pure functions over images: selection,
//! region filtering, compare codes, the AMI check, status computation and
//! the obsolete-image pass.

use std::collections::HashSet;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::config::TargetConfig;
use crate::image::Image;
use crate::log::SyncLog;
use crate::pyvalue::PyValue;

/// The synchronisation status of one master image in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// In sync.
    Ok,
    /// Checksum differs but the region checksum is in `dontupdate`.
    OkStalledChecksum,
    /// Not present in the region.
    PendingUpload,
    /// Same content; visibility, properties or kernel/ramdisk ids to update.
    PendingMetadata,
    /// Different content; the region image will be replaced.
    PendingReplace,
    /// Different content; the region image will be renamed `.old` and replaced.
    PendingRename,
    /// Kernel or ramdisk is uploaded in this run; ids updated afterwards.
    PendingAmi,
    /// Kernel or ramdisk missing and not pending.
    ErrorAmi,
    /// Different content and no directive about what to do.
    ErrorChecksum,
}

impl SyncStatus {
    /// The status name the original prints.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Ok => "ok",
            SyncStatus::OkStalledChecksum => "ok_stalled_checksum",
            SyncStatus::PendingUpload => "pending_upload",
            SyncStatus::PendingMetadata => "pending_metadata",
            SyncStatus::PendingReplace => "pending_replace",
            SyncStatus::PendingRename => "pending_rename",
            SyncStatus::PendingAmi => "pending_ami",
            SyncStatus::ErrorAmi => "error_ami",
            SyncStatus::ErrorChecksum => "error_checksum",
        }
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result of the AMI (kernel/ramdisk) check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmiStatus {
    /// Nothing to do.
    Ready,
    /// Ids can be updated now.
    Update,
    /// Aux image is pending upload in this run.
    Pending,
    /// Aux image is absent and not pending.
    Missing,
}

/// Compare owner ids the way the original does (`zfill(32)` on both sides).
pub fn same_owner(a: &str, b: &str) -> bool {
    fn pad(s: &str) -> std::borrow::Cow<'_, str> {
        if s.len() >= 32 {
            std::borrow::Cow::Borrowed(s)
        } else {
            std::borrow::Cow::Owned(format!("{s:0>32}"))
        }
    }
    pad(a) == pad(b)
}

/// Rule B: is this master image synchronisable to this target?
pub fn is_synchronisable(image: &Image, target: &TargetConfig, log: &SyncLog) -> bool {
    if image.name.ends_with("_obsolete") {
        return false;
    }
    if target.forcesyncs.contains(&image.id) {
        return true;
    }
    if let Some(cond) = &target.metadata_condition {
        return match cond.matches(image, &target.metadata_set) {
            Ok(b) => b,
            Err(e) => {
                log.warn(&format!(
                    "metadata_condition of target {} failed for image {} ({}): {e}; the image is not synchronised",
                    target.name, image.name, image.id
                ));
                false
            }
        };
    }
    if !image.is_public {
        return false;
    }
    if target.metadata_set.is_empty() {
        return true;
    }
    target
        .metadata_set
        .iter()
        .any(|p| image.user_properties.contains_key(p))
}

/// The master images to synchronise to this target, by name.
pub fn images_to_sync<'a>(
    master: &'a IndexMap<String, Image>,
    target: &TargetConfig,
    log: &SyncLog,
) -> IndexMap<String, &'a Image> {
    master
        .values()
        .filter(|i| is_synchronisable(i, target, log))
        .map(|i| (i.name.clone(), i))
        .collect()
}

/// Rule D: region images whose name is among the synchronisable master names.
pub fn local_images_filtered(
    filtered_master: &IndexMap<String, &Image>,
    region_images: Vec<Image>,
    target: &TargetConfig,
    tenant_id: &str,
    fullname: &str,
    log: &SyncLog,
) -> IndexMap<String, Image> {
    let mut out: IndexMap<String, Image> = IndexMap::new();
    for image in region_images {
        let Some(master) = filtered_master.get(&image.name) else {
            continue;
        };
        if !image.owner.is_empty() && !same_owner(&image.owner, tenant_id) {
            log.warn(&format!(
                "{fullname}: image {} (UUID {}) is owned by other tenant: {}",
                image.name, image.id, image.owner
            ));
            if target.only_tenant_images {
                continue;
            }
        }
        if image.status != "active" {
            log.warn(&format!(
                "{fullname}: state of image {} with UUID {}  is not active: {}",
                image.name, image.id, image.status
            ));
            continue;
        }
        if let Some(previous) = out.get(&image.name) {
            log.warn(&format!(
                "{fullname}: image name {} is duplicated. UUIDs: {} {}",
                image.name, image.id, previous.id
            ));
            if image.checksum != master.checksum || previous.checksum == master.checksum {
                continue;
            }
        }
        out.insert(image.name.clone(), image);
    }
    out
}

fn is_aux(p: &str) -> bool {
    p == "kernel_id" || p == "ramdisk_id"
}

/// Rule E: the compare code of a region image against its master image.
pub fn compare_with_master(
    region: &Image,
    master: &Image,
    metadata_set: &std::collections::BTreeSet<String>,
) -> &'static str {
    if region.status != "active" {
        return "$";
    }
    if master.checksum != region.checksum {
        return "!";
    }
    if master.is_public != region.is_public {
        return if master.is_public { "_" } else { "-" };
    }
    if metadata_set.is_empty() {
        if region.user_properties.len() != master.user_properties.len() {
            return "#";
        }
        for (k, v) in &region.user_properties {
            if is_aux(k) {
                continue;
            }
            match master.user_properties.get(k) {
                Some(m) if m == v => {}
                None if *v == PyValue::None => {}
                _ => return "#",
            }
        }
    } else {
        for p in metadata_set {
            if is_aux(p) {
                continue;
            }
            let m = master.user_properties.get(p).unwrap_or(&PyValue::None);
            let r = region.user_properties.get(p).unwrap_or(&PyValue::None);
            if m != r {
                return "#";
            }
        }
        for p in ["kernel_id", "ramdisk_id"] {
            if region.user_properties.contains_key(p) != master.user_properties.contains_key(p) {
                return "#";
            }
        }
    }
    ""
}

fn aux_lookup<'a>(
    dict: &'a IndexMap<String, Image>,
    removed: &HashSet<String>,
    name: &str,
) -> Option<&'a Image> {
    if removed.contains(name) {
        None
    } else {
        dict.get(name)
    }
}

fn check_aux(
    prop: &str,
    region: &Image,
    master: &Image,
    dict: &IndexMap<String, Image>,
    removed: &HashSet<String>,
    pending: &HashSet<String>,
) -> AmiStatus {
    match master.user_properties.get(prop) {
        None => {
            if region.user_properties.contains_key(prop) {
                AmiStatus::Update
            } else {
                AmiStatus::Ready
            }
        }
        Some(aux_name) => {
            let aux_name = aux_name.to_py_str();
            match aux_lookup(dict, removed, &aux_name) {
                None => {
                    if pending.contains(&aux_name) {
                        AmiStatus::Pending
                    } else {
                        AmiStatus::Missing
                    }
                }
                Some(aux) => match region.user_properties.get(prop) {
                    Some(PyValue::Str(v)) if *v == aux.id => AmiStatus::Ready,
                    _ => AmiStatus::Update,
                },
            }
        }
    }
}

/// Rule F: combined kernel/ramdisk status.
pub fn check_ami(
    region: &Image,
    master: &Image,
    dict: &IndexMap<String, Image>,
    removed: &HashSet<String>,
    pending: &HashSet<String>,
) -> AmiStatus {
    let s1 = check_aux("kernel_id", region, master, dict, removed, pending);
    let s2 = check_aux("ramdisk_id", region, master, dict, removed, pending);
    if s1 == s2 {
        s1
    } else if s1 == AmiStatus::Missing || s2 == AmiStatus::Missing {
        AmiStatus::Missing
    } else if s1 == AmiStatus::Pending || s2 == AmiStatus::Pending {
        AmiStatus::Pending
    } else {
        AmiStatus::Update
    }
}

/// Master images in processing order: ascending size, then name.
pub fn sorted_masters<'a>(filtered_master: &IndexMap<String, &'a Image>) -> Vec<&'a Image> {
    let mut v: Vec<&Image> = filtered_master.values().copied().collect();
    v.sort_by(|a, b| a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)));
    v
}

/// Rule G: the status of every synchronisable master image in a region, in
/// (size, name) order.
///
/// Unlike the original, the set of images pending upload (and the region
/// images being replaced) is computed before any AMI check, so a kernel or
/// ramdisk larger than its image gives `pending_ami`, not `error_ami`.
pub fn image_list_to_sync<'a>(
    filtered_master: &IndexMap<String, &'a Image>,
    region_dict: &IndexMap<String, Image>,
    target: &TargetConfig,
) -> Vec<(SyncStatus, &'a Image)> {
    let masters = sorted_masters(filtered_master);
    let mut pending: HashSet<String> = HashSet::new();
    let mut removed: HashSet<String> = HashSet::new();
    let mut decided: Vec<Option<SyncStatus>> = Vec::with_capacity(masters.len());
    for m in &masters {
        let status = match region_dict.get(&m.name) {
            None => {
                pending.insert(m.name.clone());
                Some(SyncStatus::PendingUpload)
            }
            Some(r) if compare_with_master(r, m, &target.metadata_set) == "!" => {
                let checksum = r.checksum_str().to_string();
                let s = if target.dontupdate.contains(&checksum) {
                    SyncStatus::OkStalledChecksum
                } else if target.replace.contains(&checksum) {
                    SyncStatus::PendingReplace
                } else if target.rename.contains(&checksum) || target.rename.contains("any") {
                    SyncStatus::PendingRename
                } else if target.replace.contains("any") {
                    SyncStatus::PendingReplace
                } else {
                    SyncStatus::ErrorChecksum
                };
                if matches!(s, SyncStatus::PendingReplace | SyncStatus::PendingRename) {
                    pending.insert(m.name.clone());
                    removed.insert(m.name.clone());
                }
                Some(s)
            }
            Some(_) => None,
        };
        decided.push(status);
    }
    masters
        .into_iter()
        .zip(decided)
        .map(|(m, d)| {
            if let Some(s) = d {
                return (s, m);
            }
            let Some(r) = region_dict.get(&m.name) else {
                return (SyncStatus::PendingUpload, m);
            };
            let code = compare_with_master(r, m, &target.metadata_set);
            let ami = check_ami(r, m, region_dict, &removed, &pending);
            let s = match (code.is_empty(), ami) {
                (true, AmiStatus::Ready) => SyncStatus::Ok,
                (_, AmiStatus::Ready | AmiStatus::Update) => SyncStatus::PendingMetadata,
                (_, AmiStatus::Pending) => SyncStatus::PendingAmi,
                (_, AmiStatus::Missing) => SyncStatus::ErrorAmi,
            };
            (s, m)
        })
        .collect()
}

/// Replace kernel/ramdisk names (from the master) with the region's ids.
/// Returns true if `image` changed. A missing aux image is logged and
/// recorded as `__<name>`, as the original does.
pub fn update_kernelramdisk_id(
    image: &mut Image,
    master: &Image,
    dict: &IndexMap<String, Image>,
    log: &SyncLog,
) -> bool {
    let mut changed = false;
    for prop in ["kernel_id", "ramdisk_id"] {
        match master.user_properties.get(prop) {
            None => {
                if image.user_properties.shift_remove(prop).is_some() {
                    changed = true;
                }
            }
            Some(aux_name) => {
                let aux_name = aux_name.to_py_str();
                match dict.get(&aux_name) {
                    None => {
                        log.warn(&format!(
                            "{}: Not found {aux_name} on region. It should be {prop} of image {}",
                            image.region, image.name
                        ));
                        image
                            .user_properties
                            .insert(prop.to_string(), PyValue::Str(format!("__{aux_name}")));
                        changed = true;
                    }
                    Some(aux) => {
                        let same = matches!(image.user_properties.get(prop), Some(PyValue::Str(v)) if *v == aux.id);
                        if !same {
                            image
                                .user_properties
                                .insert(prop.to_string(), PyValue::Str(aux.id.clone()));
                            changed = true;
                        }
                    }
                }
            }
        }
    }
    changed
}

/// Rule K: the region image with metadata brought in line with the master.
///
/// With an empty `metadata_set` every master property is copied and region
/// properties the master lacks are removed (the original copied nothing).
pub fn metadata_updated(
    region_image: &Image,
    master: &Image,
    dict: &IndexMap<String, Image>,
    target: &TargetConfig,
    log: &SyncLog,
) -> Image {
    let mut image = region_image.clone();
    update_kernelramdisk_id(&mut image, master, dict, log);
    if target.metadata_set.is_empty() {
        image
            .user_properties
            .retain(|k, _| is_aux(k) || master.user_properties.contains_key(k));
        for (k, v) in &master.user_properties {
            if !is_aux(k) {
                image.user_properties.insert(k.clone(), v.clone());
            }
        }
    } else {
        for p in &target.metadata_set {
            match master.user_properties.get(p) {
                Some(_) if is_aux(p) => {}
                Some(v) => {
                    image.user_properties.insert(p.clone(), v.clone());
                }
                None => {
                    image.user_properties.shift_remove(p);
                }
            }
        }
    }
    image.is_public = master.is_public;
    image
}

/// The image to create in a region for a master image: kernel/ramdisk ids
/// resolved, properties filtered by `metadata_set`.
pub fn image_for_upload(
    master: &Image,
    dict: &IndexMap<String, Image>,
    target: &TargetConfig,
    fullname: &str,
    log: &SyncLog,
) -> Image {
    let mut new = master.clone();
    new.region = fullname.to_string();
    update_kernelramdisk_id(&mut new, master, dict, log);
    if !target.metadata_set.is_empty() {
        new.user_properties
            .retain(|k, _| is_aux(k) || target.metadata_set.contains(k));
    }
    new
}

fn sync_obsolete_props(
    master: &Image,
    image: &mut Image,
    syncprops: &std::collections::BTreeSet<String>,
) -> bool {
    let mut changed = false;
    for p in syncprops {
        let Some(v) = master.user_properties.get(p) else {
            continue;
        };
        if image.user_properties.get(p) != Some(v) {
            image.user_properties.insert(p.clone(), v.clone());
            changed = true;
        }
    }
    if master.is_public != image.is_public {
        image.is_public = master.is_public;
        changed = true;
    }
    changed
}

/// Rule I: region images to update as obsolete (renamed `X_obsolete`,
/// visibility and `obsolete_syncprops` copied). `region_images` are changed
/// in memory as the original does (renames included).
pub fn image_list_to_obsolete(
    master: &IndexMap<String, Image>,
    region_images: &mut [Image],
    target: &TargetConfig,
    tenant_id: &str,
    log: &SyncLog,
) -> Vec<Image> {
    let mut filtered: HashSet<&str> = HashSet::new();
    for image in master.values() {
        if let Some(base) = image.name.strip_suffix("_obsolete") {
            if let Some(img) = master.get(base) {
                if is_synchronisable(img, target, log) {
                    log.warn(&format!(
                        "Ignore obsolete master image {} because {} exists and it is synchronisable.",
                        image.name, img.name
                    ));
                    continue;
                }
            }
        }
        filtered.insert(image.name.as_str());
    }
    let mut out = Vec::new();
    for image in region_images.iter_mut() {
        if !image.owner.is_empty() && !same_owner(&image.owner, tenant_id) {
            continue;
        }
        if image.name.ends_with("_obsolete") && filtered.contains(image.name.as_str()) {
            let m = &master[&image.name];
            if image.checksum == m.checksum
                && sync_obsolete_props(m, image, &target.obsolete_syncprops)
            {
                out.push(image.clone());
            }
        } else {
            let obsolete_name = format!("{}_obsolete", image.name);
            if filtered.contains(obsolete_name.as_str()) {
                image.name = obsolete_name;
                let m = &master[&image.name];
                if image.checksum == m.checksum {
                    sync_obsolete_props(m, image, &target.obsolete_syncprops);
                    out.push(image.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GlanceSyncConfig;
    use crate::pyvalue::parse_properties;

    fn target(extra: &str) -> TargetConfig {
        let text =
            format!("[main]\nmaster_region = M\n[master]\ncredential = u,cA==,http://k,t\n{extra}");
        GlanceSyncConfig::from_test_text(text).master().clone()
    }

    fn img(name: &str, id: &str, cs: &str, public: bool, props: &str) -> Image {
        let mut i = Image::new("R", name, id);
        i.checksum = Some(cs.into());
        i.is_public = public;
        i.user_properties = parse_properties(props).unwrap();
        i
    }

    #[test]
    fn owner_comparison_zero_pads() {
        assert!(same_owner("tenant1id", "000tenant1id"));
        assert!(!same_owner("tenant1id", "tenant2id"));
        let long = "a".repeat(33);
        assert!(same_owner(&long, &long));
        assert!(!same_owner(&long, "a"));
    }

    #[test]
    fn synchronisable_rules_in_order() {
        let log = SyncLog::new();
        // Image `x` (id `g`, checksum `c`) with visibility and properties.
        let sync = |t: &TargetConfig, name: &str, id: &str, public: bool, props: &str| {
            is_synchronisable(&img(name, id, "c", public, props), t, &log)
        };
        let t = target("forcesyncs = f\nmetadata_set = type\n");
        assert!(!sync(&t, "x_obsolete", "f", true, "{'type': 1}"));
        assert!(sync(&t, "x", "f", false, "{}"));
        assert!(!sync(&t, "x", "g", false, "{'type': 1}"));
        assert!(sync(&t, "x", "g", true, "{'type': 1}"));
        assert!(!sync(&t, "x", "g", true, "{'other': 1}"));
        let t = target("");
        assert!(sync(&t, "x", "g", true, "{}"));
        let t = target("metadata_condition = image.name == 'x'\n");
        assert!(sync(&t, "x", "g", false, "{}"));
        assert!(!sync(&t, "y", "g", true, "{}"));
        // A condition that raises makes the image not synchronisable, with a warning.
        let t = target("metadata_condition = image.user_properties['nope']\n");
        let log = SyncLog::capturing();
        assert!(!is_synchronisable(
            &img("x", "g", "c", true, "{}"),
            &t,
            &log
        ));
        assert!(log.lines()[0].contains("KeyError"));
    }

    #[test]
    fn compare_codes() {
        let none = std::collections::BTreeSet::new();
        let set: std::collections::BTreeSet<String> = ["nid".to_string()].into();
        let m = img("a", "1", "c", true, "{'nid': 1, 'kernel_id': 'k'}");
        let mut r = img("a", "2", "c", true, "{'nid': 1, 'kernel_id': 'zz'}");
        assert_eq!(compare_with_master(&r, &m, &none), "");
        r.status = "queued".into();
        assert_eq!(compare_with_master(&r, &m, &none), "$");
        r.status = "active".into();
        r.checksum = Some("d".into());
        assert_eq!(compare_with_master(&r, &m, &none), "!");
        r.checksum = Some("c".into());
        r.is_public = false;
        assert_eq!(compare_with_master(&r, &m, &none), "_");
        let mut mp = m.clone();
        mp.is_public = false;
        r.is_public = true;
        assert_eq!(compare_with_master(&r, &mp, &none), "-");
        r.user_properties.insert("local".into(), PyValue::Int(1));
        assert_eq!(compare_with_master(&r, &m, &none), "#");
        assert_eq!(
            compare_with_master(&r, &m, &set),
            "",
            "keys outside metadata_set are local"
        );
        r.user_properties.shift_remove("kernel_id");
        assert_eq!(
            compare_with_master(&r, &m, &set),
            "#",
            "kernel_id presence must match"
        );
    }

    #[test]
    fn ami_combination() {
        let dict: IndexMap<String, Image> =
            [("k".to_string(), img("k", "rk", "c", true, "{}"))].into();
        let none = HashSet::new();
        let pending: HashSet<String> = ["r".to_string()].into();
        let m = img("a", "1", "c", true, "{'kernel_id': 'k', 'ramdisk_id': 'r'}");
        let r = img("a", "2", "c", true, "{'kernel_id': 'rk'}");
        assert_eq!(
            check_ami(&r, &m, &dict, &none, &pending),
            AmiStatus::Pending
        );
        assert_eq!(check_ami(&r, &m, &dict, &none, &none), AmiStatus::Missing);
        let removed: HashSet<String> = ["k".to_string()].into();
        let m2 = img("a", "1", "c", true, "{'kernel_id': 'k'}");
        assert_eq!(check_ami(&r, &m2, &dict, &none, &none), AmiStatus::Ready);
        assert_eq!(
            check_ami(&r, &m2, &dict, &removed, &none),
            AmiStatus::Missing
        );
        let r2 = img(
            "a",
            "2",
            "c",
            true,
            "{'kernel_id': 'old', 'ramdisk_id': 'x'}",
        );
        assert_eq!(check_ami(&r2, &m2, &dict, &none, &none), AmiStatus::Update);
    }

    #[test]
    fn checksum_directive_precedence() {
        let m = img("a", "1", "good", true, "{}");
        let master: IndexMap<String, &Image> = [("a".to_string(), &m)].into();
        let status = |extra: &str| {
            let t = target(extra);
            let dict: IndexMap<String, Image> =
                [("a".to_string(), img("a", "2", "bad", true, "{}"))].into();
            image_list_to_sync(&master, &dict, &t)[0].0
        };
        assert_eq!(status(""), SyncStatus::ErrorChecksum);
        assert_eq!(
            status("dontupdate = bad\nreplace = bad\nrename = bad\n"),
            SyncStatus::OkStalledChecksum
        );
        assert_eq!(
            status("replace = bad\nrename = any\n"),
            SyncStatus::PendingReplace
        );
        assert_eq!(
            status("replace = any\nrename = bad\n"),
            SyncStatus::PendingRename
        );
        assert_eq!(
            status("replace = any\nrename = any\n"),
            SyncStatus::PendingRename
        );
        assert_eq!(status("replace = any\n"), SyncStatus::PendingReplace);
        assert_eq!(status("rename = other\n"), SyncStatus::ErrorChecksum);
    }

    #[test]
    fn empty_metadata_set_update_copies_everything() {
        let t = target("");
        let m = img("a", "1", "c", false, "{'p': 1, 'q': 2}");
        let r = img("a", "2", "c", true, "{'p': 0, 'stale': 3}");
        let u = metadata_updated(&r, &m, &IndexMap::new(), &t, &SyncLog::new());
        assert_eq!(
            u.user_properties,
            parse_properties("{'p': 1, 'q': 2}").unwrap()
        );
        assert!(!u.is_public);
        assert_eq!(compare_with_master(&u, &m, &t.metadata_set), "");
    }
}
