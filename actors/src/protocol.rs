//! Pusher Channels protocol v7: channel kinds, name rules and the frames on the wire.
//!
//! Inbound frames are parsed in [`crate::command`]. Outbound frames are
//! serialised once into a [`ByteString`] that every recipient shares.

use bytestring::ByteString;
use serde_json::value::RawValue;

/// Pusher protocol versions this server speaks.
pub const MIN_PROTOCOL: u32 = 5;
pub const MAX_PROTOCOL: u32 = 7;

/// The prefix of the per-user channel a signed-in socket may subscribe to.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// The internal presence channel of an app's signed-in users, when it has
/// watchlist events: one member per user online, kept (and replicated to
/// the other nodes) like any presence channel, so "online" means the same
/// on every node. Outside the channel-name alphabet: no client can
/// subscribe to it, and it is never listed.
pub const WATCHLIST_CHANNEL: &str = "#watchlist";

/// Users one sign-in may watch (Pusher's limit); more are refused with 4302.
pub const MAX_WATCHLIST: usize = 100;

/// What a channel name says about how it behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    Presence,
    PrivateEncrypted,
    Cache,
    PrivateCache,
    PresenceCache,
    PrivateEncryptedCache,
    ServerToUser,
}

impl ChannelKind {
    /// Classify by prefix; the order matters because prefixes nest.
    pub fn of(name: &str) -> ChannelKind {
        const PREFIXES: [(&str, ChannelKind); 8] = [
            (
                "private-encrypted-cache-",
                ChannelKind::PrivateEncryptedCache,
            ),
            ("private-encrypted-", ChannelKind::PrivateEncrypted),
            ("private-cache-", ChannelKind::PrivateCache),
            ("presence-cache-", ChannelKind::PresenceCache),
            ("cache-", ChannelKind::Cache),
            ("private-", ChannelKind::Private),
            ("presence-", ChannelKind::Presence),
            (SERVER_TO_USER_PREFIX, ChannelKind::ServerToUser),
        ];
        PREFIXES
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map(|(_, kind)| *kind)
            .unwrap_or(ChannelKind::Public)
    }

    /// Subscribing needs an `auth` signature.
    pub fn requires_auth(self) -> bool {
        !matches!(
            self,
            ChannelKind::Public | ChannelKind::Cache | ChannelKind::ServerToUser
        )
    }

    pub fn is_presence(self) -> bool {
        matches!(self, ChannelKind::Presence | ChannelKind::PresenceCache)
    }

    pub fn is_cache(self) -> bool {
        matches!(
            self,
            ChannelKind::Cache
                | ChannelKind::PrivateCache
                | ChannelKind::PresenceCache
                | ChannelKind::PrivateEncryptedCache
        )
    }

    pub fn is_encrypted(self) -> bool {
        matches!(
            self,
            ChannelKind::PrivateEncrypted | ChannelKind::PrivateEncryptedCache
        )
    }

    /// Client events are allowed on private and presence channels, never on
    /// encrypted ones (the server cannot vouch for ciphertext) nor public ones.
    pub fn allows_client_events(self) -> bool {
        matches!(
            self,
            ChannelKind::Private
                | ChannelKind::Presence
                | ChannelKind::PrivateCache
                | ChannelKind::PresenceCache
        )
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    #[error("Channel name must not be empty")]
    Empty,
    #[error("Channel name is longer than {max} characters")]
    TooLong { max: usize },
    #[error("Channel name contains characters outside [A-Za-z0-9_-=@,.;]")]
    InvalidCharacters,
}

/// Check a channel name against Pusher's rules and the app's length limit.
/// `#server-to-user-{id}` is outside the character class and allowed as is.
pub fn validate_channel_name(name: &str, max_len: usize) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > max_len {
        return Err(ChannelNameError::TooLong { max: max_len });
    }
    let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
    if body.is_empty() {
        return Err(ChannelNameError::InvalidCharacters);
    }
    let ok = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ChannelNameError::InvalidCharacters)
    }
}

/// At most `max` bytes of `s`, cut on a character boundary: client-supplied
/// names go into log lines bounded.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Outbound frames, each built once and shared by every recipient.
pub mod frames {
    use super::*;
    use serde::Serialize;

    fn to_bytestring<T: Serialize>(value: &T) -> ByteString {
        let text = serde_json::to_string(value).expect("frame types always serialise");
        ByteString::from(text)
    }

