//! A lean WebSocket client for the sockets of a fleet, which subscribe and
//! then mostly receive: thousands of them, each getting a frame per publish.
//!
//! Why not tungstenite here: with it, every received frame cost a
//! `Message` and a `String` (allocated and UTF-8 checked) and a trip
//! through its `Stream`/`Sink` state machine, all charged to the load
//! generator's core. This client reads straight into one buffer per socket
//! and hands out each text payload as a slice of it ([`crate::frame`]
//! decodes in place), so in user space a delivery costs a read and a scan
//! for its timestamp. (Most of what remains is the kernel's: the read, and
//! the ACK that a read emptying the socket sends.)
//!
//! It does its own opening handshake so that nothing the server sends right
//! after it (`connection_established`, or deliveries when a socket
//! subscribes during a run) is left in another library's buffer. It answers
//! WebSocket pings itself and replies to the server's Close; Pusher's
//! `pusher:ping` is a text message that its caller answers (see
//! [`crate::client::is_ping`]). Server frames are never fragmented in
//! practice; a fragmented message ends the socket with an error rather than
//! being reassembled.

use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::client::{self, Res, Target};
use crate::frame::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// Largest message accepted (as tungstenite was configured before).
const MAX_PAYLOAD: usize = 1 << 20;
/// Read buffer of a new socket; it grows only to fit a larger frame, so
/// tens of thousands of idle sockets stay cheap.
const INITIAL_BUFFER: usize = 4096;
/// Masking key of every client frame. RFC 6455 wants it unpredictable to
/// protect proxies from cache poisoning; a benchmark talking to its own
/// server over loopback has no such proxy, and servers do not check.
const MASK: [u8; 4] = [0x5b, 0x1e, 0xc4, 0x97];
/// The handshake key (RFC 6455 §1.3's sample nonce; a fixed one serves as
/// well as a random one here, see [`MASK`]) and the accept value a server
/// must answer it with.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Longest handshake response head read before giving up.
const MAX_HANDSHAKE: usize = 16 * 1024;

pub struct Subscriber {
    tcp: TcpStream,
    /// Bytes read from the socket live in `buf[start..end]`; everything
    /// before `start` has been decoded.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Whether this side has sent its Close frame.
    close_sent: bool,
}

impl Subscriber {
    /// Opens a WebSocket to the app and waits for
    /// `pusher:connection_established`, returning the socket and its
    /// `socket_id`, all within the target's step deadline.
    pub async fn connect(t: &Target) -> Res<(Subscriber, String)> {
        let fut = async {
            let tcp = TcpStream::connect(t.addr)
                .await
                .map_err(|e| format!("tcp connect: {e}"))?;
            tcp.set_nodelay(true).ok();
            let mut s = Subscriber {
                tcp,
                buf: vec![0; INITIAL_BUFFER],
                start: 0,
                end: 0,
                close_sent: false,
            };
            s.handshake(t).await?;
            loop {
                let Some(text) = s.next_text().await? else {
                    return Err("connection closed before established".into());
                };
                if has(text, b"pusher:connection_established") {
                    let text = String::from_utf8_lossy(text);
                    let id = client::socket_id_of(&text)
                        .ok_or_else(|| format!("no socket_id in connection_established: {text}"))?;
                    return Ok((s, id));
                }
                if has(text, b"pusher:error") {
                    return Err(format!("server error: {}", String::from_utf8_lossy(text)));
                }
            }
        };
        timeout(t.op_timeout, fut)
            .await
            .map_err(|_| "timed out waiting for connection_established".to_string())?
    }

