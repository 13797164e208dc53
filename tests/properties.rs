//! Property tests for every parser that takes outside input: client frames,
//! channel names, presence `channel_data`, sign-in `user_data`, and the
//! signed HTTP API query. Each compares the parser with a small model written
//! here from PROTOCOL.md (not from the server's code): whatever the input,
//! the parser never panics and accepts exactly what the model accepts.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value};
use sha2::Sha256;
use switchyard::http::error::ApiError;
use switchyard::http::signature;
use switchyard_actors::app::App;
use switchyard_actors::command::{self, Command};
use switchyard_actors::error::SubscriptionError;
use switchyard_actors::protocol::{validate_channel_name, ChannelKind, SERVER_TO_USER_PREFIX};

// ---------------------------------------------------------------- strategies

/// Strings a client might put in a name: protocol words, prefixes, odd bytes.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("chan".to_string()),
        Just("private-orders".to_string()),
        Just("presence-room".to_string()),
        Just("private-encrypted-x".to_string()),
        Just("cache-prices".to_string()),
        Just("#server-to-user-42".to_string()),
        Just(String::new()),
        "[a-zA-Z0-9_=@,.;#: -]{0,24}",
        any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("event".to_string()),
        Just("channel".to_string()),
        Just("data".to_string()),
        Just("auth".to_string()),
        Just("channel_data".to_string()),
        Just("user_data".to_string()),
        Just("user_id".to_string()),
        Just("user_info".to_string()),
        Just("id".to_string()),
        "[a-z_]{1,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        word().prop_map(Value::String),
    ]
}

/// Any JSON value, weighted towards objects with protocol keys.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `data` as pusher-js sends it (a value) or as other SDKs do (a string of JSON).
fn payload() -> impl Strategy<Value = Value> {
    let inner = prop_oneof![
        json(),
        btree_map(key(), leaf(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
    ];
    (inner, any::<bool>()).prop_map(|(v, encode)| {
        if encode {
            Value::String(v.to_string())
        } else {
            v
        }
    })
}

fn event() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::from("pusher:subscribe")),
        Just(Value::from("pusher:unsubscribe")),
        Just(Value::from("pusher:signin")),
        Just(Value::from("pusher:ping")),
        Just(Value::from("client-typing")),
        leaf(),
    ]
}

/// A whole frame: mostly envelope-shaped, sometimes anything at all.
fn frame() -> impl Strategy<Value = Value> {
    let envelope = (
        event(),
        proptest::option::of(payload()),
        proptest::option::of(leaf()),
    )
        .prop_map(|(event, data, channel)| {
            let mut m = Map::new();
            m.insert("event".into(), event);
            if let Some(d) = data {
                m.insert("data".into(), d);
            }
            if let Some(c) = channel {
                m.insert("channel".into(), c);
            }
            Value::Object(m)
        });
    prop_oneof![4 => envelope, 1 => json()]
}

// ---------------------------------------------------------------- the model

/// `data` as an object, decoding the string form (PROTOCOL.md §2).
fn data_object(data: Option<&Value>) -> Option<Map<String, Value>> {
    let value = match data? {
        Value::String(text) => serde_json::from_str::<Value>(text).ok()?,
        other => other.clone(),
    };
    value.as_object().cloned()
}

/// A field that must be a string when present (`null` counts as absent).
fn optional_string(m: &Map<String, Value>, key: &str) -> Option<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

/// What a correct parser makes of a frame, as (event, fields).
#[derive(Debug, PartialEq)]
enum Expected {
    Refused,
    Ping,
    Pong,
    Subscribe(String, Option<String>, Option<String>),
    Unsubscribe(String),
    Signin(String, String),
    Client(String, Option<String>),
}

