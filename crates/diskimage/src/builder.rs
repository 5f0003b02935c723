//! The builder API: what `disk-image-create` does, for other Rust programs.
//!
//! [`ImageBuilder`] holds the options (elements, output name and types,
//! size, cache, architecture, release, mirror); [`ImageBuilder::plan`] turns
//! them into a [`BuildSummary`] (a plain value: distribution, layout, the
//! stages and their cache keys) and [`ImageBuilder::build`] runs it:
//! root filesystem (debootstrap, cached) → stages, each snapshotted in the
//! cache under a hash chain of its inputs → disk → bootloader → outputs.
//! A rebuild with the same inputs restores the last stage's snapshot and
//! goes straight to the disk; changing one stage's inputs reruns that stage
//! and the ones after it.
//!
//! With [`ImageBuilder::elements_path`] set, the elements come from those
//! trees and run through the phase executor, each tree phase cached the
//! same way ([`crate::element_build`]). Without it, the stages built in here cover the Debian elements this crate knows
//! natively (`debian-minimal`/`debian`, `vm`, `block-device-mbr`,
//! `block-device-gpt`, `base`); any other element is refused by name until
//! the element executor runs element trees (see [`KNOWN_ELEMENTS`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cache::{Cache, KeyChain, TreeEvictionPolicy};
use crate::cmd::io;
use crate::disk::{self, DiskLayout, DiskPlan};
use crate::error::{Error, Result};
use crate::output::{write_outputs, ImageType, OutputFile, OutputOptions};
use crate::rootfs::{self, Chroot, Distro, RootfsSpec};

/// Elements the built-in stages implement.
pub const KNOWN_ELEMENTS: &[&str] = &[
    "base",
    "debian",
    "debian-minimal",
    "vm",
    "block-device-mbr",
    "block-device-gpt",
];

/// Options of one image build (`disk-image-create`'s flags).
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    /// Elements, as given on the command line.
    pub elements: Vec<String>,
    /// Output base name (`-o`, default `image`); `.<type>` is appended.
    pub output: PathBuf,
    /// Output types (`-t`, default qcow2).
    pub types: Vec<ImageType>,
    /// Compress qcow2 (default; `-u` clears it).
    pub compress: bool,
    /// Write `.md5`/`.sha256` files (`--checksum`).
    pub checksum: bool,
    /// Image size in bytes (`--image-size`, GB); `None`: the tree ÷ 0.6.
    pub image_size: Option<u64>,
    /// Cache directory (`--image-cache`, `DIB_IMAGE_CACHE`).
    pub cache_dir: PathBuf,
    /// dpkg architecture (`-a`; `amd64` default).
    pub arch: String,
    /// Release (`DIB_RELEASE`), default per distribution.
    pub release: Option<String>,
    /// Mirror (`DIB_DISTRIBUTION_MIRROR`), default from the apt sources.
    pub mirror: Option<String>,
    /// Root filesystem label (`--root-label`).
    pub root_label: String,
    /// Block-device YAML (`DIB_BLOCK_DEVICE_CONFIG`), overrides the elements'.
    pub block_device_config: Option<String>,
    /// Extra packages (`-p`).
    pub packages: Vec<String>,
    /// `DIB_GRUB_TIMEOUT` (default 5).
    pub grub_timeout: String,
    /// Where build logs go (default: the build's temporary directory).
    pub log_dir: Option<PathBuf>,
    /// The build log itself (`--logfile`): every hook's and tool's output
    /// is appended there (overrides `log_dir`).
    pub log_file: Option<PathBuf>,
    /// `-x` count: hooks see `DIB_DEBUG_TRACE` and trace themselves.
    pub trace: u32,
    /// Build in a tmpfs when memory allows (default; `--no-tmpfs` clears
    /// it, as does `DIB_NO_TMPFS=1`). See [`crate::tmpfs`].
    pub tmpfs: bool,
    /// `-n`: do not add the `base` element (element builds).
    pub skip_base: bool,
    /// Element directories (`ELEMENTS_PATH`, earlier wins; put built-in
    /// trees last). Empty: only the built-in stages ([`KNOWN_ELEMENTS`]);
    /// otherwise the elements are expanded from these trees and run by the
    /// phase executor (see [`crate::element_build`]).
    pub elements_path: Vec<PathBuf>,
}

/// One stage of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Name (`bootstrap`, `packages`, `configure`).
    pub name: String,
    /// Cache key: hash of this stage's inputs and the previous key.
    pub key: String,
}

