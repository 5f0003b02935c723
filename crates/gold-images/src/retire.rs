//! `retire NAME -i retired.yaml`: the active image tagged `[type, NAME]`
//! gets its `depricated` name and stamp and is deactivated.

use serde::Serialize;

use crate::cloud::Cloud;
use crate::error::{Error, Result};
use crate::imageset::ImageSet;
use crate::update::retire_image;

/// One image to retire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetireTarget {
    /// Image id.
    pub id: String,
    /// Current name.
    pub name: String,
}

/// The plan of a `retire` run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetirePlan {
    /// Tags the images carry (`[type, name]`).
    pub tags: Vec<String>,
    /// The name they get.
    pub new_name: String,
    /// Active images carrying the tags (normally one).
    pub images: Vec<RetireTarget>,
}

impl RetirePlan {
    /// One line per image, as a dry run prints them.
    pub fn lines(&self) -> Vec<String> {
        if self.images.is_empty() {
            return vec![format!(
                "no active image tagged [{}]: nothing to retire",
                self.tags.join(", ")
            )];
        }
        self.images
            .iter()
            .map(|i| {
                format!(
                    "retire image {} '{}': rename to '{}', stamp depricated, deactivate",
                    i.id, i.name, self.new_name
                )
            })
            .collect()
    }
}

/// Plan the retirement of `name` (which must be in `set`): reads only.
pub async fn plan_retire(cloud: &Cloud, set: &ImageSet, name: &str) -> Result<RetirePlan> {
    let Some(entry) = set.images.get(name) else {
        return Err(Error::Refused(format!(
            "Unable to retire {name}. Missing from config file {}",
            set.path.display()
        )));
    };
    let tags = vec![set.image_type.clone(), name.to_owned()];
    let images = cloud
        .images(&tags, openstack_client::glance::ImageStatus::Active, None)
        .await?
        .into_iter()
        .map(|i| RetireTarget {
            name: i.name.clone().unwrap_or_default(),
            id: i.id,
        })
        .collect();
    Ok(RetirePlan {
        tags,
        new_name: entry.depricated.clone(),
        images,
    })
}

/// Apply a retire plan; returns the names of the images retired.
pub async fn apply_retire(cloud: &Cloud, plan: &RetirePlan) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for target in &plan.images {
        retire_image(cloud, &target.id, &plan.new_name).await?;
        tracing::info!(id = %target.id, "retired");
        done.push(target.name.clone());
    }
    Ok(done)
}
