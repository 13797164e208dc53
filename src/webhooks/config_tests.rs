use super::*;
use serde_json::json;

fn parse(raw: Value) -> Result<Vec<Target>, ConfigError> {
    WebhookSettings::default().parse_targets(&raw, "apps[0].webhooks", &mut Vec::new())
}

fn err(raw: Value) -> String {
    parse(raw).expect_err("refused").to_string()
}

#[test]
fn an_entry_takes_every_sockudo_field() {
    let t = parse(json!([{
        "url": "https://hooks.example/pusher",
        "event_types": ["channel_occupied", "member_added"],
        "filter": {"channel_prefix": "private-", "channel_suffix": "-live"},
        "headers": {"X-Hook-Key": "k1", "X-Num": 7},
        "retry": {"enabled": true, "max_attempts": "4", "initial_backoff_ms": 50,
                  "max_backoff_ms": 400, "max_elapsed_time_ms": 5000},
        "request_timeout_ms": 1500
    }]))
    .unwrap();
    let t = &t[0];
    assert_eq!(t.url.as_str(), "https://hooks.example/pusher");
    assert!(t.events.contains(EventKind::ChannelOccupied));
    assert!(t.events.contains(EventKind::MemberAdded));
    assert!(!t.events.contains(EventKind::ChannelVacated));
    assert!(t.wants(EventKind::ChannelOccupied, "private-chat-live"));
    assert!(!t.wants(EventKind::ChannelOccupied, "chat-live"));
    assert!(!t.wants(EventKind::ChannelOccupied, "private-chat"));
    assert!(!t.wants(EventKind::ClientEvent, "private-chat-live"));
    assert_eq!(
        t.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect::<Vec<_>>(),
        [("x-hook-key", "k1"), ("x-num", "7")]
    );
    assert_eq!(
        t.retry,
        RetryPolicy {
            enabled: true,
            max_attempts: Some(4),
            max_elapsed: Duration::from_millis(5000),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
        }
    );
    assert_eq!(t.request_timeout, Duration::from_millis(1500));
}

