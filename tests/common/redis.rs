//! A real `redis-server` of the test's own, on a free loopback port, in a
//! temporary directory, without persistence; killed on drop. Never the
//! machine's shared Redis on 6379.
//!
//! ```ignore
//! let Some(mut redis) = RedisServer::start().await else { return }; // skipped locally, fails under CI
//! let url = redis.url();
//! redis.stop();           // an outage: connections reset, new ones refused
//! redis.restart().await;  // same port, empty (nothing is saved)
//! ```

use super::prereq;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `redis-server` may take to answer `PING` after it is started.
const READY: Duration = Duration::from_secs(10);

pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Also listening for TLS on this port (certificate and key in `dir`).
    tls_port: Option<u16>,
}

impl RedisServer {
    /// Start one; `None` (after printing SKIPPED) when `redis-server` is not
    /// installed and this is not CI; under `CI=true` that is a failure.
    pub async fn start() -> Option<RedisServer> {
        let bin = prereq::require_tool("redis-server", "apt-get install -y redis-server")?;
        let mut last = String::new();
        // A free port can be taken between picking and binding: retry.
        for _ in 0..3 {
            let mut server = RedisServer {
                bin: bin.clone(),
                port: super::free_port(),
                // Removed on drop.
                dir: super::fresh_dir(),
                child: None,
                tls_port: None,
            };
            match server.spawn().await {
                Ok(()) => return Some(server),
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// One that also serves TLS with `cert_pem` / `key_pem`, issued by
    /// `ca_pem` (clients are not asked for certificates); the plain port
    /// stays for the test's own checks.
    pub async fn start_tls(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Option<RedisServer> {
        let bin = prereq::require_tool("redis-server", "apt-get install -y redis-server")?;
        let mut last = String::new();
        for _ in 0..3 {
            let dir = super::fresh_dir();
            std::fs::write(dir.join("tls.crt"), cert_pem).expect("write certificate");
            std::fs::write(dir.join("tls.key"), key_pem).expect("write key");
            std::fs::write(dir.join("ca.crt"), ca_pem).expect("write CA");
            let mut server = RedisServer {
                bin: bin.clone(),
                port: super::free_port(),
                dir,
                child: None,
                tls_port: Some(super::free_port()),
            };
            match server.spawn().await {
                Ok(()) => return Some(server),
                Err(e) => last = e,
            }
        }
        panic!("redis-server (TLS) did not start: {last}");
    }

    /// `rediss://localhost:<tls port>/`: the name the test certificate is for.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with start_tls");
        format!("rediss://localhost:{port}/")
    }

    /// The issuing CA's certificate, PEM, as a file (for `SSL_CERT_FILE`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/` (for `REDIS_URL`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kill it: clients see their connections reset and new ones refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port (empty: nothing is saved).
    pub async fn restart(&mut self) {
        self.stop();
        let port = self.port;
        super::respawn("redis-server", port, async || self.spawn().await).await;
    }

    /// Stop the process without closing anything (SIGSTOP): connections
    /// stay open and commands get no answer — a hung Redis.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Let a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Keys matching `pattern`, sorted (`KEYS`; fine on a test's own server).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = match self.command(&["KEYS", pattern]) {
            Reply::Array(items) => items,
            other => panic!("KEYS {pattern}: {other:?}"),
        };
        keys.sort();
        keys
    }

    /// Webhook events waiting in the durable queue's lane lists under
    /// `prefix` (`QUEUE_DRIVER=redis`; not the lease or dead-letter keys).
    pub fn queued_webhook_events(&self, prefix: &str) -> i64 {
        self.keys(&format!("{prefix}webhooks:*"))
            .iter()
            .filter(|k| !k.ends_with(":owner") && !k.ends_with(":dead"))
            .map(|k| match self.command(&["LLEN", k]) {
                Reply::Integer(n) => n,
                other => panic!("LLEN {k}: {other:?}"),
            })
            .sum()
    }

    /// One command over a fresh connection (RESP), for checks and readiness.
    pub fn command(&self, args: &[&str]) -> Reply {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(request.as_bytes()).expect("send to redis");
        read_reply(&mut BufReader::new(stream))
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("redis log");
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(self.tls_args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}: {}", self.log()));
            }
            if self.ping() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("no PONG within {READY:?}: {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn tls_args(&self) -> Vec<String> {
        let Some(port) = self.tls_port else {
            return Vec::new();
        };
        let file = |name: &str| self.dir.join(name).display().to_string();
        vec![
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file("tls.crt"),
            "--tls-key-file".into(),
            file("tls.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }

    /// What `redis-server` wrote.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "==== redis-server (port {}) ====\n{}",
                self.port,
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RESP reply, as far as the tests need one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<String>),
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read from redis");
    line.trim_end_matches("\r\n").to_string()
}

fn read_bulk(r: &mut impl BufRead, len: i64) -> Option<String> {
    if len < 0 {
        return None;
    }
    let mut buf = vec![0; len as usize + 2];
    r.read_exact(&mut buf).expect("read bulk");
    buf.truncate(len as usize);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn read_reply(r: &mut impl BufRead) -> Reply {
    let line = read_line(r);
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" => Reply::Status(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Integer(rest.parse().expect("integer reply")),
        "$" => Reply::Bulk(read_bulk(r, rest.parse().expect("bulk length"))),
        "*" => {
            let n: i64 = rest.parse().expect("array length");
            let items = (0..n.max(0))
                .map(|_| {
                    let line = read_line(r);
                    match line.strip_prefix('$') {
                        Some(len) => {
                            read_bulk(r, len.parse().expect("bulk length")).unwrap_or_default()
                        }
                        None => line[1..].to_string(),
                    }
                })
                .collect();
            Reply::Array(items)
        }
        _ => panic!("unexpected reply from redis: {line:?}"),
    }
}
