//! The checks of Octavia's `image-tests.sh`, parameterised by the build
//! options instead of fixed to the default build: virtual size equals `-s`,
//! the distro of `-i`, the architecture of `-a`, an installed OS, haproxy and
//! keepalived installed.

use std::path::{Path, PathBuf};

use guest_tools::{Accel, ImageInfo, Inspection};

use crate::error::{Error, Result};
use crate::options::{BaseOs, Options};

/// What the image must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// Virtual size, GB (`-s`), compared after rounding as the original does.
    pub size_gb: u64,
    /// `virt-inspector`'s distro.
    pub distro: String,
    /// `virt-inspector`'s arch.
    pub arch: String,
    /// Packages that must be installed.
    pub applications: Vec<String>,
}

/// The architecture inspection reports for a `-a` value (the host's when
/// absent).
pub fn inspected_arch(arch: Option<&str>) -> String {
    match arch {
        Some("amd64") => "x86_64",
        Some("arm64" | "aarch64") => "aarch64",
        Some("ppc64le") => "ppc64le",
        Some("armhf") => "armv7l",
        Some(other) => other,
        None => std::env::consts::ARCH,
    }
    .to_string()
}

impl Expectations {
    /// The expectations for a build with these options.
    pub fn for_options(o: &Options) -> Expectations {
        Expectations {
            size_gb: o.image_size,
            distro: BaseOs::inspected_distro(o.base_os).into(),
            arch: inspected_arch(o.arch.as_deref()),
            applications: vec!["haproxy".into(), "keepalived".into()],
        }
    }

    /// Compare an image's facts with the expectations, in the original's
    /// order; the first mismatch is the error (one `ERROR:` line).
    pub fn check(&self, info: &ImageInfo, inspection: &Inspection) -> Result<()> {
        self.check_size(info)?;
        self.check_inspection(inspection)
    }

    /// The size check alone (needs no appliance).
    pub fn check_size(&self, info: &ImageInfo) -> Result<()> {
        let gib = 1024f64 * 1024.0 * 1024.0;
        let size = (info.virtual_size as f64 / gib).round() as u64;
        if size != self.size_gb {
            return Err(Error::ImageTest {
                message: format!(
                    "Amphora image size is not {} GB (found {size} GB, {} bytes) in {}",
                    self.size_gb,
                    info.virtual_size,
                    info.path.display()
                ),
            });
        }
        Ok(())
    }

    /// The checks on the inspected guest: distro, arch, format, packages.
    pub fn check_inspection(&self, inspection: &Inspection) -> Result<()> {
        let fields = [
            ("distro", &inspection.distro, &self.distro),
            ("arch", &inspection.arch, &self.arch),
        ];
        for (what, got, want) in fields {
            if got != want {
                return Err(Error::ImageTest {
                    message: format!("Amphora image {what} is {got:?}, expected {want:?}"),
                });
            }
        }
        if inspection.format != "installed" {
            return Err(Error::ImageTest {
                message: format!(
                    "Amphora image format is {:?}, expected \"installed\"",
                    inspection.format
                ),
            });
        }
        for app in &self.applications {
            if !inspection.applications.iter().any(|a| &a.name == app) {
                return Err(Error::ImageTest {
                    message: format!("Amphora image is missing the {app} package"),
                });
            }
        }
        Ok(())
    }
}

/// The image `image-tests.sh` would test for `arg`: the file itself, or
/// `amphora-x64-haproxy.qcow2` inside a directory. A missing image is the
/// original's `ERROR: Amphora image not found at: …`.
pub fn resolve_image(arg: &Path) -> Result<PathBuf> {
    let p = if arg.is_dir() {
        arg.join("amphora-x64-haproxy.qcow2")
    } else {
        arg.to_path_buf()
    };
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::ImageTest {
            message: format!("Amphora image not found at: {}", p.display()),
        })
    }
}

/// Run the checks on `image` (one libguestfs appliance, the image opened
/// read-only).
pub async fn run(image: &Path, expect: &Expectations, accel: Accel) -> Result<()> {
    let path = resolve_image(image)?;
    let info = guest_tools::info(&path)?;
    expect.check_size(&info)?;
    let inspection = guest_tools::inspect(&path, accel, None).await?;
    expect.check_inspection(&inspection)
}
