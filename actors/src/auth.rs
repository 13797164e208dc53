//! HMAC-SHA256 signatures of the Pusher protocol, as pure functions.
//!
//! Every comparison of a received signature is constant-time (the `hmac`
//! crate's `verify_slice`), so an attacker cannot learn a valid signature byte
//! by byte from response timings.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length")
}

/// Lowercase hex HMAC-SHA256 of `parts` concatenated.
pub fn sign(secret: &str, parts: &[&str]) -> String {
    let mut m = mac(secret);
    for p in parts {
        m.update(p.as_bytes());
    }
    hex::encode(m.finalize().into_bytes())
}

/// Constant-time check that `hex_signature` is HMAC(secret, parts).
pub fn verify(secret: &str, parts: &[&str], hex_signature: &str) -> bool {
    SigningKey::new(secret).verify(parts, hex_signature)
}

/// HMAC-SHA256 keyed with one secret: the key's inner and outer blocks are
/// hashed once, here, and each signature checked with it starts from a copy.
/// Kept by [`Secret`](crate::secret::Secret) for the secrets checked often.
#[derive(Clone)]
pub struct SigningKey(HmacSha256);

impl SigningKey {
    pub fn new(secret: &str) -> SigningKey {
        SigningKey(mac(secret))
    }

    /// Constant-time check that `hex_signature` is the HMAC of `parts`
    /// concatenated.
    pub fn verify(&self, parts: &[&str], hex_signature: &str) -> bool {
        let Some(given) = decode_signature(hex_signature) else {
            return false;
        };
        let mut m = self.0.clone();
        for p in parts {
            m.update(p.as_bytes());
        }
        m.verify_slice(&given).is_ok()
    }
}

/// The 32 bytes of a hex HMAC-SHA256 (either case), or `None` for anything
/// else: a string of another length, or with a character that is not a hex
/// digit, cannot be a signature of ours.
fn decode_signature(hex: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// Why an `auth` token was refused. The messages are what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing auth signature")]
    Missing,
    #[error("Auth must be of the form key:signature")]
    Malformed,
    #[error("Auth key does not match the app key")]
    WrongKey,
    #[error("Invalid signature")]
    InvalidSignature,
}

/// Check an `auth` value of the form `key:hexsig` against the string to sign.
fn verify_token(
    app_key: &str,
    secret: &SigningKey,
    auth: &str,
    parts: &[&str],
) -> Result<(), AuthError> {
    let (key, sig) = auth.split_once(':').ok_or(AuthError::Malformed)?;
    if key != app_key {
        return Err(AuthError::WrongKey);
    }
    if secret.verify(parts, sig) {
        Ok(())
    } else {
        Err(AuthError::InvalidSignature)
    }
}

/// Private and encrypted channels sign `socket_id:channel`; presence channels
/// append `:channel_data` exactly as the client sent it.
pub fn verify_channel_auth(
    app_key: &str,
    secret: &SigningKey,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> Result<(), AuthError> {
    match channel_data {
        Some(data) => verify_token(app_key, secret, auth, &[socket_id, ":", channel, ":", data]),
        None => verify_token(app_key, secret, auth, &[socket_id, ":", channel]),
    }
}

/// User sign-in signs `socket_id::user::user_data`.
pub fn verify_signin(
    app_key: &str,
    secret: &SigningKey,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> Result<(), AuthError> {
    verify_token(app_key, secret, auth, &[socket_id, "::user::", user_data])
}

/// Lowercase hex MD5 of a request body (`body_md5` of the HTTP API).
pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Whether `md5_hex` is exactly [`md5_hex`]`(body)` (lowercase, 32 digits),
/// without building the string.
pub fn md5_matches(body: &[u8], md5_hex: &str) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let given = md5_hex.as_bytes();
    if given.len() != 32 {
        return false;
    }
    Md5::digest(body)
        .iter()
        .zip(given.chunks_exact(2))
        .all(|(b, pair)| {
            pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 15)]
        })
}

