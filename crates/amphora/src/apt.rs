//! The Debian security mirror of the machine's apt sources, for
//! `debian-minimal` builds: diskimage-builder's element otherwise points at
//! its built-in upstream host. Never a host written into the project.

use std::path::Path;

/// The URI serving `<release>-security` in apt sources text, one-line
/// (`deb URI SUITE COMPONENTS`) or deb822 (`URIs:`/`Suites:` stanzas).
pub fn security_mirror_in(text: &str, release: &str) -> Option<String> {
    let suite = format!("{release}-security");
    // One-line format.
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some("deb") {
            continue;
        }
        let rest: Vec<&str> = w.filter(|t| !t.starts_with('[')).collect();
        if let [uri, s, ..] = rest.as_slice() {
            if *s == suite {
                return Some((*uri).to_string());
            }
        }
    }
    // deb822 stanzas.
    for stanza in text.split("\n\n") {
        let mut uris = None;
        let mut suites = None;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("URIs:") {
                uris = v.split_whitespace().next().map(String::from);
            } else if let Some(v) = line.strip_prefix("Suites:") {
                suites = Some(v.split_whitespace().any(|s| s == suite));
            }
        }
        if let (Some(u), Some(true)) = (uris, suites) {
            return Some(u);
        }
    }
    None
}

/// [`security_mirror_in`] over `/etc/apt/sources.list` and
/// `/etc/apt/sources.list.d/*.list|*.sources` under `root`.
pub fn security_mirror(root: &Path, release: &str) -> Option<String> {
    let mut files = vec![root.join("etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir(root.join("etc/apt/sources.list.d")) {
        let mut more: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|t| security_mirror_in(&t, release))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_formats() {
        let one = "deb http://m.example/debian bookworm main\ndeb [arch=amd64] http://m.example/debian-security bookworm-security main\n";
        assert_eq!(
            security_mirror_in(one, "bookworm").as_deref(),
            Some("http://m.example/debian-security")
        );
        let deb822 = "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\n\nTypes: deb\nURIs: http://m.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(
            security_mirror_in(deb822, "bookworm").as_deref(),
            Some("http://m.example/debian-security")
        );
        assert_eq!(security_mirror_in(deb822, "trixie"), None);
    }
}
