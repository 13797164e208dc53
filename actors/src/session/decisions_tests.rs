//! The session's decisions as plain functions: no actor, no socket. What a
//! whole session does with them is tested in `session_tests.rs`.
//!
//! Signatures are made with the harness's own HMAC ([`crate::testing`]), not
//! with the code under test.

use super::client_event::{check_client_event, ClientEventRefused, RateWindow};
use super::reading::{fault, Fault, Reassembly, Whole};
use super::signin::{verify_signin, SigninRefused};
use super::subscribe::{check_subscription, Subscription, Subscriptions};
use crate::app::App;
use crate::auth::AuthError;
use crate::command::{ClientEvent, Signin, Subscribe};
use crate::error::{PusherError, SubscriptionError};
use crate::frame_limit::FrameLimit;
use crate::protocol::ChannelKind;
use crate::testing::{channel_auth, signin_auth, test_app, KEY};
use actix_http::error::PayloadError;
use actix_http::ws::{Item, OpCode, Parser, ProtocolError};
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

const SOCKET: &str = "123.456";

// ---- subscribe ----

fn subscribe<'a>(
    channel: &'a str,
    auth: Option<&'a str>,
    channel_data: Option<&'a str>,
) -> Subscribe<'a> {
    Subscribe {
        channel: Cow::Borrowed(channel),
        auth: auth.map(Cow::Borrowed),
        channel_data: channel_data.map(Cow::Borrowed),
    }
}

fn held(channels: &[(&str, ChannelKind, Option<&str>)]) -> Subscriptions {
    channels
        .iter()
        .map(|(name, kind, user)| {
            (
                Arc::from(*name),
                Subscription {
                    user_id: user.map(Arc::from),
                    kind: *kind,
                },
            )
        })
        .collect()
}

/// `check_subscription` for a socket holding nothing, not signed in.
fn check(
    app: &App,
    sub: &Subscribe,
) -> Result<(ChannelKind, Option<crate::presence::Member>), SubscriptionError> {
    check_subscription(app, SOCKET, None, &Subscriptions::new(), 0, sub)
}

#[test]
fn subscription_to_a_public_channel_needs_only_a_valid_name() {
    let mut app = test_app();
    app.limits.max_channel_name_length = 10;
    let (kind, member) = check(&app, &subscribe("orders", None, None)).unwrap();
    assert_eq!(kind, ChannelKind::Public);
    assert!(member.is_none());
    assert!(check(&app, &subscribe("cache-x", None, None)).is_ok());
    assert!(check(&app, &subscribe(&"a".repeat(10), None, None)).is_ok());

    for name in ["", "has space", "a/b", "#other", &"a".repeat(11)] {
        match check(&app, &subscribe(name, None, None)) {
            Err(SubscriptionError::InvalidChannel(_)) => {}
            other => panic!("{name:?}: {other:?}"),
        }
    }
}

