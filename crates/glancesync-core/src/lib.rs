//! GlanceSync engine: targets and regions, image selection, sync status and sync plans.
//!
//! Owns: the GlanceSync configuration format, the image model and backup CSV
//! format, status computation and the sync algorithm over a region backend.
//! Must not: parse command lines or set up logging (that is `bins/glancesync`).