    /// Sends the upgrade request and consumes the `101` response; whatever
    /// follows it stays in the buffer as the first frames.
    async fn handshake(&mut self, t: &Target) -> Res<()> {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            t.ws_path(),
            t.addr
        );
        self.tcp
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("ws handshake: {e}"))?;
        loop {
            let head = &self.buf[..self.end];
            if let Some(at) = memmem::find(head, b"\r\n\r\n") {
                let head = &head[..at];
                if !(head.starts_with(b"HTTP/1.1 101") && has(head, ACCEPT)) {
                    let head = String::from_utf8_lossy(head);
                    return Err(format!("ws handshake refused: {head}"));
                }
                self.start = at + 4;
                return Ok(());
            }
            if self.end >= MAX_HANDSHAKE {
                return Err("ws handshake: response head too long".into());
            }
            if !self.fill().await? {
                return Err("ws handshake: connection closed".into());
            }
        }
    }

    /// Sends `frame` (a `pusher:subscribe`) and waits for
    /// `subscription_succeeded`, answering Pusher pings meanwhile; returns
    /// that frame.
    pub async fn subscribe(&mut self, t: &Target, frame: &str) -> Res<String> {
        let fut = async {
            self.send_text(frame).await?;
            loop {
                let Some(text) = self.next_text().await? else {
                    return Err("connection closed while subscribing".into());
                };
                if has(text, b"subscription_succeeded") {
                    return Ok(String::from_utf8_lossy(text).into_owned());
                }
                if has(text, b"subscription_error") || has(text, b"pusher:error") {
                    let text = String::from_utf8_lossy(text);
                    return Err(format!("subscribe failed: {text}"));
                }
                if client::is_ping(text) {
                    self.send_text(client::PONG).await?;
                }
            }
        };
        timeout(t.op_timeout, fut)
            .await
            .map_err(|_| "timed out waiting for subscription_succeeded".to_string())?
    }

    /// The payload of the next text message, `None` once the server has
    /// closed the connection. WebSocket pings are answered and Close frames
    /// replied to on the way. The slice is valid until the next call.
    ///
    /// Cancelling it while it waits for data loses nothing (a read either
    /// completes or leaves the bytes in the socket).
    pub async fn next_text(&mut self) -> Res<Option<&[u8]>> {
        let text = loop {
            let Some(f) = frame::decode(&self.buf[self.start..self.end], MAX_PAYLOAD)? else {
                if !self.fill().await? {
                    return Ok(None);
                }
                continue;
            };
            let payload = self.start + f.payload.start..self.start + f.payload.end;
            self.start += f.len();
            if !f.fin {
                return Err("fragmented message (not supported)".into());
            }
            match f.opcode {
                OP_TEXT => break payload,
                OP_PING => {
                    let pong = frame::encode_masked(OP_PONG, &self.buf[payload], MASK);
                    self.write(&pong).await?;
                }
                OP_CLOSE => {
                    if !self.close_sent {
                        // Echo the status code, as RFC 6455 §5.5.1 asks.
                        let code = &self.buf[payload.start..payload.end.min(payload.start + 2)];
                        let reply = frame::encode_masked(OP_CLOSE, code, MASK);
                        self.close_sent = true;
                        self.write(&reply).await.ok();
                    }
                    return Ok(None);
                }
                OP_PONG | OP_BINARY => {}
                op => return Err(format!("unexpected opcode {op:#x}")),
            }
        };
        Ok(Some(&self.buf[text]))
    }

    /// Reads more bytes into the buffer, first making room: rewinding when
    /// everything was decoded, moving a partial frame to the front, or
    /// growing to fit a frame larger than the buffer. False at end of stream.
    async fn fill(&mut self) -> Res<bool> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else {
                // `decode` rejects frames above MAX_PAYLOAD before this
                // could grow past it.
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self
            .tcp
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|e| format!("ws read: {e}"))?;
        self.end += n;
        Ok(n > 0)
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) -> Res<()> {
        let f = frame::encode_masked(OP_TEXT, text.as_bytes(), MASK);
        self.write(&f).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Res<()> {
        self.tcp
            .write_all(bytes)
            .await
            .map_err(|e| format!("ws send: {e}"))
    }

    /// Makes dropping the socket reset the connection instead of closing it
    /// gracefully.
    pub fn set_zero_linger(&self) {
        self.tcp.set_zero_linger().ok();
    }

    /// Closing handshake, bounded by `limit`: sends a Close frame and
    /// returns once the server's Close (or end of stream) arrives; the TCP
    /// connection is then dropped without waiting for the server's FIN, as
    /// a browser tab that goes away would.
    pub async fn close(mut self, limit: Duration) -> Res<()> {
        let fut = async {
            if !self.close_sent {
                self.close_sent = true;
                let f = frame::encode_masked(OP_CLOSE, &1000u16.to_be_bytes(), MASK);
                self.write(&f).await?;
            }
            while let Ok(Some(_)) = self.next_text().await {}
            Ok(())
        };
        timeout(limit, fut)
            .await
            .map_err(|_| "timed out closing".to_string())?
    }
}

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::server_frame;
    use crate::sign::Credentials;
    use tokio::net::TcpListener;

    fn target(l: &TcpListener) -> Target {
        Target {
            addr: l.local_addr().unwrap(),
            creds: Credentials {
                app_id: "id".into(),
                key: "key".into(),
                secret: "secret".into(),
            },
            op_timeout: Duration::from_secs(5),
        }
    }

    fn text(payload: &str) -> Vec<u8> {
        server_frame(true, OP_TEXT, payload.as_bytes())
    }

    const ESTABLISHED: &str = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"12.34\",\"activity_timeout\":120}"}"#;
    const SUCCEEDED: &str =
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#;

    /// Accepts one connection, checks its upgrade request, and answers
    /// `status_line` and (in the same write) `after`.
    async fn accept(l: &TcpListener, status_line: &str, after: &[u8]) -> TcpStream {
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = Vec::new();
        while memmem::find(&req, b"\r\n\r\n").is_none() {
            let mut b = [0; 512];
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "request ended early");
            req.extend_from_slice(&b[..n]);
        }
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /app/key?protocol=7"), "{req}");
        assert!(req.contains(&format!("Sec-WebSocket-Key: {KEY}")), "{req}");
        let mut out = format!(
            "{status_line}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            std::str::from_utf8(ACCEPT).unwrap()
        )
        .into_bytes();
        out.extend_from_slice(after);
        s.write_all(&out).await.unwrap();
        s
    }

    /// Reads one client frame as a server would: (opcode, unmasked payload).
    async fn read_client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut h = [0; 2];
        s.read_exact(&mut h).await.unwrap();
        assert_eq!(h[0] & 0x80, 0x80, "final frame");
        assert_eq!(h[1] & 0x80, 0x80, "client frames are masked");
        let len = match h[1] & 0x7F {
            126 => usize::from(s.read_u16().await.unwrap()),
            127 => s.read_u64().await.unwrap() as usize,
            n => usize::from(n),
        };
        let mut key = [0; 4];
        s.read_exact(&mut key).await.unwrap();
        let mut p = vec![0; len];
        s.read_exact(&mut p).await.unwrap();
        p.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
        (h[0] & 0x0F, p)
    }

    #[tokio::test]
    async fn connects_subscribes_receives_and_closes() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = target(&l);
        let big = "y".repeat(10_000);
        let (a, b) = ("a".repeat(3000), "b".repeat(3000));
        let server = async {
            // The first frame arrives with the handshake response.
            let mut s = accept(&l, "HTTP/1.1 101 Switching Protocols", &text(ESTABLISHED)).await;
            let (op, sub) = read_client_frame(&mut s).await;
            assert_eq!(op, OP_TEXT);
            assert!(String::from_utf8(sub).unwrap().contains("pusher:subscribe"));
            s.write_all(&text(SUCCEEDED)).await.unwrap();
            // A frame in single bytes, then several in one write: one that
            // leaves a partial frame at the end of the buffer and one larger
            // than the buffer.
            for byte in text("split") {
                s.write_all(&[byte]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut burst = [text(&a), text(&b), text(&big)].concat();
            burst.extend(server_frame(true, OP_PING, b"p1"));
            burst.extend(text("after ping"));
            s.write_all(&burst).await.unwrap();
            assert_eq!(read_client_frame(&mut s).await, (OP_PONG, b"p1".to_vec()));
            s.write_all(&server_frame(true, OP_CLOSE, &[0x03, 0xE8, b'!']))
                .await
                .unwrap();
            read_client_frame(&mut s).await
        };
        let client = async {
            let (mut c, id) = Subscriber::connect(&t).await.unwrap();
            assert_eq!(id, "12.34");
            let frame = client::public_subscribe_frame("c");
            assert_eq!(c.subscribe(&t, &frame).await.unwrap(), SUCCEEDED);
            let mut got = Vec::new();
            while let Some(m) = c.next_text().await.unwrap() {
                got.push(String::from_utf8(m.to_vec()).unwrap());
            }
            got
        };
        let (close_echo, got) = tokio::join!(server, client);
        assert_eq!(got, ["split", &a, &b, &big, "after ping"]);
        assert_eq!(
            close_echo,
            (OP_CLOSE, vec![0x03, 0xE8]),
            "status code echoed"
        );
    }

    #[tokio::test]
    async fn refused_handshake_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = target(&l);
        let server = accept(&l, "HTTP/1.1 404 Not Found", b"");
        let (_s, r) = tokio::join!(server, Subscriber::connect(&t));
        let e = r.err().expect("a 404 is no WebSocket");
        assert!(e.contains("refused"), "{e}");
    }

    #[tokio::test]
    async fn fragmented_message_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = target(&l);
        let mut after = text(ESTABLISHED);
        after.extend(server_frame(false, OP_TEXT, b"part"));
        let server = accept(&l, "HTTP/1.1 101 Switching Protocols", &after);
        let (_s, r) = tokio::join!(server, Subscriber::connect(&t));
        let (mut c, _) = r.unwrap();
        let e = c.next_text().await.expect_err("fragments are refused");
        assert!(e.contains("fragmented"), "{e}");
    }
}
