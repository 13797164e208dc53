//! How a WebSocket ends: the closing handshake, then the connection under it.
//!
//! RFC 6455 §7.1.1: once the closing handshake is done, "the server SHOULD
//! close the underlying TCP connection first"; clients (browsers,
//! tokio-tungstenite) wait for it. The socket belongs to the WebSocket's
//! [`crate::connection::Connection`]: once the session has stopped and its
//! last frames are written, it shuts its side down and reads what the client
//! still sends until the client closes too, for at most its linger time (the
//! HTTP layer's `client_disconnect_timeout`, 1 s). (Before the connection was
//! taken over from actix-http's dispatcher, that linger was the dispatcher's,
//! and every close took about a second.)
//!
//! The session ends its connection through [`Conn`], the socket the server
//! recorded when it accepted the connection:
//!
//! - When the handshake is done (the client's close frame answered, or the
//!   client's answer to ours received) the session shuts the socket down for
//!   reading and stops. The connection sees end-of-stream at once, writes
//!   what is left (the close frame), sends FIN and closes without lingering.
//!   Not over TLS: there the end-of-stream would reach rustls without the
//!   client's `close_notify`, and the connection could not end cleanly (RFC
//!   8446 §6.1; rustls-based clients report the truncation as an error). A
//!   TLS connection sends its `close_notify` and lingers for the client's.
//! - When the server closes (4100, 4200, 4201, 4009, 1009, refusals …) it
//!   waits at most [`CLOSE_REPLY_TIMEOUT`] for the client's close frame, then
//!   ends the connection the same way.
//! - Whatever happens, a connection still open [`CLOSE_ABORT_TIMEOUT`] after
//!   its session began to close (or ended) is reset (RST): the backstop, in
//!   case the connection's own bound on its close did not apply.

use crate::wire::Wire;
use actix::prelude::*;
use actix_web_actors::ws;
use socket2::SockRef;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// How long a close the server starts waits for the client's close frame
/// before the connection is closed anyway.
pub const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long after a session begins to close (or its client goes away) its
/// connection may still exist; then it is reset. Longer than
/// [`CLOSE_REPLY_TIMEOUT`] plus the connection's lingering close of a TLS
/// connection (1 s), so every client that reads is closed cleanly; only a
/// connection whose last bytes cannot be flushed is reset.
pub const CLOSE_ABORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The socket under one accepted connection, recorded by the HTTP server as
/// it accepts it (`on_connect`) and found by the WebSocket handler in the
/// request's connection data.
///
/// It does not own the socket (the WebSocket's connection does, and closes
/// it when it ends); it names it by descriptor *and* by the kernel's
/// socket cookie (`SO_COOKIE`, unique for the kernel's uptime, never reused).
/// Every use first checks that the descriptor still carries that cookie, so a
/// descriptor number the kernel has since given to another connection is
/// never touched. The check and the use run on the connection's own worker
/// thread (a `Conn` cannot leave it: it is not `Send`), the only one that
/// can close it, so nothing can close it between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    fd: RawFd,
    cookie: u64,
    transport: Transport,
    _same_thread: PhantomData<*const ()>,
}

/// What runs over the socket, which decides how a finished WebSocket's
/// connection can be closed (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The connection reads the socket directly (TCP, Unix socket).
    Plain,
    /// TLS over the socket: closed by the connection, with `close_notify`.
    Tls,
}

impl Default for Conn {
    /// No socket: every operation is a no-op (tests, or a transport the
    /// server could not record).
    fn default() -> Self {
        Conn {
            fd: -1,
            cookie: 0,
            transport: Transport::Plain,
            _same_thread: PhantomData,
        }
    }
}

impl Conn {
    /// Record the socket of a connection being accepted; `None` if its
    /// cookie cannot be read (then the session cannot end it early, and the
    /// connection's own bound on its close applies).
    pub fn of(socket: &impl AsFd, transport: Transport) -> Option<Conn> {
        let fd = socket.as_fd();
        let cookie = SockRef::from(&fd).cookie().ok()?;
        Some(Conn {
            fd: fd.as_raw_fd(),
            cookie,
            transport,
            _same_thread: PhantomData,
        })
    }

