//! Minimal Pusher protocol client (WebSocket) and signed HTTP API client.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, Uri};
use hyper_util::rt::TokioIo;
use memchr::memmem;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::sign::{self, Credentials};

pub type Res<T> = Result<T, String>;
pub type Ws = WebSocketStream<TcpStream>;

/// Where the server is and how to sign for its app.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub creds: Credentials,
    /// Deadline for one protocol step (connect, subscribe, one HTTP call).
    pub op_timeout: Duration,
}

impl Target {
    /// Path and query of the app's WebSocket endpoint.
    pub fn ws_path(&self) -> String {
        format!(
            "/app/{}?protocol=7&client=js&version=8.4.0&flash=false",
            self.creds.key
        )
    }

    fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, self.ws_path())
    }
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn unix_secs() -> u64 {
    unix_nanos() / 1_000_000_000
}

/// The answer to a Pusher-level ping.
pub const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// Whether a text frame is a Pusher-level ping (`pusher:ping`).
pub fn is_ping(text: &[u8]) -> bool {
    memmem::find(text, b"pusher:ping").is_some()
}

/// Opens a WebSocket to the app and waits for `pusher:connection_established`.
pub async fn connect(t: &Target) -> Res<Ws> {
    Ok(connect_id(t).await?.0)
}

/// The `socket_id` in a `pusher:connection_established` frame (its `data`
/// is a JSON string, so the id follows `socket_id\":\"`).
pub fn socket_id_of(frame: &str) -> Option<String> {
    let rest = &frame[frame.find("socket_id")? + "socket_id".len()..];
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let id: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    id.contains('.').then_some(id)
}

