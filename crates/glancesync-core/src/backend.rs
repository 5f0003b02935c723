//! The region backend abstraction: what the engine needs from a cloud (or
//! from an offline copy of one).

use async_trait::async_trait;

use crate::config::TargetConfig;
use crate::error::{Error, Result};
use crate::image::Image;

/// A region within a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegionRef {
    /// Target (config section) name.
    pub target: String,
    /// Bare region name.
    pub region: String,
}

impl RegionRef {
    /// `Ok` when a backend may write, else the [`Error::DryRunWrite`] that
    /// refuses `operation` in this region (`read_only` backends never write).
    pub fn refuse_write_if(&self, read_only: bool, operation: &str) -> Result<()> {
        if read_only {
            Err(Error::DryRunWrite {
                region: self.full_name(),
                operation: operation.to_string(),
            })
        } else {
            Ok(())
        }
    }

    /// Parse a region string: `target:Region`, `master:Region` or `Region`.
    pub fn parse(s: &str) -> RegionRef {
        match s.split_once(':') {
            Some((t, r)) => RegionRef {
                target: t.to_string(),
                region: r.to_string(),
            },
            None => RegionRef {
                target: "master".to_string(),
                region: s.to_string(),
            },
        }
    }

    /// The full name: `Region` for the master target, `target:Region` otherwise.
    pub fn full_name(&self) -> String {
        if self.target == "master" {
            self.region.clone()
        } else {
            format!("{}:{}", self.target, self.region)
        }
    }
}

impl std::fmt::Display for RegionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full_name())
    }
}

/// Image creation request: the image as it must appear in the target region
/// (name, visibility, filtered properties with kernel/ramdisk ids resolved)
/// plus the master image the data comes from.
#[derive(Debug, Clone, Copy)]
pub struct UploadRequest<'a> {
    /// Target region.
    pub region: &'a RegionRef,
    /// Target config.
    pub target: &'a TargetConfig,
    /// The image to create (id ignored).
    pub image: &'a Image,
    /// The master image (id in the master region, raw record, checksum, size).
    pub master: &'a Image,
}

/// A region backend: lists, creates, updates and deletes images.
///
/// Implementations: the offline CSV backend ([`crate::csv_backend::CsvBackend`])
/// and the Glance backend in `bins/glancesync`.
#[async_trait]
pub trait RegionBackend: Send + Sync {
    /// Regions of a target (bare names), as the target's catalog lists them.
    async fn regions(&self, target: &TargetConfig) -> Result<Vec<String>>;

    /// The tenant (project) id the target's credential is scoped to.
    async fn tenant_id(&self, target: &TargetConfig) -> Result<String>;

    /// Every image visible in the region.
    async fn list_images(&self, region: &RegionRef, target: &TargetConfig) -> Result<Vec<Image>>;

    /// Create an image and upload its data from the master region; returns the new id.
    ///
    /// On failure nothing must be left behind in the region.
    async fn upload_image(&self, req: UploadRequest<'_>) -> Result<String>;

    /// Create the same master image in several regions (one request per
    /// region), one result per request in order. A failure in one region
    /// must not affect the others. The default uploads one region after the
    /// other; the Glance backend reads the master once and streams to all.
    async fn upload_images(&self, reqs: &[UploadRequest<'_>]) -> Vec<Result<String>> {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(self.upload_image(*r).await);
        }
        out
    }

    /// Whether an upload to `region` copies the data server-side (no byte
    /// through this process), so that several can run at once. The default
    /// (and every offline backend): no.
    async fn copies_server_side(&self, _region: &RegionRef, _target: &TargetConfig) -> bool {
        false
    }

    /// Upload several master images, each to its group of regions (each
    /// group as for [`RegionBackend::upload_images`]), one result per
    /// request in order. No group depends on another (kernels and ramdisks
    /// come in an earlier call than the images referring to them). The
    /// default uploads one group after the other; the Glance backend starts
    /// the server-side imports of every group at once.
    async fn upload_image_groups(
        &self,
        groups: &[Vec<UploadRequest<'_>>],
    ) -> Vec<Vec<Result<String>>> {
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            out.push(self.upload_images(g).await);
        }
        out
    }

    /// Update name, visibility and properties of `image` (by its id).
    async fn update_metadata(
        &self,
        region: &RegionRef,
        target: &TargetConfig,
        image: &Image,
    ) -> Result<()>;

    /// Delete an image by id.
    async fn delete_image(&self, region: &RegionRef, target: &TargetConfig, id: &str)
        -> Result<()>;

    /// Persist state after a region was synchronised (offline backends); no-op by default.
    async fn flush(&self, _region: &RegionRef) -> Result<()> {
        Ok(())
    }
}
