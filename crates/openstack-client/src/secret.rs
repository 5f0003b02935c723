//! A string that never shows up in `Debug` output or logs: the workspace's
//! one [`Secret`] type (crate `secret`), re-exported here so that users of
//! this crate need not name another crate.

pub use secret::Secret;
