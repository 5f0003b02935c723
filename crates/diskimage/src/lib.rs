//! diskimage-builder compatible element assembly and image building.
//!
//! Owns: element discovery and dependency expansion, phase ordering and the
//! build of a root filesystem into a disk image.
//! Must not: upload images or talk to OpenStack.