#[test]
fn subscription_count_is_capped_per_connection() {
    let app = test_app();
    let two = held(&[
        ("one", ChannelKind::Public, None),
        ("two", ChannelKind::Public, None),
    ]);
    let three = subscribe("three", None, None);
    match check_subscription(&app, SOCKET, None, &two, 2, &three) {
        Err(SubscriptionError::LimitReached(msg)) => assert!(msg.contains("at most 2"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A channel already held is not a new one.
    assert!(check_subscription(&app, SOCKET, None, &two, 2, &subscribe("one", None, None)).is_ok());
    // Under the cap, and 0 = no cap.
    assert!(check_subscription(&app, SOCKET, None, &two, 3, &three).is_ok());
    assert!(check_subscription(&app, SOCKET, None, &two, 0, &three).is_ok());
}

#[test]
fn a_server_to_user_channel_is_only_for_its_signed_in_user() {
    let app = test_app();
    let sub = subscribe("#server-to-user-42", None, None);
    let none = Subscriptions::new();
    let refused = |user| match check_subscription(&app, SOCKET, user, &none, 0, &sub) {
        Err(SubscriptionError::Auth(_)) => true,
        other => panic!("{user:?}: {other:?}"),
    };
    assert!(refused(None));
    assert!(refused(Some("7")));
    assert!(refused(Some("4")), "a prefix of the id is not the id");
    assert!(refused(Some("420")));
    let (kind, member) = check_subscription(&app, SOCKET, Some("42"), &none, 0, &sub).unwrap();
    assert_eq!(kind, ChannelKind::ServerToUser);
    assert!(member.is_none());
}

#[test]
fn private_and_encrypted_channels_need_this_sockets_signature() {
    let app = test_app();
    for channel in [
        "private-orders",
        "private-encrypted-chat",
        "private-cache-x",
    ] {
        let valid = channel_auth(SOCKET, channel, None);
        let signature = valid.split_once(':').unwrap().1.to_string();
        let (kind, member) = check(&app, &subscribe(channel, Some(&valid), None)).unwrap();
        assert_eq!(kind, ChannelKind::of(channel));
        assert!(member.is_none());

        let other_socket = channel_auth("1.1", channel, None);
        let other_channel = channel_auth(SOCKET, "private-other", None);
        let other_key = format!("other-key:{signature}");
        for auth in [
            None,
            Some(other_socket.as_str()),
            Some(other_channel.as_str()),
            Some(other_key.as_str()),
            Some(signature.as_str()),
        ] {
            match check(&app, &subscribe(channel, auth, None)) {
                Err(SubscriptionError::Auth(_)) => {}
                other => panic!("{channel} {auth:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn presence_channels_need_signed_channel_data_with_a_member() {
    let mut app = test_app();
    app.limits.max_presence_member_size_bytes = 100;
    let channel = "presence-room";
    let data = r#"{"user_id":"7","user_info":{"name":"Ada"}}"#;
    let auth = channel_auth(SOCKET, channel, Some(data));
    let (kind, member) = check(&app, &subscribe(channel, Some(&auth), Some(data))).unwrap();
    assert_eq!(kind, ChannelKind::Presence);
    let member = member.expect("a presence member");
    assert_eq!(&*member.user_id, "7");
    assert_eq!(member.user_info.unwrap().get(), r#"{"name":"Ada"}"#);

    let auth_error = |sub: &Subscribe| match check(&app, sub) {
        Err(SubscriptionError::Auth(msg)) => msg,
        other => panic!("{sub:?}: {other:?}"),
    };
    // No channel_data, or not the signed one.
    let without = channel_auth(SOCKET, channel, None);
    auth_error(&subscribe(channel, Some(&without), None));
    auth_error(&subscribe(channel, Some(&auth), Some(r#"{"user_id":"8"}"#)));
    auth_error(&subscribe(channel, None, Some(data)));
    // Signed, but no user_id.
    let no_id = r#"{"user_info":{}}"#;
    let msg = auth_error(&subscribe(
        channel,
        Some(&channel_auth(SOCKET, channel, Some(no_id))),
        Some(no_id),
    ));
    assert!(msg.contains("user_id"), "{msg}");
    // Signed, but over the member size.
    let big = format!(r#"{{"user_id":"7","user_info":"{}"}}"#, "x".repeat(100));
    let signed = channel_auth(SOCKET, channel, Some(&big));
    match check(&app, &subscribe(channel, Some(&signed), Some(&big))) {
        Err(SubscriptionError::LimitReached(_)) => {}
        other => panic!("{other:?}"),
    }
}

// ---- client events ----

fn client_events_app() -> App {
    let mut app = test_app();
    app.enable_client_messages = true;
    app.limits.max_event_name_length = 20;
    app.limits.max_event_payload_bytes = 10;
    app
}

fn event<'a>(
    name: &'a str,
    channel: Option<&'a str>,
    data: Option<&'a RawValue>,
) -> ClientEvent<'a> {
    ClientEvent {
        event: Cow::Borrowed(name),
        channel: channel.map(Cow::Borrowed),
        data,
    }
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).unwrap()
}

fn channels() -> Subscriptions {
    held(&[
        ("orders", ChannelKind::Public, None),
        ("private-chat", ChannelKind::Private, None),
        (
            "private-encrypted-chat",
            ChannelKind::PrivateEncrypted,
            None,
        ),
        ("presence-room", ChannelKind::Presence, Some("7")),
    ])
}

#[test]
fn client_events_are_relayed_on_private_and_presence_channels_the_sender_holds() {
    let app = client_events_app();
    let subs = channels();
    let data = raw(r#"{"a":1}"#);
    let e = event("client-x", Some("private-chat"), Some(&data));
    let relay = check_client_event(&app, &subs, &e).unwrap();
    assert_eq!(relay.channel, "private-chat");
    assert_eq!(relay.user_id, None);
    assert_eq!(relay.data.get(), r#"{"a":1}"#);

    let e = event("client-x", Some("presence-room"), None);
    let relay = check_client_event(&app, &subs, &e).unwrap();
    assert_eq!(relay.user_id, Some("7"), "presence events carry the sender");
    assert_eq!(relay.data.get(), "null", "absent data is relayed as null");

    // At the limits exactly.
    let ten = raw(r#""12345678""#);
    let at_limit = "client-".to_string() + &"x".repeat(13);
    let e = event(&at_limit, Some("private-chat"), Some(&ten));
    assert!(check_client_event(&app, &subs, &e).is_ok());
}

#[test]
fn client_events_are_refused_for_each_reason() {
    let app = client_events_app();
    let subs = channels();
    let refused = |app: &App, e: &ClientEvent| check_client_event(app, &subs, e).unwrap_err();

    let mut disabled = client_events_app();
    disabled.enable_client_messages = false;
    let ok = event("client-x", Some("private-chat"), None);
    assert_eq!(refused(&disabled, &ok), ClientEventRefused::NotEnabled);
    assert_eq!(
        refused(&app, &event("client-x", None, None)),
        ClientEventRefused::NoChannel
    );
    assert_eq!(
        refused(&app, &event("client-x", Some("private-other"), None)),
        ClientEventRefused::NotSubscribed
    );
    for channel in ["orders", "private-encrypted-chat"] {
        assert_eq!(
            refused(&app, &event("client-x", Some(channel), None)),
            ClientEventRefused::WrongChannelKind,
            "{channel}"
        );
    }
    let long = "client-".to_string() + &"x".repeat(14);
    assert_eq!(
        refused(&app, &event(&long, Some("private-chat"), None)),
        ClientEventRefused::NameTooLong
    );
    let eleven = raw(r#""123456789""#);
    assert_eq!(
        refused(
            &app,
            &event("client-x", Some("private-chat"), Some(&eleven))
        ),
        ClientEventRefused::PayloadTooLarge {
            bytes: 11,
            limit: 10
        }
    );

    // Every refusal is a 4301 that leaves the socket open, saying why.
    let err = PusherError::from(ClientEventRefused::NotSubscribed);
    assert_eq!(err.code(), 4301);
    assert!(!err.closes());
    assert_eq!(
        err.to_string(),
        "Client event rejected: not subscribed to the channel"
    );
}

#[test]
fn the_client_event_window_allows_max_per_window_then_resets() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut w = RateWindow::new(2, Duration::from_secs(1), t0);
    assert!(w.allow(t0));
    assert!(w.allow(t0 + ms(100)));
    assert!(!w.allow(t0 + ms(500)), "third in the window");
    assert!(
        !w.allow(t0 + ms(999)),
        "refusals are not counted, still full"
    );
    assert!(w.allow(t0 + ms(1000)), "a new window");
    assert!(w.allow(t0 + ms(1001)));
    assert!(!w.allow(t0 + ms(1002)));

    // A window starts at the first event after the previous one ended, not
    // on a fixed grid.
    let mut w = RateWindow::new(1, Duration::from_secs(1), t0);
    assert!(w.allow(t0 + ms(5500)));
    assert!(!w.allow(t0 + ms(6400)));
    assert!(w.allow(t0 + ms(6500)));

    // 0 = no limit.
    let mut w = RateWindow::new(0, Duration::from_secs(1), t0);
    assert!((0..10_000).all(|_| w.allow(t0)));
}

// ---- sign-in ----

fn signin<'a>(auth: &'a str, user_data: &'a str) -> Signin<'a> {
    Signin {
        auth: Cow::Borrowed(auth),
        user_data: Cow::Borrowed(user_data),
    }
}

#[test]
fn signin_with_this_sockets_signature_yields_the_user_id() {
    let app = test_app();
    let data = r#"{"id":"42","name":"Ada"}"#;
    let auth = signin_auth(SOCKET, data);
    assert_eq!(
        verify_signin(&app, SOCKET, &signin(&auth, data)).unwrap(),
        "42"
    );
}

#[test]
fn signin_is_refused_for_a_bad_signature_or_user_data_without_an_id() {
    let app = test_app();
    let data = r#"{"id":"42"}"#;
    let refused =
        |auth: &str, data: &str| verify_signin(&app, SOCKET, &signin(auth, data)).unwrap_err();

    let other_socket = signin_auth("1.1", data);
    let other_data = signin_auth(SOCKET, r#"{"id":"43"}"#);
    let signature = other_socket.split_once(':').unwrap().1;
    for (auth, why) in [
        (other_socket.clone(), AuthError::InvalidSignature),
        (other_data, AuthError::InvalidSignature),
        (
            format!("{KEY}:{}", "0".repeat(64)),
            AuthError::InvalidSignature,
        ),
        (format!("other-key:{signature}"), AuthError::WrongKey),
        (signature.to_string(), AuthError::Malformed),
    ] {
        assert_eq!(
            refused(&auth, data),
            SigninRefused::Signature(why),
            "{auth}"
        );
    }

    for (data, text) in [
        (r#"{"name":"Ada"}"#, "Missing 'id' field in user_data"),
        (r#"{"id":""}"#, "Missing 'id' field in user_data"),
        (r#"{"id":42}"#, "Missing 'id' field in user_data"),
        ("not json", "Invalid user_data JSON"),
    ] {
        let auth = signin_auth(SOCKET, data);
        assert_eq!(
            refused(&auth, data),
            SigninRefused::UserData(PusherError::SigninFailed(text.into())),
            "{data}"
        );
    }

    // Both are a 4009 that leaves the socket open.
    let err = PusherError::from(SigninRefused::Signature(AuthError::InvalidSignature));
    assert_eq!((err.code(), err.closes()), (4009, false));
    assert_eq!(err.to_string(), "Signin failed: Invalid signature");
}

// ---- reading: stream errors ----

/// Parse `frame` (as a client writes it) as the server's codec does.
fn codec_error(frame: &[u8], max_size: usize) -> ProtocolError {
    let mut buf = BytesMut::from(frame);
    match Parser::parse(&mut buf, true, max_size) {
        Err(e) => e,
        Ok(frame) => panic!("decoded {frame:?}"),
    }
}

/// A client frame: masked, final.
fn client_frame(op: OpCode, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    Parser::write_message(&mut buf, payload, op, true, true);
    buf
}

/// What actix-web-actors hands the session when its payload stream fails:
/// an `io::Error` of kind `Other` holding the error's text.
fn as_the_session_sees_it(err: PayloadError) -> ProtocolError {
    ProtocolError::Io(io::Error::other(format!("{err}")))
}

/// The error [`FrameLimit`] fails the stream with, for a header over `max`.
fn frame_limit_error(header: &[u8], max: usize) -> PayloadError {
    struct Once(Option<Bytes>);
    impl Stream for Once {
        type Item = Result<Bytes, PayloadError>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.take().map(Ok))
        }
    }
    let mut limit = FrameLimit::new(Once(Some(Bytes::copy_from_slice(header))), max);
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut limit).poll_next(&mut cx) {
        Poll::Ready(Some(Err(e))) => e,
        _ => panic!("FrameLimit let the header through"),
    }
}

#[test]
fn stream_errors_map_to_their_close_codes() {
    // Over the codec's own limit.
    let big = client_frame(OpCode::Text, &[b'x'; 11]);
    assert_eq!(fault(&codec_error(&big, 10)), Fault::TooBig);
    // Refused by FrameLimit on its header.
    let header = &client_frame(OpCode::Text, &[b'x'; 200])[..8];
    assert_eq!(
        fault(&as_the_session_sees_it(frame_limit_error(header, 100))),
        Fault::TooBig
    );
    // A text frame that is not UTF-8, as actix-web-actors reports it.
    let utf8 = bytestring::ByteString::try_from(Bytes::from_static(b"\xff")).unwrap_err();
    let e = ProtocolError::Io(io::Error::other(utf8.to_string()));
    assert_eq!(fault(&e), Fault::InvalidUtf8);
    // Reserved bits set, and an unmasked client frame.
    let mut rsv = client_frame(OpCode::Text, b"x");
    rsv[0] |= 0x40;
    assert_eq!(fault(&codec_error(&rsv, 1024)), Fault::Protocol);
    let mut unmasked = BytesMut::new();
    Parser::write_message(&mut unmasked, b"x", OpCode::Text, true, false);
    assert_eq!(fault(&codec_error(&unmasked, 1024)), Fault::Protocol);
    // The transport failing: the peer is gone.
    let reset = PayloadError::Io(io::Error::from(io::ErrorKind::ConnectionReset));
    assert_eq!(fault(&as_the_session_sees_it(reset)), Fault::Lost);
    assert_eq!(
        fault(&as_the_session_sees_it(PayloadError::Incomplete(None))),
        Fault::Lost
    );

    assert_eq!(Fault::TooBig.close(), Some((1009, "Message too big")));
    assert_eq!(
        Fault::InvalidUtf8.close(),
        Some((1007, "Invalid UTF-8 in text frame"))
    );
    assert_eq!(
        Fault::Protocol.close(),
        Some((1002, "WebSocket protocol error"))
    );
    assert_eq!(
        Fault::UnexpectedContinuation.close(),
        Some((1002, "Unexpected continuation frame"))
    );
    assert_eq!(Fault::Lost.close(), None);
}

// ---- reading: continuation frames ----

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

#[test]
fn fragments_make_the_message_a_single_frame_would_have_been() {
    let mut r = Reassembly::new(100);
    assert_eq!(r.push(Item::FirstText(b(b"{\"a\":"))), Ok(None));
    assert_eq!(r.push(Item::Continue(b(b"\"caf\xc3"))), Ok(None));
    // A character split between fragments is whole once joined.
    assert_eq!(r.push(Item::Continue(b(b"\xa9\""))), Ok(None));
    assert_eq!(
        r.push(Item::Last(b(b"}"))),
        Ok(Some(Whole::Text("{\"a\":\"caf\u{e9}\"}".into())))
    );
    // Then the next message starts afresh.
    assert_eq!(r.push(Item::FirstBinary(b(b"\x00"))), Ok(None));
    assert_eq!(r.push(Item::Last(b(b"\xff"))), Ok(Some(Whole::Binary)));
    assert_eq!(
        r.push(Item::Continue(b(b"x"))),
        Err(Fault::UnexpectedContinuation),
        "nothing to continue after a whole message"
    );
}

#[test]
fn fragments_are_refused_when_stray_not_utf8_or_too_big_together() {
    let mut r = Reassembly::new(10);
    assert_eq!(
        r.push(Item::Continue(b(b"x"))),
        Err(Fault::UnexpectedContinuation)
    );
    assert_eq!(
        r.push(Item::Last(b(b"x"))),
        Err(Fault::UnexpectedContinuation)
    );

    assert_eq!(r.push(Item::FirstText(b(b"ab"))), Ok(None));
    assert_eq!(r.push(Item::Last(b(b"\xff"))), Err(Fault::InvalidUtf8));

    // Exactly the limit, over several fragments, is whole.
    assert_eq!(r.push(Item::FirstText(b(b"12345"))), Ok(None));
    assert_eq!(
        r.push(Item::Last(b(b"67890"))),
        Ok(Some(Whole::Text("1234567890".into())))
    );
    // One byte more is too big, and what was gathered is dropped.
    assert_eq!(r.push(Item::FirstText(b(b"12345"))), Ok(None));
    assert_eq!(r.push(Item::Continue(b(b"67890"))), Ok(None));
    assert_eq!(r.push(Item::Last(b(b"!"))), Err(Fault::TooBig));
    assert_eq!(
        r.push(Item::Last(b(b"x"))),
        Err(Fault::UnexpectedContinuation)
    );
    // A first fragment over the limit on its own.
    assert_eq!(r.push(Item::FirstBinary(b(&[0; 11]))), Err(Fault::TooBig));
    assert_eq!(
        r.push(Item::Last(b(b"x"))),
        Err(Fault::UnexpectedContinuation)
    );
}