    /// Run `f` on the socket if the connection is still open.
    fn with_socket<T>(&self, f: impl FnOnce(SockRef<'_>) -> T) -> Option<T> {
        if self.fd < 0 {
            return None;
        }
        // SAFETY: the descriptor is only borrowed for this call. If it has
        // been closed, or reused for anything but this connection's socket,
        // `getsockopt(SO_COOKIE)` fails or returns another cookie and `f` is
        // not run; see the type's documentation for why it cannot be closed
        // between the check and `f`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let socket = SockRef::from(&fd);
        match socket.cookie() {
            Ok(cookie) if cookie == self.cookie => Some(f(socket)),
            _ => None,
        }
    }

    /// The descriptor of a plain (not TLS) socket that is still this
    /// connection's: what frames may be written through to (see
    /// [`crate::wire::Wire::write_through`]).
    pub fn plain_fd(&self) -> Option<RawFd> {
        if self.transport != Transport::Plain {
            return None;
        }
        self.with_socket(|_| self.fd)
    }

    /// Whether the connection still exists (its socket is still open here).
    pub fn is_open(&self) -> bool {
        self.with_socket(|_| ()).is_some()
    }

    /// The closing handshake is done: stop reading. The connection sees
    /// end-of-stream, writes what it still holds, sends FIN and closes.
    /// Over TLS nothing is done: the connection closes it (see the module
    /// documentation).
    pub fn finish(&self) {
        if self.transport == Transport::Plain {
            self.with_socket(|s| s.shutdown(std::net::Shutdown::Read));
        }
    }

    /// Reset the connection (RST): `SO_LINGER` 0 and shut down both ways, so
    /// the connection's pending write or read fails at once and it drops the
    /// socket, whatever the peer does. `true` if it was still open.
    pub fn abort(&self) -> bool {
        self.with_socket(|s| {
            let _ = s.set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(std::net::Shutdown::Both);
        })
        .is_some()
    }

    /// Reset the connection if it still exists after `after`. Runs on the
    /// current worker (the connection's own thread), independently of the
    /// session, which may be gone or no longer polled by then.
    pub fn abort_after(self, after: Duration) {
        if self.fd < 0 {
            return;
        }
        actix::spawn(async move {
            tokio::time::sleep(after).await;
            if self.abort() {
                log::debug!("connection not closed {after:?} after its WebSocket closed: reset");
            }
        });
    }
}

/// actix-web-actors reports a text frame that is not UTF-8 as an I/O error of
/// kind `Other`; its message is the only way to tell it from a lost
/// connection.
pub fn is_invalid_utf8(err: &std::io::Error) -> bool {
    err.to_string().contains("utf-8")
}

/// While closing, what the client sent: its close frame, its going away, or
/// anything else (ignored; it was sent before the client saw our close).
pub fn while_closing<A: Ends>(
    act: &mut A,
    msg: Result<ws::Message, ws::ProtocolError>,
    ctx: &mut ws::WebsocketContext<A>,
) {
    match msg {
        Ok(ws::Message::Close(reason)) => act.ending().on_client_close(ctx, reason),
        Err(ws::ProtocolError::Io(e)) if !is_invalid_utf8(&e) => act.ending().on_lost(ctx),
        _ => {}
    }
}

/// Where a WebSocket is in ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// We sent a close frame and wait for the client's.
    AwaitingReply,
    /// Nothing more to send or read; the actor is stopping.
    Done,
}

/// One WebSocket's ending: its phase, its connection and the backstop.
#[derive(Debug)]
pub struct Ending {
    conn: Conn,
    /// Where the close frame goes: the socket's outbound queue.
    wire: Arc<Wire>,
    phase: Phase,
    /// The [`CLOSE_ABORT_TIMEOUT`] backstop is armed (once).
    armed: bool,
}

/// An actor on a WebSocket that ends through an [`Ending`].
pub trait Ends: Actor<Context = ws::WebsocketContext<Self>> {
    fn ending(&mut self) -> &mut Ending;
}

impl Ending {
    pub fn new(conn: Conn, wire: Arc<Wire>) -> Ending {
        Ending {
            conn,
            wire,
            phase: Phase::Open,
            armed: false,
        }
    }

