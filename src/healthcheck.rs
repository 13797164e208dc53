//! `switchyard --health`: ask this node's own listener for `GET /up` and
//! exit 0 on `200`, 1 on anything else — the command of the Docker
//! `HEALTHCHECK` (and of any exec probe: systemd, Kubernetes, Nomad).
//!
//! It reads the configuration the server reads, with the same loader
//! (`.env` in the working directory, the environment, the config file from
//! `--config`, `CONFIG_FILE` or `config/config.{toml,json}`), so it finds
//! the listener the server opened:
//!
//! - `UNIX_SOCKET_ENABLED=true`: HTTP/1.1 over `UNIX_SOCKET_PATH` (the server
//!   then has no TCP listener, whatever `SSL_ENABLED` says);
//! - else `SSL_ENABLED=true`: HTTPS on `HOST:PORT`;
//! - else plain HTTP on `HOST:PORT`.
//!
//! A wildcard `HOST` is probed on loopback: `0.0.0.0` on `127.0.0.1`, `::` on
//! `::1` and then `127.0.0.1` (a `::` listener usually takes IPv4 too).
//! Connecting, the TLS handshake, the request and the status line share one
//! deadline, `HEALTH_CHECK_TIMEOUT_MS` (default 2000 ms; `0` = the default),
//! so the probe ends before Docker's `--timeout` kills it.
//!
//! One request and one status line need no HTTP client: std sockets, socket2
//! for a bounded Unix-socket connect, rustls for TLS — all already
//! dependencies of the server — and no curl in the image.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::config::Config;

/// The probe's deadline when `HEALTH_CHECK_TIMEOUT_MS` is `0`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2000);

/// What is asked for: Sockudo's health endpoint, 200 once the server listens.
const PATH: &str = "/up";

/// A status line longer than this is not an HTTP/1.x answer.
const MAX_STATUS_LINE: usize = 1024;

/// Where the probe goes, decided from the configuration alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Http { host: String, port: u16 },
    Https { host: String, port: u16 },
    Unix { path: String },
}

impl Target {
    /// The listener [`crate::server::run`] opens for this configuration.
    pub fn of(config: &Config) -> Target {
        if config.unix_socket.enabled {
            Target::Unix {
                path: config.unix_socket.path.clone(),
            }
        } else if config.ssl.enabled {
            Target::Https {
                host: config.host.clone(),
                port: config.port,
            }
        } else {
            Target::Http {
                host: config.host.clone(),
                port: config.port,
            }
        }
    }
}

/// The probe's deadline from `HEALTH_CHECK_TIMEOUT_MS`.
pub fn timeout(config: &Config) -> Duration {
    match config.health_check_timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    }
}

/// Probe the configured listener. `Ok` names what answered 200 (for the
/// health log `docker inspect` shows); `Err` is the one-line reason.
pub fn run(config: &Config) -> Result<String, String> {
    probe(&Target::of(config), timeout(config))
}

/// Probe `target` once within `limit`.
pub fn probe(target: &Target, limit: Duration) -> Result<String, String> {
    let deadline = Deadline {
        end: Instant::now() + limit,
        limit,
    };
    match target {
        Target::Unix { path } => {
            let what = format!("GET {PATH} on unix:{path}");
            let mut conn = connect_unix(path, &deadline).map_err(|e| format!("{what}: {e}"))?;
            finish(&what, get_up(&mut conn, "localhost", &deadline))
        }
        Target::Http { host, port } | Target::Https { host, port } => {
            let tls = matches!(target, Target::Https { .. });
            let scheme = if tls { "https" } else { "http" };
            // Name resolution (a `HOST` that is not an address) is not
            // bounded by the deadline; the server had to resolve it to bind.
            let addrs = probe_addrs(host, *port)?;
            let (tcp, addr) = connect_tcp(&addrs, &deadline)
                .map_err(|e| format!("GET {scheme}://{}{PATH}: {e}", show(host, *port)))?;
            let what = format!("GET {scheme}://{addr}{PATH}");
            let host_header = addr.to_string();
            let status = if tls {
                let server_name = server_name(host, addr.ip());
                let conn = ClientConnection::new(tls_config(), server_name)
                    .map_err(|e| format!("{what}: TLS setup: {e}"))?;
                get_up(&mut StreamOwned::new(conn, tcp), &host_header, &deadline)
            } else {
                let mut tcp = tcp;
                get_up(&mut tcp, &host_header, &deadline)
            };
            finish(&what, status)
        }
    }
}