fn model(frame: &Value) -> Expected {
    let Some(m) = frame.as_object() else {
        return Expected::Refused;
    };
    let Some(event) = m.get("event").and_then(Value::as_str) else {
        return Expected::Refused;
    };
    let Some(channel) = optional_string(m, "channel") else {
        return Expected::Refused;
    };
    let data = || data_object(m.get("data"));
    let string =
        |d: &Map<String, Value>, k: &str| d.get(k).and_then(Value::as_str).map(String::from);
    let parsed = match event {
        "pusher:ping" => Some(Expected::Ping),
        "pusher:pong" => Some(Expected::Pong),
        "pusher:subscribe" => data().and_then(|d| {
            Some(Expected::Subscribe(
                string(&d, "channel")?,
                optional_string(&d, "auth")?,
                optional_string(&d, "channel_data")?,
            ))
        }),
        "pusher:unsubscribe" => {
            data().and_then(|d| Some(Expected::Unsubscribe(string(&d, "channel")?)))
        }
        "pusher:signin" => data().and_then(|d| {
            Some(Expected::Signin(
                string(&d, "auth")?,
                string(&d, "user_data")?,
            ))
        }),
        e if e.starts_with("client-") => Some(Expected::Client(e.to_string(), channel)),
        _ => None,
    };
    parsed.unwrap_or(Expected::Refused)
}

fn observed(text: &str) -> Expected {
    match command::parse(text) {
        Err(_) => Expected::Refused,
        Ok(Command::Ping) => Expected::Ping,
        Ok(Command::Pong) => Expected::Pong,
        Ok(Command::Subscribe(s)) => Expected::Subscribe(
            s.channel.into_owned(),
            s.auth.map(|a| a.into_owned()),
            s.channel_data.map(|d| d.into_owned()),
        ),
        Ok(Command::Unsubscribe { channel }) => Expected::Unsubscribe(channel.into_owned()),
        Ok(Command::Signin(s)) => Expected::Signin(s.auth.into_owned(), s.user_data.into_owned()),
        Ok(Command::ClientEvent(e)) => {
            Expected::Client(e.event.into_owned(), e.channel.map(|c| c.into_owned()))
        }
    }
}

/// PROTOCOL.md §1: 1..=max bytes of `[A-Za-z0-9_\-=@,.;]`, or
/// `#server-to-user-` followed by at least one such character.
fn name_is_valid(name: &str, max: usize) -> bool {
    let class = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c))
    };
    let body = name.strip_prefix("#server-to-user-").unwrap_or(name);
    !name.is_empty() && name.len() <= max && class(body)
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any frame: the parser agrees with the model field for field. In
    /// particular nothing but an object with a string `channel` subscribes.
    #[test]
    fn client_frames_match_the_model(frame in frame()) {
        let text = frame.to_string();
        prop_assert_eq!(observed(&text), model(&frame), "{}", text);
    }

    /// Arbitrary text, including broken JSON: an error or a command, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = command::parse(&text);
    }

    /// A subscribe the parser accepts goes on only if its name passes the
    /// channel rules (the session's next step): the two agree with the model.
    #[test]
    fn subscribed_names_follow_the_channel_rules(name in word(), max in 1usize..40) {
        let text = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": name}}).to_string();
        match command::parse(&text) {
            Ok(Command::Subscribe(s)) => {
                prop_assert_eq!(&*s.channel, name.as_str());
                prop_assert_eq!(validate_channel_name(&s.channel, max).is_ok(), name_is_valid(&name, max));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn channel_kinds_follow_their_prefix(name in word()) {
        let kind = ChannelKind::of(&name);
        let private = name.starts_with("private-");
        let presence = name.starts_with("presence-");
        prop_assert_eq!(kind.requires_auth(), private || presence);
        prop_assert_eq!(kind.is_presence(), presence);
        prop_assert_eq!(kind.is_encrypted(), name.starts_with("private-encrypted-"));
        let cache = ["cache-", "private-cache-", "presence-cache-", "private-encrypted-cache-"]
            .iter()
            .any(|p| name.starts_with(p));
        prop_assert_eq!(kind.is_cache(), cache);
        prop_assert_eq!(kind == ChannelKind::ServerToUser, name.starts_with(SERVER_TO_USER_PREFIX));
        prop_assert_eq!(
            kind.allows_client_events(),
            (private || presence) && !name.starts_with("private-encrypted-")
        );
    }

    /// `channel_data`: an object whose `user_id` is a non-empty string or a
    /// number, at most 128 bytes; the whole at most the member size limit.
    #[test]
    fn presence_channel_data_matches_the_model(value in payload(), max in 1usize..200) {
        let text = match &value { Value::String(s) => s.clone(), v => v.to_string() };
        let expected = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            let id = match v.as_object()?.get("user_id")? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(id)
        });
        match command::presence_member(&text, max) {
            Ok(member) => {
                prop_assert!(text.len() <= max);
                prop_assert!(member.user_id.len() <= command::MAX_USER_ID_BYTES);
                prop_assert_eq!(Some(member.user_id.to_string()), expected);
            }
            Err(SubscriptionError::LimitReached(_)) => prop_assert!(
                text.len() > max || expected.is_some_and(|id| id.len() > command::MAX_USER_ID_BYTES)
            ),
            Err(_) => prop_assert!(expected.is_none() || text.len() > max, "{}", text),
        }
    }

    /// `user_data`: an object with a non-empty string `id`.
    #[test]
    fn signin_user_data_matches_the_model(value in payload()) {
        let text = match &value { Value::String(s) => s.clone(), v => v.to_string() };
        let expected = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.as_object()?.get("id")?.as_str().map(String::from))
            .filter(|id| !id.is_empty());
        prop_assert_eq!(command::signin_user_id(&text).ok(), expected);
    }
}

