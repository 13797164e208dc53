//! A raw WebSocket client that does only what a test tells it to (it never
//! answers a close frame, never reads unless asked), and what the server
//! process holds for a connection, read from /proc. Used by the tests of how
//! connections end (tests/lifecycle.rs, tests/shutdown.rs).

use super::{client_frame, upgrade_request, Server};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the server ended a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// FIN: a clean end of stream.
    Eof,
    /// RST.
    Reset,
}

pub struct RawWs {
    pub tcp: TcpStream,
    /// The client's port: names the connection in /proc.
    pub port: u16,
    buf: Vec<u8>,
}

impl RawWs {
    pub async fn open(server: &Server, path: &str) -> RawWs {
        RawWs::open_with(server, path, None).await
    }

    /// Connect (with this receive buffer, if given) and upgrade.
    pub async fn open_with(server: &Server, path: &str, rcvbuf: Option<u32>) -> RawWs {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let addr = format!("127.0.0.1:{}", server.port).parse().unwrap();
        let mut tcp = socket.connect(addr).await.expect("connect");
        let port = tcp.local_addr().unwrap().port();
        tcp.write_all(upgrade_request(path).as_bytes())
            .await
            .unwrap();
        let mut raw = RawWs {
            tcp,
            port,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
                raw.buf.drain(..end + 4);
                break head;
            }
            if let Some(end) = raw.fill().await {
                panic!("connection ended ({end:?}) during the upgrade");
            }
        };
        assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
        raw
    }

    /// Read more into the buffer; `Some(end)` once the stream has ended.
    pub async fn fill(&mut self) -> Option<End> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(10), self.tcp.read(&mut chunk)).await {
            Err(_) => panic!("nothing read within 10 s"),
            Ok(Ok(0)) => Some(End::Eof),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                None
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(End::Reset),
            Ok(Err(e)) => panic!("read error: {e}"),
        }
    }

    /// The next frame: opcode and payload (server frames are not masked).
    pub async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((op, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return (op, payload);
            }
            if let Some(end) = self.fill().await {
                panic!("connection ended ({end:?}) while waiting for a frame");
            }
        }
    }

    /// The next frame, which must be a text frame holding `event`.
    pub async fn expect_event(&mut self, event: &str) -> Value {
        let (op, payload) = self.frame().await;
        assert_eq!(op, 1, "expected a text frame, got opcode {op}");
        let v: Value = serde_json::from_slice(&payload).expect("JSON text frame");
        assert_eq!(v["event"], event, "{v}");
        v
    }

    /// The next frame, which must be a close frame (not answered); its code.
    pub async fn expect_close(&mut self) -> u16 {
        let (op, payload) = self.frame().await;
        assert_eq!(op, 8, "expected a close frame, got opcode {op}");
        assert!(payload.len() >= 2, "close frame without a code");
        u16::from_be_bytes([payload[0], payload[1]])
    }

    /// Read and discard until the connection ends; how, and how long it took.
    pub async fn until_end(&mut self) -> (End, Duration) {
        let started = Instant::now();
        loop {
            self.buf.clear();
            if let Some(end) = self.fill().await {
                return (end, started.elapsed());
            }
        }
    }

    /// Read until the connection ends, failing on any byte after what was
    /// already read: nothing may follow the close frame.
    pub async fn until_clean_end(&mut self) -> End {
        loop {
            if let Some(end) = self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "bytes after the close frame: {:?}",
                    self.buf
                );
                return end;
            }
        }
    }

    /// Send a (masked) frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.tcp
            .write_all(&client_frame(true, opcode, payload))
            .await
            .expect("send frame");
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send(1, v.to_string().as_bytes()).await
    }

    pub async fn subscribe(&mut self, channel: &str) {
        self.send_json(json!({"event": "pusher:subscribe", "data": {"channel": channel}}))
            .await;
        let v = self
            .expect_event("pusher_internal:subscription_succeeded")
            .await;
        assert_eq!(v["channel"], channel);
    }
}

/// One complete unmasked frame at the start of `buf`: opcode, payload and
/// the bytes it took.
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, head) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < head + len {
        return None;
    }
    Some((op, buf[head..head + len].to_vec(), head + len))
}

// ---------------------------------------------------------------------------
// What the server process holds, from /proc

/// Inodes of the sockets the process has open.
pub fn socket_inodes(pid: u32) -> HashSet<String> {
    let mut inodes = HashSet::new();
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/<pid>/fd");
    for entry in dir.flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    inodes
}

/// One TCP connection the server process holds on its port.
pub struct HeldSocket {
    pub client_port: u16,
    /// Bytes written but not yet acknowledged by the client.
    pub send_queue: u64,
    /// Bytes received but not yet read by the server.
    pub recv_queue: u64,
}

/// The TCP connections on `port` (any state but LISTEN) that the process
/// `pid` holds a descriptor for.
pub fn held_sockets(pid: u32, port: u16) -> Vec<HeldSocket> {
    let inodes = socket_inodes(pid);
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit_once(':').unwrap().1, 16).unwrap();
    let hex = |h: &str| u64::from_str_radix(h, 16).unwrap();
    let mut held = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] != "0A" && port_of(f[1]) == port && inodes.contains(f[9]) {
                let (tx, rx) = f[4].split_once(':').unwrap();
                held.push(HeldSocket {
                    client_port: port_of(f[2]),
                    send_queue: hex(tx),
                    recv_queue: hex(rx),
                });
            }
        }
    }
    held
}

/// The server's socket for the connection from `client_port`, if it holds one.
pub fn held_socket(pid: u32, port: u16, client_port: u16) -> Option<HeldSocket> {
    held_sockets(pid, port)
        .into_iter()
        .find(|s| s.client_port == client_port)
}
