//! A WebSocket's way out: whole, encoded frames queued for the connection
//! to write, and the stream that hands them to it.
//!
//! A server frame is never masked, so the encoded frame — header and
//! payload — is the same bytes for every socket it goes to. A fan-out
//! encodes it once ([`Frame`]) and every subscriber's [`Wire`] holds a
//! reference to those bytes. The frames do not pass through the session
//! actor: before this, each delivery was an actix message (a boxed envelope
//! in the session's mailbox), a poll of the actor's whole context (mailbox,
//! timers, the reading side), a handler call and a per-socket encode, and
//! that was about a third of the server's instructions per delivery. The
//! session still owns the socket: it writes its own frames here too (in the
//! order it makes them), answers the client, and ends the connection; its
//! context is polled only when something woke it, not for every frame.
//!
//! [`SocketStream`] is what the socket's [`crate::connection::Connection`]
//! writes: on each poll it runs the actor if the actor was woken, then hands
//! over the queued frames.
//! Once the session's close frame is queued, nothing more is accepted.
//!
//! Write-through: when the connection holds nothing unwritten and nothing is
//! queued (the usual state of a socket between events), a delivered frame is
//! written to the socket at once by the thread that delivers it
//! ([`Wire::write_through`]), without waking the connection's task at all.
//! Waking it cost more than the write: a cross-thread wake, the task's
//! schedule, its poll of the reading side, the stream's poll, two locks and
//! then the same `write`. Only plain sockets (TCP, Unix) qualify, never TLS
//! (the session's bytes pass through rustls' state on the connection's
//! thread). The frame order stays the queue's order: a direct write happens
//! under the queue's lock and only while the connection has marked itself
//! idle ([`Wire::set_idle`]), which taking a frame off the queue undoes; a
//! write the socket takes only in part leaves the rest at the head of the
//! queue, and one it refuses (`EAGAIN`, an error) falls back to the queue,
//! where the connection meets the full socket or the error itself.
//!
//! A socket whose connection runs on the delivering thread is always written
//! through: that thread would write it anyway, a moment later. Sockets of
//! other threads are written through only up to [`FOREIGN_WRITES_PER_FANOUT`]
//! per fan-out ([`Fanout`]), then woken as before: writing all of a large
//! channel's sockets on the publishing thread would serialise on one core
//! writes the other workers would share, and the last subscriber would wait
//! for all the others.

use crate::hub::Vitals;
use crate::socket::Outbox;
use actix_http::error::PayloadError;
use actix_http::ws::{CloseReason, OpCode, Parser};
use actix_web_actors::ws;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

/// How many sockets whose connections run on other threads one fan-out
/// writes through to before it leaves the rest to their own threads (a
/// wake each, as before). A write costs the delivering thread a few
/// microseconds (2–5 µs per loopback write on the benchmark machine), so
/// this bounds what a publish adds to its own latency, and to the next
/// publish's on that thread, at about half a millisecond.
pub const FOREIGN_WRITES_PER_FANOUT: u32 = 128;

/// One fan-out's allowance of writes through to other threads' sockets
/// (see the module documentation). A single delivery uses a new one.
#[derive(Debug)]
pub struct Fanout {
    foreign_left: u32,
}

impl Fanout {
    pub fn new() -> Fanout {
        Fanout {
            foreign_left: FOREIGN_WRITES_PER_FANOUT,
        }
    }
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout::new()
    }
}

thread_local! {
    /// Its address names the thread (unique among live threads) without
    /// the reference count `std::thread::current()` takes.
    static THREAD_TAG: u8 = const { 0 };
}

fn this_thread() -> usize {
    THREAD_TAG.with(|tag| tag as *const u8 as usize)
}

/// One server text frame, encoded once, shared by every socket it goes to.
#[derive(Debug, Clone)]
pub struct Frame {
    wire: Bytes,
    /// The frame's text: what `WEBSOCKET_MAX_BYTES` and the traffic
    /// counters count (the event, not its WebSocket header).
    text_len: usize,
}

impl Frame {
    /// Encode a text frame (unmasked, unfragmented).
    pub fn text(text: &str) -> Frame {
        let mut buf = BytesMut::with_capacity(text.len() + 10);
        Parser::write_message(&mut buf, text.as_bytes(), OpCode::Text, true, false);
        Frame {
            wire: buf.freeze(),
            text_len: text.len(),
        }
    }

    pub fn text_len(&self) -> usize {
        self.text_len
    }

    /// The encoded frame as it goes on the wire.
    pub fn bytes(&self) -> &Bytes {
        &self.wire
    }
}