// ---------------------------------------------------------------- signed API

const NOW: i64 = 1_700_000_000;

fn app() -> App {
    App::new("prop-app", "prop-key", "prop-secret")
}

/// PROTOCOL.md §4.5, written independently of the server's signer.
fn sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let to_sign = format!("{method}\n{path}\n{}", query.join("&"));
    let mut mac = Hmac::<Sha256>::new_from_slice(b"prop-secret").unwrap();
    mac.update(to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// The parameters of a request over `extra` and `body`, `skew` seconds off,
/// and their signature.
fn signed_params(
    extra: &[(String, String)],
    body: &[u8],
    skew: i64,
) -> (Vec<(String, String)>, String) {
    let mut params: Vec<(String, String)> = extra.to_vec();
    params.push(("auth_key".into(), "prop-key".into()));
    params.push(("auth_timestamp".into(), (NOW + skew).to_string()));
    params.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        params.push(("body_md5".into(), hex::encode(Md5::digest(body))));
    }
    let signature = sign("POST", "/apps/prop-app/events", &params);
    (params, signature)
}

/// The query string: every parameter percent-encoded, then the signature.
fn query_of(params: &[(String, String)], signature: &str) -> String {
    let mut parts: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    parts.push(format!("auth_signature={signature}"));
    parts.join("&")
}

fn signed_query(extra: &[(String, String)], body: &[u8], skew: i64) -> String {
    let (params, signature) = signed_params(extra, body, skew);
    query_of(&params, &signature)
}

fn is_refusal(e: &ApiError) -> bool {
    matches!(e, ApiError::Unauthorized(_) | ApiError::BadRequest(_))
}