    /// The connection under the WebSocket.
    pub fn conn(&self) -> Conn {
        self.conn
    }

    /// Neither side has started the closing handshake: frames may be sent
    /// and client frames are acted on.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    fn arm(&mut self) {
        if !self.armed {
            self.armed = true;
            self.conn.abort_after(CLOSE_ABORT_TIMEOUT);
        }
    }

    /// Close from this side (RFC 6455 §7.1.2): send the close frame, then
    /// wait at most [`CLOSE_REPLY_TIMEOUT`] for the client's before ending
    /// the connection. Nothing happens if already closing.
    pub fn close<A: Ends>(&mut self, ctx: &mut ws::WebsocketContext<A>, code: u16, reason: String) {
        if self.phase != Phase::Open {
            return;
        }
        self.wire.close(Some(ws::CloseReason {
            code: ws::CloseCode::Other(code),
            description: Some(reason),
        }));
        self.phase = Phase::AwaitingReply;
        self.arm();
        ctx.run_later(CLOSE_REPLY_TIMEOUT, |act, ctx| {
            act.ending().finish(ctx);
        });
    }

    /// The client sent a close frame: answer it if it started the
    /// handshake, and end the connection now.
    pub fn on_client_close<A: Ends>(
        &mut self,
        ctx: &mut ws::WebsocketContext<A>,
        reason: Option<ws::CloseReason>,
    ) {
        if self.phase == Phase::Open {
            // RFC 6455 §5.5.1: echo the status code received.
            self.wire.close(reason);
        }
        self.finish(ctx);
    }

    /// The handshake is over (or waited for long enough): the close frame
    /// is flushed and the connection closed as soon as the actor stops.
    fn finish<A: Ends>(&mut self, ctx: &mut ws::WebsocketContext<A>) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        self.conn.finish();
        self.arm();
        ctx.stop();
    }

    /// The client's stream ended or broke (it went away, possibly without a
    /// close frame): nothing more can be said; the connection closes, within
    /// the backstop.
    pub fn on_lost<A: Ends>(&mut self, ctx: &mut ws::WebsocketContext<A>) {
        self.phase = Phase::Done;
        self.arm();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_recorded_socket_is_found_only_while_it_is_the_same_socket() {
        let (_client, server) = pair();
        let conn = Conn::of(&server, Transport::Plain).expect("SO_COOKIE is readable");
        assert!(conn.is_open());
        let fd = server.as_raw_fd();
        drop(server);
        assert!(!conn.is_open(), "closed");
        // The kernel hands out the lowest free number: most likely `fd`
        // again (other tests run in parallel, so not certainly).
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        if other.as_raw_fd() == fd {
            assert!(
                !conn.is_open(),
                "another socket on the same number is not ours"
            );
            assert!(!conn.abort());
            assert!(other.local_addr().is_ok(), "and it was left alone");
        }
        assert!(!Conn::default().is_open());
        assert!(!Conn::default().abort());
    }

    #[test]
    fn only_an_open_plain_socket_offers_its_descriptor_for_writes_through() {
        let (_client, server) = pair();
        let plain = Conn::of(&server, Transport::Plain).unwrap();
        let tls = Conn::of(&server, Transport::Tls).unwrap();
        assert_eq!(plain.plain_fd(), Some(server.as_raw_fd()));
        assert_eq!(tls.plain_fd(), None, "TLS bytes go through rustls");
        assert_eq!(Conn::default().plain_fd(), None);
        drop(server);
        assert_eq!(plain.plain_fd(), None, "closed");
    }

    #[test]
    fn finish_ends_reading_and_abort_resets() {
        let (mut client, mut server) = pair();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let conn = Conn::of(&server, Transport::Plain).unwrap();
        conn.finish();
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).unwrap(), 0, "reads see end-of-stream");
        server.write_all(b"bye").unwrap();
        assert_eq!(client.read(&mut buf).unwrap(), 3, "writing still works");

        assert!(conn.abort());
        let err = server.write_all(b"more").expect_err("writes fail at once");
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        drop(server);
        // The client sees the end (FIN, then the reset of the close).
        assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)));
        assert!(!conn.is_open());
    }
}
