//! A secret (an app secret today) whose `Debug` and `Display` never print it.
//!
//! Secrets sit inside structs that are logged with `{:?}` sooner or later; a
//! derived `Debug` on such a struct would print them. Reading the value takes
//! an explicit [`Secret::expose`], which is easy to find in review.

use crate::auth::SigningKey;
use std::fmt;
use std::sync::OnceLock;

#[derive(Clone)]
pub struct Secret {
    value: Box<str>,
    /// The HMAC key made from `value`, on first use: every signature checked
    /// with this secret starts from it instead of hashing the key again.
    key: OnceLock<SigningKey>,
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret {
            value: value.into().into_boxed_str(),
            key: OnceLock::new(),
        }
    }

    /// The secret itself: for signing and verifying only, never for logs.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// HMAC-SHA256 keyed with this secret, made once.
    pub fn signing_key(&self) -> &SigningKey {
        self.key.get_or_init(|| SigningKey::new(&self.value))
    }

    /// Length in bytes, for the weak-secret warning.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

/// Two secrets are equal when their values are (the key is derived from it).
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.value == other.value
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2-topsecret");
        assert_eq!(s.expose(), "hunter2-topsecret");
        assert_eq!(s.len(), 17);
        for shown in [
            format!("{s:?}"),
            format!("{s}"),
            format!("{s:#?}"),
            format!("{:>40}", s),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }

    #[test]
    fn the_signing_key_is_the_secrets_and_survives_a_clone() {
        let s = Secret::new("s3cret");
        let sig = crate::auth::sign("s3cret", &["a", "b"]);
        assert!(s.signing_key().verify(&["ab"], &sig));
        let copy = s.clone();
        assert!(copy.signing_key().verify(&["a", "b"], &sig));
        assert!(!Secret::new("other").signing_key().verify(&["ab"], &sig));
        assert_eq!(s, copy);
        assert_ne!(s, Secret::new("other"));
    }

    #[test]
    fn an_app_debug_carries_no_secret() {
        let app = crate::app::App::new("id-1", "key-1", "s3cr3t-value");
        let shown = format!("{app:?} {app:#?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("id-1"), "{shown}");
    }
}
