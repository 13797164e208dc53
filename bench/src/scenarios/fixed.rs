//! Fixed: exactly `count` operations, closed loop (each one finished before
//! the next starts), for counting the server's instructions per operation
//! (`bench/check.sh` runs the server under callgrind with two counts and
//! takes the difference). Nothing here depends on wall time: every request,
//! event and channel name has the same size in every run, and the run fails
//! unless every operation completed.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, HttpConn, Res, Target, Ws};
use crate::sign;
use crate::stats::round3;

/// The operation repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixedOp {
    /// One HTTP publish to a public channel with `subscribers` sockets,
    /// then every socket receives it (`subscribers` deliveries).
    Fanout,
    /// One HTTP publish to a channel nobody is subscribed to.
    Publish,
    /// One socket subscribes to a presence channel (signed auth, member
    /// data), waits for `subscription_succeeded`, and unsubscribes.
    Presence,
}

#[derive(Clone, Debug)]
pub struct FixedOpts {
    pub op: FixedOp,
    pub count: u64,
    /// Subscribed sockets (fanout only).
    pub subscribers: usize,
    /// Size of each event's `data`, bytes.
    pub event_size: usize,
}

#[derive(Debug, Serialize)]
pub struct FixedResult {
    pub op: FixedOp,
    pub count: u64,
    pub subscribers: usize,
    pub event_size_bytes: usize,
    /// Operations that completed (must equal `count`).
    pub completed: u64,
    /// Events received by the subscribers (fanout: count × subscribers).
    pub deliveries: u64,
    pub secs: f64,
}

/// Channel names, all of one length in every run.
const FAN_CHANNEL: &str = "bench-fixed-fan";
const NOSUB_CHANNEL: &str = "bench-fixed-nosub";
const PRESENCE_CHANNEL: &str = "presence-bench-fixed";
const EVENT: &str = "bench";

pub async fn fixed(t: &Target, o: &FixedOpts) -> Res<FixedResult> {
    let start = Instant::now();
    let (completed, deliveries, subscribers) = match o.op {
        FixedOp::Fanout => fanout(t, o).await?,
        FixedOp::Publish => (publish(t, o).await?, 0, 0),
        FixedOp::Presence => (presence(t, o).await?, 0, 0),
    };
    Ok(FixedResult {
        op: o.op,
        count: o.count,
        subscribers,
        event_size_bytes: o.event_size,
        completed,
        deliveries,
        secs: round3(start.elapsed().as_secs_f64()),
    })
}

/// `data` of exactly `size` bytes, the same in every run.
fn fixed_data(size: usize) -> String {
    "x".repeat(size)
}

/// Sends one signed publish of `post` and requires `200`.
async fn post_ok(http: &mut HttpConn, post: &client::SignedPost) -> Res<()> {
    match http.post(post.uri.clone(), post.body.clone()).await? {
        200 => Ok(()),
        s => Err(format!("publish answered HTTP {s}")),
    }
}

async fn publish(t: &Target, o: &FixedOpts) -> Res<u64> {
    let mut http = HttpConn::connect(t).await?;
    // One signature for the whole run: the timestamp is valid for ±600 s,
    // and the same bytes every time keep the server's work identical.
    let post = client::signed_trigger(&t.creds, NOSUB_CHANNEL, EVENT, &fixed_data(o.event_size));
    for _ in 0..o.count {
        post_ok(&mut http, &post).await?;
    }
    if http.reconnects > 0 {
        return Err(format!(
            "the server closed the keep-alive connection {} times",
            http.reconnects
        ));
    }
    Ok(o.count)
}

