//! One webhook event, serialised once with Pusher's field names and shared
//! by every webhook of the app that selects it.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::value::RawValue;

use super::config::EventKind;

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub channel: Arc<str>,
    /// The JSON object that goes into the body's `events` array.
    pub json: Arc<str>,
    /// When it happened here: delivery latency is measured from this.
    pub at: Instant,
}

#[derive(Serialize)]
struct Body<'a> {
    name: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
}

impl<'a> Body<'a> {
    fn new(kind: EventKind, channel: &'a str) -> Body<'a> {
        Body {
            name: kind.name(),
            channel,
            user_id: None,
            subscription_count: None,
            event: None,
            data: None,
            socket_id: None,
        }
    }
}

impl Event {
    fn from_body(kind: EventKind, channel: &Arc<str>, body: &Body<'_>, at: Instant) -> Event {
        let json = serde_json::to_string(body).expect("a webhook event serialises");
        Event {
            kind,
            channel: channel.clone(),
            json: Arc::from(json),
            at,
        }
    }

    /// `channel_occupied`, `channel_vacated` or `cache_miss`.
    pub fn channel(kind: EventKind, channel: &Arc<str>, at: Instant) -> Event {
        Event::from_body(kind, channel, &Body::new(kind, channel), at)
    }

    /// `member_added` or `member_removed`.
    pub fn member(kind: EventKind, channel: &Arc<str>, user_id: &str, at: Instant) -> Event {
        let body = Body {
            user_id: Some(user_id),
            ..Body::new(kind, channel)
        };
        Event::from_body(kind, channel, &body, at)
    }

    pub fn subscription_count(channel: &Arc<str>, count: usize, at: Instant) -> Event {
        let kind = EventKind::SubscriptionCount;
        let body = Body {
            subscription_count: Some(count),
            ..Body::new(kind, channel)
        };
        Event::from_body(kind, channel, &body, at)
    }

    /// `client_event`, from the frame subscribers received
    /// (`{"event","channel","data"[,"user_id"]}`). Pusher's `data` is a
    /// string: a string the client sent is passed as is, anything else as
    /// its JSON text. `None` if the frame is not such an object.
    pub fn client_event(
        channel: &Arc<str>,
        frame: &str,
        socket_id: &str,
        at: Instant,
    ) -> Option<Event> {
        #[derive(serde::Deserialize)]
        struct Frame<'a> {
            #[serde(borrow)]
            event: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
            #[serde(borrow)]
            user_id: Option<std::borrow::Cow<'a, str>>,
        }
        let f: Frame<'_> = serde_json::from_str(frame).ok()?;
        let data = match f.data {
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(text) => text,
                Err(_) => raw.get().to_string(),
            },
            None => String::new(),
        };
        let kind = EventKind::ClientEvent;
        let body = Body {
            event: Some(&f.event),
            data: Some(&data),
            socket_id: Some(socket_id),
            user_id: f.user_id.as_deref(),
            ..Body::new(kind, channel)
        };
        Some(Event::from_body(kind, channel, &body, at))
    }
}

/// The request body for these events (each one's JSON):
/// `{"time_ms":…,"events":[…]}`.
pub fn body<'a>(time_ms: u64, events: impl IntoIterator<Item = &'a str> + Clone) -> String {
    let len: usize = events.clone().into_iter().map(|e| e.len() + 1).sum();
    let mut out = String::with_capacity(len + 40);
    out.push_str("{\"time_ms\":");
    out.push_str(&time_ms.to_string());
    out.push_str(",\"events\":[");
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(e: &Event) -> Value {
        serde_json::from_str(&e.json).unwrap()
    }

    #[test]
    fn every_event_has_pushers_field_names() {
        let now = Instant::now();
        let c: Arc<str> = Arc::from("presence-room");
        assert_eq!(
            parse(&Event::channel(EventKind::ChannelOccupied, &c, now)),
            json!({"name": "channel_occupied", "channel": "presence-room"})
        );
        assert_eq!(
            parse(&Event::member(EventKind::MemberRemoved, &c, "u1", now)),
            json!({"name": "member_removed", "channel": "presence-room", "user_id": "u1"})
        );
        assert_eq!(
            parse(&Event::subscription_count(&c, 3, now)),
            json!({"name": "subscription_count", "channel": "presence-room", "subscription_count": 3})
        );
        let frame = r#"{"event":"client-typing","channel":"presence-room","data":{"a":[1,2]},"user_id":"u9"}"#;
        assert_eq!(
            parse(&Event::client_event(&c, frame, "1.2", now).unwrap()),
            json!({"name": "client_event", "channel": "presence-room", "event": "client-typing",
                   "data": "{\"a\":[1,2]}", "socket_id": "1.2", "user_id": "u9"})
        );
        let frame = r#"{"event":"client-x","channel":"private-a","data":"already \"text\""}"#;
        let p: Arc<str> = Arc::from("private-a");
        assert_eq!(
            parse(&Event::client_event(&p, frame, "3.4", now).unwrap()),
            json!({"name": "client_event", "channel": "private-a", "event": "client-x",
                   "data": "already \"text\"", "socket_id": "3.4"})
        );
        assert!(Event::client_event(&p, "not json", "3.4", now).is_none());
    }

    #[test]
    fn the_body_is_pushers_envelope() {
        let now = Instant::now();
        let c: Arc<str> = Arc::from("orders");
        let events = [
            Event::channel(EventKind::ChannelOccupied, &c, now),
            Event::channel(EventKind::CacheMiss, &c, now),
        ];
        let v: Value =
            serde_json::from_str(&body(1700000000000, events.iter().map(|e| &*e.json))).unwrap();
        assert_eq!(
            v,
            json!({"time_ms": 1700000000000u64, "events": [
                {"name": "channel_occupied", "channel": "orders"},
                {"name": "cache_miss", "channel": "orders"}]})
        );
    }
}