/// What a queued frame is, for the accounting done when it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Sent through a [`crate::socket::SessionHandle`]: room was reserved
    /// in the outbox, released when written.
    Delivered,
    /// The session's own text frame (replies, errors): counted as sent.
    Own,
    /// A control frame (close, pong): not counted.
    Control,
    /// The end of a delivered frame the socket took only in part when it
    /// was written through: it must go out next, whatever else happens
    /// (an overflow keeps it); counted when its start was written, and it
    /// holds no reserved room.
    Rest,
}

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    text_len: usize,
    kind: Kind,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Entry>,
    /// The close frame is queued (or the connection is gone): nothing more
    /// is accepted.
    closed: bool,
    /// The connection's plain socket, while frames may be written to it
    /// directly: set by the connection when it starts, cleared before it
    /// closes the socket (so a descriptor number reused by another
    /// connection is never written).
    direct: Option<RawFd>,
    /// The thread the connection runs on ([`this_thread`]).
    owner: usize,
    /// The connection holds no unwritten bytes and has taken every queued
    /// frame: a frame delivered now may be written through.
    idle: bool,
    /// Frames written through (and their text bytes), not yet added to the
    /// app's counters (the connection's per-thread counters cannot be
    /// reached from the delivering thread).
    sent_messages: u64,
    sent_bytes: u64,
}

/// A socket's outbound queue and the waker of the connection that writes it.
#[derive(Debug)]
pub struct Wire {
    outbox: Outbox,
    queue: Mutex<Queue>,
    /// The connection's task: woken when a frame is delivered or the actor
    /// is woken.
    task: AtomicWaker,
}

impl Wire {
    pub fn new(outbox: Outbox) -> Arc<Wire> {
        Arc::new(Wire {
            outbox,
            queue: Mutex::new(Queue::default()),
            task: AtomicWaker::new(),
        })
    }

    /// The bound on what others may queue here.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a frame whose room the caller reserved, and wake the
    /// connection. `false` (room released) once the socket is closing.
    pub(crate) fn deliver(&self, frame: &Frame) -> bool {
        {
            let mut q = self.lock();
            if q.closed {
                drop(q);
                self.outbox.release(frame.text_len);
                return false;
            }
            q.frames.push_back(Entry {
                bytes: frame.wire.clone(),
                text_len: frame.text_len,
                kind: Kind::Delivered,
            });
        }
        self.task.wake();
        true
    }

