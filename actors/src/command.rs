//! Frame → command: what a client's text frame asks for, or why it is refused.
//!
//! Every inbound frame passes through [`parse`] and nowhere else, so one
//! function decides which shapes are accepted. Each frame and each `data`
//! payload must be a JSON **object** with the documented string fields:
//! serde's derived `Deserialize` also accepts a JSON array for a struct
//! (`"data": ["chan"]` would fill `channel` by position), which once let a
//! malformed `pusher:subscribe` subscribe. Anything else is a [`FrameError`],
//! answered with `pusher:error` 4300 and subscribing nothing.
//!
//! Strings borrow from the received text when they can, so `data`,
//! `channel_data` and `user_data` reach the signature check and the fan-out
//! byte for byte as the client sent them.

use crate::error::{PusherError, SubscriptionError};
use crate::presence::Member;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

/// One client request, parsed and shape-checked; nothing is authorised yet.
#[derive(Debug)]
pub enum Command<'a> {
    Ping,
    Pong,
    Subscribe(Subscribe<'a>),
    Unsubscribe { channel: Cow<'a, str> },
    Signin(Signin<'a>),
    ClientEvent(ClientEvent<'a>),
}

/// `data` of `pusher:subscribe`.
#[derive(Debug, Deserialize)]
pub struct Subscribe<'a> {
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    #[serde(borrow, default)]
    pub auth: Option<Cow<'a, str>>,
    /// Signed byte for byte, so kept exactly as received.
    #[serde(borrow, default)]
    pub channel_data: Option<Cow<'a, str>>,
}

/// `data` of `pusher:signin`.
#[derive(Debug, Deserialize)]
pub struct Signin<'a> {
    #[serde(borrow)]
    pub auth: Cow<'a, str>,
    #[serde(borrow)]
    pub user_data: Cow<'a, str>,
}

/// A `client-*` event. Its `data` is relayed as sent, whatever its JSON type.
#[derive(Debug)]
pub struct ClientEvent<'a> {
    pub event: Cow<'a, str>,
    pub channel: Option<Cow<'a, str>>,
    pub data: Option<&'a RawValue>,
}

/// Why a frame was refused; always `pusher:error` 4300, the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("Invalid JSON frame: {0}")]
    Json(String),
    #[error("A frame must be a JSON object with a string \"event\"")]
    NotAnObject,
    #[error("{0} needs data")]
    MissingData(&'static str),
    #[error("Invalid {event} data: {why}")]
    InvalidData { event: &'static str, why: String },
    #[error("Unsupported event: {0}")]
    UnsupportedEvent(String),
}

/// The envelope every frame shares.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Unsubscribe<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

/// Decode a frame's `data` as the payload type `$ty` (see [`data_text`]).
/// The string form cannot be borrowed from the frame, so its result is made
/// owned with `$ty::into_owned` to outlive the decoded text.
macro_rules! payload {
    ($data:expr, $event:expr, $ty:ident) => {{
        let event: &'static str = $event;
        let invalid = |why: String| FrameError::InvalidData { event, why };
        match data_text($data, event)? {
            Cow::Borrowed(text) => object::<$ty>(text).map_err(invalid)?,
            Cow::Owned(text) => object::<$ty>(&text).map_err(invalid)?.into_owned(),
        }
    }};
}

/// Parse one text frame.
pub fn parse(text: &str) -> Result<Command<'_>, FrameError> {
    if !is_object(text) {
        // An array would deserialise positionally; anything else is not a frame.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(e) => FrameError::Json(e.to_string()),
            Ok(_) => FrameError::NotAnObject,
        });
    }
    let frame: Envelope = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            FrameError::NotAnObject
        } else {
            FrameError::Json(e.to_string())
        }
    })?;
    Ok(match &*frame.event {
        "pusher:ping" => Command::Ping,
        "pusher:pong" => Command::Pong,
        "pusher:subscribe" => {
            Command::Subscribe(payload!(frame.data, "pusher:subscribe", Subscribe))
        }
        "pusher:unsubscribe" => Command::Unsubscribe {
            channel: payload!(frame.data, "pusher:unsubscribe", Unsubscribe).channel,
        },
        "pusher:signin" => Command::Signin(payload!(frame.data, "pusher:signin", Signin)),
        name if name.starts_with("client-") => Command::ClientEvent(ClientEvent {
            event: frame.event,
            channel: frame.channel,
            data: frame.data,
        }),
        other => {
            return Err(FrameError::UnsupportedEvent(
                crate::protocol::truncate(other, 64).into(),
            ))
        }
    })
}

