//! `source-repository-<name>` files: `<name> <type> <destination>
//! <location> [<ref>]` lines (`git`, `tar`, `file`, `package`), variables
//! in a line expanded from the build environment as DIB's `eval echo` does,
//! overridden by `DIB_REPOTYPE_<name>`, `DIB_REPOLOCATION_<name>` and
//! `DIB_REPOREF_<name>` (non-alphanumerics of the name as `_`), skipped
//! unless `DIB_INSTALLTYPE_<name>` (default `DIB_DEFAULT_INSTALLTYPE`,
//! default `source`) is `source`. [`plan`] parses with no side effects;
//! [`apply`] fetches into the image cache (`<cache>/source-repositories`)
//! from local paths, `file://` or http(s) URLs and git repositories, and
//! copies into the root, listing destinations in `/etc/dib-source-repositories`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::element::Element;
use crate::error::{Error, Result};

/// A repository type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoType {
    /// A git repository, checked out at a ref.
    Git,
    /// A gzip tarball, unpacked (`.` all, `*` strip one level, or a subdirectory).
    Tar,
    /// A single file.
    File,
    /// Installed from packages elsewhere: nothing fetched.
    Package,
}

impl RepoType {
    fn parse(s: &str) -> Option<RepoType> {
        Some(match s {
            "git" => RepoType::Git,
            "tar" => RepoType::Tar,
            "file" => RepoType::File,
            "package" => RepoType::Package,
            _ => return None,
        })
    }
}

/// One planned repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRepo {
    /// The repository name.
    pub name: String,
    /// Its type (after `DIB_REPOTYPE_`).
    pub kind: RepoType,
    /// Destination inside the image (absolute).
    pub dest: String,
    /// Location (after `DIB_REPOLOCATION_`).
    pub location: String,
    /// Ref (after `DIB_REPOREF_`; git default `master`, tar default `*`).
    pub reference: String,
    /// False when the install type is not `source` (nothing fetched).
    pub source_install: bool,
    /// The file and 1-based line it came from.
    pub origin: (PathBuf, usize),
}

impl SourceRepo {
    /// The cache entry name: `<name>_<hash of type and location>`.
    pub fn cache_name(&self) -> String {
        let kind = match self.kind {
            RepoType::Git => "git",
            RepoType::Tar => "tar",
            RepoType::File => "file",
            RepoType::Package => "package",
        };
        let h = Sha256::digest(format!("{kind}_{}\n", self.location));
        format!("{}_{}", var_name(&self.name), &hex::encode(h)[..40])
    }
}

/// `name` with every non-alphanumeric character as `_`.
pub fn var_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Expand `$VAR` and `${VAR}` from `env` (unset: empty) and collapse
/// whitespace, as `eval echo $line` does for plain lines.
fn expand(line: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let b: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            let (name, next) = if b[i + 1] == '{' {
                match b[i + 2..].iter().position(|c| *c == '}') {
                    Some(end) => (
                        b[i + 2..i + 2 + end].iter().collect::<String>(),
                        i + 3 + end,
                    ),
                    None => (String::new(), i + 1),
                }
            } else {
                let n: String = b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                let l = n.chars().count();
                (n, i + 1 + l)
            };
            if !name.is_empty() {
                out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
                i = next;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parse one `source-repository-*` file under `env`.
pub fn parse_file(path: &Path, env: &BTreeMap<String, String>) -> Result<Vec<SourceRepo>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let default_it = env
        .get("DIB_DEFAULT_INSTALLTYPE")
        .cloned()
        .unwrap_or_else(|| "source".into());
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = expand(raw, env);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| Error::ElementFile {
            file: path.to_path_buf(),
            line: Some(n + 1),
            reason,
        };
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 2 || f.len() > 5 {
            return Err(bad(format!(
                "Couldn't parse '{line}' as a source repository"
            )));
        }
        let name = f[0].to_string();
        let mut kind = RepoType::parse(f[1])
            .ok_or_else(|| bad(format!("unsupported repository type `{}`", f[1])))?;
        let dest = f.get(2).copied().unwrap_or("").to_string();
        if !dest.is_empty() && !dest.starts_with('/') {
            return Err(bad(format!(
                "destination `{dest}` must be an absolute path"
            )));
        }
        let mut location = f.get(3).copied().unwrap_or("").to_string();
        let vn = var_name(&name);
        if let Some(t) = env
            .get(&format!("DIB_REPOTYPE_{vn}"))
            .filter(|v| !v.is_empty())
        {
            kind = RepoType::parse(t).ok_or_else(|| {
                bad(format!(
                    "DIB_REPOTYPE_{vn}: unsupported repository type `{t}`"
                ))
            })?;
        }
        if let Some(l) = env
            .get(&format!("DIB_REPOLOCATION_{vn}"))
            .filter(|v| !v.is_empty())
        {
            location = l.clone();
        }
        let default_ref = match kind {
            RepoType::Git => "master",
            RepoType::Tar => "*",
            _ => "",
        };
        let mut reference = f
            .get(4)
            .map(|s| s.to_string())
            .unwrap_or_else(|| default_ref.to_string());
        if let Some(r) = env
            .get(&format!("DIB_REPOREF_{vn}"))
            .filter(|v| !v.is_empty())
        {
            reference = r.clone();
        }
        let it = env
            .get(&format!("DIB_INSTALLTYPE_{vn}"))
            .filter(|v| !v.is_empty())
            .unwrap_or(&default_it);
        if kind != RepoType::Package && (dest.is_empty() || location.is_empty()) {
            return Err(bad(format!(
                "`{name}`: a {} repository needs a destination and a location",
                f[1]
            )));
        }
        out.push(SourceRepo {
            name,
            kind,
            dest,
            location,
            reference,
            source_install: it == "source",
            origin: (path.to_path_buf(), n + 1),
        });
    }
    Ok(out)
}