fn finish(what: &str, status: Result<u16, String>) -> Result<String, String> {
    match status {
        Ok(200) => Ok(format!("{what}: 200")),
        Ok(code) => Err(format!("{what}: HTTP {code}, expected 200")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// `host:port` for messages (IPv6 literals bracketed).
fn show(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The addresses to try for `HOST:PORT`, resolved as the server resolves
/// them for `bind`, with wildcards replaced by loopback.
pub fn probe_addrs(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let resolved = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("HOST {host}: {e}"))?;
    let mut addrs = Vec::new();
    for addr in resolved {
        let ips = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            IpAddr::V6(ip) if ip.is_unspecified() => vec![
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ],
            ip => vec![ip],
        };
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    if addrs.is_empty() {
        return Err(format!("HOST {host}: no address"));
    }
    Ok(addrs)
}

/// The name offered in the TLS handshake: `HOST` when it is a DNS name (what
/// the certificate is likely issued for), else the address connected to.
fn server_name(host: &str, connected: IpAddr) -> ServerName<'static> {
    match ServerName::try_from(host.to_string()) {
        Ok(name @ ServerName::DnsName(_)) => name,
        _ => ServerName::IpAddress(connected.into()),
    }
}

/// One deadline for the whole probe.
struct Deadline {
    end: Instant,
    limit: Duration,
}

impl Deadline {
    /// Time left, or the timeout error once there is none.
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline"));
        }
        Ok(left)
    }

    /// An I/O error as the reason line: timeouts say how long was waited.
    fn explain(&self, e: &io::Error) -> String {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                format!("no answer within {} ms", self.limit.as_millis())
            }
            _ => e.to_string(),
        }
    }
}

fn connect_tcp(
    addrs: &[SocketAddr],
    deadline: &Deadline,
) -> Result<(TcpStream, SocketAddr), String> {
    let mut errors = Vec::new();
    for &addr in addrs {
        let attempt = deadline
            .remaining()
            .and_then(|left| TcpStream::connect_timeout(&addr, left));
        match attempt {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => errors.push(format!("{addr}: {}", deadline.explain(&e))),
        }
    }
    Err(format!("cannot connect ({})", errors.join("; ")))
}

/// `connect(2)` on a Unix socket blocks while the server's backlog is full,
/// so it goes through socket2's non-blocking connect with a timeout.
fn connect_unix(path: &str, deadline: &Deadline) -> Result<UnixStream, String> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let addr = SockAddr::unix(path).map_err(|e| e.to_string())?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| e.to_string())?;
    deadline
        .remaining()
        .and_then(|left| socket.connect_timeout(&addr, left))
        .map_err(|e| format!("cannot connect: {}", deadline.explain(&e)))?;
    Ok(UnixStream::from(socket))
}

/// A connection whose blocking reads and writes can be bounded.
trait Conn: Read + Write {
    fn set_timeouts(&self, limit: Duration) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn set_timeouts(&self, limit: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(limit))?;
        self.set_write_timeout(Some(limit))
    }
}

impl Conn for UnixStream {
    fn set_timeouts(&self, limit: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(limit))?;
        self.set_write_timeout(Some(limit))
    }
}

impl Conn for StreamOwned<ClientConnection, TcpStream> {
    fn set_timeouts(&self, limit: Duration) -> io::Result<()> {
        self.sock.set_timeouts(limit)
    }
}

