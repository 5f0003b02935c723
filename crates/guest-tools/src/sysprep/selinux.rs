//! `selinux-relabel`: whether and how an SELinux guest is relabelled offline.

/// What `selinux-relabel` does for a guest, from its `/etc/selinux/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelinuxPlan {
    /// No SELinux (no config, or `SELINUX=disabled`): nothing.
    Nothing,
    /// Relabel `/` with this `file_contexts` of the guest's policy.
    Relabel {
        /// The spec file inside the guest.
        file_contexts: String,
    },
}

/// Decide from the guest's `/etc/selinux/config` (`None`: no such file).
pub fn selinux_plan(config: Option<&str>) -> SelinuxPlan {
    let Some(text) = config else {
        return SelinuxPlan::Nothing;
    };
    let value = |key: &str| {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .next_back()
    };
    match value("SELINUX").as_deref() {
        Some("enforcing") | Some("permissive") => {}
        _ => return SelinuxPlan::Nothing,
    }
    let policy = value("SELINUXTYPE").unwrap_or_else(|| "targeted".into());
    SelinuxPlan::Relabel {
        file_contexts: format!("/etc/selinux/{policy}/contexts/files/file_contexts"),
    }
}
