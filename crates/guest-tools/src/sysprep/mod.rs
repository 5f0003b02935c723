//! Sysprep: the Linux-relevant `virt-sysprep` operations plus the original
//! pipeline's own clean-up, as named operations run inside one session.
//!
//! This module: the operation model and the `--operations` syntax;
//! `catalogue`: every operation in run order; `run`: what each action
//! does in the guest; `selinux`: the offline relabel decision.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};

mod catalogue;
mod run;
mod selinux;

pub use catalogue::OPERATIONS;
pub(crate) use run::{run_operation, GuestDirs};
pub use selinux::{selinux_plan, SelinuxPlan};

/// What an operation does when it runs.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// Remove every path matching these globs (recursively).
    Remove(&'static [&'static str]),
    /// Truncate every regular file matching these globs to zero length.
    Truncate(&'static [&'static str]),
    /// Truncate `/etc/machine-id`, remove the D-Bus copy.
    MachineId,
    /// Remove lines starting with these keys from network interface config files.
    IfcfgLines(&'static [&'static str]),
    /// Remove editor backup files below the usual directories.
    BackupFiles,
    /// Remove every account with uid ≥ 1000 except the ones kept.
    UserAccount,
    /// Give every filesystem a new random UUID and update fstab/grub.cfg.
    FsUuids,
    /// Give LVM physical volumes and volume groups new UUIDs.
    LvmUuids,
    /// Remove the `support` user of the create pipeline and its home.
    SupportUser,
    /// Create `/.unconfigured` so the guest reconfigures on first boot.
    FlagReconfiguration,
    /// Relabel an SELinux guest offline (`setfiles` with its policy).
    SelinuxRelabel,
    /// Nothing (the customize step takes no options here).
    Nothing,
}

/// One sysprep operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// Name used in `--operations` (the `virt-sysprep` name where one exists).
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Enabled when no `--operations` list is given.
    pub default: bool,
    action: Action,
}

/// The operation list of `--list-operations`: one line per operation,
/// `name * description` (`*` marks the default ones).
pub fn operations_text() -> String {
    OPERATIONS
        .iter()
        .map(|o| {
            format!(
                "{} {} {}\n",
                o.name,
                if o.default { "*" } else { " " },
                o.description
            )
        })
        .collect()
}

const fn op(
    name: &'static str,
    default: bool,
    description: &'static str,
    action: Action,
) -> Operation {
    Operation {
        name,
        description,
        default,
        action,
    }
}

/// Look an operation up by name.
pub fn find(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// The names of the operations enabled by default.
pub fn defaults() -> BTreeSet<&'static str> {
    OPERATIONS
        .iter()
        .filter(|o| o.default)
        .map(|o| o.name)
        .collect()
}

/// Parse an `--operations` list, `virt-sysprep` style: `a,b` selects exactly
/// `a` and `b`; `-c` removes `c`; the pseudo-names `defaults` and `all` add
/// those sets. A list that starts with a removal starts from the defaults,
/// so `-machine-id` means "the defaults except machine-id".
pub fn parse_operations(list: &str) -> Result<BTreeSet<&'static str>> {
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut set = match items.first() {
        Some(first) if first.starts_with('-') => defaults(),
        _ => BTreeSet::new(),
    };
    for item in items {
        let (remove, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item),
        };
        let names: Vec<&'static str> = match name {
            "defaults" => defaults().into_iter().collect(),
            "all" => OPERATIONS.iter().map(|o| o.name).collect(),
            n => vec![
                find(n)
                    .ok_or_else(|| Error::UnknownOperation {
                        name: n.to_string(),
                    })?
                    .name,
            ],
        };
        for n in names {
            if remove {
                set.remove(n);
            } else {
                set.insert(n);
            }
        }
    }
    Ok(set)
}

/// Options for a sysprep run.
#[derive(Debug, Clone)]
pub struct SysprepOptions {
    /// Operation names to run (see [`parse_operations`], [`defaults`]).
    pub operations: BTreeSet<&'static str>,
    /// Accounts `user-account` keeps.
    pub keep_users: Vec<String>,
}