/// Extra parameters with distinct keys that are not the auth parameters.
fn extra_params() -> impl Strategy<Value = Vec<(String, String)>> {
    btree_map("[a-z_]{1,10}", any::<String>(), 0..5).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| !k.starts_with("auth_") && k != "body_md5")
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Any query string at all: 401 or 400, never a panic, never accepted.
    #[test]
    fn any_query_string_is_refused(query in any::<String>(), body in vec(any::<u8>(), 0..16)) {
        let r = signature::verify(&app(), "POST", "/apps/prop-app/events", &query, &body, NOW);
        prop_assert!(r.as_ref().is_err_and(is_refusal), "{:?}", r.map(|_| ()));
    }

    /// Query-shaped noise around the real parameter names, including huge
    /// or negative timestamps (once an overflow in the window check).
    #[test]
    fn query_shaped_noise_is_refused(
        pairs in vec((prop_oneof![
            Just("auth_key"), Just("auth_timestamp"), Just("auth_version"),
            Just("auth_signature"), Just("body_md5"), Just("x")
        ], prop_oneof![
            Just("prop-key".to_string()), Just("1.0".to_string()),
            any::<i64>().prop_map(|n| n.to_string()), "[0-9a-f%+]{0,64}"
        ]), 0..8),
    ) {
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let query = query.join("&");
        let r = signature::verify(&app(), "GET", "/apps/prop-app/channels", &query, b"", NOW);
        prop_assert!(r.as_ref().is_err_and(is_refusal), "{query}: {:?}", r.map(|_| ()));
    }

    /// A valid signature over any parameters verifies, within the window;
    /// changing any byte of a value, or the clock beyond 600 s, refuses it.
    #[test]
    fn valid_signatures_verify_and_tampering_fails(
        extra in extra_params(),
        body in vec(any::<u8>(), 0..64),
        skew in -600i64..=600,
        late in 601i64..100_000,
        which in any::<prop::sample::Index>(),
    ) {
        let path = "/apps/prop-app/events";
        let query = signed_query(&extra, &body, skew);
        let params = signature::verify(&app(), "POST", path, &query, &body, NOW);
        prop_assert!(params.is_ok(), "{query}: {:?}", params.map(|_| ()));
        let params = params.unwrap();
        for (k, v) in &extra {
            prop_assert!(params.iter().any(|(pk, pv)| pk == k && pv == v), "{k} kept as signed");
        }

        let stale = signed_query(&extra, &body, skew.signum().max(1) * late);
        prop_assert!(signature::verify(&app(), "POST", path, &stale, &body, NOW).is_err());
        prop_assert!(signature::verify(&app(), "GET", path, &query, &body, NOW).is_err());
        if !extra.is_empty() {
            let mut tampered = extra.clone();
            let i = which.index(tampered.len());
            tampered[i].1.push('x');
            // Signed over `extra`, sent with `tampered`.
            let (_, signature) = signed_params(&extra, &body, skew);
            let (sent, _) = signed_params(&tampered, &body, skew);
            let forged = query_of(&sent, &signature);
            prop_assert!(signature::verify(&app(), "POST", path, &forged, &body, NOW).is_err());
        }
        let mut other_body = body.clone();
        other_body.push(b'!');
        prop_assert!(signature::verify(&app(), "POST", path, &query, &other_body, NOW).is_err());
    }
}

/// serde_json stops recursing at depth 128, so nesting is refused rather
/// than overflowing the stack. A client event's `data` is never parsed, only
/// skipped (iteratively) and relayed as sent, so any depth within the frame
/// size passes through untouched.
#[test]
fn deeply_nested_frames_are_refused_without_overflowing_the_stack() {
    for depth in [129, 10_000, 100_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        for data in [&arrays, &objects] {
            for text in [
                format!(r#"{{"event":"pusher:subscribe","data":{data}}}"#),
                format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"c","auth":{data}}}}}"#),
                format!(
                    r#"{{"event":"pusher:signin","data":{}}}"#,
                    Value::String(data.clone())
                ),
                data.clone(),
            ] {
                assert!(
                    command::parse(&text).is_err(),
                    "depth {depth}: {}",
                    &text[..40]
                );
            }
            let client = format!(r#"{{"event":"client-x","channel":"private-c","data":{data}}}"#);
            match command::parse(&client) {
                Ok(Command::ClientEvent(e)) => {
                    assert_eq!(e.data.map(|d| d.get()), Some(data.as_str()))
                }
                other => panic!("depth {depth}: {other:?}"),
            }
        }
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let member = format!("{{\"user_id\":\"1\",\"user_info\":{deep}}}");
    assert!(
        command::presence_member(&member, usize::MAX).is_ok(),
        "user_info is relayed, not parsed"
    );
    let member = format!("{{\"user_id\":{deep}}}");
    assert!(command::presence_member(&member, usize::MAX).is_err());
    assert!(command::signin_user_id(&format!("{{\"id\":{deep}}}")).is_err());
}