/// Send `GET /up` and read the status line; the body is not needed.
fn get_up(conn: &mut dyn Conn, host: &str, deadline: &Deadline) -> Result<u16, String> {
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: switchyard-health/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let reason = |e: io::Error| deadline.explain(&e);
    deadline
        .remaining()
        .and_then(|left| conn.set_timeouts(left))
        .map_err(reason)?;
    // Over TLS the handshake happens here, within the same deadline.
    conn.write_all(request.as_bytes()).map_err(reason)?;
    conn.flush().map_err(reason)?;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return parse_status_line(&buf[..end]);
        }
        if buf.len() > MAX_STATUS_LINE {
            return Err("not an HTTP response (no status line)".into());
        }
        deadline
            .remaining()
            .and_then(|left| conn.set_timeouts(left))
            .map_err(reason)?;
        match conn.read(&mut chunk) {
            Ok(0) => return Err("connection closed before a response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(reason(e)),
        }
    }
}

/// The status code of `HTTP/1.x NNN reason`.
pub fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        let shown: String = text.chars().take(80).collect();
        return Err(format!("not an HTTP/1.x status line: {shown:?}"));
    }
    code.parse()
        .map_err(|_| format!("not an HTTP/1.x status line: {text:?}"))
}

/// TLS 1.2/1.3 (as the server offers), HTTP/1.1 by ALPN, and
/// [`LivenessOnly`] in place of certificate verification.
fn tls_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LivenessOnly(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts any certificate chain for any name, but still checks the
/// handshake signatures (the peer holds the key of the certificate it shows).
///
/// Why not verify: the probe asks whether *this container's* server process
/// answers, not whether a client can trust it. It connects to loopback (or
/// to `HOST`), while the certificate names the public domain, is often
/// self-signed or issued by a private CA, and its chain may need roots the
/// image does not carry; verifying would make the health of a working server
/// depend on all that. Pinning the configured `SSL_CERT_PATH` instead was
/// rejected too: the server reads the certificate once at start-up, so a
/// renewal written to disk (certbot) would turn a healthy server unhealthy
/// and get it restarted by whatever watches the health. Nothing is at stake
/// on this connection: the request carries no credentials and only the
/// status line is read; whoever can intercept loopback inside the container
/// already controls it.
#[derive(Debug)]
struct LivenessOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for LivenessOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_probed_on_loopback() {
        assert_eq!(
            probe_addrs("0.0.0.0", 6001).unwrap(),
            vec!["127.0.0.1:6001".parse().unwrap()]
        );
        assert_eq!(
            probe_addrs("::", 6001).unwrap(),
            vec![
                "[::1]:6001".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:6001".parse().unwrap()
            ]
        );
        assert_eq!(
            probe_addrs("10.1.2.3", 80).unwrap(),
            vec!["10.1.2.3:80".parse().unwrap()]
        );
        assert_eq!(
            probe_addrs("::1", 80).unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 404"), Ok(404));
        for bad in [
            &b"SSH-2.0-OpenSSH"[..],
            b"HTTP/1.1 2000 OK",
            b"",
            b"\x15\x03\x03",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_server_name_is_the_host_when_it_is_a_name() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(matches!(
            server_name("realtime.example.com", lo),
            ServerName::DnsName(n) if n.as_ref() == "realtime.example.com"
        ));
        assert!(matches!(
            server_name("0.0.0.0", lo),
            ServerName::IpAddress(_)
        ));
    }

    #[test]
    fn nothing_listening_fails_fast() {
        // Bind and drop: the port is (very likely) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = Target::Http {
            host: "127.0.0.1".into(),
            port,
        };
        let started = Instant::now();
        let e = probe(&target, Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let e = probe(
            &Target::Unix {
                path: "/nonexistent/switchyard.sock".into(),
            },
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(
            e.starts_with("GET /up on unix:/nonexistent/switchyard.sock: cannot connect"),
            "{e}"
        );
    }
}
