//! `list`, `usage` and `purge`: images by status, visibility and tags, with
//! the number of Nova instances (of every project) booted from each.

use std::collections::BTreeMap;
use std::io::Write;

use openstack_client::glance::{Image, ImagePatch, ImageStatus, Visibility};
use serde::Serialize;
use serde_json::json;

use crate::cloud::{instances_of, Cloud};
use crate::error::{os, Result};
use crate::output::Printer;

/// Which images a command looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageQuery {
    /// `active` or `deactivated`.
    pub status: ImageStatus,
    /// Visibility (`-v`).
    pub visibility: Visibility,
    /// Tags (`-t`, `-n`).
    pub tags: Vec<String>,
}

/// Distros counted by `usage` (substrings of the image name).
pub const DISTROS: [&str; 6] = ["fedora", "centos", "ubuntu", "debian", "cirros", "windows"];

/// An image and the instances booted from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUsage {
    /// The image.
    pub image: Image,
    /// Instance ids.
    pub instances: Vec<String>,
}

impl ImageUsage {
    /// Number of instances.
    pub fn count(&self) -> usize {
        self.instances.len()
    }
}

/// The images of `query`, oldest first, each with its instances.
pub async fn image_usage(cloud: &Cloud, query: &ImageQuery) -> Result<Vec<ImageUsage>> {
    let images = cloud
        .images(
            &query.tags,
            query.status.clone(),
            Some(query.visibility.clone()),
        )
        .await?;
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let nova = cloud.compute().await?;
    let mut out = Vec::new();
    for image in images {
        let instances = instances_of(&nova, &image.id).await?;
        out.push(ImageUsage { image, instances });
    }
    Ok(out)
}

fn tags_text(image: &Image) -> String {
    format!("[{}]", image.tags.join(", "))
}

/// `list`: id, created_at and tags per image, then the count.
pub async fn list<W: Write>(
    cloud: &Cloud,
    query: &ImageQuery,
    p: &mut Printer<W>,
) -> Result<usize> {
    let images = cloud
        .images(
            &query.tags,
            query.status.clone(),
            Some(query.visibility.clone()),
        )
        .await?;
    p.header("Image list (id, created_at, tags)")?;
    for i in &images {
        p.record(
            &[
                ("1", json!(i.id)),
                ("2", json!(i.created_at.clone().unwrap_or_default())),
                ("3", json!(tags_text(i))),
            ],
            true,
        )?;
    }
    p.header("Image count")?;
    p.record(&[("count", json!(images.len()))], false)?;
    Ok(images.len())
}

/// `usage`: name, id and count per image (`detailed`: instances,
/// created_at and tags too), then the per-distro and per-tag totals and the
/// image count.
pub async fn usage<W: Write>(
    cloud: &Cloud,
    query: &ImageQuery,
    detailed: bool,
    p: &mut Printer<W>,
) -> Result<Vec<ImageUsage>> {
    let usage = image_usage(cloud, query).await?;
    p.header("Images with usage count")?;
    let mut distros: BTreeMap<&str, usize> = DISTROS.iter().map(|d| (*d, 0)).collect();
    let mut tag_count: BTreeMap<String, usize> = BTreeMap::new();
    for u in &usage {
        let name = u.image.name.clone().unwrap_or_default();
        let mut fields = vec![
            ("name", json!(name)),
            ("id", json!(u.image.id)),
            ("count", json!(u.count())),
        ];
        if detailed {
            fields.push(("instances", json!(u.instances)));
            fields.push(("created_at", json!(u.image.created_at)));
            fields.push(("tags", json!(u.image.tags)));
        }
        p.record(&fields, !detailed)?;
        let lower = name.to_lowercase();
        if let Some(d) = DISTROS.iter().find(|d| lower.contains(*d)) {
            *distros.entry(d).or_default() += u.count();
            for t in &u.image.tags {
                *tag_count.entry(t.clone()).or_default() += u.count();
            }
        }
    }
    p.header("Used distros")?;
    let fields: Vec<(&str, serde_json::Value)> =
        distros.iter().map(|(k, v)| (*k, json!(v))).collect();
    p.record(&fields, false)?;
    p.header("Used image tags")?;
    let fields: Vec<(&str, serde_json::Value)> = tag_count
        .iter()
        .map(|(k, v)| (k.as_str(), json!(v)))
        .collect();
    p.record(&fields, false)?;
    p.header("Image count")?;
    p.record(&[("count", json!(usage.len()))], false)?;
    Ok(usage)
}

