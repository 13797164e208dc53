//! A WebSocket's connection after the handshake: the socket, owned here.
//!
//! actix-http can run a WebSocket as a streaming response, and Switchyard
//! did: the HTTP/1 dispatcher kept the socket, its two 8 KiB buffers for
//! the life of the connection (most of an idle socket's memory), and ran its
//! whole poll for every frame (timers, read, the response body, a copy into
//! its write buffer, the write). The server now hands an upgraded socket to
//! [`Connection`] (actix-http's upgrade hook; see `src/http/upgrade.rs`):
//! the client's bytes go to the session's frame decoder through [`Inbound`],
//! and the frames queued on the socket's wire go out as they are, several to
//! one vectored write, without a copy and without buffers kept between
//! writes.
//!
//! How it ends is what the dispatcher did, with a bound on the final
//! flush: when the session has stopped and everything it queued is written,
//! what the client still sends is read and discarded until it closes (at
//! once when the session shut the reading side after a completed closing
//! handshake, see [`crate::closing`]) or the linger time passes, so the
//! client reads our last frames rather than a reset; then the write side is
//! shut down (FIN; over TLS `close_notify` first) and the socket closed. A
//! socket whose last frames cannot be written within the linger time (its
//! client stopped reading) is reset.
//!
//! Over a plain socket, a connection that has written everything and waits
//! marks its wire idle, and frames delivered meanwhile are written by the
//! delivering thread without waking this task (see [`crate::wire`]). It
//! withdraws the socket from those writes before it closes it.

use crate::closing::Conn;
use crate::wire::{SocketStream, Wire};
use bytes::{Buf, Bytes};
use futures_core::stream::LocalBoxStream;
use futures_core::Stream;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use actix_http::error::PayloadError;

/// What a connection writes: the session's stream of encoded frames
/// ([`SocketStream`]); it ends when the session has stopped and everything
/// it queued has been handed over.
pub struct Outbound {
    frames: LocalBoxStream<'static, Result<Bytes, actix_web::Error>>,
    /// The socket's wire, which frames may be written through (none for a
    /// stream that has no wire).
    wire: Option<Arc<Wire>>,
}

impl<S> From<SocketStream<S>> for Outbound
where
    S: Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
{
    fn from(stream: SocketStream<S>) -> Outbound {
        Outbound {
            wire: Some(stream.wire().clone()),
            frames: Box::pin(stream),
        }
    }
}

impl Outbound {
    /// Frames from any stream, never written through.
    pub fn stream(frames: impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static) -> Self {
        Outbound {
            frames: Box::pin(frames),
            wire: None,
        }
    }
}

/// The client's bytes not yet taken by the session beyond which the
/// connection stops reading (the kernel's buffer and TCP flow control then
/// hold the client back).
const INBOUND_HIGH_WATER: usize = 64 * 1024;

/// Bytes read per `read` call. On the stack: an idle socket keeps no read
/// buffer.
const READ_CHUNK: usize = 4096;

/// Frames handed to one vectored write, and their bytes (a batch ends with
/// the frame that reaches it).
const WRITE_BATCH: usize = 16;
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// How a handshake's handler hands the rest of the connection to its
/// session: given the client's incoming bytes, the session's outbound
/// stream. Carried from the handler to the server in the 101 response's
/// extensions.
pub struct Takeover(Box<dyn FnOnce(Inbound) -> Outbound>);

impl Takeover {
    pub fn new(start: impl FnOnce(Inbound) -> Outbound + 'static) -> Takeover {
        Takeover(Box::new(start))
    }
}

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Takeover")
    }
}

/// The client's bytes, in the order they arrived, for the session's frame
/// decoder. Ends when the client closes its side; yields one error if the
/// connection failed.
#[derive(Debug)]
pub struct Inbound {
    queue: Rc<RefCell<InboundQueue>>,
}

#[derive(Debug, Default)]
struct InboundQueue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    /// Nothing more will arrive (after `error`, if any).
    ended: bool,
    error: Option<PayloadError>,
    /// The session's decoder, waiting for bytes.
    reader: Option<Waker>,
    /// The connection, waiting for the session to take bytes (it stopped
    /// reading at [`INBOUND_HIGH_WATER`]).
    paused: Option<Waker>,
}