impl Default for SysprepOptions {
    fn default() -> Self {
        SysprepOptions {
            operations: defaults(),
            keep_users: Vec::new(),
        }
    }
}

/// What one operation did.
#[derive(Debug, Clone, Serialize)]
pub struct OperationResult {
    /// The operation.
    pub name: &'static str,
    /// Paths removed, emptied or edited (or UUIDs changed).
    pub changed: Vec<String>,
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_operation_list_marks_the_defaults() {
        let text = super::operations_text();
        assert_eq!(text.lines().count(), super::OPERATIONS.len());
        assert!(text.lines().any(|l| l.starts_with("machine-id * ")));
        assert!(text.lines().any(|l| l.starts_with("user-account   ")));
    }

    #[test]
    fn selinux_relabel_is_decided_from_the_guest_config() {
        assert_eq!(selinux_plan(None), SelinuxPlan::Nothing);
        assert_eq!(
            selinux_plan(Some("SELINUX=disabled\nSELINUXTYPE=targeted\n")),
            SelinuxPlan::Nothing
        );
        let centos =
            "# This file controls the state of SELinux\nSELINUX=enforcing\nSELINUXTYPE=targeted\n";
        assert_eq!(
            selinux_plan(Some(centos)),
            SelinuxPlan::Relabel {
                file_contexts: "/etc/selinux/targeted/contexts/files/file_contexts".into()
            }
        );
        assert_eq!(
            selinux_plan(Some("SELINUX=permissive\nSELINUXTYPE=\"mls\"\n")),
            SelinuxPlan::Relabel {
                file_contexts: "/etc/selinux/mls/contexts/files/file_contexts".into()
            }
        );
        // Commented-out lines do not count; the type defaults to targeted.
        assert_eq!(
            selinux_plan(Some("#SELINUX=enforcing\n")),
            SelinuxPlan::Nothing
        );
        assert_eq!(
            selinux_plan(Some("SELINUX=enforcing\n")),
            SelinuxPlan::Relabel {
                file_contexts: "/etc/selinux/targeted/contexts/files/file_contexts".into()
            }
        );
        assert!(defaults().contains("selinux-relabel"));
    }

    use super::*;

    #[test]
    fn names_unique_and_defaults_as_upstream() {
        let mut seen = BTreeSet::new();
        for o in OPERATIONS {
            assert!(seen.insert(o.name), "duplicate {}", o.name);
        }
        let d = defaults();
        for off in [
            "user-account",
            "fs-uuids",
            "firewall-rules",
            "flag-reconfiguration",
            "kerberos-data",
        ] {
            assert!(find(off).is_some());
            assert!(!d.contains(off), "{off} must be off by default");
        }
        for on in [
            "machine-id",
            "ssh-hostkeys",
            "logfiles",
            "ge-support-user",
            "ge-create-files",
            "customize",
        ] {
            assert!(d.contains(on), "{on} must be on by default");
        }
    }

    #[test]
    fn operations_lists() {
        let s = parse_operations("machine-id,logfiles").unwrap();
        assert_eq!(
            s.into_iter().collect::<Vec<_>>(),
            vec!["logfiles", "machine-id"]
        );
        let s = parse_operations("defaults,-ssh-hostkeys,user-account").unwrap();
        assert!(!s.contains("ssh-hostkeys"));
        assert!(s.contains("user-account"));
        assert!(s.contains("machine-id"));
        let s = parse_operations("-machine-id").unwrap();
        assert_eq!(s.len(), defaults().len() - 1);
        assert!(!s.contains("machine-id"));
        let s = parse_operations("all,-fs-uuids").unwrap();
        assert_eq!(s.len(), OPERATIONS.len() - 1);
        let s = parse_operations("a-bogus-op");
        assert!(matches!(s, Err(Error::UnknownOperation { ref name }) if name == "a-bogus-op"));
        assert!(parse_operations("").unwrap().is_empty());
    }
}
