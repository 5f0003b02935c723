//! The bench of the tests that run something on the OpenStack compute
//! backend end to end: the stateful fake Nova + Neutron ([`crate::nova_mock`])
//! with floating IPs at `127.0.0.1`, a private sshd ([`crate::sshd`]) that
//! plays its servers (the fake's keypairs copied into its
//! `authorized_keys`), a session on the real local Keystone and Glance with
//! the fake's compute and network endpoints, and a private active source
//! image in Glance, all under the cloud lock.
//!
//! The compute backend itself is built by each test (its options differ;
//! this crate does not depend on the crates it tests).

use std::path::Path;

use openstack_client::glance::{CreateImage, GlanceClient, Visibility};
use openstack_client::Session;

use crate::nova_mock::Fake;
use crate::sshd::Sshd;
use crate::{blank_qcow2, cloud_lock, unique, CloudLock, ImageCleanup};

/// The fake cloud and its sshd, with a source image; see the module
/// comment. Fields drop in declaration order: the Glance clean-up runs
/// before the lock is released.
pub struct FakeCloud {
    /// Deletes the source image and every image tracked, on drop.
    pub images: ImageCleanup,
    /// The fake Nova + Neutron.
    pub fake: Fake,
    /// The sshd the fake's floating IPs lead to.
    pub sshd: Sshd,
    /// Real Keystone and Glance, the fake's Nova and Neutron.
    pub session: Session,
    /// The real Glance of [`FakeCloud::session`].
    pub glance: GlanceClient,
    /// Name of the private active source image.
    pub source: String,
    keys: tokio::task::JoinHandle<()>,
    _lock: CloudLock,
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        self.keys.abort();
    }
}

impl FakeCloud {
    /// Take the cloud lock, start the fake and `sshd` (prepared, not yet
    /// started), and create the source image, named `unique(source_prefix)`.
    ///
    /// # Panics
    /// When the local cloud, sshd or Glance fails.
    pub async fn start(mut sshd: Sshd, source_prefix: &str) -> FakeCloud {
        let lock = cloud_lock().await;
        let fake = Fake::start().await;
        fake.state.lock().unwrap().fip_address = Some("127.0.0.1".into());
        sshd.start();
        let keys = fake.authorize_keypairs(sshd.path("authorized_keys"));
        let session = fake.session().await;
        let glance = session.image(None).await.unwrap();
        let mut images = ImageCleanup::new(&glance);
        let source = unique(source_prefix);
        images
            .create_active(&source, Visibility::Private, &[])
            .await;
        FakeCloud {
            images,
            fake,
            sshd,
            session,
            glance,
            source,
            keys,
            _lock: lock,
        }
    }

    /// A real Glance image, `unique(prefix)`, with 16 MiB qcow2 data (made
    /// in `dir`) and the properties `props`, deleted on drop, that the
    /// fake's `createImage` answers with (the Nova snapshot); returns its id.
    ///
    /// # Panics
    /// When qemu-img or Glance fails.
    pub async fn snapshot_image(
        &mut self,
        dir: &Path,
        prefix: &str,
        props: &[(&str, &str)],
    ) -> String {
        let file = dir.join("snap.qcow2");
        blank_qcow2(&file, "16M");
        let mut req = CreateImage::new(unique(prefix))
            .disk_format("qcow2")
            .container_format("bare");
        for (k, v) in props {
            req = req.property(*k, *v);
        }
        let image = self.glance.create_image(&req).await.unwrap();
        self.images.track(image.id.clone());
        self.glance.upload_file(&image.id, &file).await.unwrap();
        self.fake.state.lock().unwrap().snapshot_image_id = image.id.clone();
        image.id
    }

    /// Whether Glance has the image `id`.
    ///
    /// # Panics
    /// When Glance answers anything but the image or 404.
    pub async fn image_exists(&self, id: &str) -> bool {
        match self.glance.get_image(id).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => panic!("reading image {id}: {e}"),
        }
    }
}
