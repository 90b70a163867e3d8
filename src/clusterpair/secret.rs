//! A credential field of a ClusterPair's kubeconfig: held in `secrecy`'s `SecretString` (never
//! formatted, zeroed when dropped), read leniently so that a wrongly typed credential never
//! reaches a serde error message. Only the held copy is zeroed: the document the ClusterPair was
//! read from (the request body, a file, the `serde_json::Value` a field passes through on its
//! way here) is not, and lives until its owner drops it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// A token, password, key or certificate body from a ClusterPair's kubeconfig. It is only
/// read by the checks that need it; formatting it prints a placeholder.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// The credential itself. Callers must not put it in any message.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the field is present but empty.
    pub fn is_empty(&self) -> bool {
        self.expose().trim().is_empty()
    }

    /// The credential in `field` when it is given: there and not empty.
    pub fn given(field: &Option<Secret>) -> Option<&Secret> {
        field.as_ref().filter(|s| !s.is_empty())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts any JSON value so that a wrongly typed credential never reaches a serde error
    /// message (which would quote it); anything but a string becomes an empty secret and is
    /// reported by the checks as missing or malformed.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(Secret(SecretString::from(match v {
            serde_json::Value::String(s) => s,
            _ => String::new(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_content() {
        let s: Secret = serde_json::from_value("hunter2-token".into()).unwrap();
        assert!(!format!("{s:?} {s} {s:#?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-token");
    }

    #[test]
    fn wrong_type_is_not_quoted_in_errors() {
        let s: Secret = serde_json::from_value(serde_json::json!({"k": "hunter2"})).unwrap();
        assert!(s.is_empty());
    }
}
