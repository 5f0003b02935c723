//! Dependency expansion (DIB's `element-info`) and the element list
//! `disk-image-create` builds from its arguments before expanding it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use super::{Element, ElementTree};
use crate::error::{Error, Result};

/// How `disk-image-create` turns its element arguments into the list it
/// expands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageElementOptions {
    /// Target architecture (`ARCH`, DIB spelling: `amd64`, `arm64`, ...).
    pub arch: String,
    /// `-n`: do not add the `base` element.
    pub skip_base: bool,
    /// For ramdisk builds: the ramdisk element put first (`--ramdisk-element`).
    pub ramdisk_element: Option<String>,
}

impl Default for ImageElementOptions {
    fn default() -> Self {
        ImageElementOptions {
            arch: "amd64".into(),
            skip_base: false,
            ramdisk_element: None,
        }
    }
}

/// The element list `disk-image-create` passes to `element-info`, before
/// dependency expansion: when `vm` is given without any `block-device-*`
/// element, `block-device-efi` (arm64/aarch64) or `block-device-mbr` (any
/// other arch) is appended; then `base` is put first unless skipped, and the
/// ramdisk element (if any) before it.
pub fn image_element_args(requested: &[String], options: &ImageElementOptions) -> Vec<String> {
    let mut out: Vec<String> = requested.to_vec();
    let vm = requested.iter().any(|e| e == "vm");
    let blockdev = requested.iter().any(|e| e.starts_with("block-device-"));
    if vm && !blockdev {
        let bd = if matches!(options.arch.as_str(), "arm64" | "aarch64") {
            "block-device-efi"
        } else {
            "block-device-mbr"
        };
        out.push(bd.to_string());
    }
    if !options.skip_base {
        out.insert(0, "base".into());
    }
    if let Some(r) = &options.ramdisk_element {
        out.insert(0, r.clone());
    }
    out
}

/// Expand an element list as `disk-image-create` does: [`image_element_args`]
/// (`base` added unless skipped, a default `block-device-*` for `vm`), then
/// the dependency expansion of [`ElementTree::expand`] over `elements_path`
/// (colon-list order: earlier entries win; callers append their built-in
/// element directories last, as DIB appends its own).
///
/// Returns the expanded elements, requested ones first, then dependencies
/// in discovery order.
pub fn expand_image_elements(
    elements_path: &[PathBuf],
    requested: &[String],
    options: &ImageElementOptions,
) -> Result<Vec<Element>> {
    let tree = ElementTree::discover(elements_path)?;
    tree.expand(&image_element_args(requested, options))
}

pub(super) fn expand(tree: &ElementTree, user: &[String]) -> Result<Vec<Element>> {
    let mut final_set: BTreeSet<String> = user.iter().cloned().collect();
    let mut queue: VecDeque<(String, Option<String>)> =
        user.iter().map(|u| (u.clone(), None)).collect();
    let mut provided: BTreeSet<String> = BTreeSet::new();
    let mut provided_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();

    while let Some((name, required_by)) = queue.pop_front() {
        if provided.contains(&name) {
            continue;
        }
        let Some(el) = tree.get(&name) else {
            return Err(Error::UnknownElement {
                element: name,
                required_by,
            });
        };
        for p in &el.provides {
            if provided.contains(p) {
                return Err(Error::AlreadyProvided {
                    element: p.clone(),
                    provided_by: provided_by.get(p).cloned().unwrap_or_default(),
                    by: name.clone(),
                });
            }
            provided_by.entry(p.clone()).or_default().push(name.clone());
        }
        provided.extend(el.provides.iter().cloned());
        for d in &el.depends {
            if !final_set.contains(d) && !provided.contains(d) {
                queue.push_back((d.clone(), Some(name.clone())));
            }
        }
        final_set.extend(el.depends.iter().cloned());
        if !order.contains(&name) {
            order.push(name);
        }
    }

    for u in user {
        if provided.contains(u) {
            return Err(Error::AlreadyProvided {
                element: u.clone(),
                provided_by: provided_by.get(u).cloned().unwrap_or_default(),
                by: "the requested element list".into(),
            });
        }
    }
    if !provided.contains("operating-system") {
        return Err(Error::MissingOperatingSystem {
            requested: user.join(" "),
        });
    }
    let out: Vec<Element> = order
        .iter()
        .filter(|n| final_set.contains(*n) && !provided.contains(*n))
        .filter_map(|n| tree.get(n).cloned())
        .collect();
    check_cycles(&out)?;
    Ok(out)
}

/// A dependency cycle among the expanded elements is an error naming it.
fn check_cycles(elements: &[Element]) -> Result<()> {
    let by_name: BTreeMap<&str, &Element> = elements.iter().map(|e| (e.name.as_str(), e)).collect();
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    for start in elements {
        if state.contains_key(start.name.as_str()) {
            continue;
        }
        // iterative DFS: (node, index of next dependency to visit)
        let mut stack: Vec<(&str, Vec<&str>, usize)> = Vec::new();
        let deps = |n: &str| -> Vec<&str> {
            by_name
                .get(n)
                .map(|e| {
                    e.depends
                        .iter()
                        .map(String::as_str)
                        .filter(|d| by_name.contains_key(d))
                        .collect()
                })
                .unwrap_or_default()
        };
        state.insert(start.name.as_str(), 1);
        stack.push((start.name.as_str(), deps(&start.name), 0));
        while let Some(top) = stack.last_mut() {
            if top.2 < top.1.len() {
                let next = top.1[top.2];
                top.2 += 1;
                match state.get(next).copied().unwrap_or(0) {
                    0 => {
                        state.insert(next, 1);
                        let d = deps(next);
                        stack.push((next, d, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|f| f.0 == next).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[pos..].iter().map(|f| f.0.to_string()).collect();
                        cycle.push(next.to_string());
                        return Err(Error::ElementCycle { cycle });
                    }
                    _ => {}
                }
            } else {
                state.insert(top.0, 2);
                stack.pop();
            }
        }
    }
    Ok(())
}
