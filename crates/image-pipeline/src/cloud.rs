//! Connecting to the cloud and region a command names.

use openstack_client::glance::GlanceClient;
use openstack_client::{CloudConfig, Session};

use crate::error::{Error, Result};
use crate::publish::caller_project_id;

/// An authenticated session on one cloud, its Glance client for the chosen
/// region, and that region.
#[derive(Debug, Clone)]
pub struct Cloud {
    /// The session (token, catalog).
    pub session: Session,
    /// Glance of `region`.
    pub glance: GlanceClient,
    /// The region: the one asked for, else the cloud's default (`None`: the
    /// catalog's only one).
    pub region: Option<String>,
}

impl Cloud {
    /// Load `os_cloud` from clouds.yaml (`None`: `$OS_CLOUD`, else the plain
    /// `OS_*` variables), authenticate and find Glance in `os_region_name`
    /// (`None`: `$OS_REGION_NAME`, else the cloud's first region).
    #[tracing::instrument]
    pub async fn connect(os_cloud: Option<&str>, os_region_name: Option<&str>) -> Result<Cloud> {
        let config = CloudConfig::load(os_cloud, os_region_name).map_err(cloud_err)?;
        let region = config.default_region().map(str::to_owned);
        let session = Session::connect(config).await.map_err(cloud_err)?;
        let glance = session.image(region.as_deref()).await.map_err(cloud_err)?;
        Ok(Cloud {
            session,
            glance,
            region,
        })
    }

    /// The project the token is scoped to: whose images are "the caller's own".
    pub async fn caller_project(&self) -> Result<String> {
        caller_project_id(&self.session).await
    }
}

fn cloud_err(source: openstack_client::Error) -> Error {
    Error::Cloud {
        source: Box::new(source),
    }
}
