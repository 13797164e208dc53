//! A secret (an app secret today) whose `Debug` and `Display` never print it.
//!
//! Secrets sit inside structs that are logged with `{:?}` sooner or later; a
//! derived `Debug` on such a struct would print them. Reading the value takes
//! an explicit [`Secret::expose`], which is easy to find in review.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into().into_boxed_str())
    }

    /// The secret itself: for signing and verifying only, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes, for the weak-secret warning.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

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
    fn an_app_debug_carries_no_secret() {
        let app = crate::app::App::new("id-1", "key-1", "s3cr3t-value");
        let shown = format!("{app:?} {app:#?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("id-1"), "{shown}");
    }
}
