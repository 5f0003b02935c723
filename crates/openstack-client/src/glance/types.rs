//! Glance v2 resources and request types.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

open_enum! {
    /// Glance image status.
    ImageStatus {
        /// Created, no data yet.
        Queued => "queued",
        /// Data is being uploaded.
        Saving => "saving",
        /// Data staged (interoperable import).
        Uploading => "uploading",
        /// Being imported.
        Importing => "importing",
        /// Usable.
        Active => "active",
        /// Upload failed.
        Killed => "killed",
        /// Deleted.
        Deleted => "deleted",
        /// Delayed delete pending.
        PendingDelete => "pending_delete",
        /// Deactivated by an admin.
        Deactivated => "deactivated",
    }
}

open_enum! {
    /// Image visibility.
    Visibility {
        /// Everyone.
        Public => "public",
        /// Everyone, but not in default lists (Glance 2.5+).
        Community => "community",
        /// Owner and members.
        Shared => "shared",
        /// Owner only.
        Private => "private",
    }
}

open_enum! {
    /// Image member status.
    MemberStatus {
        /// Offered, not answered.
        Pending => "pending",
        /// Accepted by the consumer.
        Accepted => "accepted",
        /// Rejected by the consumer.
        Rejected => "rejected",
    }
}

impl Default for ImageStatus {
    fn default() -> Self {
        ImageStatus::Unknown(String::new())
    }
}

#[allow(clippy::derivable_impls)] // the enum comes from a macro without `Default`
impl Default for Visibility {
    fn default() -> Self {
        Visibility::Shared
    }
}

/// A Glance v2 image: typed common fields plus every other property.
///
/// Unknown fields land in [`Image::properties`], so serializing an `Image`
/// gives back what Glance sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Image {
    /// Image id (UUID).
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: ImageStatus,
    /// Visibility.
    #[serde(default)]
    pub visibility: Visibility,
    /// Deletion protection.
    #[serde(default)]
    pub protected: bool,
    /// Hidden from default lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hidden: Option<bool>,
    /// Owner project id.
    #[serde(default)]
    pub owner: Option<String>,
    /// Disk format (`raw`, `qcow2`, ...).
    #[serde(default)]
    pub disk_format: Option<String>,
    /// Container format (`bare`, ...).
    #[serde(default)]
    pub container_format: Option<String>,
    /// Data size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Virtual disk size in bytes.
    #[serde(default)]
    pub virtual_size: Option<u64>,
    /// Minimum disk in GiB.
    #[serde(default)]
    pub min_disk: Option<u64>,
    /// Minimum RAM in MiB.
    #[serde(default)]
    pub min_ram: Option<u64>,
    /// Legacy md5 of the data.
    #[serde(default)]
    pub checksum: Option<String>,
    /// Algorithm of `os_hash_value` (`sha512` by default).
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    /// Secure hash of the data.
    #[serde(default)]
    pub os_hash_value: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Creation time (ISO 8601 as sent by Glance).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Every other field: custom properties (`os_distro`, `hw_*`, ...) and
    /// fields this crate does not model (`self`, `file`, `schema`, `stores`, ...).
    #[serde(flatten)]
    pub properties: BTreeMap<String, Value>,
}

impl Image {
    /// A property as a string (custom properties are strings in Glance).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }

    /// Stores holding the data (multi-store deployments).
    pub fn stores(&self) -> Vec<String> {
        self.property("stores")
            .map(|s| {
                s.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Body of `POST /v2/images`.
///
/// ```
/// use openstack_client::glance::{CreateImage, Visibility};
/// let req = CreateImage::new("debian-12")
///     .disk_format("qcow2")
///     .container_format("bare")
///     .visibility(Visibility::Community)
///     .tag("debian")
///     .property("os_distro", "debian");
/// assert_eq!(req.name.as_deref(), Some("debian-12"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CreateImage {
    /// Client-chosen id (a UUID), useful for idempotent creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Disk format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    /// Container format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_format: Option<String>,
    /// Minimum disk (GiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_disk: Option<u64>,
    /// Minimum RAM (MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ram: Option<u64>,
    /// Deletion protection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// Visibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// Hidden from default lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_hidden: Option<bool>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Custom string properties.
    #[serde(flatten)]
    pub properties: BTreeMap<String, String>,
}

impl CreateImage {
    /// A request for an image called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        CreateImage {
            name: Some(name.into()),
            ..Default::default()
        }
    }
    /// Set the id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// Set the disk format.
    pub fn disk_format(mut self, f: impl Into<String>) -> Self {
        self.disk_format = Some(f.into());
        self
    }
    /// Set the container format.
    pub fn container_format(mut self, f: impl Into<String>) -> Self {
        self.container_format = Some(f.into());
        self
    }
    /// Set min_disk (GiB).
    pub fn min_disk(mut self, gib: u64) -> Self {
        self.min_disk = Some(gib);
        self
    }
    /// Set min_ram (MiB).
    pub fn min_ram(mut self, mib: u64) -> Self {
        self.min_ram = Some(mib);
        self
    }
    /// Set protection.
    pub fn protected(mut self, yes: bool) -> Self {
        self.protected = Some(yes);
        self
    }
    /// Set visibility.
    pub fn visibility(mut self, v: Visibility) -> Self {
        self.visibility = Some(v);
        self
    }
    /// Set os_hidden.
    pub fn hidden(mut self, yes: bool) -> Self {
        self.os_hidden = Some(yes);
        self
    }
    /// Add a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    /// Add a custom string property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
}

/// Page size asked for when [`ImageFilter::limit`] is unset.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// Filters for listing images. Unset fields are not sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Owner project id.
    pub owner: Option<String>,
    /// Visibility (`all` is not representable here: use `Unknown("all")`).
    pub visibility: Option<Visibility>,
    /// Status.
    pub status: Option<ImageStatus>,
    /// Images carrying all these tags.
    pub tags: Vec<String>,
    /// Member status (for shared images).
    pub member_status: Option<MemberStatus>,
    /// Include hidden images (`os_hidden=true` lists only hidden ones).
    pub os_hidden: Option<bool>,
    /// Page size (default [`DEFAULT_PAGE_SIZE`]; the server caps it;
    /// pagination is transparent anyway).
    pub limit: Option<u32>,
    /// Sort, e.g. `name:asc,created_at:desc`.
    pub sort: Option<String>,
    /// Extra `key=value` filters (custom properties, `disk_format`, ...).
    pub extra: BTreeMap<String, String>,
}

impl ImageFilter {
    /// Filter by name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Filter by owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }
    /// Filter by visibility.
    pub fn visibility(mut self, v: Visibility) -> Self {
        self.visibility = Some(v);
        self
    }
    /// Filter by status.
    pub fn status(mut self, s: ImageStatus) -> Self {
        self.status = Some(s);
        self
    }
    /// Require a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    /// Filter by member status.
    pub fn member_status(mut self, s: MemberStatus) -> Self {
        self.member_status = Some(s);
        self
    }
    /// Page size.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }
    /// Any other `key=value` filter.
    pub fn filter(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    pub(crate) fn query_pairs(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                q.push((k.to_owned(), v));
            }
        };
        push("name", self.name.clone());
        push("owner", self.owner.clone());
        push(
            "visibility",
            self.visibility.as_ref().map(|v| v.to_string()),
        );
        push("status", self.status.as_ref().map(|v| v.to_string()));
        push(
            "member_status",
            self.member_status.as_ref().map(|v| v.to_string()),
        );
        push("os_hidden", self.os_hidden.map(|v| v.to_string()));
        // Glance's own default page is 25 images: ask for bigger pages (the
        // server caps them at its api_limit_max).
        push(
            "limit",
            Some(self.limit.unwrap_or(DEFAULT_PAGE_SIZE).to_string()),
        );
        push("sort", self.sort.clone());
        for t in &self.tags {
            q.push(("tag".into(), t.clone()));
        }
        for (k, v) in &self.extra {
            q.push((k.clone(), v.clone()));
        }
        q
    }
}

/// One JSON-patch operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    /// Add a member (fails in Glance if a property already exists).
    Add {
        /// JSON pointer.
        path: String,
        /// Value.
        value: Value,
    },
    /// Replace a member (fails in Glance if a property is absent).
    Replace {
        /// JSON pointer.
        path: String,
        /// Value.
        value: Value,
    },
    /// Remove a member.
    Remove {
        /// JSON pointer.
        path: String,
    },
}

/// A typed builder for `PATCH /v2/images/{id}`
/// (`application/openstack-images-v2.1-json-patch`).
///
/// Glance rejects `add` of an existing property and `replace` of a missing
/// one, so start from [`ImagePatch::for_image`] when setting custom
/// properties: it picks the right operation from the image's current state.
///
/// ```
/// use openstack_client::glance::{Image, ImagePatch, Visibility};
/// let image = Image { id: "x".into(), ..Default::default() };
/// let patch = ImagePatch::for_image(&image)
///     .name("new name")
///     .visibility(Visibility::Public)
///     .set_property("os_distro", "debian")
///     .remove_property("absent");
/// assert_eq!(patch.ops().len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImagePatch {
    ops: Vec<PatchOp>,
    existing: Option<std::collections::BTreeSet<String>>,
}

/// Escape a member name for a JSON pointer (RFC 6901).
pub(crate) fn pointer(key: &str) -> String {
    format!("/{}", key.replace('~', "~0").replace('/', "~1"))
}