/// What a build will do (no side effects to compute).
#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// Distribution.
    pub distro: Distro,
    /// Bootstrap inputs.
    pub rootfs: RootfsSpec,
    /// Disk layout (a bare filesystem without `vm`).
    pub layout: DiskLayout,
    /// Whether a bootloader is installed (`vm`).
    pub bootloader: bool,
    /// Packages installed after the bootstrap (the OS and `vm` set).
    pub packages: Vec<String>,
    /// `-p` packages, installed in their own stage on top of `packages`,
    /// so changing them keeps the cached package stage.
    pub extra_packages: Vec<String>,
    /// Stages, first is the bootstrap.
    pub stages: Vec<Stage>,
}

/// What happened to one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// Stage name.
    pub name: String,
    /// Restored from the cache (or skipped because a later stage was).
    pub cached: bool,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// Whether debootstrap ran (false when the tree came from the cache);
    /// for element builds, whether `root.d` ran.
    pub debootstrap_ran: bool,
    /// Stages in order.
    pub stages: Vec<StageReport>,
    /// The disk written, when any output needs one.
    pub disk: Option<DiskPlan>,
    /// Seconds spent assembling the disk and bootloader.
    pub disk_seconds: f64,
    /// Outputs written.
    pub outputs: Vec<OutputFile>,
    /// Total wall time, seconds.
    pub seconds: f64,
}

/// A build's finished tree, handed to [`ImageBuilder::finish_build`].
pub(crate) struct FinishedTree<'a> {
    /// The image tree.
    pub root: &'a Path,
    /// The build's working directory (the raw disk goes there).
    pub work: &'a Path,
    /// The build log.
    pub log: &'a Path,
    /// The disk's partitions and filesystem.
    pub layout: &'a DiskLayout,
    /// Whether the disk gets boot code.
    pub bootloader: bool,
    /// The stages run or restored so far.
    pub stages: Vec<StageReport>,
    /// See [`BuildReport::debootstrap_ran`].
    pub debootstrap_ran: bool,
    /// When the build started.
    pub started: Instant,
}

/// Map `-a` spellings to the dpkg architecture.
pub fn dpkg_arch(arch: &str) -> Result<String> {
    Ok(match arch {
        "amd64" | "x86_64" => "amd64",
        "arm64" | "aarch64" => "arm64",
        "armhf" => "armhf",
        "ppc64le" | "ppc64el" => "ppc64el",
        "i386" => "i386",
        other => {
            return Err(Error::Option {
                option: "-a".into(),
                reason: format!("unknown architecture `{other}`"),
            })
        }
    }
    .to_string())
}

impl ImageBuilder {
    /// A builder for `elements` with diskimage-builder's defaults.
    pub fn new<S: Into<String>>(elements: impl IntoIterator<Item = S>) -> ImageBuilder {
        ImageBuilder {
            elements: elements.into_iter().map(Into::into).collect(),
            output: PathBuf::from("image"),
            types: vec![ImageType::Qcow2],
            compress: true,
            checksum: false,
            image_size: None,
            cache_dir: Cache::default_dir(),
            arch: "amd64".into(),
            release: std::env::var("DIB_RELEASE").ok().filter(|s| !s.is_empty()),
            mirror: None,
            root_label: "cloudimg-rootfs".into(),
            block_device_config: std::env::var("DIB_BLOCK_DEVICE_CONFIG")
                .ok()
                .filter(|s| !s.is_empty()),
            packages: Vec::new(),
            grub_timeout: std::env::var("DIB_GRUB_TIMEOUT").unwrap_or_else(|_| "5".into()),
            log_dir: None,
            log_file: None,
            trace: 0,
            tmpfs: std::env::var("DIB_NO_TMPFS").map_or(true, |v| v.trim() != "1"),
            skip_base: false,
            elements_path: std::env::var("ELEMENTS_PATH")
                .map(|v| crate::element::parse_elements_path(&v))
                .unwrap_or_default(),
        }
    }

    fn has(&self, e: &str) -> bool {
        self.elements.iter().any(|x| x == e)
    }