/// One image `purge` deletes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PurgeTarget {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Protected: unprotected first.
    pub protected: bool,
}

/// The plan of a `purge` run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PurgePlan {
    /// Unused deactivated images to delete, oldest first, at most `limit`.
    pub delete: Vec<PurgeTarget>,
    /// Images kept because instances use them: `(id, name, count)`.
    pub in_use: Vec<(String, String, usize)>,
    /// Unused images left for a later run by `--limit`.
    pub over_limit: usize,
}

impl PurgePlan {
    /// One line per decision, as a dry run prints them.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .delete
            .iter()
            .map(|t| {
                format!(
                    "delete image {} '{}' {} [{}]{}",
                    t.id,
                    t.name,
                    t.created_at.as_deref().unwrap_or(""),
                    t.tags.join(", "),
                    if t.protected {
                        " (unprotect first)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        for (id, name, n) in &self.in_use {
            out.push(format!(
                "keep image {id} '{name}': in use by {n} instance(s)"
            ));
        }
        if self.over_limit > 0 {
            out.push(format!(
                "{} more unused image(s) left by --limit",
                self.over_limit
            ));
        }
        out
    }
}

/// Plan `purge`: deactivated images of `query` with no instance, oldest
/// first, at most `limit` (reads only).
pub async fn plan_purge(
    cloud: &Cloud,
    query: &ImageQuery,
    limit: Option<usize>,
) -> Result<PurgePlan> {
    let mut q = query.clone();
    q.status = ImageStatus::Deactivated;
    let usage = image_usage(cloud, &q).await?;
    let mut plan = PurgePlan {
        delete: Vec::new(),
        in_use: Vec::new(),
        over_limit: 0,
    };
    for u in usage {
        let name = u.image.name.clone().unwrap_or_default();
        if u.count() > 0 {
            tracing::debug!(image = %name, count = u.count(), "no purge: image in use");
            plan.in_use.push((u.image.id.clone(), name, u.count()));
            continue;
        }
        if limit.is_some_and(|l| plan.delete.len() >= l) {
            plan.over_limit += 1;
            continue;
        }
        plan.delete.push(PurgeTarget {
            id: u.image.id.clone(),
            name,
            created_at: u.image.created_at.clone(),
            tags: u.image.tags.clone(),
            protected: u.image.protected,
        });
    }
    Ok(plan)
}

/// Apply a purge plan, printing each image deleted and the count.
pub async fn apply_purge<W: Write>(
    cloud: &Cloud,
    plan: &PurgePlan,
    p: &mut Printer<W>,
) -> Result<usize> {
    p.header("Images deleted")?;
    let mut count = 0;
    for t in &plan.delete {
        if t.protected {
            let image = cloud
                .glance
                .get_image(&t.id)
                .await
                .map_err(os(format!("reading image {}", t.id)))?;
            cloud
                .glance
                .update_image(&t.id, &ImagePatch::for_image(&image).protected(false))
                .await
                .map_err(os(format!("unprotecting image {}", t.id)))?;
        }
        cloud
            .glance
            .delete_image(&t.id)
            .await
            .map_err(os(format!("deleting image {} '{}'", t.id, t.name)))?;
        p.record(
            &[
                ("1", json!(t.name)),
                ("2", json!(t.created_at.clone().unwrap_or_default())),
                ("3", json!(format!("[{}]", t.tags.join(", ")))),
            ],
            true,
        )?;
        count += 1;
    }
    p.header("Image count")?;
    p.record(&[("count", json!(count))], false)?;
    Ok(count)
}