    /// Write a delivered frame straight to the socket if the connection is
    /// idle (see the module documentation). `true` if the socket took it
    /// (all of it, or its start with the rest queued next); `false` if the
    /// frame must be queued instead: the socket is busy, closing, not plain,
    /// full or broken, or the frame is one the outbox would refuse (an
    /// overflowed socket, a frame over `WEBSOCKET_MAX_BYTES`).
    /// A socket of another thread takes one from `fanout`'s allowance, and
    /// is not written through once it is spent.
    pub(crate) fn write_through(&self, frame: &Frame, fanout: &mut Fanout) -> bool {
        let mut q = self.lock();
        let fd = match q.direct {
            Some(fd) if q.idle && !q.closed && q.frames.is_empty() => fd,
            _ => return false,
        };
        if !self.outbox.admits_alone(frame.text_len) {
            return false;
        }
        if q.owner != this_thread() {
            if fanout.foreign_left == 0 {
                return false;
            }
            fanout.foreign_left -= 1;
        }
        let bytes = &frame.wire;
        // SAFETY: `fd` is the connection's open socket: the connection
        // clears `direct` under this lock before it closes the socket, and
        // the lock is held for the call. A non-blocking send of our bytes.
        let sent = unsafe {
            libc::send(
                fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        let Ok(sent) = usize::try_from(sent) else {
            // Full (EAGAIN) or broken: queue it; the connection's own write
            // waits for room or finds the error and ends the session.
            q.idle = false;
            return false;
        };
        q.sent_messages += 1;
        q.sent_bytes += frame.text_len as u64;
        if sent < bytes.len() {
            q.idle = false;
            q.frames.push_back(Entry {
                bytes: bytes.slice(sent..),
                text_len: 0,
                kind: Kind::Rest,
            });
            drop(q);
            self.task.wake();
        }
        true
    }

    /// Let frames be written through to the connection's plain socket `fd`
    /// (see [`Self::write_through`]) once it is [idle](Self::set_idle).
    /// Called on the connection's thread.
    pub(crate) fn attach(&self, fd: RawFd) {
        let mut q = self.lock();
        q.direct = Some(fd);
        q.owner = this_thread();
    }

    /// No more writes through: the connection is closing its socket (or
    /// has stopped writing). Returns once no write through is under way.
    pub(crate) fn detach(&self) {
        let mut q = self.lock();
        q.direct = None;
        q.idle = false;
    }

    /// The connection has written everything it took and waits for frames:
    /// if nothing is queued, the next delivered frame may be written through.
    pub(crate) fn set_idle(&self) {
        let mut q = self.lock();
        if q.direct.is_some() && !q.closed && q.frames.is_empty() {
            q.idle = true;
        }
    }

    /// Add the frames written through since the last call to the app's
    /// `ws_messages_sent` / `ws_bytes_sent` counters.
    pub fn flush_sent(&self) {
        let (messages, bytes) = {
            let mut q = self.lock();
            (
                std::mem::take(&mut q.sent_messages),
                std::mem::take(&mut q.sent_bytes),
            )
        };
        if messages > 0 {
            let stats = &self.outbox.app().stats;
            crate::stats::add(&stats.ws_messages_sent, messages);
            crate::stats::add(&stats.ws_bytes_sent, bytes);
        }
    }

    /// The session's own text frame. No wake: the session runs inside the
    /// stream's poll, which hands the queue over right after.
    pub(crate) fn send_own(&self, text: &str) {
        let frame = Frame::text(text);
        self.push_own(Entry {
            bytes: frame.wire,
            text_len: frame.text_len,
            kind: Kind::Own,
        });
    }

    /// A pong answering the client's ping.
    pub(crate) fn pong(&self, payload: &[u8]) {
        let mut buf = BytesMut::with_capacity(payload.len() + 2);
        Parser::write_message(&mut buf, payload, OpCode::Pong, true, false);
        self.push_own(Entry {
            bytes: buf.freeze(),
            text_len: 0,
            kind: Kind::Control,
        });
    }

    /// Queue the close frame, the last frame this socket sends.
    pub(crate) fn close(&self, reason: Option<CloseReason>) {
        let mut buf = BytesMut::new();
        Parser::write_close(&mut buf, reason, false);
        let mut q = self.lock();
        if !q.closed {
            q.frames.push_back(Entry {
                bytes: buf.freeze(),
                text_len: 0,
                kind: Kind::Control,
            });
            q.closed = true;
        }
    }

    fn push_own(&self, entry: Entry) {
        let mut q = self.lock();
        if !q.closed {
            q.frames.push_back(entry);
        }
    }

    /// Drop the delivered frames not yet written (the socket overflowed:
    /// its client is told to reconnect instead), keeping the session's own.
    pub(crate) fn discard_delivered(&self) {
        let mut q = self.lock();
        let outbox = &self.outbox;
        q.frames.retain(|e| {
            let keep = e.kind != Kind::Delivered;
            if !keep {
                outbox.release(e.text_len);
            }
            keep
        });
    }

    /// Nothing more will be written: refuse new frames, free queued ones.
    pub(crate) fn shut(&self) {
        let mut q = self.lock();
        q.closed = true;
        for e in q.frames.drain(..) {
            if e.kind == Kind::Delivered {
                self.outbox.release(e.text_len);
            }
        }
    }

    fn pop(&self) -> Option<Entry> {
        let entry = {
            let mut q = self.lock();
            let entry = q.frames.pop_front()?;
            // The connection holds a frame now: nothing may be written
            // through until it has written it and says it is idle again.
            q.idle = false;
            entry
        };
        if entry.kind == Kind::Delivered {
            self.outbox.release(entry.text_len);
        }
        Some(entry)
    }

    /// Whether frames may be written through to a socket (tests).
    #[cfg(test)]
    pub(crate) fn is_attached(&self) -> bool {
        self.lock().direct.is_some()
    }

    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.lock().frames.len()
    }

    /// The text of the frames queued now, taken off the queue (tests).
    #[cfg(test)]
    pub(crate) fn take_texts(&self) -> Vec<String> {
        let mut texts = Vec::new();
        while let Some(entry) = self.pop() {
            let mut buf = BytesMut::from(&entry.bytes[..]);
            if let Ok(Some((_, OpCode::Text, payload))) = Parser::parse(&mut buf, false, 1 << 24) {
                let payload = payload.unwrap_or_default();
                texts.push(String::from_utf8_lossy(&payload).into_owned());
            }
        }
        texts
    }
}

/// Run `actor` over a WebSocket: its context reads `inbound` (frames up to
/// `max_frame` bytes) and the returned stream, which the connection writes,
/// hands over the actor's `wire`.
pub fn run<A, S>(
    actor: A,
    inbound: S,
    max_frame: usize,
    wire: Arc<Wire>,
    vitals: Option<Rc<Vitals>>,
) -> SocketStream<impl Stream<Item = Result<Bytes, actix_web::Error>>>
where
    A: actix::Actor<Context = ws::WebsocketContext<A>>
        + actix::StreamHandler<Result<ws::Message, ws::ProtocolError>>,
    S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
{
    let codec = actix_http::ws::Codec::new().max_size(max_frame);
    SocketStream::new(
        ws::WebsocketContext::with_codec(actor, inbound, codec),
        wire,
        vitals,
    )
}

/// The waker the actor's context is polled with: marks the actor as due a
/// poll, then wakes the connection's task.
struct ActorWake {
    woken: AtomicBool,
    wire: Arc<Wire>,
}

impl Wake for ActorWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.wire.task.wake();
    }
}

