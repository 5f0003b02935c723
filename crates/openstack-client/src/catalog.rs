//! The Keystone v3 service catalog and endpoint selection.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::Interface;
use crate::error::{Error, Result};

/// One endpoint of a service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    /// Endpoint id.
    #[serde(default)]
    pub id: Option<String>,
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// Region id (`region_id`, falling back to the legacy `region`).
    #[serde(default)]
    pub region_id: Option<String>,
    /// Legacy region name.
    #[serde(default)]
    pub region: Option<String>,
    /// Base URL.
    pub url: String,
}

impl Endpoint {
    /// The region of this endpoint.
    pub fn region_name(&self) -> Option<&str> {
        self.region_id.as_deref().or(self.region.as_deref())
    }
}

/// One service in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Service {
    /// Service id.
    #[serde(default)]
    pub id: Option<String>,
    /// Service type (`image`, `compute`, `network`, `identity`, ...).
    #[serde(rename = "type")]
    pub service_type: String,
    /// Service name (`glance`, `nova`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// Its endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// The service catalog returned with a token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Catalog {
    /// Services, in Keystone's order.
    pub services: Vec<Service>,
}

impl Catalog {
    /// The endpoint URL of `service_type` in `region` (any region when
    /// `None`, provided the service has only one) for `interface`.
    ///
    /// The error lists every service, region and interface the catalog does
    /// offer, so a typo in a region name is obvious.
    pub fn endpoint(
        &self,
        service_type: &str,
        region: Option<&str>,
        interface: Interface,
    ) -> Result<Url> {
        let candidates: Vec<&Endpoint> = self
            .services
            .iter()
            .filter(|s| s.service_type == service_type)
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.interface.eq_ignore_ascii_case(interface.as_str()))
            .filter(|e| region.is_none_or(|r| e.region_name() == Some(r)))
            .collect();
        let distinct_regions: BTreeSet<Option<&str>> =
            candidates.iter().map(|e| e.region_name()).collect();
        let not_found = || Error::Catalog {
            service_type: service_type.to_owned(),
            region: region.map(str::to_owned),
            interface: interface.as_str().to_owned(),
            available: self.describe(),
        };
        match candidates.first() {
            None => Err(not_found()),
            Some(_) if region.is_none() && distinct_regions.len() > 1 => Err(Error::Catalog {
                service_type: service_type.to_owned(),
                region: None,
                interface: interface.as_str().to_owned(),
                available: format!("(no region chosen and several match) {}", self.describe()),
            }),
            Some(e) => Url::parse(&e.url).map_err(|err| Error::Catalog {
                service_type: service_type.to_owned(),
                region: region.map(str::to_owned),
                interface: interface.as_str().to_owned(),
                available: format!("endpoint URL '{}' is invalid: {err}", e.url),
            }),
        }
    }

    /// All regions that appear in the catalog.
    pub fn regions(&self) -> BTreeSet<String> {
        self.services
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter_map(|e| e.region_name().map(str::to_owned))
            .collect()
    }

    /// Regions that offer `service_type`.
    pub fn regions_for(&self, service_type: &str) -> BTreeSet<String> {
        self.services
            .iter()
            .filter(|s| s.service_type == service_type)
            .flat_map(|s| s.endpoints.iter())
            .filter_map(|e| e.region_name().map(str::to_owned))
            .collect()
    }

    /// A one-line summary: `identity (RegionOne: admin, internal, public), image (...)`.
    pub fn describe(&self) -> String {
        if self.services.is_empty() {
            return "nothing (empty catalog; is the token scoped?)".to_owned();
        }
        let mut by_type: BTreeMap<&str, BTreeMap<String, BTreeSet<&str>>> = BTreeMap::new();
        for s in &self.services {
            let regions = by_type.entry(&s.service_type).or_default();
            for e in &s.endpoints {
                regions
                    .entry(e.region_name().unwrap_or("<no region>").to_owned())
                    .or_default()
                    .insert(&e.interface);
            }
        }
        by_type
            .iter()
            .map(|(t, regions)| {
                let r: Vec<String> = regions
                    .iter()
                    .map(|(name, ifaces)| {
                        format!(
                            "{name}: {}",
                            ifaces.iter().copied().collect::<Vec<_>>().join(", ")
                        )
                    })
                    .collect();
                format!("{t} ({})", r.join("; "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        serde_json::from_value(serde_json::json!([
            {"type": "identity", "name": "keystone", "id": "1", "endpoints": [
                {"id": "a", "interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "http://127.0.0.1:5000/v3"},
                {"id": "b", "interface": "public", "region_id": "RegionTwo", "region": "RegionTwo", "url": "http://127.0.0.1:5000/v3"}
            ]},
            {"type": "image", "name": "glance", "id": "2", "endpoints": [
                {"id": "c", "interface": "public", "region_id": "RegionOne", "url": "http://127.0.0.1:9292"},
                {"id": "d", "interface": "internal", "region_id": "RegionOne", "url": "http://10.0.0.1:9292"},
                {"id": "e", "interface": "public", "region_id": "RegionTwo", "url": "http://127.0.0.1:9293"}
            ]}
        ]))
        .unwrap()
    }

    #[test]
    fn endpoint_by_type_region_interface() {
        let c = catalog();
        assert_eq!(
            c.endpoint("image", Some("RegionTwo"), Interface::Public)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9293/"
        );
        assert_eq!(
            c.endpoint("image", Some("RegionOne"), Interface::Internal)
                .unwrap()
                .as_str(),
            "http://10.0.0.1:9292/"
        );
        assert_eq!(
            c.regions().into_iter().collect::<Vec<_>>(),
            vec!["RegionOne".to_string(), "RegionTwo".to_string()]
        );
    }

    #[test]
    fn errors_list_what_is_offered() {
        let c = catalog();
        let err = c
            .endpoint("image", Some("RegionThree"), Interface::Public)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no public endpoint for service type 'image' in region 'RegionThree' in the catalog; the catalog offers: identity (RegionOne: public; RegionTwo: public), image (RegionOne: internal, public; RegionTwo: public)"
        );
        let err = c
            .endpoint("compute", None, Interface::Public)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'compute'"), "{err}");
        let err = c
            .endpoint("image", None, Interface::Public)
            .unwrap_err()
            .to_string();
        assert!(err.contains("several match"), "{err}");
        assert!(c.endpoint("image", None, Interface::Internal).is_ok());
    }
}