    #[derive(Serialize)]
    struct Frame<'a, D: Serialize> {
        event: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        data: D,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<&'a str>,
    }

    pub fn connection_established(socket_id: &str, activity_timeout: u64) -> ByteString {
        #[derive(Serialize)]
        struct Data<'a> {
            socket_id: &'a str,
            activity_timeout: u64,
        }
        let data = serde_json::to_string(&Data {
            socket_id,
            activity_timeout,
        })
        .expect("serialises");
        to_bytestring(&Frame {
            event: "pusher:connection_established",
            channel: None,
            data,
            user_id: None,
        })
    }

    pub fn ping() -> ByteString {
        ByteString::from_static(r#"{"event":"pusher:ping","data":{}}"#)
    }

    pub fn pong() -> ByteString {
        ByteString::from_static(r#"{"event":"pusher:pong","data":{}}"#)
    }

    /// `pusher:error`; `data` is an object as Pusher sends it.
    pub fn error(code: Option<u16>, message: &str) -> ByteString {
        #[derive(Serialize)]
        struct Data<'a> {
            code: Option<u16>,
            message: &'a str,
        }
        to_bytestring(&Frame {
            event: "pusher:error",
            channel: None,
            data: Data { code, message },
            user_id: None,
        })
    }

    /// A channel-scoped failure; pusher-js raises it on the channel so the
    /// app's `pusher:subscription_error` handler fires.
    pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> ByteString {
        #[derive(Serialize)]
        struct Data<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            error: &'a str,
            status: u16,
        }
        to_bytestring(&Frame {
            event: "pusher:subscription_error",
            channel: Some(channel),
            data: Data {
                kind,
                error,
                status,
            },
            user_id: None,
        })
    }

    pub fn subscription_succeeded(channel: &str) -> ByteString {
        to_bytestring(&Frame {
            event: "pusher_internal:subscription_succeeded",
            channel: Some(channel),
            data: "{}",
            user_id: None,
        })
    }

    /// Presence `subscription_succeeded`; `presence_json` is the already
    /// serialised `{"presence":{...}}` object.
    pub fn presence_subscription_succeeded(channel: &str, presence_json: &str) -> ByteString {
        to_bytestring(&Frame {
            event: "pusher_internal:subscription_succeeded",
            channel: Some(channel),
            data: presence_json,
            user_id: None,
        })
    }

    pub fn member_added(channel: &str, user_id: &str, user_info: Option<&RawValue>) -> ByteString {
        #[derive(Serialize)]
        struct Data<'a> {
            user_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            user_info: Option<&'a RawValue>,
        }
        let data = serde_json::to_string(&Data { user_id, user_info }).expect("serialises");
        to_bytestring(&Frame {
            event: "pusher_internal:member_added",
            channel: Some(channel),
            data,
            user_id: None,
        })
    }

    pub fn member_removed(channel: &str, user_id: &str) -> ByteString {
        #[derive(Serialize)]
        struct Data<'a> {
            user_id: &'a str,
        }
        let data = serde_json::to_string(&Data { user_id }).expect("serialises");
        to_bytestring(&Frame {
            event: "pusher_internal:member_removed",
            channel: Some(channel),
            data,
            user_id: None,
        })
    }

    pub fn subscription_count(channel: &str, count: usize) -> ByteString {
        let data = format!("{{\"subscription_count\":{count}}}");
        to_bytestring(&Frame {
            event: "pusher_internal:subscription_count",
            channel: Some(channel),
            data,
            user_id: None,
        })
    }

    pub fn cache_miss(channel: &str) -> ByteString {
        to_bytestring(&Frame {
            event: "pusher:cache_miss",
            channel: Some(channel),
            data: "{}",
            user_id: None,
        })
    }

    pub fn signin_success(user_data: &str) -> ByteString {
        #[derive(Serialize)]
        struct Data<'a> {
            user_data: &'a str,
        }
        to_bytestring(&Frame {
            event: "pusher:signin_success",
            channel: None,
            data: Data { user_data },
            user_id: None,
        })
    }

    /// An event published through the HTTP API: `data` is the caller's JSON
    /// string token, relayed byte for byte.
    pub fn channel_event(event: &str, channel: &str, data: &RawValue) -> ByteString {
        to_bytestring(&Frame {
            event,
            channel: Some(channel),
            data,
            user_id: None,
        })
    }

    /// A client event: `data` is relayed as the raw JSON the sender wrote, and
    /// presence channels name the sender.
    pub fn client_event(
        event: &str,
        channel: &str,
        data: &RawValue,
        user_id: Option<&str>,
    ) -> ByteString {
        to_bytestring(&Frame {
            event,
            channel: Some(channel),
            data,
            user_id,
        })
    }

    /// `pusher_internal:watchlist_events` for a signed-in user's watchlist.
    pub fn watchlist_event(name: &str, user_ids: &[&str]) -> ByteString {
        #[derive(Serialize)]
        struct Item<'a> {
            name: &'a str,
            user_ids: &'a [&'a str],
        }
        #[derive(Serialize)]
        struct Data<'a> {
            events: [Item<'a>; 1],
        }
        to_bytestring(&Frame {
            event: "pusher_internal:watchlist_events",
            channel: None,
            data: Data {
                events: [Item { name, user_ids }],
            },
            user_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_kinds_follow_prefix_order() {
        use ChannelKind::*;
        let cases = [
            ("orders", Public),
            ("cache-prices", Cache),
            ("private-orders", Private),
            ("private-cache-x", PrivateCache),
            ("private-encrypted-chat", PrivateEncrypted),
            ("private-encrypted-cache-chat", PrivateEncryptedCache),
            ("presence-room", Presence),
            ("presence-cache-room", PresenceCache),
            ("#server-to-user-42", ServerToUser),
            ("privateer", Public),
        ];
        for (name, kind) in cases {
            assert_eq!(ChannelKind::of(name), kind, "{name}");
        }
        assert!(!PrivateEncrypted.allows_client_events());
        assert!(Presence.allows_client_events());
        assert!(!Public.allows_client_events());
        assert!(PresenceCache.is_presence() && PresenceCache.is_cache());
    }

    #[test]
    fn channel_names_are_checked_for_characters_and_length() {
        assert!(validate_channel_name("a-b_c=d@e,f.g;h", 200).is_ok());
        assert!(validate_channel_name("#server-to-user-42", 200).is_ok());
        assert_eq!(
            validate_channel_name("has space", 200),
            Err(ChannelNameError::InvalidCharacters)
        );
        assert_eq!(
            validate_channel_name("#other", 200),
            Err(ChannelNameError::InvalidCharacters)
        );
        assert_eq!(validate_channel_name("", 200), Err(ChannelNameError::Empty));
        let at_limit = "a".repeat(164);
        assert!(validate_channel_name(&at_limit, 164).is_ok());
        let over = "a".repeat(165);
        assert_eq!(
            validate_channel_name(&over, 164),
            Err(ChannelNameError::TooLong { max: 164 })
        );
    }

    #[test]
    fn truncate_keeps_at_most_max_bytes_and_cuts_on_a_char_boundary() {
        assert_eq!(truncate("", 0), "");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(truncate("abc", 3), "abc", "exactly max: untouched");
        assert_eq!(truncate("abcd", 3), "abc", "one over: cut");
        assert_eq!(truncate("abc", 100), "abc");
        // "é" is bytes 1..3 of "héllo": a cut inside it backs off to its start.
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("€", 2), "", "a 3-byte character longer than max");
        assert_eq!(truncate("a€", 3), "a");
        assert_eq!(truncate("a€", 4), "a€");
        // Whatever the cut, the result is the longest prefix that fits.
        let s = "日本語ab🎉";
        for max in 0..=s.len() + 1 {
            let t = truncate(s, max);
            assert!(t.len() <= max, "{max}: {t:?}");
            assert!(s.starts_with(t));
            if t.len() < s.len() {
                let next = s[t.len()..].chars().next().unwrap().len_utf8();
                assert!(t.len() + next > max, "{max}: {t:?} could be longer");
            }
        }
    }

    #[test]
    fn channel_name_length_counts_bytes_and_the_server_to_user_prefix() {
        // The whole name counts, prefix included.
        let user = format!("{SERVER_TO_USER_PREFIX}{}", "1".repeat(4));
        assert!(validate_channel_name(&user, user.len()).is_ok());
        assert_eq!(
            validate_channel_name(&user, user.len() - 1),
            Err(ChannelNameError::TooLong {
                max: user.len() - 1
            })
        );
        // `#` is only allowed as that prefix.
        for bad in [
            "#server-to-user-4#2",
            "a#b",
            "#server-to-user",
            "x#server-to-user-1",
        ] {
            assert_eq!(
                validate_channel_name(bad, 200),
                Err(ChannelNameError::InvalidCharacters),
                "{bad}"
            );
        }
        // Every allowed character, and a few that are not.
        let all: String = ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .chain("_-=@,.;".chars())
            .collect();
        assert!(validate_channel_name(&all, 200).is_ok());
        for c in [' ', '/', ':', '#', '%', '+', '!', '*', '\0', 'é', '０'] {
            let name = format!("ab{c}cd");
            assert_eq!(
                validate_channel_name(&name, 200),
                Err(ChannelNameError::InvalidCharacters),
                "{name:?}"
            );
        }
        assert_eq!(
            validate_channel_name("", 0),
            Err(ChannelNameError::Empty),
            "empty is reported before length"
        );
    }

    #[test]
    fn every_frame_has_its_exact_shape() {
        let cases: [(ByteString, &str); 13] = [
            (frames::ping(), r#"{"event":"pusher:ping","data":{}}"#),
            (frames::pong(), r#"{"event":"pusher:pong","data":{}}"#),
            (
                frames::error(Some(4301), "Client event rejected due to rate limit"),
                r#"{"event":"pusher:error","data":{"code":4301,"message":"Client event rejected due to rate limit"}}"#,
            ),
            (
                frames::error(None, "x"),
                r#"{"event":"pusher:error","data":{"code":null,"message":"x"}}"#,
            ),
            (
                frames::subscription_error("private-o", "AuthError", "Invalid signature", 401),
                r#"{"event":"pusher:subscription_error","channel":"private-o","data":{"type":"AuthError","error":"Invalid signature","status":401}}"#,
            ),
            (
                frames::subscription_succeeded("orders"),
                r#"{"event":"pusher_internal:subscription_succeeded","channel":"orders","data":"{}"}"#,
            ),
            (
                frames::presence_subscription_succeeded(
                    "presence-r",
                    r#"{"presence":{"ids":["1"],"hash":{"1":null},"count":1}}"#,
                ),
                r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-r","data":"{\"presence\":{\"ids\":[\"1\"],\"hash\":{\"1\":null},\"count\":1}}"}"#,
            ),
            (
                frames::member_added(
                    "presence-r",
                    "42",
                    Some(&RawValue::from_string(r#"{"name": "Ada"}"#.into()).unwrap()),
                ),
                r#"{"event":"pusher_internal:member_added","channel":"presence-r","data":"{\"user_id\":\"42\",\"user_info\":{\"name\": \"Ada\"}}"}"#,
            ),
            (
                frames::member_added("presence-r", "42", None),
                r#"{"event":"pusher_internal:member_added","channel":"presence-r","data":"{\"user_id\":\"42\"}"}"#,
            ),
            (
                frames::member_removed("presence-r", "42"),
                r#"{"event":"pusher_internal:member_removed","channel":"presence-r","data":"{\"user_id\":\"42\"}"}"#,
            ),
            (
                frames::subscription_count("orders", 3),
                r#"{"event":"pusher_internal:subscription_count","channel":"orders","data":"{\"subscription_count\":3}"}"#,
            ),
            (
                frames::cache_miss("cache-p"),
                r#"{"event":"pusher:cache_miss","channel":"cache-p","data":"{}"}"#,
            ),
            (
                frames::signin_success(r#"{"id":"42"}"#),
                r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"42\"}"}}"#,
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(&*frame, want);
        }
        assert_eq!(
            &*frames::watchlist_event("online", &["7", "8"]),
            r#"{"event":"pusher_internal:watchlist_events","data":{"events":[{"name":"online","user_ids":["7","8"]}]}}"#
        );
    }

    #[test]
    fn frames_are_pusher_shaped() {
        let f = frames::connection_established("1.2", 120);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["event"], "pusher:connection_established");
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "1.2");
        assert_eq!(data["activity_timeout"], 120);

        let data = RawValue::from_string(r#""{\"id\":7} caf\u00e9 \/""#.into()).unwrap();
        let f = frames::channel_event("e", "c", &data);
        assert_eq!(
            &*f,
            r#"{"event":"e","channel":"c","data":"{\"id\":7} caf\u00e9 \/"}"#
        );

        let raw = RawValue::from_string("{\"text\": \"hi\"}".into()).unwrap();
        let f = frames::client_event("client-x", "presence-r", &raw, Some("42"));
        assert_eq!(
            &*f,
            r#"{"event":"client-x","channel":"presence-r","data":{"text": "hi"},"user_id":"42"}"#
        );
    }
}