/// What a WebSocket's connection writes: the actor's context stream
/// (`inner`, which runs the actor) and the socket's [`Wire`].
pub struct SocketStream<S> {
    inner: Pin<Box<S>>,
    inner_done: bool,
    actor: Arc<ActorWake>,
    actor_waker: Waker,
    wire: Arc<Wire>,
    /// Where written text frames are counted (sessions; not refused sockets).
    vitals: Option<Rc<Vitals>>,
}

impl<S> SocketStream<S> {
    /// The socket's wire, which the connection marks idle for writes
    /// through.
    pub fn wire(&self) -> &Arc<Wire> {
        &self.wire
    }

    pub fn new(inner: S, wire: Arc<Wire>, vitals: Option<Rc<Vitals>>) -> Self {
        let actor = Arc::new(ActorWake {
            // The first poll starts the actor.
            woken: AtomicBool::new(true),
            wire: wire.clone(),
        });
        SocketStream {
            inner: Box::pin(inner),
            inner_done: false,
            actor_waker: Waker::from(actor.clone()),
            actor,
            wire,
            vitals,
        }
    }
}

impl<S, E> Stream for SocketStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.wire.task.register(cx.waker());
        // Run the actor only when something woke it (its mailbox, the
        // client's frames, its timers), not for every delivered frame; at
        // most once per poll: an actor that wakes itself (actix yields after
        // a batch of work) is polled again when the task runs next, so it
        // cannot hold the worker thread.
        if !this.inner_done && this.actor.woken.swap(false, Ordering::AcqRel) {
            let mut actor_cx = Context::from_waker(&this.actor_waker);
            match this.inner.as_mut().poll_next(&mut actor_cx) {
                Poll::Pending => {}
                // Bytes the actor wrote through its context (ours write to
                // the wire instead): keep them, in order, and poll it again.
                Poll::Ready(Some(Ok(bytes))) => {
                    this.wire.push_own(Entry {
                        bytes,
                        text_len: 0,
                        kind: Kind::Control,
                    });
                    this.actor_waker.wake_by_ref();
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.inner_done = true,
            }
        }
        if let Some(entry) = this.wire.pop() {
            if matches!(entry.kind, Kind::Delivered | Kind::Own) {
                if let Some(vitals) = &this.vitals {
                    vitals.sent(entry.text_len);
                }
            }
            return Poll::Ready(Some(Ok(entry.bytes)));
        }
        if this.inner_done {
            // The actor stopped and everything it queued is written.
            this.wire.shut();
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl<S> Drop for SocketStream<S> {
    fn drop(&mut self) {
        // The connection is gone: senders stop queueing for it.
        self.wire.shut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::socket::CountingMailbox;
    use actix_http::ws::{CloseCode, Frame as WsFrame};
    use std::cell::{Cell, RefCell};
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicUsize;

    /// Stands in for the actor's context stream: counts its polls, keeps
    /// the waker it was polled with, and ends when told.
    struct Actor {
        polls: Rc<Cell<usize>>,
        waker: Rc<RefCell<Option<Waker>>>,
        ended: Rc<Cell<bool>>,
    }

    impl Stream for Actor {
        type Item = Result<Bytes, ()>;
        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.polls.set(self.polls.get() + 1);
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            if self.ended.get() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
    }

    struct CountingWake(AtomicUsize);
    impl Wake for CountingWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Rig {
        wire: Arc<Wire>,
        stream: SocketStream<Actor>,
        polls: Rc<Cell<usize>>,
        actor_waker: Rc<RefCell<Option<Waker>>>,
        ended: Rc<Cell<bool>>,
        task: Arc<CountingWake>,
    }

    impl Rig {
        fn new(max_messages: Option<usize>) -> Rig {
            let app = Arc::new(App::new("id", "key", "secret"));
            Rig::with_outbox(Outbox::new(max_messages, None, true, app))
        }

        fn with_outbox(outbox: Outbox) -> Rig {
            let wire = Wire::new(outbox);
            let polls = Rc::new(Cell::new(0));
            let actor_waker = Rc::new(RefCell::new(None));
            let ended = Rc::new(Cell::new(false));
            let actor = Actor {
                polls: polls.clone(),
                waker: actor_waker.clone(),
                ended: ended.clone(),
            };
            Rig {
                stream: SocketStream::new(actor, wire.clone(), None),
                wire,
                polls,
                actor_waker,
                ended,
                task: Arc::new(CountingWake(AtomicUsize::new(0))),
            }
        }

        fn poll(&mut self) -> Poll<Option<Result<Bytes, ()>>> {
            let waker = Waker::from(self.task.clone());
            let mut cx = Context::from_waker(&waker);
            Pin::new(&mut self.stream).poll_next(&mut cx)
        }

        /// Everything the stream hands over now, decoded as a client would.
        fn written(&mut self) -> Vec<WsFrame> {
            let mut out = Vec::new();
            while let Poll::Ready(Some(Ok(bytes))) = self.poll() {
                let mut buf = BytesMut::from(&bytes[..]);
                let (fin, op, payload) = Parser::parse(&mut buf, false, 1 << 20)
                    .expect("a valid frame")
                    .expect("a whole frame");
                assert!(fin && buf.is_empty(), "one whole frame per chunk");
                let payload = payload.map(|p| p.freeze()).unwrap_or_default();
                out.push(match op {
                    OpCode::Text => WsFrame::Text(payload),
                    OpCode::Pong => WsFrame::Pong(payload),
                    OpCode::Close => {
                        WsFrame::Close(Parser::try_parse_close_payload(&payload).unwrap())
                    }
                    other => panic!("unexpected {other:?}"),
                });
            }
            out
        }

        /// What `SessionHandle::deliver` does: reserve, then queue.
        fn deliver(&self, text: &str) -> bool {
            let frame = Frame::text(text);
            match self.wire.outbox().reserve(frame.text_len()) {
                crate::socket::Admission::Queued => self.wire.deliver(&frame),
                _ => false,
            }
        }

        fn wakes(&self) -> usize {
            self.task.0.load(Ordering::SeqCst)
        }
    }

    fn text(s: &str) -> WsFrame {
        WsFrame::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn text_frames_are_encoded_once_with_the_length_header_for_their_size() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let body = "x".repeat(len);
            let frame = Frame::text(&body);
            assert_eq!(frame.text_len(), len);
            let header = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(frame.bytes().len(), header + len, "len {len}");
            assert_eq!(frame.bytes()[0], 0x81, "FIN + text, len {len}");
            assert_eq!(frame.bytes()[1] & 0x80, 0, "a server frame is not masked");
            let mut buf = BytesMut::from(&frame.bytes()[..]);
            let (_, op, payload) = Parser::parse(&mut buf, false, 1 << 20).unwrap().unwrap();
            assert_eq!(op, OpCode::Text);
            assert_eq!(payload.map(|p| p.len()).unwrap_or(0), len);
            // Shared, not copied, per recipient.
            let copy = frame.clone();
            assert_eq!(copy.bytes().as_ptr(), frame.bytes().as_ptr());
        }
    }

    #[test]
    fn frames_go_out_in_the_order_they_were_queued_and_release_their_room() {
        let mut rig = Rig::new(Some(10));
        assert!(rig.poll().is_pending(), "the first poll starts the actor");
        assert_eq!(rig.polls.get(), 1);
        assert!(rig.deliver("a"));
        rig.wire.send_own("own");
        assert!(rig.deliver("b"));
        rig.wire.pong(b"p");
        assert_eq!(rig.wire.outbox().pending(), 2);
        assert_eq!(
            rig.written(),
            vec![
                text("a"),
                text("own"),
                text("b"),
                WsFrame::Pong(Bytes::from_static(b"p"))
            ]
        );
        assert_eq!(
            rig.wire.outbox().pending(),
            0,
            "written frames free their room"
        );
        assert_eq!(rig.wire.outbox().pending_bytes(), 0);
    }

    #[test]
    fn deliveries_wake_the_connection_but_do_not_run_the_actor() {
        let mut rig = Rig::new(None);
        assert!(rig.poll().is_pending());
        assert_eq!(rig.polls.get(), 1);
        assert!(rig.deliver("a"));
        assert_eq!(rig.wakes(), 1, "a delivery wakes the connection's task");
        assert!(rig.deliver("b"));
        assert_eq!(rig.wakes(), 1, "once until it is polled again");
        assert_eq!(rig.written(), vec![text("a"), text("b")]);
        assert_eq!(rig.polls.get(), 1, "the actor was not polled for frames");
        rig.wire.send_own("own");
        assert_eq!(rig.wakes(), 1, "the session's own frames do not wake");

        // Waking the actor (its mailbox, its timers) runs it on the next poll.
        rig.actor_waker.borrow().as_ref().unwrap().wake_by_ref();
        assert_eq!(rig.wakes(), 2, "through the connection's task");
        assert_eq!(rig.written(), vec![text("own")]);
        assert_eq!(rig.polls.get(), 2);
    }

    #[test]
    fn nothing_is_queued_after_the_close_frame() {
        let mut rig = Rig::new(Some(10));
        assert!(rig.poll().is_pending());
        assert!(rig.deliver("before"));
        rig.wire.close(Some(CloseReason {
            code: CloseCode::Other(4009),
            description: Some("bye".into()),
        }));
        assert!(!rig.deliver("after"), "refused once the close is queued");
        rig.wire.send_own("after, own");
        rig.wire.close(None);
        assert_eq!(
            rig.wire.outbox().pending(),
            1,
            "the refused frame's room is freed"
        );
        assert_eq!(
            rig.written(),
            vec![
                text("before"),
                WsFrame::Close(Some(CloseReason {
                    code: CloseCode::Other(4009),
                    description: Some("bye".into()),
                })),
            ]
        );
        assert_eq!(rig.wire.outbox().pending(), 0);
    }

    #[test]
    fn an_overflow_discards_delivered_frames_but_keeps_the_sessions_own() {
        let mut rig = Rig::new(Some(10));
        assert!(rig.poll().is_pending());
        rig.wire.send_own("connected");
        assert!(rig.deliver("a"));
        assert!(rig.deliver("b"));
        rig.wire.discard_delivered();
        assert_eq!(rig.wire.outbox().pending(), 0);
        rig.wire.send_own("error");
        assert_eq!(rig.written(), vec![text("connected"), text("error")]);
    }

    #[test]
    fn when_the_actor_stops_the_queue_is_written_then_the_stream_ends() {
        let mut rig = Rig::new(Some(10));
        assert!(rig.poll().is_pending());
        assert!(rig.deliver("last"));
        rig.ended.set(true);
        rig.actor_waker.borrow().as_ref().unwrap().wake_by_ref();
        assert!(
            matches!(rig.poll(), Poll::Ready(Some(Ok(_)))),
            "queued frames first"
        );
        assert!(matches!(rig.poll(), Poll::Ready(None)), "then the end");
        assert!(
            !rig.deliver("too late"),
            "nothing is queued for a finished socket"
        );
        assert_eq!(rig.wire.queued(), 0);
        assert_eq!(rig.wire.outbox().pending(), 0);
    }

    #[test]
    fn a_dropped_connection_frees_what_was_queued_for_it() {
        let rig = Rig::new(Some(10));
        assert!(rig.deliver("a"));
        let wire = rig.wire.clone();
        drop(rig);
        assert_eq!(wire.queued(), 0);
        assert_eq!(wire.outbox().pending(), 0);
        let frame = Frame::text("b");
        assert_eq!(wire.outbox().reserve(1), crate::socket::Admission::Queued);
        assert!(
            !wire.deliver(&frame),
            "refused after the connection is gone"
        );
        assert_eq!(wire.outbox().pending(), 0);
    }

    /// A connected pair of non-blocking Unix stream sockets: the one the
    /// wire writes through to (attached) and the client's.
    fn attached(rig: &Rig) -> (UnixStream, UnixStream) {
        let (server, client) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        rig.wire.attach(server.as_raw_fd());
        (server, client)
    }

    /// What the client can read now.
    fn read_now(client: &mut UnixStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    /// The text frames in `bytes`, which must be whole frames.
    fn texts(bytes: &[u8]) -> Vec<String> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while !buf.is_empty() {
            let (fin, op, payload) = Parser::parse(&mut buf, false, 1 << 24)
                .expect("a valid frame")
                .expect("whole frames only");
            assert!(fin);
            assert_eq!(op, OpCode::Text);
            out.push(String::from_utf8(payload.unwrap_or_default().to_vec()).unwrap());
        }
        out
    }

    /// Everything the stream hands the connection now, as raw bytes.
    fn taken(rig: &mut Rig) -> Vec<u8> {
        let mut out = Vec::new();
        while let Poll::Ready(Some(Ok(bytes))) = rig.poll() {
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Start the rig's stream and attach its wire to a socket pair: the
    /// session's handle, the attached socket and the client's.
    fn started(rig: &mut Rig) -> (crate::socket::SessionHandle, UnixStream, UnixStream) {
        let session = handle(rig, &CountingMailbox::default());
        assert!(rig.poll().is_pending());
        let (server, client) = attached(rig);
        (session, server, client)
    }

    fn handle(rig: &Rig, mailbox: &CountingMailbox) -> crate::socket::SessionHandle {
        crate::socket::SessionHandle::new(
            crate::socket::SocketId::next(),
            rig.wire.clone(),
            mailbox.clone(),
        )
    }

    fn sent(rig: &Rig) -> (u64, u64) {
        rig.wire.flush_sent();
        let stats = &rig.wire.outbox().app().stats;
        (
            crate::stats::get(&stats.ws_messages_sent),
            crate::stats::get(&stats.ws_bytes_sent),
        )
    }

    #[test]
    fn an_idle_plain_socket_gets_frames_written_through_without_a_wake() {
        let mut rig = Rig::new(Some(10));
        let (session, _server, mut client) = started(&mut rig);
        rig.wire.set_idle();
        assert!(session.deliver(&Frame::text("hello")));
        assert!(session.deliver(&Frame::text("again")));
        assert_eq!(texts(&read_now(&mut client)), ["hello", "again"]);
        assert_eq!(rig.wakes(), 0, "the connection was not woken");
        assert_eq!(rig.wire.queued(), 0);
        assert_eq!(rig.wire.outbox().pending(), 0, "no room is held");
        assert_eq!(rig.polls.get(), 1);
        assert_eq!(sent(&rig), (2, 10), "counted as sent, once");
        assert_eq!(sent(&rig), (2, 10));
    }

    #[test]
    fn nothing_is_written_through_while_the_connection_holds_or_has_queued_frames() {
        let mut rig = Rig::new(Some(10));
        let (session, _server, mut client) = started(&mut rig);
        // Not yet marked idle: queued.
        assert!(session.deliver(&Frame::text("a")));
        rig.wire.send_own("own");
        // Frames are queued: marking idle does nothing.
        rig.wire.set_idle();
        assert!(session.deliver(&Frame::text("b")));
        assert_eq!(read_now(&mut client), b"");
        assert_eq!(rig.wire.queued(), 3);
        // The connection takes one frame (and is writing it): still queued.
        assert!(matches!(rig.poll(), Poll::Ready(Some(Ok(_)))));
        assert!(session.deliver(&Frame::text("c")));
        assert_eq!(read_now(&mut client), b"");
        assert_eq!(texts(&taken(&mut rig)), ["own", "b", "c"]);
        // Written everything, idle again: the next goes through.
        rig.wire.set_idle();
        assert!(session.deliver(&Frame::text("d")));
        assert_eq!(texts(&read_now(&mut client)), ["d"]);
        assert_eq!(rig.wire.queued(), 0);
        assert_eq!(sent(&rig).0, 1, "the stream counts what it hands over");
    }

    #[test]
    fn a_frame_the_socket_takes_in_part_is_finished_before_anything_else() {
        let mut rig = Rig::new(None);
        let (session, _server, mut client) = started(&mut rig);
        rig.wire.set_idle();
        // Far more than a socket buffer: written in part.
        let big = "x".repeat(8 << 20);
        assert!(session.deliver(&Frame::text(&big)));
        assert_eq!(rig.wire.queued(), 1, "the rest waits at the head");
        assert_eq!(rig.wakes(), 1, "the connection is woken to write it");
        assert!(session.deliver(&Frame::text("next")));
        rig.wire.set_idle();
        assert!(
            session.deliver(&Frame::text("after")),
            "queued, not written"
        );
        assert_eq!(rig.wire.queued(), 3);
        // An overflow keeps the rest of the frame begun on the wire.
        rig.wire.discard_delivered();
        assert_eq!(rig.wire.queued(), 1);
        assert!(session.deliver(&Frame::text("last")));
        let mut stream = read_now(&mut client);
        assert!(stream.len() < big.len(), "only part was written through");
        stream.extend(taken(&mut rig));
        let got = texts(&stream);
        assert_eq!(got.len(), 2);
        assert!(got[0] == big, "the big frame arrives whole");
        assert_eq!(got[1], "last");
        assert_eq!(sent(&rig), (1, big.len() as u64));
    }

    #[test]
    fn a_full_socket_makes_frames_queue_behind_what_it_holds() {
        let mut rig = Rig::new(None);
        let (session, _server, mut client) = started(&mut rig);
        // Fill the socket (the client does not read).
        let filler = "f".repeat(64 << 10);
        let mut written = Vec::new();
        loop {
            rig.wire.set_idle();
            assert!(session.deliver(&Frame::text(&filler)));
            if rig.wire.queued() > 0 {
                break;
            }
            written.push(filler.clone());
        }
        written.push(filler.clone());
        let mut stream = taken(&mut rig);
        // Full: the send is refused (EAGAIN) and the frame queued whole.
        rig.wire.set_idle();
        assert!(session.deliver(&Frame::text("queued")));
        assert_eq!(rig.wire.queued(), 1);
        assert_eq!(rig.wire.outbox().pending(), 1, "and it holds room");
        stream.extend(taken(&mut rig));
        let mut on_socket = read_now(&mut client);
        on_socket.extend(stream);
        written.push("queued".into());
        assert_eq!(texts(&on_socket), written);
    }

    #[test]
    fn frames_the_outbox_refuses_are_not_written_through() {
        // Disconnect policy: a frame over the byte limit overflows the socket.
        let app = Arc::new(App::new("id", "key", "secret"));
        let rig = Rig::with_outbox(Outbox::new(None, Some(10), true, app));
        let mailbox = CountingMailbox::default();
        let session = handle(&rig, &mailbox);
        let (_server, mut client) = attached(&rig);
        rig.wire.set_idle();
        assert!(session.deliver(&Frame::text("0123456789")), "exactly fits");
        assert!(!session.deliver(&Frame::text("0123456789a")));
        assert_eq!(mailbox.count(), 1, "the session is told");
        assert!(
            !session.deliver(&Frame::text("1")),
            "overflowed: nothing more"
        );
        assert_eq!(texts(&read_now(&mut client)), ["0123456789"]);

        // Drop policy: the frame over the limit alone is dropped.
        let app = Arc::new(App::new("id", "key", "secret"));
        let rig = Rig::with_outbox(Outbox::new(None, Some(10), false, app));
        let session = handle(&rig, &mailbox);
        let (_server, mut client) = attached(&rig);
        rig.wire.set_idle();
        assert!(!session.deliver(&Frame::text("0123456789a")));
        assert!(session.deliver(&Frame::text("small")));
        assert_eq!(texts(&read_now(&mut client)), ["small"]);
        assert_eq!(rig.wire.outbox().dropped(), 1);
    }

    #[test]
    fn no_write_through_once_detached_closing_or_never_attached() {
        let mut rig = Rig::new(Some(10));
        let session = handle(&rig, &CountingMailbox::default());
        assert!(rig.poll().is_pending());
        // Never attached (TLS, or no recorded socket): always queued.
        rig.wire.set_idle();
        assert!(session.deliver(&Frame::text("queued")));
        assert_eq!(texts(&taken(&mut rig)), ["queued"]);

        let (server, mut client) = attached(&rig);
        rig.wire.set_idle();
        rig.wire.detach();
        assert!(session.deliver(&Frame::text("after detach")));
        assert_eq!(read_now(&mut client), b"");
        assert_eq!(texts(&taken(&mut rig)), ["after detach"]);

        rig.wire.attach(server.as_raw_fd());
        rig.wire.set_idle();
        rig.wire.close(None);
        rig.wire.set_idle();
        assert!(!session.deliver(&Frame::text("after close")));
        assert_eq!(read_now(&mut client), b"");
    }

    #[test]
    fn a_broken_socket_falls_back_to_the_queue() {
        let mut rig = Rig::new(Some(10));
        let (session, _server, client) = started(&mut rig);
        drop(client);
        rig.wire.set_idle();
        assert!(session.deliver(&Frame::text("to nobody")), "queued");
        assert_eq!(rig.wire.queued(), 1, "the connection meets the error");
        assert_eq!(rig.wakes(), 1);
        assert_eq!(sent(&rig).0, 0);
    }

    #[test]
    fn a_fanout_writes_through_to_other_threads_sockets_only_up_to_its_allowance() {
        let mut rig = Rig::new(None);
        // Attached on this thread: the connection's.
        let (session, _server, mut client) = started(&mut rig);
        rig.wire.set_idle();
        let mut spent = Fanout { foreign_left: 0 };
        assert!(session.deliver_in(&Frame::text("own thread"), &mut spent));
        assert_eq!(rig.wire.queued(), 0, "its own thread always writes through");
        assert_eq!(texts(&read_now(&mut client)), ["own thread"]);

        // Another thread's fan-out: the allowance, then queued (and woken).
        let n = FOREIGN_WRITES_PER_FANOUT as usize;
        let other = session.clone();
        std::thread::spawn(move || {
            let mut fanout = Fanout::new();
            for i in 0..n + 2 {
                assert!(other.deliver_in(&Frame::text(&i.to_string()), &mut fanout));
            }
            // A single delivery has an allowance of its own, but the
            // socket is no longer idle.
            assert!(other.deliver(&Frame::text("single")));
        })
        .join()
        .unwrap();
        assert_eq!(rig.wire.queued(), 3);
        assert_eq!(rig.wakes(), 1);
        let mut stream = read_now(&mut client);
        assert_eq!(texts(&stream).len(), n);
        stream.extend(taken(&mut rig));
        let expected: Vec<String> = (0..n + 2)
            .map(|i| i.to_string())
            .chain(["single".to_string()])
            .collect();
        assert_eq!(texts(&stream), expected);
    }
}