impl InboundQueue {
    fn push(&mut self, bytes: Bytes) {
        self.bytes += bytes.len();
        self.chunks.push_back(bytes);
    }

    fn end(&mut self, error: Option<PayloadError>) {
        self.ended = true;
        self.error = error;
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
}

impl Stream for Inbound {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut q = self.queue.borrow_mut();
        if let Some(chunk) = q.chunks.pop_front() {
            q.bytes -= chunk.len();
            if q.bytes < INBOUND_HIGH_WATER {
                if let Some(w) = q.paused.take() {
                    w.wake();
                }
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if q.ended {
            return Poll::Ready(q.error.take().map(Err));
        }
        q.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One upgraded connection: a future that runs until the connection is
/// closed. `T` is the socket (TCP, TLS over TCP, Unix socket).
pub struct Connection<T> {
    io: T,
    inbound: Rc<RefCell<InboundQueue>>,
    outbound: LocalBoxStream<'static, Result<Bytes, actix_web::Error>>,
    /// The wire whose frames may be written straight to this (plain)
    /// socket while the connection is idle; `None` once withdrawn (closing)
    /// or if they cannot be (TLS, no recorded socket, no wire).
    direct: Option<Arc<Wire>>,
    /// The session's stream has ended.
    outbound_done: bool,
    /// Frames taken from the session, not yet (fully) written.
    pending: VecDeque<Bytes>,
    /// Written but not flushed (TLS buffers records until flushed).
    unflushed: bool,
    /// End of stream or an error was read: nothing more to read.
    read_done: bool,
    /// The write side is shut down.
    shut: bool,
    /// Set once the session's stream has ended: write what is left, read
    /// until the client closes, then shut the write side down, all before
    /// this deadline (past it: reset if frames are left, else just close).
    closing: Option<Pin<Box<tokio::time::Sleep>>>,
    linger: Duration,
    /// The socket, to reset it when its last frames cannot be written.
    conn: Conn,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    /// Run `takeover`'s session over `io` (the socket `conn`). `read` is
    /// what the client sent after its handshake request that has already
    /// been read (copied: the buffer it is in is not kept); `linger` bounds
    /// the close (see the module documentation).
    pub fn new(
        io: T,
        conn: Conn,
        read: &[u8],
        takeover: Takeover,
        linger: Duration,
    ) -> Connection<T> {
        let mut queue = InboundQueue::default();
        if !read.is_empty() {
            queue.push(Bytes::copy_from_slice(read));
        }
        let inbound = Rc::new(RefCell::new(queue));
        let outbound = (takeover.0)(Inbound {
            queue: inbound.clone(),
        });
        let direct = match (outbound.wire, conn.plain_fd()) {
            (Some(wire), Some(fd)) => {
                wire.attach(fd);
                Some(wire)
            }
            _ => None,
        };
        Connection {
            io,
            inbound,
            outbound: outbound.frames,
            direct,
            outbound_done: false,
            pending: VecDeque::new(),
            unflushed: false,
            read_done: false,
            shut: false,
            closing: None,
            linger,
            conn,
        }
    }

    /// Read what the client sent, up to the high-water mark. While closing,
    /// the session is gone: read and discard.
    fn read(&mut self, cx: &mut Context<'_>) {
        let discard = self.outbound_done;
        let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut q = self.inbound.borrow_mut();
        let mut got = false;
        while !self.read_done {
            if !discard && q.bytes >= INBOUND_HIGH_WATER {
                q.paused = Some(cx.waker().clone());
                break;
            }
            let mut rb = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    self.read_done = true;
                    q.end(None);
                    got = true;
                }
                Poll::Ready(Ok(())) => {
                    if !discard {
                        q.push(Bytes::copy_from_slice(rb.filled()));
                        got = true;
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Poll::Ready(Err(e)) => {
                    self.read_done = true;
                    q.end(Some(PayloadError::Io(e)));
                    got = true;
                }
            }
        }
        if got && !discard {
            q.wake_reader();
        }
    }

    /// Take the session's frames and write them until the socket or the
    /// session has no more. `Err` when the connection is broken.
    fn write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            // Frames are taken from the session only once the last batch is
            // written: what waits for a socket that does not read stays on
            // its wire, counted by its outbox (the slow-consumer policy), and
            // the session is not run (as with actix-http, whose dispatcher
            // did not poll a response body it could not write).
            let mut batch_bytes = 0;
            while !self.outbound_done
                && self.pending.len() < WRITE_BATCH
                && batch_bytes < WRITE_BATCH_BYTES
                && (self.pending.is_empty() || batch_bytes > 0)
            {
                match self.outbound.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(bytes))) => {
                        batch_bytes += bytes.len();
                        if !bytes.is_empty() {
                            self.pending.push_back(bytes);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        log::debug!("WebSocket session stream failed: {e}");
                        self.outbound_done = true;
                    }
                    Poll::Ready(None) => self.outbound_done = true,
                    Poll::Pending => break,
                }
            }
            if self.pending.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let n = self.pending.len().min(WRITE_BATCH);
            for (slice, bytes) in slices.iter_mut().zip(self.pending.iter()) {
                *slice = IoSlice::new(bytes);
            }
            match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(mut written)) => {
                    self.unflushed = true;
                    while written > 0 {
                        let front = self
                            .pending
                            .front_mut()
                            .expect("written bytes were pending");
                        if written >= front.len() {
                            written -= front.len();
                            self.pending.pop_front();
                        } else {
                            front.advance(written);
                            written = 0;
                        }
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Poll::Ready(Err(e)) => return Err(e),
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > 4 {
            // After a burst, an idle socket keeps only room for a few frames
            // (kept rather than freed: most writes are of one frame).
            self.pending = VecDeque::new();
        }
        Ok(())
    }

    /// The connection failed: the session sees its client gone.
    fn fail(&mut self, e: io::Error) {
        log::debug!("WebSocket connection failed: {e}");
        let mut q = self.inbound.borrow_mut();
        if !q.ended {
            q.end(Some(PayloadError::Io(e)));
        }
        q.wake_reader();
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Connection<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.read(cx);
        if let Err(e) = this.write(cx) {
            this.fail(e);
            return Poll::Ready(());
        }
        if !this.outbound_done {
            if let Some(wire) = &this.direct {
                if this.pending.is_empty() && !this.unflushed {
                    wire.set_idle();
                }
            }
            return Poll::Pending;
        }
        if this.closing.is_none() {
            // Nothing more is written through: the socket is shut down and
            // closed from here on.
            this.withdraw();
            // Anything the session left unread is discarded from now on.
            this.read(cx);
        }
        let linger = this.linger;
        let deadline = this
            .closing
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(linger)));
        if deadline.as_mut().poll(cx).is_ready() {
            if !this.pending.is_empty() || this.unflushed {
                // The client does not read: what is left can never be
                // written, and a graceful close would leave the kernel
                // trying to for minutes.
                this.conn.abort();
            } else if !this.shut {
                let _ = Pin::new(&mut this.io).poll_shutdown(cx);
            }
            return Poll::Ready(());
        }
        if !this.pending.is_empty() || this.unflushed || !this.read_done {
            return Poll::Pending;
        }
        if !this.shut {
            match Pin::new(&mut this.io).poll_shutdown(cx) {
                Poll::Pending => return Poll::Pending,
                // Closed either way; an error only means the peer went first.
                Poll::Ready(_) => this.shut = true,
            }
        }
        Poll::Ready(())
    }
}