/// The string an HTTP API request signs: `METHOD\nPATH\nsorted_query`, where
/// the query is every parameter but `auth_signature`, keys lowercased and
/// sorted, values as received (not re-escaped).
pub fn api_string_to_sign<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    path: &str,
    params: &[(K, V)],
) -> String {
    let mut pairs: Vec<(std::borrow::Cow<'_, str>, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != "auth_signature")
        .map(|(k, v)| {
            // SDKs send lowercase keys; only copy the rare one that is not.
            let key = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Owned(k.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(k)
            };
            (key, v)
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(method.len() + path.len() + 128);
    out.push_str(method);
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked examples of PROTOCOL.md §4.
    const KEY: &str = "app-key";
    const SECRET: &str = "app-secret";

    /// `verify_channel_auth` for `private-orders` with the examples' secret.
    fn private_orders(app_key: &str, socket_id: &str, auth: &str) -> Result<(), AuthError> {
        let key = SigningKey::new(SECRET);
        verify_channel_auth(app_key, &key, socket_id, "private-orders", None, auth)
    }

    #[test]
    fn private_channel_example() {
        let sig = sign(SECRET, &["1234.5678", ":", "private-orders"]);
        assert_eq!(
            sig,
            "2d1e5109f17c93a347d0a52f060df3a517761ce1ddcd7bce2998c4f1925a7cab"
        );
        let auth = format!("{KEY}:{sig}");
        assert_eq!(private_orders(KEY, "1234.5678", &auth), Ok(()));
        assert_eq!(
            private_orders(KEY, "1234.5679", &auth),
            Err(AuthError::InvalidSignature)
        );
        assert_eq!(
            private_orders("other", "1234.5678", &auth),
            Err(AuthError::WrongKey)
        );
        assert_eq!(
            private_orders(KEY, "1234.5678", "nocolon"),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            private_orders(KEY, "1234.5678", "app-key:zz"),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn auth_tokens_are_key_colon_hex_split_at_the_first_colon() {
        let sig = sign(SECRET, &["1234.5678", ":", "private-orders"]);
        let check = |auth: &str| private_orders(KEY, "1234.5678", auth);
        assert_eq!(check(&format!("{KEY}:{sig}")), Ok(()));
        for (auth, want) in [
            (String::new(), AuthError::Malformed),
            (sig.clone(), AuthError::Malformed),
            (format!(":{sig}"), AuthError::WrongKey),
            (format!("{KEY} :{sig}"), AuthError::WrongKey),
            (format!("APP-KEY:{sig}"), AuthError::WrongKey),
            (format!("{KEY}:"), AuthError::InvalidSignature),
            (format!("{KEY}:{sig}:"), AuthError::InvalidSignature),
            (format!("{KEY}::{sig}"), AuthError::InvalidSignature),
            (format!("{KEY}:{sig} "), AuthError::InvalidSignature),
            (format!("{KEY}:{}", &sig[..62]), AuthError::InvalidSignature),
            (format!("{KEY}:{sig}00"), AuthError::InvalidSignature),
            (
                format!("{KEY}:{}", "0".repeat(64)),
                AuthError::InvalidSignature,
            ),
        ] {
            assert_eq!(check(&auth), Err(want), "{auth:?}");
        }
        assert!(!verify(SECRET, &["x"], "not hex"));
        assert!(!verify(SECRET, &["x"], ""));
    }

    #[test]
    fn signatures_decode_as_the_hex_crate_would_for_32_bytes() {
        let sig = sign(SECRET, &["1234.5678", ":", "private-orders"]);
        let upper = sig.to_ascii_uppercase();
        let mut mixed = sig.clone();
        mixed.replace_range(0..2, &upper[0..2]);
        let mut cases = vec![
            sig.clone(),
            upper,
            mixed,
            String::new(),
            "0".repeat(64),
            "f".repeat(63),
            "F".repeat(66),
            format!("{}g", &sig[..63]),
            format!("g{}", &sig[1..]),
            format!("{} ", &sig[..63]),
            format!("{}é", &sig[..62]),
            format!("+{}", &sig[1..]),
        ];
        for bad in [b'/', b':', b'@', b'G', b'`', b'g', 0x7f] {
            cases.push(format!("{}{}", &sig[..32], bad as char) + &sig[33..]);
        }
        for case in &cases {
            let expected = hex::decode(case)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok());
            assert_eq!(decode_signature(case), expected, "{case:?}");
        }
        let key = SigningKey::new(SECRET);
        assert!(key.verify(&["1234.5678:private-orders"], &sig.to_ascii_uppercase()));
        assert!(!key.verify(&["1234.5678:private-orders"], &format!("{sig}0")));
    }

    #[test]
    fn presence_channel_example() {
        let data = r#"{"user_id":"42","user_info":{"name":"Ada"}}"#;
        let auth = "app-key:7eae5778a7edfe839d7a03f042293004e8cc0798fcf98a63b02be7f19f8bef86";
        assert_eq!(
            verify_channel_auth(
                KEY,
                &SigningKey::new(SECRET),
                "1234.5678",
                "presence-room",
                Some(data),
                auth
            ),
            Ok(())
        );
        // One byte of channel_data changed: the signature no longer matches.
        let changed = r#"{"user_id":"43","user_info":{"name":"Ada"}}"#;
        assert!(verify_channel_auth(
            KEY,
            &SigningKey::new(SECRET),
            "1234.5678",
            "presence-room",
            Some(changed),
            auth
        )
        .is_err());
    }

    #[test]
    fn encrypted_channel_example() {
        let auth = "app-key:6ee8ce3188a0b27e8bccca0ce3648235c61b391d951dcfbde41d441360035f8a";
        assert_eq!(
            verify_channel_auth(
                KEY,
                &SigningKey::new(SECRET),
                "1234.5678",
                "private-encrypted-chat",
                None,
                auth
            ),
            Ok(())
        );
    }

    #[test]
    fn signin_example() {
        let auth = "app-key:301c617063a9befe3888bef787d0293388621da80385924cc3b7231582f595e3";
        assert_eq!(
            verify_signin(
                KEY,
                &SigningKey::new(SECRET),
                "1234.5678",
                r#"{"id":"42","name":"Ada"}"#,
                auth
            ),
            Ok(())
        );
    }

    #[test]
    fn api_signature_examples() {
        let body = r#"{"name":"order-shipped","channels":["orders"],"data":"{\"id\":7}"}"#;
        assert_eq!(md5_hex(body.as_bytes()), "8240c4f8c3620c8f8787db3801c800c2");
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        for body in [&b""[..], b"{}", body.as_bytes(), &[0u8, 255, 16, 15][..]] {
            let hex = md5_hex(body);
            assert!(md5_matches(body, &hex), "{hex}");
            assert!(
                !md5_matches(body, &hex.to_ascii_uppercase()),
                "only lowercase, as before"
            );
            assert!(!md5_matches(body, &hex[..31]));
            assert!(!md5_matches(body, &format!("{hex}0")));
            assert!(!md5_matches(body, ""));
            for i in 0..32 {
                let mut changed = hex.clone().into_bytes();
                changed[i] = if changed[i] == b'0' { b'1' } else { b'0' };
                let changed = String::from_utf8(changed).unwrap();
                assert!(!md5_matches(body, &changed), "{changed}");
            }
        }
        let params = vec![
            ("auth_version".to_string(), "1.0".to_string()),
            ("auth_key".to_string(), "app-key".to_string()),
            (
                "body_md5".to_string(),
                "8240c4f8c3620c8f8787db3801c800c2".to_string(),
            ),
            ("auth_timestamp".to_string(), "1700000000".to_string()),
            ("auth_signature".to_string(), "ignored".to_string()),
        ];
        let to_sign = api_string_to_sign("POST", "/apps/app-id/events", &params);
        assert_eq!(to_sign, "POST\n/apps/app-id/events\nauth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=8240c4f8c3620c8f8787db3801c800c2");
        assert_eq!(
            sign(SECRET, &[&to_sign]),
            "0600ad6713b1631c7ab034bf5c307587b7c24c437b74eb18eb9a2089047bbf5e"
        );
        let params = vec![
            ("auth_key".to_string(), "app-key".to_string()),
            ("auth_timestamp".to_string(), "1700000000".to_string()),
            ("auth_version".to_string(), "1.0".to_string()),
            ("filter_by_prefix".to_string(), "presence-".to_string()),
            ("info".to_string(), "user_count".to_string()),
        ];
        let to_sign = api_string_to_sign("GET", "/apps/app-id/channels", &params);
        assert!(verify(
            SECRET,
            &[&to_sign],
            "fd5a1b38d92aee2b7913a8cf43136cffab888ee5a097536910d6239f08eb68a2"
        ));
    }
}