    /// Compute what [`ImageBuilder::build`] will do.
    pub fn plan(&self) -> Result<BuildSummary> {
        let mut distro = None;
        for e in &self.elements {
            if let Some(d) = Distro::from_element(e)? {
                distro = Some(d);
            } else if !KNOWN_ELEMENTS.contains(&e.as_str()) {
                return Err(Error::Option {
                    option: "elements".into(),
                    reason: format!(
                        "element `{e}` is not built in; element trees run through the phase executor"
                    ),
                });
            }
        }
        let distro = distro.ok_or_else(|| Error::Option {
            option: "elements".into(),
            reason: "no operating-system element (debian-minimal, debian, ubuntu-minimal, ...)"
                .into(),
        })?;
        let arch = dpkg_arch(&self.arch)?;
        let release = self
            .release
            .clone()
            .unwrap_or_else(|| distro.default_release().to_string());
        let mirror = match &self.mirror {
            Some(m) => m.clone(),
            None => rootfs::resolve_mirror(distro, &release)?,
        };
        let spec = RootfsSpec {
            distro,
            release,
            arch: arch.clone(),
            mirror,
            variant: "minbase".into(),
            include: Vec::new(),
            extra_args: std::env::var("DIB_DEBOOTSTRAP_EXTRA_ARGS")
                .map(|s| s.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        };
        let vm = self.has("vm");
        let layout = if !vm {
            DiskLayout::filesystem(&self.root_label)
        } else if let Some(cfg) = &self.block_device_config {
            let (text, src) = match cfg.strip_prefix("file://") {
                Some(p) => (
                    std::fs::read_to_string(p).map_err(io(Path::new(p)))?,
                    p.to_string(),
                ),
                None => (cfg.clone(), "DIB_BLOCK_DEVICE_CONFIG".to_string()),
            };
            DiskLayout::from_yaml(&text, &src, &self.root_label)?
        } else if self.has("block-device-gpt") {
            DiskLayout::gpt(&self.root_label)
        } else {
            DiskLayout::mbr(&self.root_label)
        };
        let kernel = match arch.as_str() {
            "amd64" => "linux-image-amd64",
            "arm64" => "linux-image-arm64",
            "ppc64el" => "linux-image-powerpc64le",
            "armhf" => "linux-image-armmp",
            _ => "linux-image-686",
        };
        let mut packages: Vec<String> = [
            "adduser",
            "ca-certificates",
            "locales",
            "lsb-release",
            kernel,
            "systemd-sysv",
            "udev",
            "ifupdown",
            "isc-dhcp-client",
            "netbase",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if vm {
            packages.extend(["grub-pc-bin".to_string(), "grub2-common".to_string()]);
        }
        let mut chain = KeyChain::new(&spec.cache_key());
        let mut stages = vec![Stage {
            name: "bootstrap".into(),
            key: spec.cache_key(),
        }];
        chain.push_str("packages-v2", &packages.join(" "));
        stages.push(Stage {
            name: "packages".into(),
            key: chain.key(),
        });
        chain.push_str("extra-packages", &self.packages.join(" "));
        stages.push(Stage {
            name: "extra-packages".into(),
            key: chain.key(),
        });
        chain
            .push_str(
                "configure",
                &configure_files(vm, &self.grub_timeout).concat(),
            )
            .push_str("elements", &self.elements.join(" "));
        stages.push(Stage {
            name: "configure".into(),
            key: chain.key(),
        });
        Ok(BuildSummary {
            distro,
            rootfs: spec,
            layout,
            bootloader: vm,
            packages,
            extra_packages: self.packages.clone(),
            stages,
        })
    }

    /// Build the image: see the module documentation.
    #[tracing::instrument(skip_all, fields(output = %self.output.display()))]
    pub async fn build(&self) -> Result<BuildReport> {
        if !self.elements_path.is_empty() {
            return crate::element_build::build(self, &self.elements_path).await;
        }
        let t0 = Instant::now();
        let summary = self.plan()?;
        let cache = Cache::open(&self.cache_dir)?;
        let keep: Vec<String> = summary.stages.iter().map(|s| s.key.clone()).collect();
        let _trees = cache.use_trees(TreeEvictionPolicy::from_env()?, &keep)?;
        let (work, tmpfs) = self.work_dir(&cache)?;
        // Snapshots compress in the background from a copy on the tmpfs;
        // dropped (completing what is pending) before `work` and the tmpfs.
        let mut snaps = crate::snapshot::Snapshots::new(
            &cache,
            tmpfs.as_ref().map(|_| work.path().join("snapshots")),
        )?;
        let root = work.path().join("root");
        // Dropped before `work`: nothing stays mounted under the tree.
        let _sweep = crate::element_build::MountSweep(root.clone());
        let log = self.log_path(work.path())?;

        // Resume from the latest stage snapshot there is.
        let last_cached = (1..summary.stages.len())
            .rev()
            .find(|&i| cache.has_tree(&summary.stages[i].key));
        let mut reports = Vec::new();
        let mut debootstrap_ran = false;
        let first_to_run = match last_cached {
            Some(i) => {
                let t = Instant::now();
                cache.restore_tree(&summary.stages[i].key, &root)?;
                for s in &summary.stages[..=i] {
                    reports.push(StageReport {
                        name: s.name.clone(),
                        cached: true,
                        seconds: if s.name == summary.stages[i].name {
                            t.elapsed().as_secs_f64()
                        } else {
                            0.0
                        },
                    });
                }
                i + 1
            }
            None => {
                let t = Instant::now();
                let hit = rootfs::bootstrap(&summary.rootfs, &cache, &root, &log)?;
                debootstrap_ran = !hit;
                reports.push(StageReport {
                    name: "bootstrap".into(),
                    cached: hit,
                    seconds: t.elapsed().as_secs_f64(),
                });
                1
            }
        };
        for (i, stage) in summary.stages.iter().enumerate().skip(first_to_run) {
            let t = Instant::now();
            let _span = tracing::info_span!("stage", name = %stage.name).entered();
            match stage.name.as_str() {
                "packages" => {
                    self.stage_packages(&summary, &summary.packages, &cache, &root, &log)?
                }
                "extra-packages" => {
                    self.stage_packages(&summary, &summary.extra_packages, &cache, &root, &log)?
                }
                "configure" => self.stage_configure(&summary, &root)?,
                other => {
                    return Err(Error::Option {
                        option: "stage".into(),
                        reason: format!("unknown stage `{other}`"),
                    })
                }
            }
            // configure writes a few files: rerunning it costs less than
            // packing and unpacking a snapshot of the whole tree. A stage
            // that installed nothing shares the previous snapshot.
            let unchanged = stage.name == "extra-packages" && summary.extra_packages.is_empty();
            if unchanged && i > 0 && snaps.has(&summary.stages[i - 1].key) {
                snaps.link(&summary.stages[i - 1].key, &stage.key)?;
            } else if stage.name != "configure" {
                snaps.store(&stage.key, &root)?;
            }
            reports.push(StageReport {
                name: stage.name.clone(),
                cached: false,
                seconds: t.elapsed().as_secs_f64(),
            });
        }

        self.finish_build(
            FinishedTree {
                root: &root,
                work: work.path(),
                log: &log,
                layout: &summary.layout,
                bootloader: summary.bootloader,
                stages: reports,
                debootstrap_ran,
                started: t0,
            },
            snaps,
            || Ok(()),
        )
    }

    /// The end both build paths share: the disk when an output type needs
    /// one (sized from the tree unless [`ImageBuilder::image_size`]; boot
    /// code when `tree.bootloader`, after `before_disk`, e.g. installing
    /// GRUB, which counts as disk time), every output file, the snapshots
    /// settled, the report.
    pub(crate) fn finish_build(
        &self,
        tree: FinishedTree<'_>,
        snaps: crate::snapshot::Snapshots,
        before_disk: impl FnOnce() -> Result<()>,
    ) -> Result<BuildReport> {
        let td = Instant::now();
        let mut disk_plan = None;
        let mut disk_path = None;
        if self.types.iter().any(|t| t.needs_disk()) {
            if tree.bootloader {
                before_disk()?;
            }
            let size = match self.image_size {
                Some(s) => s,
                None => disk::auto_size(disk::tree_bytes(tree.root)?, tree.layout),
            };
            let plan = disk::plan(tree.layout, size, &disk::random_uuid()?)?;
            let raw = tree.work.join("disk.raw");
            if tree.bootloader {
                crate::bootloader::prepare_tree(tree.root, &plan, tree.work, tree.log)?;
            }
            disk::create(&plan, tree.root, &raw)?;
            if tree.bootloader {
                crate::bootloader::write_boot_code(&raw, &plan, tree.root)?;
            }
            disk_plan = Some(plan);
            disk_path = Some(raw);
        }
        let disk_seconds = td.elapsed().as_secs_f64();
        let outputs = self.write_image_outputs(disk_path.as_deref(), tree.root)?;
        snaps.finish()?;
        Ok(BuildReport {
            debootstrap_ran: tree.debootstrap_ran,
            stages: tree.stages,
            disk: disk_plan,
            disk_seconds,
            outputs,
            seconds: tree.started.elapsed().as_secs_f64(),
        })
    }

    /// The build's working directory under the cache's `tmp/`, in a tmpfs
    /// when [`ImageBuilder::tmpfs`] and the memory allow (drop the guard
    /// before the directory).
    pub(crate) fn work_dir(
        &self,
        cache: &Cache,
    ) -> Result<(tempfile::TempDir, Option<crate::tmpfs::Tmpfs>)> {
        let tmp_parent = cache.path().join("tmp");
        std::fs::create_dir_all(&tmp_parent).map_err(io(&tmp_parent))?;
        let work = tempfile::Builder::new()
            .prefix("build.")
            .tempdir_in(&tmp_parent)
            .map_err(io(&tmp_parent))?;
        let fs = if crate::tmpfs::tmpfs_fits(self.tmpfs, crate::tmpfs::min_tmpfs_gb()) {
            tracing::info!(dir = %work.path().display(), "building in a tmpfs");
            Some(crate::tmpfs::Tmpfs::mount(work.path())?)
        } else {
            None
        };
        Ok((work, fs))
    }

    /// The build log: [`ImageBuilder::log_file`], else `build.log` in
    /// [`ImageBuilder::log_dir`] or `work`; its directory is created.
    pub(crate) fn log_path(&self, work: &Path) -> Result<PathBuf> {
        let log = match (&self.log_file, &self.log_dir) {
            (Some(f), _) => f.clone(),
            (None, Some(d)) => d.join("build.log"),
            (None, None) => work.join("build.log"),
        };
        if let Some(d) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        Ok(log)
    }

    /// Write every requested output type (and checksums) from the
    /// assembled disk, or from the tree for tree-only types, next to
    /// `self.output`.
    pub(crate) fn write_image_outputs(
        &self,
        disk: Option<&Path>,
        root: &Path,
    ) -> Result<Vec<OutputFile>> {
        if let Some(parent) = self.output.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        write_outputs(
            disk,
            Some(root),
            &self.output,
            &OutputOptions {
                types: self.types.clone(),
                compress: self.compress,
                checksum: self.checksum,
                qemu_img_options: std::env::var("QEMU_IMG_OPTIONS")
                    .ok()
                    .filter(|s| !s.is_empty()),
            },
        )
    }

    fn stage_packages(
        &self,
        s: &BuildSummary,
        packages: &[String],
        cache: &Cache,
        root: &Path,
        log: &Path,
    ) -> Result<()> {
        if packages.is_empty() {
            return Ok(());
        }
        let debs = cache.debs_dir(s.distro.name(), &s.rootfs.release, &s.rootfs.arch)?;
        let _debs_lock = cache.debs_lock(s.distro.name(), &s.rootfs.release, &s.rootfs.arch)?;
        let mut chroot = Chroot::enter(root)?;
        rootfs::block_services(root)?;
        // The kernel's postinst must not try to install a bootloader here.
        let kc = root.join("etc/kernel-img.conf");
        std::fs::write(&kc, "do_symlinks = yes\nlink_in_boot = no\n").map_err(io(&kc))?;
        // Build-time only (removed below): no fsync per file, no translations.
        let speed = [
            (
                root.join("etc/dpkg/dpkg.cfg.d/02-build-unsafe-io"),
                "force-unsafe-io\n",
            ),
            (
                root.join("etc/apt/apt.conf.d/02-build-no-languages"),
                "Acquire::Languages \"none\";\n",
            ),
        ];
        for (p, c) in &speed {
            std::fs::write(p, c).map_err(io(p))?;
        }
        let lists = cache.apt_lists_dir(s.distro.name(), &s.rootfs.release, &s.rootfs.arch)?;
        // No `apt-get clean` in the chroot: with the cache bound on apt's
        // archive it would empty the cache; the tree's own archive
        // directory stayed empty under the bind, and apt's binary caches
        // are removed below.
        let deferred = rootfs::defer_initramfs(root)?;
        let r = rootfs::apt_install(&mut chroot, &debs, Some(&lists), packages, log);
        if deferred {
            rootfs::undefer_initramfs(root)?;
        }
        for (p, _) in &speed {
            std::fs::remove_file(p).map_err(io(p))?;
        }
        rootfs::unblock_services(root)?;
        chroot.exit()?;
        r?;
        for bin in ["pkgcache.bin", "srcpkgcache.bin"] {
            let p = root.join("var/cache/apt").join(bin);
            if p.exists() {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        // Package lists (debootstrap's, under the tree) are rebuilt by
        // `apt-get update` in any later stage.
        let lists = root.join("var/lib/apt/lists");
        if let Ok(rd) = std::fs::read_dir(&lists) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    fn stage_configure(&self, s: &BuildSummary, root: &Path) -> Result<()> {
        let files = configure_paths(s.bootloader, &self.grub_timeout);
        for (rel, content) in files {
            let p = root.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&p, content).map_err(io(&p))?;
        }
        Ok(())
    }
}

/// Files the configure stage writes (path in the tree, content).
fn configure_paths(vm: bool, grub_timeout: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("etc/hostname", "debian\n".to_string()),
        (
            "etc/hosts",
            "127.0.0.1 localhost\n127.0.1.1 debian\n::1 localhost ip6-localhost ip6-loopback\n"
                .to_string(),
        ),
        (
            "etc/network/interfaces",
            "source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n".to_string(),
        ),
        (
            "etc/network/interfaces.d/ens3",
            "allow-hotplug ens3\niface ens3 inet dhcp\n".to_string(),
        ),
    ];
    if vm {
        v.push((
            "etc/default/grub",
            crate::bootloader::default_grub(grub_timeout),
        ));
    }
    v
}

fn configure_files(vm: bool, grub_timeout: &str) -> Vec<String> {
    configure_paths(vm, grub_timeout)
        .into_iter()
        .map(|(p, c)| format!("{p}\0{c}\0"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b(elements: &[&str]) -> ImageBuilder {
        let mut b = ImageBuilder::new(elements.iter().copied());
        b.mirror = Some("http://mirror.invalid/debian".into());
        b.release = Some("bookworm".into());
        b.block_device_config = None;
        b.elements_path.clear();
        b.grub_timeout = "5".into();
        b
    }

    #[test]
    fn plan_picks_layout_from_elements() {
        assert_eq!(b(&["debian-minimal"]).plan().unwrap().layout.table, None);
        let p = b(&["debian-minimal", "vm"]).plan().unwrap();
        assert_eq!(p.layout, DiskLayout::mbr("cloudimg-rootfs"));
        assert!(p.bootloader && p.packages.contains(&"grub-pc-bin".to_string()));
        let p = b(&["vm", "debian-minimal", "block-device-gpt"])
            .plan()
            .unwrap();
        assert_eq!(p.layout, DiskLayout::gpt("cloudimg-rootfs"));
    }

    #[test]
    fn plan_refuses_unknown_and_missing_os_elements() {
        let e = b(&["debian-minimal", "frob"])
            .plan()
            .unwrap_err()
            .to_string();
        assert!(e.contains("frob"), "{e}");
        let e = b(&["vm"]).plan().unwrap_err().to_string();
        assert!(e.contains("operating-system"), "{e}");
        let e = b(&["centos-minimal", "vm"]).plan().unwrap_err().to_string();
        assert!(e.contains("centos-minimal"), "{e}");
        let mut x = b(&["debian-minimal"]);
        x.arch = "sparc".into();
        assert!(x.plan().unwrap_err().to_string().starts_with("-a:"));
    }

    #[test]
    fn stage_keys_chain_on_inputs() {
        let k = |x: &ImageBuilder| {
            x.plan()
                .unwrap()
                .stages
                .iter()
                .map(|s| s.key.clone())
                .collect::<Vec<_>>()
        };
        let base = k(&b(&["debian-minimal", "vm"]));
        assert_eq!(base, k(&b(&["debian-minimal", "vm"])));
        let mut more = b(&["debian-minimal", "vm"]);
        more.packages.push("vim".into());
        let more = k(&more);
        assert_eq!(more[..2], base[..2], "bootstrap and packages unchanged");
        assert_ne!(more[2], base[2]);
        assert_ne!(more[3], base[3]);
        let mut grub = b(&["debian-minimal", "vm"]);
        grub.grub_timeout = "0".into();
        let grub = k(&grub);
        assert_eq!(grub[..3], base[..3], "only configure changes");
        assert_ne!(grub[3], base[3]);
        let mut rel = b(&["debian-minimal", "vm"]);
        rel.release = Some("trixie".into());
        assert_ne!(k(&rel)[0], base[0]);
    }
}
