//! Origin patterns: an app's `allowed_origins` and the HTTP API's
//! `CORS_ORIGINS`, parsed once when the configuration is read.
//!
//! One type is both the validation and the matcher, so a pattern that passed
//! start-up is exactly the pattern the origin check runs, and the check does
//! no parsing (or lowercasing) per connection. Forms, matched
//! case-insensitively against the `Origin` header:
//! - `*` or `any`: everything, including a missing header;
//! - `https://app.example.com`: exactly that scheme, host and port;
//! - `app.example.com`, `localhost:3000`: that host[:port] over any scheme;
//! - `*.example.com`: the domain or any subdomain, any scheme;
//! - `https://*.example.com`: any subdomain (not the apex) over https only.
//!
//! A missing `Origin` is treated as the empty string, which only `*` matches:
//! a browser always sends one, so a list means "browsers from these sites".

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// Why a pattern was refused (Sockudo's rules, CONFIG.md §4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginPatternError {
    #[error("empty origin pattern")]
    Empty,
    #[error("at most one `*` is allowed")]
    SeveralWildcards,
    #[error("missing scheme before `://`")]
    MissingScheme,
    #[error("missing host after `://`")]
    MissingHost,
    #[error("`*.` must be followed by a domain")]
    MissingDomain,
    #[error("invalid domain {0:?} after `*.`")]
    InvalidDomain(String),
}

/// One validated pattern. `Display` shows it as written (trimmed).
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct OriginPattern {
    text: Box<str>,
    rule: Rule,
}

/// The pattern's meaning, lowercased once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Any,
    /// `scheme://host[:port]`: the whole origin.
    Exact(Box<str>),
    /// `host[:port]`: the origin after `scheme://`.
    Host(Box<str>),
    /// `*.domain`: the domain itself or a subdomain, any scheme.
    Subdomain(Box<str>),
    /// Any other single `*`: at least one character in its place.
    Glob {
        before: Box<str>,
        after: Box<str>,
    },
}

impl OriginPattern {
    /// The pattern that allows every origin (`*`).
    pub fn any() -> OriginPattern {
        OriginPattern {
            text: "*".into(),
            rule: Rule::Any,
        }
    }

    pub fn parse(pattern: &str) -> Result<OriginPattern, OriginPatternError> {
        let text = pattern.trim();
        if text.is_empty() {
            return Err(OriginPatternError::Empty);
        }
        let rule = rule(&text.to_ascii_lowercase())?;
        Ok(OriginPattern {
            text: text.into(),
            rule,
        })
    }

    /// `*` or `any`.
    pub fn is_any(&self) -> bool {
        self.rule == Rule::Any
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `origin` (the header value, `""` when absent) matches.
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.trim();
        match &self.rule {
            Rule::Any => true,
            _ if origin.is_empty() => false,
            Rule::Exact(whole) => origin.eq_ignore_ascii_case(whole),
            Rule::Host(host) => host_part(origin).eq_ignore_ascii_case(host),
            Rule::Subdomain(domain) => {
                let host = host_part(origin);
                host.eq_ignore_ascii_case(domain)
                    || (host.len() > domain.len() + 1
                        && ends_with_ignore_case(host, domain)
                        && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
            }
            Rule::Glob { before, after } => {
                origin.len() > before.len() + after.len()
                    && starts_with_ignore_case(origin, before)
                    && ends_with_ignore_case(origin, after)
            }
        }
    }
}

fn rule(p: &str) -> Result<Rule, OriginPatternError> {
    if p == "*" || p == "any" {
        return Ok(Rule::Any);
    }
    if p.matches('*').count() > 1 {
        return Err(OriginPatternError::SeveralWildcards);
    }
    let (scheme, host) = match p.split_once("://") {
        Some(("", _)) => return Err(OriginPatternError::MissingScheme),
        Some((_, "")) => return Err(OriginPatternError::MissingHost),
        Some((_, host)) => (true, host),
        None => (false, p),
    };
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.is_empty() {
            return Err(OriginPatternError::MissingDomain);
        }
        if domain.contains("..") || domain.starts_with('.') || domain.ends_with('.') {
            return Err(OriginPatternError::InvalidDomain(domain.to_string()));
        }
        if !scheme {
            return Ok(Rule::Subdomain(domain.into()));
        }
    }
    Ok(match p.split_once('*') {
        Some((before, after)) => Rule::Glob {
            before: before.into(),
            after: after.into(),
        },
        None if scheme => Rule::Exact(p.into()),
        None => Rule::Host(p.into()),
    })
}

/// The part of an origin after `scheme://`.
fn host_part(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, rest)| rest)
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Whether `origin` is allowed by a list; an empty list allows everything.
pub fn allowed(patterns: &[OriginPattern], origin: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(origin))
}

impl FromStr for OriginPattern {
    type Err = OriginPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OriginPattern::parse(s)
    }
}

/// A refused pattern with the pattern itself, for messages that have no
/// other place to show it (a config file's error names only the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?}: {why}")]
pub struct InvalidOriginPattern {
    pub pattern: String,
    pub why: OriginPatternError,
}

impl TryFrom<String> for OriginPattern {
    type Error = InvalidOriginPattern;

