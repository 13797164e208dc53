//! Pusher HTTP API request signing (PROTOCOL.md §4.5), implemented here so the
//! tool depends on no Pusher SDK.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex HMAC-SHA256 of `msg` keyed with `secret`.
pub fn hmac_hex(secret: &str, msg: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// Lowercase hex MD5 of `body`.
pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// App credentials used to sign requests.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

/// Returns the string to sign and the full signed query string (without `?`)
/// for a request. `extra` are additional query parameters (unescaped, as the
/// protocol signs them). `body_md5` is added when `body` is non-empty.
pub fn sign_query(
    creds: &Credentials,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    timestamp: u64,
) -> (String, String) {
    let ts = timestamp.to_string();
    let md5;
    let mut params: Vec<(String, &str)> = vec![
        ("auth_key".into(), creds.key.as_str()),
        ("auth_timestamp".into(), ts.as_str()),
        ("auth_version".into(), "1.0"),
    ];
    if !body.is_empty() {
        md5 = md5_hex(body);
        params.push(("body_md5".into(), md5.as_str()));
    }
    for (k, v) in extra {
        params.push((k.to_ascii_lowercase(), v));
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("{method}\n{path}\n{query}");
    let signature = hmac_hex(&creds.secret, to_sign.as_bytes());
    let full = format!("{query}&auth_signature={signature}");
    (to_sign, full)
}

/// Path and query of a signed `POST /apps/{id}/events` for `body`.
pub fn signed_events_uri(creds: &Credentials, body: &[u8], timestamp: u64) -> String {
    let path = format!("/apps/{}/events", creds.app_id);
    let (_, q) = sign_query(creds, "POST", &path, &[], body, timestamp);
    format!("{path}?{q}")
}

/// Path and query of a signed `POST /apps/{id}/batch_events` for `body`.
pub fn signed_batch_uri(creds: &Credentials, body: &[u8], timestamp: u64) -> String {
    let path = format!("/apps/{}/batch_events", creds.app_id);
    let (_, q) = sign_query(creds, "POST", &path, &[], body, timestamp);
    format!("{path}?{q}")
}

/// `auth` of a private-channel subscription (§4.1):
/// `key:HMAC-SHA256(secret, "socket_id:channel")`.
pub fn channel_auth(creds: &Credentials, socket_id: &str, channel: &str) -> String {
    let sig = hmac_hex(&creds.secret, format!("{socket_id}:{channel}").as_bytes());
    format!("{}:{sig}", creds.key)
}

/// `auth` of a presence-channel subscription (§4.2):
/// `key:HMAC-SHA256(secret, "socket_id:channel:channel_data")`.
pub fn presence_auth(
    creds: &Credentials,
    socket_id: &str,
    channel: &str,
    channel_data: &str,
) -> String {
    let sig = hmac_hex(
        &creds.secret,
        format!("{socket_id}:{channel}:{channel_data}").as_bytes(),
    );
    format!("{}:{sig}", creds.key)
}

/// Body of a batch trigger: `{"batch":[{"name":…,"channel":…,"data":…},…]}`
/// with one event per `(channel, name, data)`.
pub fn batch_body<'a>(events: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"batch\":[");
    for (i, (channel, name, data)) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&event_body(channel, name, data));
    }
    out.extend_from_slice(b"]}");
    out
}

/// Body of a trigger call on one channel: `{"name":…,"channel":…,"data":…}`
/// with each value JSON-escaped.
pub fn event_body(channel: &str, name: &str, data: &str) -> Vec<u8> {
    let q = |s: &str| serde_json::to_string(s).expect("serialising a str cannot fail");
    format!(
        r#"{{"name":{},"channel":{},"data":{}}}"#,
        q(name),
        q(channel),
        q(data)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            app_id: "app-id".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
        }
    }

    #[test]
    fn md5_reference_values() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"{}"), "99914b932bd37a50b983c5e7c90ae93b");
    }

    #[test]
    fn post_worked_example() {
        let body = br#"{"name":"order-shipped","channels":["orders"],"data":"{\"id\":7}"}"#;
        assert_eq!(md5_hex(body), "8240c4f8c3620c8f8787db3801c800c2");
        let (to_sign, q) = sign_query(
            &creds(),
            "POST",
            "/apps/app-id/events",
            &[],
            body,
            1_700_000_000,
        );
        assert_eq!(
            to_sign,
            "POST\n/apps/app-id/events\nauth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=8240c4f8c3620c8f8787db3801c800c2"
        );
        assert!(q.ends_with(
            "&auth_signature=0600ad6713b1631c7ab034bf5c307587b7c24c437b74eb18eb9a2089047bbf5e"
        ));
        let uri = signed_events_uri(&creds(), body, 1_700_000_000);
        assert!(uri.starts_with("/apps/app-id/events?auth_key=app-key&"));
        assert!(uri.ends_with("0600ad6713b1631c7ab034bf5c307587b7c24c437b74eb18eb9a2089047bbf5e"));
    }

    #[test]
    fn get_worked_example_sorts_extra_params() {
        let (to_sign, q) = sign_query(
            &creds(),
            "GET",
            "/apps/app-id/channels",
            &[("info", "user_count"), ("filter_by_prefix", "presence-")],
            b"",
            1_700_000_000,
        );
        assert_eq!(
            to_sign,
            "GET\n/apps/app-id/channels\nauth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&filter_by_prefix=presence-&info=user_count"
        );
        assert!(q.ends_with(
            "auth_signature=fd5a1b38d92aee2b7913a8cf43136cffab888ee5a097536910d6239f08eb68a2"
        ));
    }

    #[test]
    fn channel_auth_example() {
        // §4.1: the same HMAC primitive signs private-channel subscriptions.
        assert_eq!(
            hmac_hex("app-secret", b"1234.5678:private-orders"),
            "2d1e5109f17c93a347d0a52f060df3a517761ce1ddcd7bce2998c4f1925a7cab"
        );
    }

    #[test]
    fn subscription_auths() {
        let c = creds();
        assert_eq!(
            channel_auth(&c, "1234.5678", "private-orders"),
            "app-key:2d1e5109f17c93a347d0a52f060df3a517761ce1ddcd7bce2998c4f1925a7cab"
        );
        let data = r#"{"user_id":"7"}"#;
        assert_eq!(
            presence_auth(&c, "1.2", "presence-room", data),
            format!(
                "app-key:{}",
                hmac_hex("app-secret", br#"1.2:presence-room:{"user_id":"7"}"#)
            )
        );
    }

    #[test]
    fn batch_body_is_a_json_batch() {
        let b = batch_body([("a", "e", "1"), ("b", "e", r#"{"t":2}"#)]);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["batch"].as_array().unwrap().len(), 2);
        assert_eq!(v["batch"][1]["channel"], "b");
        assert_eq!(v["batch"][1]["data"], r#"{"t":2}"#);
        let uri = signed_batch_uri(&creds(), &b, 1_700_000_000);
        assert!(uri.starts_with("/apps/app-id/batch_events?auth_key=app-key&"));
    }

    #[test]
    fn event_body_is_escaped_json() {
        let b = event_body("c-1", "bench", r#"{"t":1}"#);
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"name":"bench","channel":"c-1","data":"{\"t\":1}"}"#
        );
    }
}