/// Every repository of `elements`: their `source-repository-*` files, a
/// later element's file replacing an earlier one of the same name (as the
/// merged hook tree does), in file-name order.
pub fn plan(elements: &[Element], env: &BTreeMap<String, String>) -> Result<Vec<SourceRepo>> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for el in elements {
        let Ok(rd) = std::fs::read_dir(&el.path) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("source-repository-") && !name.ends_with('~') && e.path().is_file()
            {
                files.insert(name, e.path());
            }
        }
    }
    let mut out = Vec::new();
    for p in files.values() {
        out.extend(parse_file(p, env)?);
    }
    Ok(out)
}

/// `<image cache>/source-repositories`.
pub fn cache_dir(image_cache: &Path) -> PathBuf {
    image_cache.join("source-repositories")
}

fn run(cmd: &mut Command) -> Result<String> {
    crate::cmd::run(cmd)
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: p.to_path_buf(),
        source,
    }
}

/// Download `location` (a local path, `file://` or http(s) URL) to `to`.
fn fetch_url(location: &str, to: &Path) -> Result<()> {
    let tmp = to.with_extension("part");
    if location.starts_with('/') {
        std::fs::copy(location, &tmp).map_err(io(Path::new(location)))?;
    } else {
        run(Command::new("curl")
            .args(["-fsSL", "-o"])
            .arg(&tmp)
            .arg(location))?;
    }
    std::fs::rename(&tmp, to).map_err(io(to))
}

