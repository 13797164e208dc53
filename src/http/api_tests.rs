//! The HTTP API's rules as pure functions, without a server: request
//! validation of `/events` and `/batch_events` at each limit's edge, the
//! `info` and `filter_by_prefix` parameters, and the response bodies built
//! from what the registry reports (PROTOCOL.md §6). tests/http_api.rs checks
//! the same rules end to end over the real binary.

use super::*;
use actix_web::body::to_bytes;
use actix_web::http::StatusCode;
use actix_web::ResponseError;
use bytestring::ByteString;
use serde_json::json;

fn app() -> App {
    App::new("app-id", "app-key", "app-secret")
}

/// `/events` as the handler sees it: the JSON body, then the rules.
fn event(app: &App, body: &Value) -> Result<Event, ApiError> {
    validate_event(app, parse_json(body.to_string().as_bytes())?)
}

fn batch(app: &App, body: &Value) -> Result<Vec<Event>, ApiError> {
    validate_batch(app, body.to_string().as_bytes())
}

/// The message of a 400 `invalid_input`, or a panic naming what came back.
fn bad_request<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
    match r {
        Err(ApiError::BadRequest(m)) => m,
        other => panic!("expected 400 invalid_input, got {other:?}"),
    }
}

fn too_large<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
    match r {
        Err(ApiError::PayloadTooLarge(m)) => m,
        other => panic!("expected 413 payload_too_large, got {other:?}"),
    }
}