impl<T> Connection<T> {
    /// Stop writes through to the socket; once this returns none is under
    /// way, and the socket may be shut down or closed.
    fn withdraw(&mut self) {
        if let Some(wire) = self.direct.take() {
            wire.detach();
        }
    }
}

impl<T> Drop for Connection<T> {
    fn drop(&mut self) {
        // Before `io` (and the descriptor with it) is closed: a number the
        // kernel reuses for another connection must never be written to.
        self.withdraw();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// The session's side, scripted: frames it sends, what it received.
    struct Script {
        frames: Rc<RefCell<VecDeque<Option<Bytes>>>>,
        waker: Rc<RefCell<Option<Waker>>>,
    }

    impl Stream for Script {
        type Item = Result<Bytes, actix_web::Error>;
        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.frames.borrow_mut().pop_front() {
                Some(Some(b)) => Poll::Ready(Some(Ok(b))),
                Some(None) => Poll::Ready(None),
                None => {
                    *self.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    struct Rig {
        frames: Rc<RefCell<VecDeque<Option<Bytes>>>>,
        waker: Rc<RefCell<Option<Waker>>>,
        inbound: Rc<RefCell<Option<Inbound>>>,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                frames: Rc::default(),
                waker: Rc::default(),
                inbound: Rc::default(),
            }
        }

        /// The scripted session's takeover: its frames as a plain stream,
        /// or through `wire` (a [`SocketStream`], which can be written
        /// through).
        fn takeover(&self, wire: Option<Arc<Wire>>) -> Takeover {
            let script = Script {
                frames: self.frames.clone(),
                waker: self.waker.clone(),
            };
            let slot = self.inbound.clone();
            Takeover::new(move |inbound| {
                *slot.borrow_mut() = Some(inbound);
                match wire {
                    Some(wire) => SocketStream::new(script, wire, None).into(),
                    None => Outbound::stream(script),
                }
            })
        }

        /// The session queues a frame (`None`: the session ends).
        fn send(&self, frame: Option<&'static [u8]>) {
            self.frames
                .borrow_mut()
                .push_back(frame.map(Bytes::from_static));
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }

        /// Everything the session has received so far, and whether it ended.
        fn received(&self) -> (Vec<u8>, bool) {
            let mut inbound = self.inbound.borrow_mut();
            let inbound = inbound.as_mut().expect("taken over");
            let waker = futures_util::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            let mut out = Vec::new();
            loop {
                match Pin::new(&mut *inbound).poll_next(&mut cx) {
                    Poll::Ready(Some(Ok(b))) => out.extend_from_slice(&b),
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return (out, true),
                    Poll::Pending => return (out, false),
                }
            }
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// A connection over an in-memory pipe of `pipe` bytes each way, its
    /// session scripted by the returned [`Rig`]; `read` as for
    /// [`Connection::new`]. Returns the client's end of the pipe and whether
    /// the connection has ended. Call inside [`local`]'s `run_until`.
    fn open(pipe: usize, read: &[u8], linger: Duration) -> (DuplexStream, Rig, Rc<Cell<bool>>) {
        let (server, client) = tokio::io::duplex(pipe);
        let rig = Rig::new();
        let conn = Connection::new(server, Conn::default(), read, rig.takeover(None), linger);
        (client, rig, spawn(conn))
    }

    /// Run the connection on the local set; the flag says when it has ended.
    fn spawn<T: AsyncRead + AsyncWrite + Unpin + 'static>(conn: Connection<T>) -> Rc<Cell<bool>> {
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        tokio::task::spawn_local(async move {
            conn.await;
            flag.set(true);
        });
        done
    }

    fn local() -> tokio::task::LocalSet {
        tokio::task::LocalSet::new()
    }

    #[tokio::test]
    async fn frames_go_out_in_order_and_the_socket_closes_once_the_client_has() {
        local()
            .run_until(async {
                let (mut client, rig, done) = open(1 << 16, b"", Duration::from_secs(5));
                rig.send(Some(b"one "));
                rig.send(Some(b"two "));
                settle().await;
                rig.send(Some(b"three"));
                rig.send(None);
                let mut got = [0u8; 13];
                client.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"one two three");
                // Lingering: what the client still sends is read, and the
                // socket stays open until the client closes its side.
                client.write_all(b"late").await.unwrap();
                settle().await;
                assert!(!done.get());
                client.shutdown().await.unwrap();
                let mut rest = Vec::new();
                client.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty(), "nothing after the last frame");
                settle().await;
                assert!(done.get());
                assert_eq!(rig.received(), (Vec::new(), true), "discarded");
            })
            .await;
    }

    #[tokio::test]
    async fn frames_wait_with_the_session_while_the_client_does_not_read() {
        local()
            .run_until(async {
                // Room for 8 bytes: the first frame is written in part.
                let (mut client, rig, _done) = open(8, b"", Duration::from_secs(5));
                rig.send(Some(b"0123456789"));
                settle().await;
                for _ in 0..4 {
                    rig.send(Some(b"0123456789"));
                }
                settle().await;
                // Taken: the frame being written. Those queued after it are
                // still the session's (on its wire, counted by its outbox).
                assert_eq!(rig.frames.borrow().len(), 4);
                let mut got = [0u8; 50];
                client.read_exact(&mut got).await.unwrap();
                assert_eq!(&got[..], "0123456789".repeat(5).as_bytes());
                assert_eq!(rig.frames.borrow().len(), 0);
            })
            .await;
    }

    #[tokio::test]
    async fn client_bytes_reach_the_session_in_order_including_those_read_with_the_handshake() {
        local()
            .run_until(async {
                let (mut client, rig, _done) = open(1 << 16, b"early ", Duration::from_secs(5));
                client.write_all(b"later").await.unwrap();
                settle().await;
                assert_eq!(rig.received(), (b"early later".to_vec(), false));
                client.shutdown().await.unwrap();
                settle().await;
                assert_eq!(rig.received(), (Vec::new(), true));
            })
            .await;
    }

    #[tokio::test]
    async fn reading_pauses_while_the_session_has_not_taken_its_bytes() {
        local()
            .run_until(async {
                let (mut client, rig, _done) = open(1 << 20, b"", Duration::from_secs(5));
                let blob = vec![7u8; 4 * INBOUND_HIGH_WATER];
                client.write_all(&blob).await.unwrap();
                settle().await;
                let queued = rig.inbound.borrow().as_ref().unwrap().queue.borrow().bytes;
                assert!(
                    (INBOUND_HIGH_WATER..INBOUND_HIGH_WATER + READ_CHUNK).contains(&queued),
                    "{queued} bytes queued"
                );
                // Taking them lets the connection read on; nothing is lost.
                let mut total = 0;
                for _ in 0..20 {
                    total += rig.received().0.len();
                    settle().await;
                }
                assert_eq!(total, blob.len());
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_closes_is_let_go_after_the_linger_time() {
        local()
            .run_until(async {
                let (_client, rig, done) = open(1 << 16, b"", Duration::from_secs(1));
                rig.send(None);
                settle().await;
                assert!(!done.get());
                tokio::time::sleep(Duration::from_millis(1100)).await;
                settle().await;
                assert!(done.get());
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_cannot_hold_the_close_past_the_linger_time() {
        local()
            .run_until(async {
                // A tiny pipe the client never reads: the last frame cannot
                // be flushed.
                let (_client, rig, done) = open(8, b"", Duration::from_secs(1));
                rig.send(Some(b"more than eight bytes"));
                rig.send(None);
                settle().await;
                assert!(!done.get());
                tokio::time::sleep(Duration::from_millis(1100)).await;
                settle().await;
                assert!(done.get());
            })
            .await;
    }

    #[tokio::test]
    async fn a_broken_connection_ends_and_the_session_sees_its_client_gone() {
        local()
            .run_until(async {
                let (client, rig, done) = open(1 << 16, b"", Duration::from_secs(5));
                drop(client);
                rig.send(Some(b"to nobody"));
                settle().await;
                assert!(done.get());
                assert!(rig.received().1);
            })
            .await;
    }

    /// A connection over a real TCP socket (recorded as the server records
    /// it) whose session's stream is a [`SocketStream`] over the scripted
    /// session: its wire can be written through. Returns the client's
    /// socket, the session's wire and whether the connection has ended.
    async fn open_tcp(
        transport: crate::closing::Transport,
    ) -> (tokio::net::TcpStream, Rig, Arc<Wire>, Rc<Cell<bool>>) {
        use crate::app::App;
        use crate::socket::Outbox;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let conn = Conn::of(&server, transport).expect("SO_COOKIE is readable");
        let app = Arc::new(App::new("id", "key", "secret"));
        let wire = Wire::new(Outbox::new(None, None, true, app));
        let rig = Rig::new();
        let takeover = rig.takeover(Some(wire.clone()));
        let connection = Connection::new(server, conn, b"", takeover, Duration::from_secs(5));
        let done = spawn(connection);
        (client, rig, wire, done)
    }

    /// Deliver a text frame as a publisher does (write through, or queue).
    fn publish(wire: &Arc<Wire>, text: &str) -> bool {
        use crate::socket::{CountingMailbox, SessionHandle, SocketId};
        SessionHandle::new(SocketId::next(), wire.clone(), CountingMailbox::default())
            .deliver(&Frame::text(text))
    }

    /// Read `n` text frames from the client's socket.
    async fn read_texts(client: &mut tokio::net::TcpStream, n: usize) -> Vec<String> {
        use actix_http::ws::{OpCode, Parser};
        let mut buf = bytes::BytesMut::new();
        let mut out = Vec::new();
        while out.len() < n {
            if let Some((_, op, payload)) = Parser::parse(&mut buf, false, 1 << 24).unwrap() {
                assert_eq!(op, OpCode::Text);
                let payload = payload.unwrap_or_default();
                out.push(String::from_utf8(payload.to_vec()).unwrap());
                continue;
            }
            let read = tokio::time::timeout(Duration::from_secs(5), client.read_buf(&mut buf));
            assert!(
                read.await.expect("frames arrive").unwrap() > 0,
                "not closed"
            );
        }
        out
    }

    fn text_frame(text: &str) -> &'static [u8] {
        Frame::text(text).bytes().to_vec().leak()
    }

    use crate::wire::Frame;

    #[tokio::test]
    async fn an_idle_plain_connection_is_written_through_in_order_and_withdrawn_before_it_closes() {
        local()
            .run_until(async {
                let (mut client, rig, wire, done) =
                    open_tcp(crate::closing::Transport::Plain).await;
                // The session's own frame, then deliveries: once the
                // connection has written it and waits, they go through.
                rig.send(Some(text_frame("own")));
                settle().await;
                assert!(wire.is_attached());
                assert!(publish(&wire, "one"));
                assert_eq!(wire.queued(), 0, "written through, not queued");
                rig.send(Some(text_frame("own again")));
                settle().await;
                assert!(publish(&wire, "two"));
                assert!(publish(&wire, "three"));
                assert_eq!(wire.queued(), 0);
                assert_eq!(
                    read_texts(&mut client, 5).await,
                    ["own", "one", "own again", "two", "three"]
                );
                // The session ends: the socket is withdrawn before it is
                // shut down, and nothing more is written to it.
                rig.send(None);
                settle().await;
                assert!(!wire.is_attached());
                assert!(!publish(&wire, "too late"));
                client.shutdown().await.unwrap();
                let mut rest = Vec::new();
                client.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty(), "nothing after the last frame");
                settle().await;
                assert!(done.get());
            })
            .await;
    }

    #[tokio::test]
    async fn a_tls_connection_is_never_written_through() {
        local()
            .run_until(async {
                let (mut client, _rig, wire, _done) =
                    open_tcp(crate::closing::Transport::Tls).await;
                settle().await;
                assert!(!wire.is_attached());
                assert!(publish(&wire, "queued"));
                // Queued for the connection, which writes it (here without
                // TLS: the test's socket is plain underneath).
                settle().await;
                assert_eq!(read_texts(&mut client, 1).await, ["queued"]);
            })
            .await;
    }

    #[tokio::test]
    async fn a_failed_connection_is_withdrawn_before_its_socket_closes() {
        local()
            .run_until(async {
                let (client, _rig, wire, done) = open_tcp(crate::closing::Transport::Plain).await;
                settle().await;
                assert!(wire.is_attached());
                drop(client);
                // The first write reaches the kernel; the peer's reset
                // makes the next fail: it is queued, and the connection's
                // own write meets the error and ends the connection.
                assert!(publish(&wire, "to a closed peer"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(publish(&wire, "to a reset socket"));
                assert_eq!(wire.queued(), 1);
                settle().await;
                assert!(done.get());
                assert!(!wire.is_attached(), "withdrawn when dropped");
            })
            .await;
    }
}