impl ImagePatch {
    /// An empty patch that does not know the image's current properties
    /// (`set_property` then always uses `add`).
    pub fn new() -> Self {
        ImagePatch::default()
    }

    /// An empty patch that knows which properties `image` already has.
    pub fn for_image(image: &Image) -> Self {
        let mut existing: std::collections::BTreeSet<String> =
            image.properties.keys().cloned().collect();
        for k in [
            "name",
            "min_disk",
            "min_ram",
            "disk_format",
            "container_format",
            "visibility",
            "protected",
            "tags",
        ] {
            existing.insert(k.to_owned());
        }
        if image.os_hidden.is_some() {
            existing.insert("os_hidden".into());
        }
        ImagePatch {
            ops: Vec::new(),
            existing: Some(existing),
        }
    }

    /// The operations so far.
    pub fn ops(&self) -> &[PatchOp] {
        &self.ops
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Raw `add`.
    pub fn add(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.ops.push(PatchOp::Add {
            path: pointer(key),
            value: value.into(),
        });
        self
    }

    /// Raw `replace`.
    pub fn replace(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.ops.push(PatchOp::Replace {
            path: pointer(key),
            value: value.into(),
        });
        self
    }

    /// Raw `remove`.
    pub fn remove(mut self, key: &str) -> Self {
        self.ops.push(PatchOp::Remove { path: pointer(key) });
        self
    }

    fn set(self, key: &str, value: Value) -> Self {
        let exists = self.existing.as_ref().map(|e| e.contains(key));
        match exists {
            Some(true) => self.replace(key, value),
            _ => self.add_tracked(key, value),
        }
    }

    fn add_tracked(mut self, key: &str, value: Value) -> Self {
        if let Some(e) = self.existing.as_mut() {
            e.insert(key.to_owned());
        }
        self.add(key, value)
    }

    /// Set the name.
    pub fn name(self, name: impl Into<String>) -> Self {
        self.set("name", Value::String(name.into()))
    }
    /// Set visibility.
    pub fn visibility(self, v: Visibility) -> Self {
        self.set("visibility", Value::String(v.to_string()))
    }
    /// Set protection.
    pub fn protected(self, yes: bool) -> Self {
        self.set("protected", Value::Bool(yes))
    }
    /// Set os_hidden.
    pub fn hidden(self, yes: bool) -> Self {
        self.set("os_hidden", Value::Bool(yes))
    }
    /// Set min_disk (GiB).
    pub fn min_disk(self, gib: u64) -> Self {
        self.set("min_disk", Value::from(gib))
    }
    /// Set min_ram (MiB).
    pub fn min_ram(self, mib: u64) -> Self {
        self.set("min_ram", Value::from(mib))
    }
    /// Replace the whole tag list.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(self, tags: I) -> Self {
        let list: Vec<Value> = tags.into_iter().map(|t| Value::String(t.into())).collect();
        self.set("tags", Value::Array(list))
    }
    /// Set a custom string property (add or replace as appropriate).
    pub fn set_property(self, key: &str, value: impl Into<String>) -> Self {
        self.set(key, Value::String(value.into()))
    }
    /// Remove a custom property (skipped when the image is known not to have it).
    pub fn remove_property(mut self, key: &str) -> Self {
        match self.existing.as_mut() {
            Some(e) if !e.contains(key) => self,
            Some(e) => {
                e.remove(key);
                self.remove(key)
            }
            None => self.remove(key),
        }
    }
}

/// An image member (a project the image is shared with).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Project id of the member.
    pub member_id: String,
    /// Image id.
    pub image_id: String,
    /// Acceptance status.
    pub status: MemberStatus,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Other fields (`schema`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A Glance store (multi-store deployments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// Store id.
    pub id: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether this is the default store (Glance sends `"true"` as a string).
    #[serde(default, deserialize_with = "bool_or_string")]
    pub default: bool,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An interoperable-import method.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportMethod {
    /// Import data staged with `stage()`.
    GlanceDirect,
    /// Glance downloads the data from a URL.
    WebDownload {
        /// Source URL.
        uri: String,
    },
    /// Copy an active image's data to more stores.
    CopyImage,
    /// Pull from another region's Glance behind the same Keystone.
    GlanceDownload {
        /// Image id in the remote region.
        image_id: String,
        /// Remote region.
        region: String,
        /// Remote interface (`public` by default).
        service_interface: Option<String>,
    },
}

impl ImportMethod {
    /// The API name of the method.
    pub fn name(&self) -> &'static str {
        match self {
            ImportMethod::GlanceDirect => "glance-direct",
            ImportMethod::WebDownload { .. } => "web-download",
            ImportMethod::CopyImage => "copy-image",
            ImportMethod::GlanceDownload { .. } => "glance-download",
        }
    }
}

/// Store selection for an import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOptions {
    /// Target stores.
    pub stores: Vec<String>,
    /// Import into every store.
    pub all_stores: bool,
    /// With several stores: fail the import if any store fails (Glance's
    /// default is `true`). `None` leaves it to Glance.
    pub all_stores_must_succeed: Option<bool>,
}

fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) => Ok(s.eq_ignore_ascii_case("true")),
        Value::Null => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

pub(crate) fn import_body(method: &ImportMethod, opts: &ImportOptions) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), method.name().into());
    match method {
        ImportMethod::WebDownload { uri } => {
            m.insert("uri".into(), uri.clone().into());
        }
        ImportMethod::GlanceDownload {
            image_id,
            region,
            service_interface,
        } => {
            m.insert("glance_image_id".into(), image_id.clone().into());
            m.insert("glance_region".into(), region.clone().into());
            if let Some(i) = service_interface {
                m.insert("glance_service_interface".into(), i.clone().into());
            }
        }
        ImportMethod::GlanceDirect | ImportMethod::CopyImage => {}
    }
    let mut body = serde_json::Map::new();
    body.insert("method".into(), Value::Object(m));
    if !opts.stores.is_empty() {
        body.insert("stores".into(), opts.stores.clone().into());
    }
    if opts.all_stores {
        body.insert("all_stores".into(), true.into());
    }
    if let Some(b) = opts.all_stores_must_succeed {
        body.insert("all_stores_must_succeed".into(), b.into());
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_round_trip() {
        let raw = serde_json::json!({
            "id": "1", "name": "x", "status": "frobnicating", "visibility": "galactic",
            "protected": false, "tags": ["a"], "os_distro": "debian", "hw_disk_bus": "scsi",
            "self": "/v2/images/1", "size": 5, "nested": {"k": [1, 2]}
        });
        let img: Image = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(img.status, ImageStatus::Unknown("frobnicating".into()));
        assert_eq!(img.visibility, Visibility::Unknown("galactic".into()));
        assert_eq!(img.property("os_distro"), Some("debian"));
        let back = serde_json::to_value(&img).unwrap();
        for (k, v) in raw.as_object().unwrap() {
            assert_eq!(back.get(k), Some(v), "field {k}");
        }
        let img: Image = serde_json::from_value(
            serde_json::json!({"id": "2", "status": "active", "visibility": "community"}),
        )
        .unwrap();
        assert_eq!(img.status, ImageStatus::Active);
        assert_eq!(img.visibility, Visibility::Community);
    }

    #[test]
    fn create_body() {
        let req = CreateImage::new("n")
            .id("0b6f3c3e-0000-4000-8000-000000000001")
            .disk_format("raw")
            .container_format("bare")
            .visibility(Visibility::Community)
            .protected(false)
            .min_disk(1)
            .tag("t")
            .property("os_distro", "debian");
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"id": "0b6f3c3e-0000-4000-8000-000000000001", "name": "n", "disk_format": "raw",
                "container_format": "bare", "visibility": "community", "protected": false, "min_disk": 1,
                "tags": ["t"], "os_distro": "debian"})
        );
    }

    #[test]
    fn patch_chooses_add_or_replace() {
        let img: Image = serde_json::from_value(
            serde_json::json!({"id": "1", "status": "active", "old": "v", "a/b": "c"}),
        )
        .unwrap();
        let p = ImagePatch::for_image(&img)
            .set_property("old", "w")
            .set_property("new", "x")
            .set_property("new", "y")
            .remove_property("missing")
            .remove_property("a/b")
            .name("n");
        assert_eq!(
            serde_json::to_value(p.ops()).unwrap(),
            serde_json::json!([
                {"op": "replace", "path": "/old", "value": "w"},
                {"op": "add", "path": "/new", "value": "x"},
                {"op": "replace", "path": "/new", "value": "y"},
                {"op": "remove", "path": "/a~1b"},
                {"op": "replace", "path": "/name", "value": "n"}
            ])
        );
    }

    #[test]
    fn import_bodies() {
        let copy = import_body(
            &ImportMethod::CopyImage,
            &ImportOptions {
                stores: vec!["s1".into()],
                all_stores: false,
                all_stores_must_succeed: Some(false),
            },
        );
        assert_eq!(
            copy,
            serde_json::json!({"method": {"name": "copy-image"}, "stores": ["s1"], "all_stores_must_succeed": false})
        );
        let web = import_body(
            &ImportMethod::WebDownload {
                uri: "http://127.0.0.1/x".into(),
            },
            &ImportOptions::default(),
        );
        assert_eq!(
            web,
            serde_json::json!({"method": {"name": "web-download", "uri": "http://127.0.0.1/x"}})
        );
    }
}
