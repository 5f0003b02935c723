//! The workspace's one secret type: a string (password, token, secret URL)
//! that never shows up in `Debug` or `Display` output, so never in a log
//! line or an error message.
//!
//! Owns: [`Secret`] only. It has no dependency beyond `serde` so that crates
//! without an HTTP stack (glancesync-core without its `glance` feature) use
//! the same type as `openstack-client`, which re-exports it.
//! Must not: implement `Serialize`, or expose the value through any trait a
//! formatter or logger calls.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret string (password, token, application-credential secret).
///
/// Its `Debug` and `Display` output is always `***`; read the value with
/// [`Secret::expose`] only where it is sent over the wire. It deliberately
/// does not implement `Serialize`, so it cannot leak through a serialized
/// struct by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Only call this to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
        assert_eq!(s.expose(), "hunter2");
        assert!(!s.is_empty() && Secret::default().is_empty());
    }

    #[test]
    fn deserializes_from_a_plain_string() {
        use serde::de::value::{Error, StrDeserializer};
        let s = Secret::deserialize(StrDeserializer::<Error>::new("hunter2"));
        assert_eq!(s.map(|s| s.expose().to_string()), Ok("hunter2".to_string()));
    }
}