fn names(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

// ------------------------------------------------------------------ /events

#[test]
fn event_name_is_required_and_at_most_max_event_name_length() {
    let app = app();
    assert_eq!(app.limits.max_event_name_length, 200, "README default");
    let at = "n".repeat(200);
    let e = event(&app, &json!({"name": at, "channel": "c", "data": "d"})).unwrap();
    assert_eq!(e.name, at);
    let m = bad_request(event(
        &app,
        &json!({"name": "n".repeat(201), "channel": "c", "data": "d"}),
    ));
    assert_eq!(m, "Event name is longer than 200 characters");

    for body in [
        json!({"channel": "c", "data": "d"}),
        json!({"name": "", "channel": "c", "data": "d"}),
        json!({"name": null, "channel": "c", "data": "d"}),
    ] {
        assert_eq!(
            bad_request(event(&app, &body)),
            "Event must have a 'name'",
            "{body}"
        );
    }

    let mut small = app;
    small.limits.max_event_name_length = 3;
    assert!(event(&small, &json!({"name": "abc", "channel": "c", "data": "d"})).is_ok());
    bad_request(event(
        &small,
        &json!({"name": "abcd", "channel": "c", "data": "d"}),
    ));
}

#[test]
fn event_data_is_required() {
    let app = app();
    for body in [
        json!({"name": "e", "channel": "c"}),
        json!({"name": "e", "channel": "c", "data": null}),
    ] {
        assert_eq!(
            bad_request(event(&app, &body)),
            "Event must have 'data'",
            "{body}"
        );
    }
    // An empty string is data.
    let e = event(&app, &json!({"name": "e", "channel": "c", "data": ""})).unwrap();
    assert_eq!(e.data.get(), r#""""#);
}

#[test]
fn string_data_is_at_most_max_event_payload_bytes() {
    let app = app();
    let limit = app.limits.max_event_payload_bytes;
    assert_eq!(limit, 100 * 1024, "README default: 100 KB");

    let at = "x".repeat(limit);
    let e = event(&app, &json!({"name": "e", "channel": "c", "data": at})).unwrap();
    assert_eq!(e.data.get().len(), limit + 2, "relayed as the same token");
    let m = too_large(event(
        &app,
        &json!({"name": "e", "channel": "c", "data": "x".repeat(limit + 1)}),
    ));
    assert_eq!(m, "Event data is larger than 100 KB");

    // The limit counts bytes of the data, not characters.
    let mut small = app;
    small.limits.max_event_payload_bytes = 4;
    assert!(event(&small, &json!({"name": "e", "channel": "c", "data": "éé"})).is_ok());
    too_large(event(
        &small,
        &json!({"name": "e", "channel": "c", "data": "ééx"}),
    ));
}

#[test]
fn escaped_string_data_is_measured_decoded_and_relayed_as_sent() {
    let mut app = app();
    app.limits.max_event_payload_bytes = 4;
    // `\u0078` is six bytes on the wire and one ("x") decoded: four of them
    // fit a limit of 4 although the token is 26 bytes long.
    let token = r#""\u0078\u0078\u0078\u0078""#;
    let body = format!(r#"{{"name":"e","channel":"c","data":{token}}}"#);
    let e = validate_event(&app, parse_json(body.as_bytes()).unwrap()).unwrap();
    assert_eq!(e.data.get(), token, "byte for byte, not re-escaped");

    let over = r#""\u0078\u0078\u0078\u0078\u0078""#;
    let body = format!(r#"{{"name":"e","channel":"c","data":{over}}}"#);
    too_large(validate_event(&app, parse_json(body.as_bytes()).unwrap()));
}

#[test]
fn non_string_data_is_relayed_as_its_text_and_measured_as_such() {
    let mut app = app();
    let e = event(
        &app,
        &json!({"name": "e", "channel": "c", "data": {"id": 7}}),
    )
    .unwrap();
    assert_eq!(e.data.get(), r#""{\"id\":7}""#);
    let e = event(&app, &json!({"name": "e", "channel": "c", "data": 42})).unwrap();
    assert_eq!(e.data.get(), r#""42""#);

    // `[1,2]` is five bytes of text.
    app.limits.max_event_payload_bytes = 5;
    assert!(event(&app, &json!({"name": "e", "channel": "c", "data": [1, 2]})).is_ok());
    app.limits.max_event_payload_bytes = 4;
    too_large(event(
        &app,
        &json!({"name": "e", "channel": "c", "data": [1, 2]}),
    ));
}

#[test]
fn channels_list_or_channel_is_required() {
    let app = app();
    for body in [
        json!({"name": "e", "data": "d"}),
        json!({"name": "e", "data": "d", "channels": []}),
        json!({"name": "e", "data": "d", "channel": null}),
    ] {
        assert_eq!(
            bad_request(event(&app, &body)),
            "Request must contain 'channels' (list) or 'channel' (string)",
            "{body}"
        );
    }
    let e = event(&app, &json!({"name": "e", "data": "d", "channel": "one"})).unwrap();
    assert_eq!(e.channels, ["one"]);
    let e = event(
        &app,
        &json!({"name": "e", "data": "d", "channels": [], "channel": "one"}),
    )
    .unwrap();
    assert_eq!(e.channels, ["one"], "an empty list falls back to 'channel'");
    let e = event(
        &app,
        &json!({"name": "e", "data": "d", "channels": ["a", "b"], "channel": "c"}),
    )
    .unwrap();
    assert_eq!(e.channels, ["a", "b"], "a non-empty list wins");
}

#[test]
fn at_most_max_event_channels_at_once() {
    let app = app();
    assert_eq!(app.limits.max_event_channels_at_once, 100, "README default");
    let e = event(
        &app,
        &json!({"name": "e", "data": "d", "channels": names(100, "c")}),
    )
    .unwrap();
    assert_eq!(e.channels.len(), 100);
    let m = bad_request(event(
        &app,
        &json!({"name": "e", "data": "d", "channels": names(101, "c")}),
    ));
    assert_eq!(m, "An event can be published to at most 100 channels");

    let mut small = app;
    small.limits.max_event_channels_at_once = 1;
    assert!(event(&small, &json!({"name": "e", "data": "d", "channel": "a"})).is_ok());
    bad_request(event(
        &small,
        &json!({"name": "e", "data": "d", "channels": ["a", "b"]}),
    ));
}

#[test]
fn channel_names_follow_the_name_rules() {
    let app = app();
    assert_eq!(app.limits.max_channel_name_length, 200, "README default");
    for ok in [
        "a".repeat(200),
        "a-b_c=d@e,f.g;h".to_string(),
        "private-x".to_string(),
        "presence-cache-room".to_string(),
        "#server-to-user-42".to_string(),
    ] {
        let e = event(&app, &json!({"name": "e", "data": "d", "channel": ok})).unwrap();
        assert_eq!(e.channels, [ok]);
    }
    let cases = [
        (
            "a".repeat(201),
            "Channel name is longer than 200 characters",
        ),
        (String::new(), "Channel name must not be empty"),
        ("has space".into(), "outside [A-Za-z0-9_-=@,.;]"),
        ("ünïcode".into(), "outside"),
        ("a/b".into(), "outside"),
        ("#server-to-user-".into(), "outside"),
        ("#other".into(), "outside"),
    ];
    for (name, why) in cases {
        let m = bad_request(event(
            &app,
            &json!({"name": "e", "data": "d", "channel": name}),
        ));
        assert!(m.starts_with(&format!("Invalid channel '{name}': ")), "{m}");
        assert!(m.contains(why), "{name:?}: {m}");
    }
    // One bad name among good ones refuses the whole event.
    let m = bad_request(event(
        &app,
        &json!({"name": "e", "data": "d", "channels": ["good", "bad name"]}),
    ));
    assert!(m.starts_with("Invalid channel 'bad name'"), "{m}");

    let mut short = app;
    short.limits.max_channel_name_length = 164;
    assert!(event(
        &short,
        &json!({"name": "e", "data": "d", "channel": "a".repeat(164)})
    )
    .is_ok());
    bad_request(event(
        &short,
        &json!({"name": "e", "data": "d", "channel": "a".repeat(165)}),
    ));
}

#[test]
fn encrypted_channels_are_published_to_alone() {
    let app = app();
    for one in ["private-encrypted-chat", "private-encrypted-cache-chat"] {
        assert!(event(&app, &json!({"name": "e", "data": "d", "channel": one})).is_ok());
        assert!(event(&app, &json!({"name": "e", "data": "d", "channels": [one]})).is_ok());
        let m = bad_request(event(
            &app,
            &json!({"name": "e", "data": "d", "channels": ["orders", one]}),
        ));
        assert_eq!(
            m,
            "Encrypted channels cannot be published to together with other channels"
        );
    }
    assert!(event(
        &app,
        &json!({"name": "e", "data": "d", "channels": ["private-a", "presence-b", "c"]})
    )
    .is_ok());
}

#[test]
fn socket_id_must_be_a_socket_id() {
    let app = app();
    let e = event(&app, &json!({"name": "e", "data": "d", "channel": "c"})).unwrap();
    assert_eq!(e.except, None);
    let e = event(
        &app,
        &json!({"name": "e", "data": "d", "channel": "c", "socket_id": "123.456"}),
    )
    .unwrap();
    assert_eq!(
        e.except,
        Some(SocketId {
            node: 123,
            seq: 456
        })
    );
    for bad in ["", "abc", "1.", ".1", "1.2.3", "1:2", " 1.2", "-1.2"] {
        let m = bad_request(event(
            &app,
            &json!({"name": "e", "data": "d", "channel": "c", "socket_id": bad}),
        ));
        assert_eq!(m, format!("Invalid socket_id '{bad}'"));
    }
}

#[test]
fn body_must_be_json_with_fields_of_the_right_types() {
    let app = app();
    for body in [
        "",
        "not json",
        "{",
        r#"{"name":"e","data":"d","channel":7}"#,
        // Array-shaped bodies once filled the struct by position.
        r#"["e","d","chan",null,null,null]"#,
        r#"["e","d",null,["chan"]]"#,
        r#"{"name":"e","data":"d","channel":"a","channel":"b"}"#,
    ] {
        let m = bad_request(
            parse_json::<EventBody>(body.as_bytes()).and_then(|b| validate_event(&app, b)),
        );
        assert!(m.starts_with("Invalid JSON body: "), "{body}: {m}");
    }
}

#[test]
fn checks_run_in_a_fixed_order() {
    // The first rule broken is the one reported: name, data, size, channels,
    // count, names, encryption, socket_id.
    let mut app = app();
    app.limits.max_event_payload_bytes = 1;
    let everything_wrong = json!({
        "name": "", "data": "too long", "channels": ["bad name", "private-encrypted-x"],
        "socket_id": "x"
    });
    assert_eq!(
        bad_request(event(&app, &everything_wrong)),
        "Event must have a 'name'"
    );
    too_large(event(
        &app,
        &json!({"name": "e", "data": "too long", "channel": "bad name", "socket_id": "x"}),
    ));
    assert!(bad_request(event(
        &app,
        &json!({"name": "e", "data": "d", "channels": ["bad name", "private-encrypted-x"], "socket_id": "x"}),
    ))
    .starts_with("Invalid channel"));
}

// ------------------------------------------------------------------ info=

#[test]
fn info_lists_attributes_separated_by_commas() {
    let all = InfoFlags {
        user_count: true,
        subscription_count: true,
        cache: true,
    };
    assert_eq!(
        InfoFlags::parse(Some("user_count,subscription_count,cache")),
        all
    );
    assert_eq!(
        InfoFlags::parse(Some(" cache , subscription_count ,user_count")),
        all,
        "order and blanks around names do not matter"
    );
    assert_eq!(
        InfoFlags::parse(Some("subscription_count")),
        InfoFlags {
            subscription_count: true,
            ..InfoFlags::default()
        }
    );
    for nothing in [
        None,
        Some(""),
        Some(","),
        Some("members"),
        Some("USER_COUNT"),
        Some("user_count;cache"),
    ] {
        let flags = InfoFlags::parse(nothing);
        assert_eq!(flags, InfoFlags::default(), "{nothing:?}");
        assert!(!flags.any());
    }
    assert!(InfoFlags::parse(Some("cache")).any());
    assert!(InfoFlags::parse(Some("user_count")).any());
    assert!(InfoFlags::parse(Some("subscription_count")).any());
}

#[test]
fn event_info_is_parsed() {
    let e = event(
        &app(),
        &json!({"name": "e", "data": "d", "channel": "presence-r", "info": "user_count,subscription_count"}),
    )
    .unwrap();
    assert!(e.info.user_count && e.info.subscription_count && !e.info.cache);
}

#[test]
fn publish_attrs_report_user_count_only_on_presence_channels() {
    let info = InfoFlags::parse(Some("user_count,subscription_count,cache"));
    let stats = |users| ChannelStats {
        name: "x".into(),
        subscription_count: 3,
        user_count: users,
    };
    assert_eq!(
        Value::Object(publish_attrs("presence-room", Some(stats(Some(2))), info)),
        json!({"user_count": 2, "subscription_count": 3})
    );
    assert_eq!(
        Value::Object(publish_attrs("orders", Some(stats(None)), info)),
        json!({"subscription_count": 3}),
        "user_count is left out (not refused) when publishing to a non-presence channel"
    );
    assert_eq!(
        Value::Object(publish_attrs("presence-room", None, info)),
        json!({"user_count": 0, "subscription_count": 0}),
        "nobody subscribed"
    );
    assert_eq!(
        Value::Object(publish_attrs(
            "presence-room",
            Some(stats(Some(2))),
            InfoFlags::parse(Some("cache"))
        )),
        json!({})
    );
}

// ------------------------------------------------------------------ /batch_events

fn item(channel: &str, name: &str) -> Value {
    json!({"channel": channel, "name": name, "data": "{}"})
}

#[test]
fn batch_is_at_most_max_event_batch_size() {
    let app = app();
    assert_eq!(app.limits.max_event_batch_size, 10, "README default");
    let ten: Vec<Value> = (0..10).map(|i| item("c", &format!("e{i}"))).collect();
    let events = batch(&app, &json!({ "batch": ten })).unwrap();
    let got: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(got, names(10, "e"), "in request order");

    let eleven: Vec<Value> = (0..11).map(|i| item("c", &format!("e{i}"))).collect();
    assert_eq!(
        bad_request(batch(&app, &json!({ "batch": eleven }))),
        "Batch size (11) exceeds limit (10)"
    );

    let mut small = app;
    small.limits.max_event_batch_size = 2;
    assert_eq!(
        batch(&small, &json!({"batch": [item("a", "x"), item("b", "y")]}))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        bad_request(batch(
            &small,
            &json!({"batch": [item("a", "x"), item("b", "y"), item("c", "z")]})
        )),
        "Batch size (3) exceeds limit (2)"
    );
    // The size is checked before any item: eleven broken items report the size.
    let broken: Vec<Value> = (0..11).map(|_| json!({})).collect();
    assert!(bad_request(batch(&small, &json!({ "batch": broken }))).starts_with("Batch size"));
}

#[test]
fn batch_needs_a_batch_list() {
    let app = app();
    for body in [json!({}), json!({"batch": null}), json!({"events": []})] {
        assert_eq!(
            bad_request(batch(&app, &body)),
            "Body must contain a 'batch' list",
            "{body}"
        );
    }
    for body in [json!({"batch": {}}), json!({"batch": "x"}), json!([])] {
        assert!(bad_request(batch(&app, &body)).starts_with("Invalid JSON body: "));
    }
    // Each item must be an object too.
    for item in [json!(["e", "d", "chan"]), json!("e"), json!(7)] {
        let m = bad_request(batch(&app, &json!({"batch": [item.clone()]})));
        assert!(m.starts_with("Batch event 0: "), "{item}: {m}");
    }
    assert!(
        bad_request(batch(&app, &json!([[["e", "d", "chan"]]]))).starts_with("Invalid JSON body: ")
    );
    assert!(
        batch(&app, &json!({"batch": []})).unwrap().is_empty(),
        "an empty batch publishes nothing"
    );
}

#[test]
fn batch_items_name_a_single_channel() {
    let app = app();
    let one = json!({"channels": ["a"], "name": "e", "data": "d"});
    let events = batch(&app, &json!({"batch": [item("x", "e"), one]})).unwrap();
    assert_eq!(events[1].channels, ["a"]);
    let two = json!({"channels": ["a", "b"], "name": "e", "data": "d"});
    assert_eq!(
        bad_request(batch(&app, &json!({"batch": [item("x", "e"), two]}))),
        "Batch event 1 must name a single 'channel'"
    );
}

#[test]
fn batch_item_errors_name_the_item() {
    let mut app = app();
    app.limits.max_event_payload_bytes = 1024;
    let cases = [
        (
            json!({"channel": "c", "data": "d"}),
            "Batch event 2: Event must have a 'name'",
        ),
        (
            json!({"channel": "c", "name": "e"}),
            "Batch event 2: Event must have 'data'",
        ),
        (
            json!({"name": "e", "data": "d"}),
            "Batch event 2: Request must contain 'channels' (list) or 'channel' (string)",
        ),
        (
            json!({"channel": "bad name", "name": "e", "data": "d"}),
            "Batch event 2: Invalid channel 'bad name': ",
        ),
        (
            json!({"channel": "c", "name": "e", "data": "d", "socket_id": "x"}),
            "Batch event 2: Invalid socket_id 'x'",
        ),
    ];
    for (bad, want) in cases {
        let body = json!({"batch": [item("a", "x"), item("b", "y"), bad]});
        let m = bad_request(batch(&app, &body));
        assert!(m.starts_with(want), "{m}");
    }
    let body =
        json!({"batch": [item("a", "x"), {"channel": "c", "name": "e", "data": "x".repeat(1025)}]});
    assert_eq!(
        too_large(batch(&app, &body)),
        "Batch event 1: Event data is larger than 1 KB"
    );
}

#[test]
fn prefix_error_prefixes_only_input_errors() {
    let p = |e| prefix_error(e, "Batch event 3: ").to_string();
    assert_eq!(p(ApiError::BadRequest("bad".into())), "Batch event 3: bad");
    assert_eq!(
        p(ApiError::PayloadTooLarge("big".into())),
        "Batch event 3: big"
    );
    assert_eq!(p(ApiError::Unavailable("down".into())), "down");
    assert_eq!(p(ApiError::NotFound), "Not found");
}

// ------------------------------------------------------------------ GET /channels

#[test]
fn channels_user_count_needs_a_presence_prefix() {
    let (prefix, info) = list_query(None, None).unwrap();
    assert_eq!((prefix, info), (None, InfoFlags::default()));
    let (prefix, info) = list_query(Some("private-"), Some("subscription_count")).unwrap();
    assert_eq!(
        prefix.as_deref(),
        Some("private-"),
        "filter_by_prefix is passed on"
    );
    assert!(info.subscription_count && !info.user_count);

    for prefix in ["presence-", "presence-room", "presence-cache-"] {
        let (p, info) = list_query(Some(prefix), Some("user_count")).unwrap();
        assert_eq!(p.as_deref(), Some(prefix));
        assert!(info.user_count);
    }
    for prefix in [
        None,
        Some(""),
        Some("presence"),
        Some("private-"),
        Some("Presence-"),
    ] {
        assert_eq!(
            bad_request(list_query(prefix, Some("subscription_count,user_count"))),
            "info=user_count is only allowed with filter_by_prefix=presence-",
            "{prefix:?}"
        );
    }
}

#[test]
fn listed_channels_show_only_what_info_asked_for() {
    let presence = ChannelStats {
        name: "presence-r".into(),
        subscription_count: 3,
        user_count: Some(2),
    };
    let public = ChannelStats {
        name: "orders".into(),
        subscription_count: 5,
        user_count: None,
    };
    let attrs =
        |s: &ChannelStats, info: &str| Value::Object(stats_attrs(s, InfoFlags::parse(Some(info))));
    assert_eq!(attrs(&presence, ""), json!({}));
    assert_eq!(attrs(&presence, "user_count"), json!({"user_count": 2}));
    assert_eq!(
        attrs(&presence, "user_count,subscription_count"),
        json!({"user_count": 2, "subscription_count": 3})
    );
    assert_eq!(attrs(&public, "user_count"), json!({}));
    assert_eq!(
        attrs(&public, "subscription_count,cache"),
        json!({"subscription_count": 5})
    );
}

// ------------------------------------------------------------------ GET /channels/{name}

#[test]
fn channel_user_count_only_on_presence_channels() {
    let app = app();
    for presence in ["presence-room", "presence-cache-room"] {
        let info = channel_query(&app, presence, Some("user_count")).unwrap();
        assert!(info.user_count);
    }
    for other in [
        "orders",
        "private-x",
        "cache-x",
        "private-encrypted-x",
        "#server-to-user-1",
    ] {
        assert_eq!(
            bad_request(channel_query(
                &app,
                other,
                Some("user_count,subscription_count")
            )),
            "info=user_count is only available for presence channels",
            "{other}"
        );
        assert!(channel_query(&app, other, Some("subscription_count,cache")).is_ok());
    }
    // The name is checked first.
    assert!(
        bad_request(channel_query(&app, "bad name", Some("user_count")))
            .starts_with("Invalid channel 'bad name'")
    );
    bad_request(channel_query(&app, &"a".repeat(201), None));
    assert!(channel_query(&app, &"a".repeat(200), None).is_ok());
}

#[test]
fn users_are_listed_for_valid_presence_channels_only() {
    let app = app();
    assert!(users_query(&app, "presence-room").is_ok());
    assert!(users_query(&app, "presence-cache-room").is_ok());
    for other in ["orders", "private-x", "cache-x"] {
        assert_eq!(
            bad_request(users_query(&app, other)),
            "Users can only be listed for presence channels"
        );
    }
    assert!(bad_request(users_query(&app, "presence-a b")).starts_with("Invalid channel"));
}

fn body(channel: &str, reply: &ChannelInfo, info: &str) -> Value {
    serde_json::to_value(channel_body(channel, reply, InfoFlags::parse(Some(info)))).unwrap()
}

#[test]
fn channel_body_reports_occupancy_and_the_counts_asked_for() {
    let unoccupied = ChannelInfo::default();
    assert_eq!(body("orders", &unoccupied, ""), json!({"occupied": false}));
    assert_eq!(
        body("presence-r", &unoccupied, "user_count,subscription_count"),
        json!({"occupied": false, "user_count": 0, "subscription_count": 0})
    );
    let occupied = ChannelInfo {
        stats: Some(ChannelStats {
            name: "presence-r".into(),
            subscription_count: 3,
            user_count: Some(2),
        }),
        cache: None,
    };
    assert_eq!(body("presence-r", &occupied, ""), json!({"occupied": true}));
    assert_eq!(
        body("presence-r", &occupied, "user_count,subscription_count"),
        json!({"occupied": true, "user_count": 2, "subscription_count": 3})
    );
    assert_eq!(
        body("presence-r", &occupied, "subscription_count"),
        json!({"occupied": true, "subscription_count": 3})
    );
}

#[test]
fn channel_body_cache_only_on_cache_channels_with_info_cache() {
    let frame = r#"{"event":"price","channel":"cache-p","data":"{\"v\":1}"}"#;
    let reply = ChannelInfo {
        stats: None,
        cache: Some((ByteString::from(frame), 42)),
    };
    assert_eq!(
        body("cache-p", &reply, "cache"),
        json!({"occupied": false, "cache": {"event": "price", "data": "{\"v\":1}", "ttl": 42}})
    );
    assert_eq!(
        body("cache-p", &reply, "subscription_count"),
        json!({"occupied": false, "subscription_count": 0}),
        "no cache without info=cache"
    );
    assert_eq!(
        body("orders", &reply, "cache"),
        json!({"occupied": false}),
        "no cache on a channel that is not a cache channel"
    );
    for cache_kind in [
        "private-cache-p",
        "presence-cache-p",
        "private-encrypted-cache-p",
    ] {
        assert!(
            body(cache_kind, &reply, "cache").get("cache").is_some(),
            "{cache_kind}"
        );
    }
    let nothing_cached = ChannelInfo::default();
    assert_eq!(
        body("cache-p", &nothing_cached, "cache"),
        json!({"occupied": false})
    );
}

#[test]
fn cache_attr_relays_data_raw_and_survives_a_bad_frame() {
    // A client event's data can be any JSON, kept as its text.
    let frame = r#"{"event":"client-x","channel":"private-cache-c","data":{"deep":[[[1]]]}}"#;
    let attr = CacheAttr::of(frame, 7);
    assert_eq!(
        serde_json::to_string(&attr).unwrap(),
        r#"{"event":"client-x","data":{"deep":[[[1]]]},"ttl":7}"#
    );
    let attr = CacheAttr::of(r#"{"event":"e","data":"caf\u00e9"}"#, 1);
    assert_eq!(
        serde_json::to_string(&attr).unwrap(),
        r#"{"event":"e","data":"caf\u00e9","ttl":1}"#,
        "string data byte for byte"
    );
    let attr = CacheAttr::of("not json", 3);
    assert_eq!(
        serde_json::to_value(&attr).unwrap(),
        json!({"event": null, "data": null, "ttl": 3})
    );
}

#[actix_web::test]
async fn empty_ok_is_200_with_an_empty_json_object() {
    let resp = empty_ok();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(&to_bytes(resp.into_body()).await.unwrap()[..], b"{}");
}

#[test]
fn an_unavailable_registry_is_503() {
    let e = ApiError::from(RegistryError::Unavailable(actix::MailboxError::Closed));
    assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(e.to_string().starts_with("Channel registry unavailable"));
}