/// Fetch every source-install repository into `cache` (refreshing unless
/// `offline`) and copy it into `root`.
pub fn apply(repos: &[SourceRepo], cache: &Path, root: &Path, offline: bool) -> Result<()> {
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let mut listed = String::new();
    for r in repos {
        if !r.source_install || r.kind == RepoType::Package {
            tracing::info!(repo = %r.name, "install type not source: skipped");
            continue;
        }
        let span = tracing::info_span!("source_repository", repo = %r.name, kind = ?r.kind);
        let _g = span.enter();
        let cached = cache.join(r.cache_name());
        let dest = root.join(r.dest.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        match r.kind {
            RepoType::File => {
                if !cached.is_file() || !offline {
                    fetch_url(&r.location, &cached)?;
                }
                std::fs::copy(&cached, &dest).map_err(io(&dest))?;
            }
            RepoType::Tar => {
                if !cached.is_file() || !offline {
                    fetch_url(&r.location, &cached)?;
                }
                let tmp_base = root.join("tmp");
                let tmp_base = if tmp_base.is_dir() {
                    tmp_base
                } else {
                    std::env::temp_dir()
                };
                let tmp = tempfile::Builder::new()
                    .prefix("dib-tar.")
                    .tempdir_in(&tmp_base)
                    .map_err(io(&tmp_base))?;
                run(Command::new("tar")
                    .arg("-C")
                    .arg(tmp.path())
                    .arg("-xzf")
                    .arg(&cached))?;
                let from = match r.reference.as_str() {
                    "." | "" => tmp.path().to_path_buf(),
                    "*" => {
                        let mut dirs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
                            .map_err(io(tmp.path()))?
                            .flatten()
                            .map(|e| e.path())
                            .filter(|p| p.is_dir())
                            .collect();
                        dirs.sort();
                        match dirs.as_slice() {
                            [one] => one.clone(),
                            _ => {
                                return Err(Error::ElementFile {
                                    file: r.origin.0.clone(),
                                    line: Some(r.origin.1),
                                    reason: format!(
                                        "`{}`: ref `*` needs a tarball with one top directory",
                                        r.name
                                    ),
                                })
                            }
                        }
                    }
                    sub => tmp.path().join(sub),
                };
                std::fs::create_dir_all(&dest).map_err(io(&dest))?;
                run(Command::new("cp")
                    .arg("-a")
                    .arg(format!("{}/.", from.display()))
                    .arg(&dest))?;
            }
            RepoType::Git => git(r, &cached, &dest, offline)?,
            RepoType::Package => {}
        }
        listed.push_str(&r.dest);
        listed.push('\n');
    }
    if !listed.is_empty() {
        let list = root.join("etc/dib-source-repositories");
        if let Some(parent) = list.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut old = std::fs::read_to_string(&list).unwrap_or_default();
        old.push_str(&listed);
        std::fs::write(&list, old).map_err(io(&list))?;
    }
    Ok(())
}

fn git(r: &SourceRepo, cached: &Path, dest: &Path, offline: bool) -> Result<()> {
    let all = r.reference == "*";
    if !cached.exists() {
        let tmp = cached.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        run(Command::new("git")
            .args(["clone", "-q"])
            .arg(&r.location)
            .arg(&tmp))?;
        std::fs::rename(&tmp, cached).map_err(io(cached))?;
    }
    let has_ref = !all
        && Command::new("git")
            .arg("-C")
            .arg(cached)
            .args(["rev-parse", "-q", "--verify"])
            .arg(format!("{}^{{commit}}", r.reference))
            .output()
            .is_ok_and(|o| o.status.success());
    if !offline || !has_ref {
        run(Command::new("git")
            .arg("-C")
            .arg(cached)
            .args(["fetch", "-q", "--prune", "--update-head-ok"])
            .arg(&r.location)
            .args(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]))
        .map_err(|e| Error::ElementFile {
            file: r.origin.0.clone(),
            line: Some(r.origin.1),
            reason: format!(
                "`{}`: updating the cache for ref {} failed: {e}",
                r.name, r.reference
            ),
        })?;
        if !all {
            run(Command::new("git")
                .arg("-C")
                .arg(cached)
                .args(["rev-parse", "-q", "--verify"])
                .arg(format!("{}^{{commit}}", r.reference)))
            .map_err(|_| Error::ElementFile {
                file: r.origin.0.clone(),
                line: Some(r.origin.1),
                reason: format!("`{}`: Failed to find reference to {}", r.name, r.reference),
            })?;
        }
    }
    if dest.exists() {
        return Ok(());
    }
    run(Command::new("git")
        .args(["clone", "-q"])
        .arg(cached)
        .arg(dest))?;
    if all {
        run(Command::new("git")
            .arg("-C")
            .arg(dest)
            .args(["fetch", "-q", "--prune", "--update-head-ok"])
            .arg(cached)
            .args(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]))?;
    } else {
        run(Command::new("git")
            .arg("-C")
            .arg(dest)
            .args(["fetch", "-q"])
            .arg(cached)
            .arg(format!("{0}:fetch_{0}", r.reference)))?;
        run(Command::new("git")
            .arg("-C")
            .arg(dest)
            .args(["reset", "-q", "--hard", "FETCH_HEAD"]))?;
    }
    Ok(())
}