async fn fanout(t: &Target, o: &FixedOpts) -> Res<(u64, u64, usize)> {
    let n = o.subscribers.max(1);
    // One at a time: the same sequence of handshakes in every run.
    let mut subs = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = client::connect(t).await?;
        client::subscribe(t, &mut ws, FAN_CHANNEL).await?;
        subs.push(ws);
    }
    let mut http = HttpConn::connect(t).await?;
    let post = client::signed_trigger(&t.creds, FAN_CHANNEL, EVENT, &fixed_data(o.event_size));
    let marker = format!(r#""event":"{EVENT}""#);
    let mut deliveries = 0;
    for _ in 0..o.count {
        post_ok(&mut http, &post).await?;
        for ws in subs.iter_mut() {
            wait_for(t, ws, &marker).await?;
            deliveries += 1;
        }
    }
    if http.reconnects > 0 {
        return Err(format!(
            "the server closed the keep-alive connection {} times",
            http.reconnects
        ));
    }
    for ws in subs {
        client::close(ws, t.op_timeout).await?;
    }
    Ok((o.count, deliveries, n))
}

/// Reads `ws` until a text frame containing `marker` (answering pings).
async fn wait_for(t: &Target, ws: &mut Ws, marker: &str) -> Res<()> {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(s))) => {
                    if s.contains(marker) {
                        return Ok(());
                    }
                    if s.contains("pusher:error") {
                        return Err(format!("server error: {s}"));
                    }
                    client::answer_ping(ws, &s).await;
                }
                Some(Ok(Message::Close(c))) => return Err(format!("closed by server: {c:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("ws read: {e}")),
                None => return Err("connection closed while waiting for an event".into()),
            }
        }
    };
    timeout(t.op_timeout, fut)
        .await
        .map_err(|_| format!("timed out waiting for {marker}"))?
}

async fn presence(t: &Target, o: &FixedOpts) -> Res<u64> {
    let (mut ws, socket_id) = client::connect_id(t).await?;
    let channel_data = r#"{"user_id":"bench-user","user_info":{"name":"bench"}}"#;
    let sig = sign::hmac_hex(
        &t.creds.secret,
        format!("{socket_id}:{PRESENCE_CHANNEL}:{channel_data}").as_bytes(),
    );
    let data = serde_json::json!({
        "channel": PRESENCE_CHANNEL,
        "auth": format!("{}:{sig}", t.creds.key),
        "channel_data": channel_data,
    });
    let subscribe = serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string();
    let unsubscribe = serde_json::json!({
        "event": "pusher:unsubscribe",
        "data": { "channel": PRESENCE_CHANNEL },
    })
    .to_string();
    for _ in 0..o.count {
        ws.send(Message::Text(subscribe.clone()))
            .await
            .map_err(|e| format!("ws send: {e}"))?;
        wait_for(t, &mut ws, "subscription_succeeded").await?;
        // Unanswered; the next subscribe's reply comes after it.
        ws.send(Message::Text(unsubscribe.clone()))
            .await
            .map_err(|e| format!("ws send: {e}"))?;
    }
    client::close(ws, t.op_timeout).await?;
    Ok(o.count)
}

/// Checks that the run did all it was asked.
pub fn verify(r: &FixedResult) -> Res<()> {
    let expected = match r.op {
        FixedOp::Fanout => r.count * r.subscribers as u64,
        FixedOp::Publish | FixedOp::Presence => 0,
    };
    if r.completed != r.count || r.deliveries != expected {
        return Err(format!(
            "incomplete: {} of {} operations, {} of {} deliveries",
            r.completed, r.count, r.deliveries, expected
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_data_has_the_requested_size() {
        assert_eq!(fixed_data(100).len(), 100);
        assert_eq!(fixed_data(0), "");
    }

    #[test]
    fn verify_requires_every_delivery() {
        let mut r = FixedResult {
            op: FixedOp::Fanout,
            count: 3,
            subscribers: 2,
            event_size_bytes: 10,
            completed: 3,
            deliveries: 6,
            secs: 0.0,
        };
        assert!(verify(&r).is_ok());
        r.deliveries = 5;
        assert!(verify(&r).is_err());
        r.op = FixedOp::Publish;
        r.deliveries = 0;
        assert!(verify(&r).is_ok());
        r.completed = 2;
        assert!(verify(&r).is_err());
    }
}