    fn try_from(pattern: String) -> Result<Self, Self::Error> {
        OriginPattern::parse(&pattern).map_err(|why| InvalidOriginPattern { pattern, why })
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

/// Patterns compare as written, so configuration tests read naturally.
impl PartialEq for OriginPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for OriginPattern {}

impl PartialEq<&str> for OriginPattern {
    fn eq(&self, other: &&str) -> bool {
        &*self.text == *other
    }
}

impl PartialEq<String> for OriginPattern {
    fn eq(&self, other: &String) -> bool {
        *self.text == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> Vec<OriginPattern> {
        p.iter().map(|s| s.parse().expect(s)).collect()
    }

    #[test]
    fn origin_matching_table() {
        // (patterns, origin, allowed)
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "https://evil.com", true),
            (&[], "", true),
            (&["*"], "https://anything.io", true),
            (&["*"], "", true),
            (&["ANY"], "http://x.y", true),
            // protocol-agnostic host
            (&["example.com"], "https://example.com", true),
            (&["example.com"], "http://example.com", true),
            (&["Example.COM"], "http://EXAMPLE.com", true),
            (&["example.com"], "https://api.example.com", false),
            (&["example.com"], "https://example.com:8443", false),
            (&["example.com"], "https://example.com.evil.io", false),
            (&["localhost:3000"], "http://localhost:3000", true),
            (&["localhost:3000"], "http://localhost:3001", false),
            (&["localhost:3000"], "http://localhost", false),
            // protocol-specific
            (
                &["https://secure.example.com"],
                "https://secure.example.com",
                true,
            ),
            (
                &["https://secure.example.com"],
                "http://secure.example.com",
                false,
            ),
            (
                &["https://secure.example.com"],
                "https://secure.example.com:444",
                false,
            ),
            (
                &["HTTPS://Secure.Example.com"],
                "https://SECURE.example.COM",
                true,
            ),
            (
                &[" https://secure.example.com "],
                " https://secure.example.com",
                true,
            ),
            // protocol-agnostic wildcard (apex allowed)
            (&["*.example.com"], "https://a.example.com", true),
            (&["*.Example.com"], "https://A.EXAMPLE.COM", true),
            (&["*.example.com"], "http://a.b.example.com", true),
            (&["*.example.com"], "https://example.com", true),
            (&["*.example.com"], "https://badexample.com", false),
            (&["*.example.com"], "https://example.com.evil.io", false),
            (&["*.example.com"], "https://.example.com", false),
            // protocol-specific wildcard (apex not allowed)
            (&["https://*.secure.com"], "https://a.secure.com", true),
            (&["https://*.Secure.com"], "HTTPS://A.SECURE.COM", true),
            (&["https://*.secure.com"], "http://a.secure.com", false),
            (&["https://*.secure.com"], "https://secure.com", false),
            (&["https://*.secure.com"], "https://evilsecure.com", false),
            // missing Origin header with a list
            (&["example.com"], "", false),
            (&["*.example.com"], "", false),
            (&["https://*.secure.com"], "", false),
            // several patterns: any match wins
            (&["a.com", "https://b.com"], "https://b.com", true),
            (&["a.com", "https://b.com"], "http://b.com", false),
        ];
        for (patterns, origin, expected) in cases {
            assert_eq!(
                allowed(&list(patterns), origin),
                *expected,
                "patterns {patterns:?} origin {origin:?}"
            );
        }
    }

    #[test]
    fn patterns_are_validated_when_parsed() {
        for ok in [
            "*",
            "any",
            "ANY",
            "https://app.example.com",
            "app.example.com",
            "localhost:3000",
            "*.example.com",
            "https://*.example.com",
            "http://localhost:*",
            " https://padded.example.com ",
        ] {
            assert!(OriginPattern::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", OriginPatternError::Empty),
            ("   ", OriginPatternError::Empty),
            ("*.*.example.com", OriginPatternError::SeveralWildcards),
            ("https://*.*.x", OriginPatternError::SeveralWildcards),
            ("://example.com", OriginPatternError::MissingScheme),
            ("https://", OriginPatternError::MissingHost),
            ("*.", OriginPatternError::MissingDomain),
            ("https://*.", OriginPatternError::MissingDomain),
            (
                "*..example.com",
                OriginPatternError::InvalidDomain(".example.com".into()),
            ),
            (
                "*.example.com.",
                OriginPatternError::InvalidDomain("example.com.".into()),
            ),
            ("*.a..b", OriginPatternError::InvalidDomain("a..b".into())),
        ] {
            assert_eq!(OriginPattern::parse(bad).err(), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn a_pattern_shows_as_written_and_knows_when_it_allows_everything() {
        let p = OriginPattern::parse("  HTTPS://App.Example.com ").unwrap();
        assert_eq!(p.to_string(), "HTTPS://App.Example.com");
        assert_eq!(p, "HTTPS://App.Example.com");
        assert!(!p.is_any());
        assert!(OriginPattern::parse("Any").unwrap().is_any());
        assert!(OriginPattern::any().is_any());
        let from_json: Vec<OriginPattern> =
            serde_json::from_str(r#"["*.example.com", "https://a.test"]"#).unwrap();
        assert_eq!(from_json, vec!["*.example.com", "https://a.test"]);
        let err = serde_json::from_str::<Vec<OriginPattern>>(r#"["a.com", "*.*.x"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#""*.*.x": at most one `*`"#), "{err}");
    }
}
