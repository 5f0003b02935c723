//! Async OpenStack client for the image tools: Keystone v3 authentication and
//! service catalog, Glance v2 images, and the Nova and Neutron calls the image
//! pipeline needs.
//!
//! Owns: configuration loading (`clouds.yaml`, `OS_*`), tokens, endpoint
//! selection, HTTP behaviour (timeouts, retries, tracing) and typed resources.
//! Must not: know about GlanceSync, image pipelines or any tool's config files.
