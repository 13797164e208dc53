//! A real HTTP webhook receiver on a free loopback port: records every
//! request (headers, raw body) and answers as the test plans — a status, or
//! never (a hung receiver). HTTP/1.1 with keep-alive, as a backend would.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// Read the request, never answer.
    Hang,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
    /// What this request was answered with.
    pub reply: Reply,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {}", self.body))
    }

    pub fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events array: {}", self.body))
            .clone()
    }

    /// `X-Pusher-Signature` is HMAC-SHA256(secret, body), computed here
    /// independently of the server, and `X-Pusher-Key` is `key`.
    pub fn assert_signed(&self, key: &str, secret: &str) {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(self.body.as_bytes());
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            self.header("x-pusher-signature"),
            Some(want.as_str()),
            "{self:?}"
        );
        assert_eq!(self.header("x-pusher-key"), Some(key), "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
    }
}

#[derive(Default)]
struct Shared {
    requests: Vec<Request>,
    plan: VecDeque<Reply>,
    then: Option<Reply>,
}

pub struct Receiver {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers 200 unless told otherwise.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Receiver { port, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answer the next requests with these, in order.
    pub fn plan(&self, replies: &[Reply]) {
        self.shared.lock().unwrap().plan.extend(replies);
    }

    /// Answer every request after the planned ones with this (200 by default).
    pub fn then(&self, reply: Reply) {
        self.shared.lock().unwrap().then = Some(reply);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Every event of every answered-2xx request so far, in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| matches!(r.reply, Reply::Status(s) if (200..300).contains(&s)))
            .flat_map(|r| r.events())
            .collect()
    }

    /// Wait until `pred` holds for the delivered events; panics after `within`.
    pub async fn wait_delivered(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.delivered();
            if pred(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "webhook receiver: {what} not seen within {within:?}; delivered: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait for at least `n` requests (any answer).
    pub async fn wait_requests(&self, n: usize, within: Duration) -> Vec<Request> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "webhook receiver: {n} requests not seen within {within:?}; got {r:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The events named `name` (optionally on `channel`).
pub fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["name"] == name).collect()
}

async fn serve(mut stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let mut buf = Vec::new();
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body_start = head_end + 4;
        while buf.len() < body_start + len {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[body_start..body_start + len]).into_owned();
        buf.drain(..body_start + len);
        let reply = {
            let mut s = shared.lock().unwrap();
            let reply = s
                .plan
                .pop_front()
                .unwrap_or(s.then.unwrap_or(Reply::Status(200)));
            s.requests.push(Request {
                path,
                headers,
                body,
                at: Instant::now(),
                reply,
            });
            reply
        };
        match reply {
            Reply::Hang => {
                // Keep the connection open and silent until the client goes.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Reply::Status(status) => {
                let text = format!("{{\"status\":{status}}}");
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
