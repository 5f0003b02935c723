//! Glance records and the plan's metadata: which fields of a Glance image
//! are user properties, how a record becomes an [`Image`], and the one
//! patch that gives a target image the name, visibility and properties the
//! plan wants (used after an upload, a server-side import and by
//! `update_metadata`).

use openstack_client::glance::{ImagePatch, Visibility};

use super::{GlanceBackend, TRANSFER_MARKER};
use crate::image::{Image, RawImage};
use crate::pyvalue::{Properties, PyValue};

/// Fields of a Glance image that are not user properties.
const NON_USER_PROPERTIES: &[&str] = &[
    "self",
    "file",
    "schema",
    "stores",
    "locations",
    "direct_url",
];

/// Whether `k` is a user property (not a Glance field, not ours).
fn is_user_property(k: &str) -> bool {
    !NON_USER_PROPERTIES.contains(&k) && !k.starts_with("os_glance") && k != TRANSFER_MARKER
}

impl GlanceBackend {
    /// The plan's view of a Glance record of `region`.
    pub(super) fn to_image(region: &str, g: openstack_client::glance::Image) -> Image {
        let mut props = Properties::new();
        for (k, v) in &g.properties {
            if is_user_property(k) {
                props.insert(k.clone(), PyValue::from_json(v));
            }
        }
        Image {
            region: region.to_string(),
            name: g.name.clone().unwrap_or_default(),
            id: g.id.clone(),
            status: g.status.as_str().to_string(),
            size: g.size.unwrap_or(0),
            checksum: g.checksum.clone(),
            owner: g.owner.clone().unwrap_or_default(),
            is_public: g.visibility == Visibility::Public,
            user_properties: props,
            raw: Some(RawImage {
                disk_format: g.disk_format.clone(),
                container_format: g.container_format.clone(),
                protected: g.protected,
                min_ram: g.min_ram.unwrap_or(0),
                min_disk: g.min_disk.unwrap_or(0),
                os_hash_algo: g.os_hash_algo.clone(),
                os_hash_value: g.os_hash_value.clone(),
            }),
        }
    }

    /// The string Glance gets for property `key`, or `None` when it must
    /// not be sent (an unresolved `kernel_id`/`ramdisk_id`).
    pub(super) fn property_value(
        region: &str,
        image: &str,
        key: &str,
        v: &PyValue,
    ) -> Option<String> {
        let s = v.to_glance_string();
        if (key == "kernel_id" || key == "ramdisk_id") && s.starts_with("__") {
            tracing::warn!(
                "{region}: {key} of image {image} is unresolved ({s}); not sent to Glance"
            );
            return None;
        }
        Some(s)
    }

    /// The patch that gives `current` the name, visibility and user
    /// properties of `image` (and removes the transfer marker).
    pub(super) fn metadata_patch(
        full: &str,
        current: &openstack_client::glance::Image,
        image: &Image,
    ) -> ImagePatch {
        let mut patch = ImagePatch::for_image(current);
        if current.name.as_deref() != Some(image.name.as_str()) {
            patch = patch.name(image.name.clone());
        }
        let want_vis = if image.is_public {
            Visibility::Public
        } else {
            Visibility::Private
        };
        if (current.visibility == Visibility::Public) != image.is_public {
            patch = patch.visibility(want_vis);
        }
        for (k, v) in &current.properties {
            if is_user_property(k) && !image.user_properties.contains_key(k) && !v.is_null() {
                patch = patch.remove_property(k);
            }
        }
        for (k, v) in &image.user_properties {
            let Some(s) = Self::property_value(full, &image.name, k, v) else {
                continue;
            };
            if current.property(k) != Some(s.as_str()) {
                patch = patch.set_property(k, s);
            }
        }
        if current.properties.contains_key(TRANSFER_MARKER) {
            patch = patch.remove_property(TRANSFER_MARKER);
        }
        patch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glance_fields_that_are_not_user_properties() {
        let g: openstack_client::glance::Image = serde_json::from_value(serde_json::json!({
            "id": "i", "name": "n", "status": "active", "visibility": "public", "size": 5,
            "checksum": "c", "owner": "o", "disk_format": "raw", "container_format": "bare",
            "self": "/v2/images/i", "file": "/v2/images/i/file", "schema": "/v2/schemas/image",
            "stores": "file1", "os_glance_importing_to_stores": "", "glancesync_transfer": "x",
            "type": "base", "nid": 3
        }))
        .unwrap();
        let i = GlanceBackend::to_image("R", g);
        assert_eq!(
            i.user_properties.keys().collect::<Vec<_>>(),
            vec!["nid", "type"]
        );
        assert_eq!(i.user_properties["nid"], PyValue::Int(3));
        assert!(i.is_public);
        assert_eq!(i.raw.unwrap().disk_format.as_deref(), Some("raw"));
    }
}