/// [`connect`], also returning the socket's `socket_id` (needed to sign
/// private and presence subscriptions).
pub async fn connect_id(t: &Target) -> Res<(Ws, String)> {
    let fut = async {
        let tcp = TcpStream::connect(t.addr)
            .await
            .map_err(|e| format!("tcp connect: {e}"))?;
        tcp.set_nodelay(true).ok();
        let cfg = WebSocketConfig {
            write_buffer_size: 0,
            max_message_size: Some(1 << 20),
            ..Default::default()
        };
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(t.ws_url(), tcp, Some(cfg))
            .await
            .map_err(|e| format!("ws handshake: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(s))) if s.contains("pusher:connection_established") => {
                    let id = socket_id_of(&s)
                        .ok_or_else(|| format!("no socket_id in connection_established: {s}"))?;
                    return Ok((ws, id));
                }
                Some(Ok(Message::Text(s))) if s.contains("pusher:error") => {
                    return Err(format!("server error: {s}"))
                }
                Some(Ok(Message::Close(c))) => return Err(format!("closed by server: {c:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("ws read: {e}")),
                None => return Err("connection closed before established".into()),
            }
        }
    };
    timeout(t.op_timeout, fut)
        .await
        .map_err(|_| "timed out waiting for connection_established".to_string())?
}

/// Subscribes to a public channel and waits for its `subscription_succeeded`.
pub async fn subscribe(t: &Target, ws: &mut Ws, channel: &str) -> Res<()> {
    subscribe_frame(t, ws, public_subscribe_frame(channel))
        .await
        .map(drop)
}

/// The `pusher:subscribe` frame of a public channel.
pub fn public_subscribe_frame(channel: &str) -> String {
    format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#)
}

/// The `pusher:subscribe` frame of a private (`auth`) or presence (`auth`
/// and `channel_data`) channel.
pub fn auth_subscribe_frame(channel: &str, auth: &str, channel_data: Option<&str>) -> String {
    let mut data = serde_json::json!({ "channel": channel, "auth": auth });
    if let Some(cd) = channel_data {
        data["channel_data"] = cd.into();
    }
    serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string()
}

/// The `pusher:subscribe` frame of a private channel for `socket_id`,
/// signed with the app secret as an auth endpoint would.
pub fn private_subscribe_frame(creds: &Credentials, socket_id: &str, channel: &str) -> String {
    let auth = sign::channel_auth(creds, socket_id, channel);
    auth_subscribe_frame(channel, &auth, None)
}

/// Sends a `pusher:subscribe` frame and waits for `subscription_succeeded`,
/// returning that frame (a presence channel's carries the member list).
pub async fn subscribe_frame(t: &Target, ws: &mut Ws, frame: String) -> Res<String> {
    let fut = async {
        ws.send(Message::Text(frame))
            .await
            .map_err(|e| format!("ws send: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(s))) => {
                    if s.contains("subscription_succeeded") {
                        return Ok(s);
                    }
                    if s.contains("subscription_error") || s.contains("pusher:error") {
                        return Err(format!("subscribe failed: {s}"));
                    }
                    answer_ping(ws, &s).await;
                }
                Some(Ok(Message::Close(c))) => return Err(format!("closed by server: {c:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("ws read: {e}")),
                None => return Err("connection closed while subscribing".into()),
            }
        }
    };
    timeout(t.op_timeout, fut)
        .await
        .map_err(|_| "timed out waiting for subscription_succeeded".to_string())?
}

pub async fn unsubscribe(ws: &mut Ws, channel: &str) -> Res<()> {
    let frame = format!(r#"{{"event":"pusher:unsubscribe","data":{{"channel":"{channel}"}}}}"#);
    ws.send(Message::Text(frame))
        .await
        .map_err(|e| format!("ws send: {e}"))
}

/// Answers a Pusher-level ping if `text` is one.
pub async fn answer_ping(ws: &mut Ws, text: &str) {
    if is_ping(text.as_bytes()) {
        ws.send(Message::Text(PONG.into())).await.ok();
    }
}

/// Closing handshake, bounded by `limit`: sends a Close frame and returns
/// once the server's Close reply (or end of stream) arrives. The TCP
/// connection is then dropped without waiting for the server's FIN, as a
/// browser tab that goes away would.
pub async fn close(mut ws: Ws, limit: Duration) -> Res<()> {
    let fut = async {
        ws.close(None).await.map_err(|e| format!("ws close: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            }
        }
    };
    timeout(limit, fut)
        .await
        .map_err(|_| "timed out closing".to_string())?
}

/// One keep-alive HTTP/1.1 connection to the server. If the server closes it
/// (e.g. answers with `Connection: close`), the next request reconnects
/// first; `reconnects` counts how often that happened.
pub struct HttpConn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
    host: String,
    pub reconnects: u64,
}

impl HttpConn {
    pub async fn connect(t: &Target) -> Res<Self> {
        let mut c = HttpConn {
            target: t.clone(),
            sender: None,
            host: t.addr.to_string(),
            reconnects: 0,
        };
        c.sender = Some(c.open().await?);
        Ok(c)
    }

    async fn open(&self) -> Res<SendRequest<Full<Bytes>>> {
        let t = &self.target;
        let tcp = timeout(t.op_timeout, TcpStream::connect(t.addr))
            .await
            .map_err(|_| "http connect timed out".to_string())?
            .map_err(|e| format!("http connect: {e}"))?;
        tcp.set_nodelay(true).ok();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("http handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// A sender that is ready for a request, reconnecting if needed.
    async fn ready(&mut self) -> Res<&mut SendRequest<Full<Bytes>>> {
        if let Some(s) = self.sender.as_mut() {
            if !s.is_closed() && s.ready().await.is_ok() {
                return Ok(self.sender.as_mut().expect("checked above"));
            }
        }
        self.sender = None;
        self.reconnects += 1;
        let mut s = self.open().await?;
        s.ready()
            .await
            .map_err(|e| format!("http not ready: {e}"))?;
        Ok(self.sender.insert(s))
    }

    /// POSTs `body` to `uri` (path and query) and returns the status code,
    /// with the response body read and discarded.
    pub async fn post(&mut self, uri: Uri, body: Bytes) -> Res<u16> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::HOST, self.host.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let limit = self.target.op_timeout;
        let fut = async {
            let sender = self.ready().await?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("http send: {e}"))?;
            let status = resp.status().as_u16();
            let close = resp
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            resp.into_body()
                .collect()
                .await
                .map_err(|e| format!("http body: {e}"))?;
            Ok((status, close))
        };
        match timeout(limit, fut).await {
            Ok(Ok((status, close))) => {
                if close {
                    self.sender = None;
                }
                Ok(status)
            }
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err("http request timed out".into())
            }
        }
    }
}

/// A signed trigger request for one channel, ready to send.
pub struct SignedPost {
    pub uri: Uri,
    pub body: Bytes,
}

pub fn signed_trigger(creds: &Credentials, channel: &str, name: &str, data: &str) -> SignedPost {
    let body = sign::event_body(channel, name, data);
    let uri = sign::signed_events_uri(creds, &body, unix_secs());
    SignedPost {
        uri: uri.parse().expect("signed URI is a valid path and query"),
        body: Bytes::from(body),
    }
}

/// A signed batch trigger (`POST /apps/{id}/batch_events`) of `events`
/// (channel, name, data), ready to send.
pub fn signed_batch<'a>(
    creds: &Credentials,
    events: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> SignedPost {
    let body = sign::batch_body(events);
    let uri = sign::signed_batch_uri(creds, &body, unix_secs());
    SignedPost {
        uri: uri.parse().expect("signed URI is a valid path and query"),
        body: Bytes::from(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_id_from_connection_established() {
        let f = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1234.5678\",\"activity_timeout\":120}"}"#;
        assert_eq!(socket_id_of(f).as_deref(), Some("1234.5678"));
        assert_eq!(socket_id_of(r#"{"event":"pusher:ping"}"#), None);
    }

    #[test]
    fn presence_subscribe_frame_embeds_channel_data_as_a_string() {
        let f = auth_subscribe_frame("presence-x", "k:s", Some(r#"{"user_id":"1"}"#));
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["event"], "pusher:subscribe");
        assert_eq!(v["data"]["auth"], "k:s");
        assert_eq!(v["data"]["channel_data"], r#"{"user_id":"1"}"#);
        let f = auth_subscribe_frame("private-x", "k:s", None);
        assert!(!f.contains("channel_data"));
    }
}
