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

use crate::hub::Vitals;
use crate::socket::Outbox;
use actix_http::error::PayloadError;
use actix_http::ws::{CloseReason, OpCode, Parser};
use actix_web_actors::ws;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

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
        let entry = self.lock().frames.pop_front()?;
        if entry.kind == Kind::Delivered {
            self.outbox.release(entry.text_len);
        }
        Some(entry)
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
            if entry.kind != Kind::Control {
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
    use actix_http::ws::{CloseCode, Frame as WsFrame};
    use std::cell::{Cell, RefCell};
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
            let wire = Wire::new(Outbox::new(max_messages, None, true, app));
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
}