#[test]
fn unset_retry_fields_come_from_the_global_block() {
    let global = WebhookSettings::from_file(FileWebhooks {
        retry: FileRetry {
            max_attempts: Some(9),
            initial_backoff_ms: Some(20),
            ..FileRetry::default()
        },
        request_timeout_ms: Some(777),
        ..FileWebhooks::default()
    });
    let t = global
        .parse_targets(
            &json!([{"url": "http://127.0.0.1:9/h", "event_types": ["cache_miss"],
                     "retry": {"max_backoff_ms": 30}}]),
            "k",
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(t[0].retry.max_attempts, Some(9));
    assert_eq!(t[0].retry.initial_backoff, Duration::from_millis(20));
    assert_eq!(t[0].retry.max_backoff, Duration::from_millis(30));
    assert_eq!(t[0].retry.max_elapsed, Duration::from_millis(300_000));
    assert_eq!(t[0].request_timeout, Duration::from_millis(777));
}

#[test]
fn filters_of_every_kind() {
    let f = |filter: Value| {
        parse(json!([{"url": "http://h/x", "event_types": ["channel_occupied"], "filter": filter}]))
            .unwrap()
            .remove(0)
    };
    let pattern = f(json!({"channel_pattern": "^orders-\\d+$"}));
    assert!(pattern.wants(EventKind::ChannelOccupied, "orders-42"));
    assert!(!pattern.wants(EventKind::ChannelOccupied, "orders-x"));
    let ns = f(json!({"channel_namespace": "chat"}));
    assert!(ns.wants(EventKind::ChannelOccupied, "private-chat:42"));
    assert!(ns.wants(EventKind::ChannelOccupied, "presence-cache-chat:1"));
    assert!(!ns.wants(EventKind::ChannelOccupied, "private-news:1"));
    assert!(!ns.wants(EventKind::ChannelOccupied, "chat"));
    let many = f(json!({"channel_namespaces": ["a", "b"]}));
    assert!(many.wants(EventKind::ChannelOccupied, "b:1"));
    assert!(!many.wants(EventKind::ChannelOccupied, "c:1"));
    // Soketi's names work (Sockudo ignores them and matches everything).
    let soketi = f(json!({"channel_name_starts_with": "private-", "channel_name_ends_with": "-x"}));
    assert!(soketi.wants(EventKind::ChannelOccupied, "private-a-x"));
    assert!(!soketi.wants(EventKind::ChannelOccupied, "public-a-x"));
    assert!(!soketi.wants(EventKind::ChannelOccupied, "private-a-y"));
    let none = f(json!({}));
    assert!(none.wants(EventKind::ChannelOccupied, "anything"));
}

#[test]
fn bad_entries_stop_start_up_naming_their_key() {
    let e = err(
        json!([{"url": "http://h/x", "event_types": ["channel_occupied"],
                        "filter": {"channel_pattern": "(unclosed"}}]),
    );
    assert!(
        e.contains("apps[0].webhooks[0].filter.channel_pattern"),
        "{e}"
    );
    assert!(e.contains("not a valid regular expression"), "{e}");
    let e = err(json!([{"event_types": ["channel_occupied"]}]));
    assert!(e.contains("apps[0].webhooks[0].url: is required"), "{e}");
    let e = err(json!([{"url": "ftp://h/x", "event_types": ["channel_occupied"]}]));
    assert!(e.contains("webhooks[0].url"), "{e}");
    let e = err(json!([{"url": "http://h/x"}]));
    assert!(e.contains("webhooks[0].event_types: is required"), "{e}");
    let e = err(json!([{"url": "http://h/x", "event_types": ["ai_run_started"]}]));
    assert!(e.contains("selects no event"), "{e}");
    let e = err(json!([{"url": "http://h/x", "event_types": ["cache_miss"],
                        "lambda": {"function_name": "f", "region": "eu-west-1"}}]));
    assert!(
        e.contains("webhooks[0].lambda") && e.contains("not supported"),
        "{e}"
    );
    let e = err(json!([{"lambda_function": "f", "event_types": ["cache_miss"]}]));
    assert!(e.contains("webhooks[0].lambda_function"), "{e}");
    let e = err(json!([{"url": "http://h/x", "event_types": ["cache_miss"],
                        "headers": {"X-Pusher-Signature": "forged"}}]));
    assert!(
        e.contains("headers.X-Pusher-Signature") && e.contains("cannot be overridden"),
        "{e}"
    );
    let e = err(json!([{"url": "http://h/x", "event_types": ["cache_miss"],
                        "retry": {"max_attempts": 0}}]));
    assert!(e.contains("webhooks[0].retry.max_attempts"), "{e}");
    let e = err(json!([{"url": "http://h/x", "event_types": "cache_miss"}]));
    assert!(e.contains("apps[0].webhooks[0].event_types"), "{e}");
    let e = err(json!({"url": "http://h/x"}));
    assert!(e.contains("apps[0].webhooks"), "{e}");
}

#[test]
fn unknown_event_types_warn_and_the_rest_still_works() {
    let mut warnings = Vec::new();
    let t = WebhookSettings::default()
        .parse_targets(
            &json!([{"url": "http://h/x", "event_types": ["member_updated", "member_added"]}]),
            "k",
            &mut warnings,
        )
        .unwrap();
    assert!(t[0].events.contains(EventKind::MemberAdded));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("k[0].event_types[0]") && warnings[0].contains("member_updated"));
}

#[test]
fn namespaces_end_at_sockudos_colon_or_a_dot() {
    assert_eq!(namespace("private-encrypted-cache-ns:x"), Some("ns"));
    assert_eq!(namespace("private-orders.42"), Some("orders"));
    assert_eq!(namespace("App.Models.User.1"), Some("App"));
    assert_eq!(namespace("a.b:c"), Some("a"));
    assert_eq!(namespace(".x"), None);
    assert_eq!(namespace("ns:x:y"), Some("ns"));
    assert_eq!(namespace(":x"), None);
    assert_eq!(namespace("plain"), None);
}