/// The JSON text of a frame's `data`, whether the client sent it as an object
/// (pusher-js) or as a string containing JSON (other SDKs).
fn data_text<'a>(
    raw: Option<&'a RawValue>,
    event: &'static str,
) -> Result<Cow<'a, str>, FrameError> {
    let raw = raw.ok_or(FrameError::MissingData(event))?;
    let text = raw.get();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|e| FrameError::InvalidData {
            event,
            why: e.to_string(),
        })?;
        Ok(Cow::Owned(inner))
    } else {
        Ok(Cow::Borrowed(text))
    }
}

/// Deserialise `text` as `T` only if it is a JSON object (see the module doc).
pub fn object<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    if !is_object(text) {
        return Err("expected a JSON object".into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn is_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// The presence member a socket declares in `channel_data` (already
/// verified by the channel signature): an object with a non-empty string or
/// numeric `user_id` of at most 128 bytes and any `user_info`, relayed as sent.
pub fn presence_member(channel_data: &str, max_bytes: usize) -> Result<Member, SubscriptionError> {
    if channel_data.len() > max_bytes {
        return Err(SubscriptionError::LimitReached(format!(
            "channel_data is larger than {max_bytes} bytes"
        )));
    }
    #[derive(Deserialize)]
    struct ChannelData {
        user_id: Option<serde_json::Value>,
        user_info: Option<Box<RawValue>>,
    }
    let parsed: ChannelData = object(channel_data)
        .map_err(|e| SubscriptionError::Auth(format!("Invalid channel_data: {e}")))?;
    let user_id = match parsed.user_id {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => {
            return Err(SubscriptionError::Auth(
                "channel_data must contain a user_id".into(),
            ))
        }
    };
    if user_id.len() > MAX_USER_ID_BYTES {
        return Err(SubscriptionError::LimitReached(format!(
            "user_id is longer than {MAX_USER_ID_BYTES} characters"
        )));
    }
    Ok(Member {
        user_id: Arc::from(user_id),
        user_info: parsed.user_info.map(Arc::from),
    })
}

/// The user ids in a `pusher:signin`'s `user_data.watchlist` (strings; other
/// values and a missing or malformed list are none), each once, in order.
pub fn signin_watchlist(user_data: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct UserData {
        #[serde(default)]
        watchlist: Option<Vec<serde_json::Value>>,
    }
    let Ok(data) = serde_json::from_str::<UserData>(user_data) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for v in data.watchlist.unwrap_or_default() {
        if let serde_json::Value::String(id) = v {
            if !id.is_empty() && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// The user id in a `pusher:signin`'s `user_data` (already verified by the
/// sign-in signature): an object with a non-empty string `id`.
pub fn signin_user_id(user_data: &str) -> Result<String, PusherError> {
    #[derive(Deserialize)]
    struct UserData {
        id: Option<serde_json::Value>,
    }
    match object::<UserData>(user_data) {
        Ok(UserData {
            id: Some(serde_json::Value::String(id)),
        }) if !id.is_empty() => Ok(id),
        Ok(_) => Err(PusherError::SigninFailed(
            "Missing 'id' field in user_data".into(),
        )),
        Err(_) => Err(PusherError::SigninFailed("Invalid user_data JSON".into())),
    }
}

/// Longest presence user id accepted.
pub const MAX_USER_ID_BYTES: usize = 128;

impl Subscribe<'_> {
    fn into_owned(self) -> Subscribe<'static> {
        Subscribe {
            channel: Cow::Owned(self.channel.into_owned()),
            auth: self.auth.map(|a| Cow::Owned(a.into_owned())),
            channel_data: self.channel_data.map(|d| Cow::Owned(d.into_owned())),
        }
    }
}

impl Signin<'_> {
    fn into_owned(self) -> Signin<'static> {
        Signin {
            auth: Cow::Owned(self.auth.into_owned()),
            user_data: Cow::Owned(self.user_data.into_owned()),
        }
    }
}

impl Unsubscribe<'_> {
    fn into_owned(self) -> Unsubscribe<'static> {
        Unsubscribe {
            channel: Cow::Owned(self.channel.into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(text: &str) -> Result<Subscribe<'_>, FrameError> {
        match parse(text)? {
            Command::Subscribe(s) => Ok(s),
            other => panic!("not a subscribe: {other:?}"),
        }
    }

    #[test]
    fn subscribe_accepts_object_and_string_encoded_data() {
        let s = subscribe(r#"{"event":"pusher:subscribe","data":{"channel":"c","auth":"k:s"}}"#)
            .unwrap();
        assert_eq!((&*s.channel, s.auth.as_deref()), ("c", Some("k:s")));
        assert!(
            matches!(s.channel, Cow::Borrowed(_)),
            "object data is not copied"
        );
        let s = subscribe(
            r#"{"event":"pusher:subscribe","data":"{\"channel\":\"presence-r\",\"channel_data\":\"{\\\"user_id\\\":1}\"}"}"#,
        )
        .unwrap();
        assert_eq!(&*s.channel, "presence-r");
        assert_eq!(s.channel_data.as_deref(), Some(r#"{"user_id":1}"#));
        let s = subscribe(
            "{\"event\":\"pusher:subscribe\",\"data\":\" \\n{\\\"channel\\\":\\\"c\\\"}\"}",
        )
        .unwrap();
        assert_eq!(
            &*s.channel, "c",
            "leading whitespace in string data is fine"
        );
    }

    #[test]
    fn only_objects_with_string_fields_are_accepted() {
        // Issue 9, defect 2: a sequence once filled the struct by position.
        for text in [
            r#"{"event":"pusher:subscribe","data":["chan"]}"#,
            r#"{"event":"pusher:subscribe","data":"[\"chan\"]"}"#,
            r#"{"event":"pusher:subscribe","data":["chan","auth",null]}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":["chan"]}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":42}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"c","auth":["k:s"]}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"c","channel_data":{"user_id":"1"}}}"#,
            r#"{"event":"pusher:subscribe","data":{}}"#,
            r#"{"event":"pusher:subscribe","data":"chan"}"#,
            r#"{"event":"pusher:subscribe","data":42}"#,
            r#"{"event":"pusher:subscribe","data":null}"#,
            r#"{"event":"pusher:subscribe"}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"a","channel":"b"}}"#,
            r#"{"event":"pusher:unsubscribe","data":["chan"]}"#,
            r#"{"event":"pusher:unsubscribe","data":{"channel":{}}}"#,
            r#"{"event":"pusher:signin","data":["k:s","{\"id\":\"1\"}"]}"#,
            r#"{"event":"pusher:signin","data":{"auth":"k:s"}}"#,
            r#"["pusher:subscribe",null,{"channel":"chan"}]"#,
            r#"["pusher:ping"]"#,
            r#"{"event":["pusher:ping"]}"#,
            r#"{"event":null}"#,
            r#"{}"#,
            r#""pusher:ping""#,
            "42",
            "null",
            "",
            "{",
            r#"{"event":"pusher:ping"} trailing"#,
        ] {
            assert!(parse(text).is_err(), "{text} must be refused");
        }
    }

    #[test]
    fn events_map_to_commands() {
        assert!(matches!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(Command::Ping)
        ));
        assert!(matches!(
            parse(r#" {"event":"pusher:pong"}"#),
            Ok(Command::Pong)
        ));
        match parse(r#"{"event":"pusher:unsubscribe","data":"{\"channel\":\"c\"}"}"#) {
            Ok(Command::Unsubscribe { channel }) => assert_eq!(channel, "c"),
            other => panic!("{other:?}"),
        }
        match parse(
            r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}"#,
        ) {
            Ok(Command::Signin(s)) => {
                assert_eq!((&*s.auth, &*s.user_data), ("k:s", r#"{"id":"1"}"#))
            }
            other => panic!("{other:?}"),
        }
        match parse(r#"{"event":"client-x","channel":"private-c","data":[1,2]}"#) {
            Ok(Command::ClientEvent(e)) => {
                assert_eq!(
                    (&*e.event, e.channel.as_deref()),
                    ("client-x", Some("private-c"))
                );
                assert_eq!(
                    e.data.map(RawValue::get),
                    Some("[1,2]"),
                    "client data is relayed as sent"
                );
            }
            other => panic!("{other:?}"),
        }
        for (text, want) in [
            (
                r#"{"event":"pusher:subscrib","data":{}}"#,
                "Unsupported event: pusher:subscrib",
            ),
            (
                r#"{"event":"Pusher:ping"}"#,
                "Unsupported event: Pusher:ping",
            ),
            (
                r#"{"event":"pusher:subscribe"}"#,
                "pusher:subscribe needs data",
            ),
            (
                "[1]",
                "A frame must be a JSON object with a string \"event\"",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err().to_string(), want);
        }
        let long = format!(r#"{{"event":"{}"}}"#, "x".repeat(10_000));
        assert!(
            parse(&long).unwrap_err().to_string().len() < 100,
            "names are truncated"
        );
    }

    fn member(text: &str, max: usize) -> Result<(String, Option<String>), SubscriptionError> {
        presence_member(text, max).map(|m| {
            (
                m.user_id.to_string(),
                m.user_info.map(|i| i.get().to_string()),
            )
        })
    }

    #[test]
    fn presence_user_id_is_at_most_128_bytes() {
        let at = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(MAX_USER_ID_BYTES));
        assert_eq!(member(&at, 1024).unwrap().0.len(), 128);
        let over = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(MAX_USER_ID_BYTES + 1));
        assert_eq!(
            member(&over, 1024),
            Err(SubscriptionError::LimitReached(
                "user_id is longer than 128 characters".into()
            ))
        );
        // Bytes, not characters: 64 two-byte characters fit, one more does not.
        let at = format!(r#"{{"user_id":"{}"}}"#, "é".repeat(64));
        assert!(member(&at, 1024).is_ok());
        let over = format!(r#"{{"user_id":"{}x"}}"#, "é".repeat(64));
        assert!(matches!(
            member(&over, 1024),
            Err(SubscriptionError::LimitReached(_))
        ));
    }

    #[test]
    fn channel_data_is_at_most_the_member_size_limit() {
        let text = r#"{"user_id":"1","user_info":{"n":"Ada"}}"#;
        assert!(member(text, text.len()).is_ok(), "exactly the limit");
        assert_eq!(
            member(text, text.len() - 1),
            Err(SubscriptionError::LimitReached(format!(
                "channel_data is larger than {} bytes",
                text.len() - 1
            )))
        );
        // The size is checked before the JSON: an oversized non-object is a
        // limit error, not an auth error.
        assert!(matches!(
            member("[1,2,3]", 3),
            Err(SubscriptionError::LimitReached(_))
        ));
    }

    #[test]
    fn presence_user_id_is_a_non_empty_string_or_a_number() {
        assert_eq!(member(r#"{"user_id":"42"}"#, 100).unwrap().0, "42");
        assert_eq!(
            member(r#"{"user_id":42}"#, 100).unwrap().0,
            "42",
            "numbers are normalised to strings"
        );
        assert_eq!(member(r#"{"user_id":-7}"#, 100).unwrap().0, "-7");
        assert_eq!(member(r#"{"user_id":1.5}"#, 100).unwrap().0, "1.5");
        for bad in [
            r#"{"user_id":""}"#,
            r#"{"user_id":null}"#,
            r#"{"user_id":true}"#,
            r#"{"user_id":["1"]}"#,
            r#"{"user_id":{"id":"1"}}"#,
            r#"{"user_info":{}}"#,
            r#"{"id":"1"}"#,
        ] {
            assert_eq!(
                member(bad, 100),
                Err(SubscriptionError::Auth(
                    "channel_data must contain a user_id".into()
                )),
                "{bad}"
            );
        }
        for bad in ["", "x", r#"["1"]"#, r#""{\"user_id\":\"1\"}""#, "1", "{"] {
            match member(bad, 100) {
                Err(SubscriptionError::Auth(m)) => {
                    assert!(m.starts_with("Invalid channel_data: "), "{bad}: {m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn presence_user_info_is_relayed_as_sent() {
        assert_eq!(
            member(
                r#"{"user_id":"1","user_info": {"name" : "Ada", "n":[1, 2]} }"#,
                100
            )
            .unwrap(),
            ("1".into(), Some(r#"{"name" : "Ada", "n":[1, 2]}"#.into()))
        );
        assert_eq!(member(r#"{"user_id":"1"}"#, 100).unwrap().1, None);
        assert_eq!(
            member(r#"{"user_id":"1","user_info":"text"}"#, 100)
                .unwrap()
                .1,
            Some(r#""text""#.into()),
            "any JSON value"
        );
        assert_eq!(
            member(r#"{"user_id":"1","extra":true}"#, 100).unwrap().0,
            "1",
            "other fields are ignored"
        );
    }

    #[test]
    fn the_watchlist_is_the_string_ids_of_user_data_watchlist() {
        assert_eq!(
            signin_watchlist(r#"{"id":"1","watchlist":["7","8",9,"","7",null]}"#),
            ["7", "8"]
        );
        assert!(signin_watchlist(r#"{"id":"1"}"#).is_empty());
        assert!(signin_watchlist(r#"{"id":"1","watchlist":"7"}"#).is_empty());
        assert!(signin_watchlist("not json").is_empty());
    }

    #[test]
    fn signin_user_data_needs_a_non_empty_string_id() {
        assert_eq!(signin_user_id(r#"{"id":"42"}"#), Ok("42".into()));
        assert_eq!(
            signin_user_id(r#"{"id":"42","user_info":{"name":"Ada"},"watchlist":["7"]}"#),
            Ok("42".into())
        );
        let missing = PusherError::SigninFailed("Missing 'id' field in user_data".into());
        for bad in [
            r#"{}"#,
            r#"{"id":""}"#,
            r#"{"id":42}"#,
            r#"{"id":null}"#,
            r#"{"user_id":"42"}"#,
        ] {
            assert_eq!(signin_user_id(bad), Err(missing.clone()), "{bad}");
        }
        let invalid = PusherError::SigninFailed("Invalid user_data JSON".into());
        for bad in [
            "",
            "42",
            r#"["42"]"#,
            r#""{\"id\":\"42\"}""#,
            "{",
            r#"{"id":"1"} x"#,
        ] {
            assert_eq!(signin_user_id(bad), Err(invalid.clone()), "{bad}");
        }
    }

    #[test]
    fn unknown_events_are_named_in_at_most_64_bytes() {
        let name = format!("pusher:{}", "é".repeat(100));
        let text = format!(r#"{{"event":"{name}"}}"#);
        match parse(&text) {
            Err(FrameError::UnsupportedEvent(shown)) => {
                assert!(shown.len() <= 64 && name.starts_with(&shown), "{shown}");
                assert!(shown.len() > 60, "cut only as far as a character boundary");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn object_refuses_other_json_types() {
        #[derive(Deserialize, Debug)]
        struct UserData {
            #[allow(dead_code)]
            id: Option<String>,
        }
        assert!(object::<UserData>(r#"{"id":"1"}"#).is_ok());
        assert!(object::<UserData>(r#"["1"]"#).is_err());
        assert!(object::<UserData>(r#""{\"id\":\"1\"}""#).is_err());
    }
}
