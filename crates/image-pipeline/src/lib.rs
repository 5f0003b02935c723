//! Create, test, publish and rotate VM images over a compute backend
//! (OpenStack or local QEMU) and SSH.
//!
//! Owns: the create/test/publish/rotate pipeline, its resource ledger and clean-up.
//! Must not: parse command lines; reach OpenStack other than through `openstack-client`.
