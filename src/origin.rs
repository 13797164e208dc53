//! Origin allow-lists for WebSocket connections (an app's `allowed_origins`).
//!
//! Pattern forms, matched case-insensitively against the `Origin` header:
//! - `*` or `any`: everything, including a missing header;
//! - `https://app.example.com`: exactly that scheme, host and port;
//! - `app.example.com`, `localhost:3000`: that host[:port] over any scheme;
//! - `*.example.com`: the domain or any subdomain, any scheme;
//! - `https://*.example.com`: any subdomain (not the apex) over https only.
//!
//! A missing `Origin` is treated as the empty string, which only `*` matches:
//! a browser always sends one, so a list means "browsers from these sites".

/// Whether `origin` (the header value, `""` when absent) is allowed.
/// An empty list allows everything.
pub fn allowed(patterns: &[String], origin: &str) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let origin = origin.trim().to_ascii_lowercase();
    patterns
        .iter()
        .any(|p| matches(&p.trim().to_ascii_lowercase(), &origin))
}

/// The part of an origin after `scheme://`.
fn host_part(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, rest)| rest)
}

fn matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" || pattern == "any" {
        return true;
    }
    if origin.is_empty() {
        return false;
    }
    if let Some(domain) = pattern.strip_prefix("*.") {
        if !pattern.contains("://") {
            let host = host_part(origin);
            return host == domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1);
        }
    }
    if let Some((before, after)) = pattern.split_once('*') {
        return origin.len() > before.len() + after.len()
            && origin.starts_with(before)
            && origin.ends_with(after);
    }
    if pattern.contains("://") {
        origin == pattern
    } else {
        host_part(origin) == pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
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
            // protocol-agnostic wildcard (apex allowed)
            (&["*.example.com"], "https://a.example.com", true),
            (&["*.example.com"], "http://a.b.example.com", true),
            (&["*.example.com"], "https://example.com", true),
            (&["*.example.com"], "https://badexample.com", false),
            (&["*.example.com"], "https://example.com.evil.io", false),
            (&["*.example.com"], "https://.example.com", false),
            // protocol-specific wildcard (apex not allowed)
            (&["https://*.secure.com"], "https://a.secure.com", true),
            (&["https://*.secure.com"], "http://a.secure.com", false),
            (&["https://*.secure.com"], "https://secure.com", false),
            (&["https://*.secure.com"], "https://evilsecure.com", false),
            // missing Origin header with a list
            (&["example.com"], "", false),
            (&["*.example.com"], "", false),
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
}
