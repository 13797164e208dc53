//! Socket identity, the bounded outbound queue, and [`SessionHandle`] with
//! its one message, [`ToSession`]: how registries and hubs reach a session
//! without naming the session's type.

use crate::app::App;
use crate::error::PusherError;
use crate::stats;
use crate::wire::{Fanout, Frame, Wire};
use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};
use log::warn;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// `"<digits>.<digits>"`: a per-process random prefix and a counter, so ids
/// are unique among live connections here and very likely across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    pub node: u32,
    pub seq: u64,
}

impl SocketId {
    pub fn next() -> SocketId {
        static NODE: OnceLock<u32> = OnceLock::new();
        static SEQ: AtomicU64 = AtomicU64::new(1);
        let node = *NODE.get_or_init(|| rand::random::<u32>() % 1_000_000_000);
        SocketId {
            node,
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.seq)
    }
}

impl FromStr for SocketId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('.').ok_or(())?;
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return Err(());
        }
        Ok(SocketId {
            node: a.parse().map_err(|_| ())?,
            seq: b.parse().map_err(|_| ())?,
        })
    }
}

/// How much a session may have queued but not yet written. A session whose
/// peer does not read stops being polled, so its mailbox would grow without
/// bound; senders check this first and, past the limit, stop delivering.
///
/// The limits count what is queued: frames (`WEBSOCKET_MAX_MESSAGES`) and
/// the bytes of the serialised frames (`WEBSOCKET_MAX_BYTES`), i.e. the whole
/// `{"event":…,"channel":…,"data":…}` text, not just the event's `data`. A
/// frame fits while `queued bytes + its length <= max_bytes`, so on an idle
/// socket a frame of exactly `max_bytes` is delivered and one byte more is not.
///
/// What a frame that does not fit means depends on the policy:
///
/// - disconnect (default, `WEBSOCKET_DISCONNECT_ON_BUFFER_FULL=true`): the
///   outbox overflows for good and the session is told at once
///   ([`ToSession::Overflowed`]); it closes with `pusher:error` 4100 and close code 4100.
///   That includes a single frame larger than the whole byte limit sent to an
///   idle socket: the client could never receive it, and this policy promises
///   that a client misses no frame without being told to reconnect.
/// - drop (`false`): that frame alone is dropped and counted (per socket and in
///   the app's `ws_messages_dropped` counter); the socket stays open and later
///   frames that fit are delivered. A frame larger than the whole byte limit
///   is therefore never delivered to anyone under this policy.
#[derive(Debug)]
pub struct Outbox {
    pending_messages: AtomicUsize,
    pending_bytes: AtomicUsize,
    overflowed: AtomicBool,
    max_messages: usize,
    max_bytes: usize,
    /// When false a full queue drops new frames instead of closing the socket
    /// (Sockudo's `websocket.disconnect_on_buffer_full`).
    disconnect_when_full: bool,
    dropped: AtomicU64,
    /// The app whose `ws_messages_dropped` counter drops are added to.
    app: Arc<App>,
}

/// What became of a frame offered to an [`Outbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Room was reserved: send the frame, release the room once written.
    Queued,
    /// Disconnect policy: the queue is full, the socket must close with 4100.
    /// `first` is true for exactly one caller, the one that must tell the
    /// session (nothing else may ever wake it: the queue can be empty).
    Overflowed { first: bool },
    /// Drop policy: this frame was dropped; `first` marks the socket's first drop.
    Dropped { first: bool },
}

impl Outbox {
    /// `None` limits mean unbounded (an operator's explicit choice).
    pub fn new(
        max_messages: Option<usize>,
        max_bytes: Option<usize>,
        disconnect_when_full: bool,
        app: Arc<App>,
    ) -> Self {
        Outbox {
            disconnect_when_full,
            dropped: AtomicU64::new(0),
            pending_messages: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            max_messages: max_messages.unwrap_or(usize::MAX),
            max_bytes: max_bytes.unwrap_or(usize::MAX),
            app,
        }
    }

    /// Reserve room for one frame of `len` bytes (see [`Admission`]). Once
    /// overflowed, the outbox refuses everything.
    pub fn reserve(&self, len: usize) -> Admission {
        if self.overflowed.load(Ordering::Relaxed) {
            return Admission::Overflowed { first: false };
        }
        let messages = self.pending_messages.fetch_add(1, Ordering::AcqRel);
        let bytes = self.pending_bytes.fetch_add(len, Ordering::AcqRel);
        if self.fits(messages, bytes, len) {
            return Admission::Queued;
        }
        self.pending_messages.fetch_sub(1, Ordering::AcqRel);
        self.pending_bytes.fetch_sub(len, Ordering::AcqRel);
        if self.disconnect_when_full {
            // `swap`: of all the senders that find the queue full, exactly one
            // sees the flag flip and notifies the session.
            let first = !self.overflowed.swap(true, Ordering::AcqRel);
            Admission::Overflowed { first }
        } else {
            stats::add(&self.app.stats.ws_messages_dropped, 1);
            let first = self.dropped.fetch_add(1, Ordering::Relaxed) == 0;
            Admission::Dropped { first }
        }
    }

    /// Whether a frame of `len` bytes would be admitted with nothing queued
    /// (and nothing reserved): what a frame written through, which is never
    /// queued, must satisfy, so the limits mean the same for it.
    pub fn admits_alone(&self, len: usize) -> bool {
        !self.overflowed.load(Ordering::Relaxed) && self.fits(0, 0, len)
    }

    /// Whether a frame of `len` bytes fits behind `messages` frames of
    /// `bytes` bytes.
    fn fits(&self, messages: usize, bytes: usize, len: usize) -> bool {
        messages < self.max_messages && bytes.saturating_add(len) <= self.max_bytes
    }

    /// The app this outbox's socket belongs to.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Called by the session as it writes a delivered frame.
    pub fn release(&self, len: usize) {
        self.pending_messages.fetch_sub(1, Ordering::AcqRel);
        self.pending_bytes.fetch_sub(len, Ordering::AcqRel);
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Frames dropped because the queue was full (drop policy only).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn pending(&self) -> usize {
        self.pending_messages.load(Ordering::Relaxed)
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.load(Ordering::Relaxed)
    }
}

/// Everything other actors tell a session, in one message so a session has
/// one mailbox to hand out ([`SessionHandle`]) and one handler. Frames are
/// not among them: they go to the socket's [`Wire`] without waking the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum ToSession {
    /// From whoever found the socket's outbound queue full (disconnect
    /// policy), sent once when the outbox flips to overflowed. The queue may
    /// be empty (one frame larger than `WEBSOCKET_MAX_BYTES`): this closes it
    /// with 4100.
    Overflowed,
    /// From the worker's hub: a liveness or sign-in deadline has passed.
    Heartbeat,
    /// The shard refused a subscription the session had optimistically
    /// recorded (presence channel full); the error frame has already been
    /// delivered.
    Refused(Arc<str>),
    /// Close the socket with this error (4009 terminate, 4200 shutdown, …).
    Disconnect(PusherError),
}

/// What a registry holds for each subscribed socket (and a hub for each of
/// its sessions): the socket's id, its outbox and its mailbox.
///
/// One `Arc`, so the copy a shard keeps per subscription is a (two-word)
/// pointer and a clone is one reference-count increment. An actix address
/// would cost more: cloning an `Addr` (an `AddressSender`) bumps the sender
/// count with a compare-and-swap and allocates two `Arc`s of its own
/// (`sender_task`, `maybe_parked`); cloning a `Recipient` boxes such a clone,
/// three allocations. Here the session's one `Addr` is made when it starts.
///
/// The mailbox is a [`Mailbox`] trait object — as actix's chat example passes
/// `Recipient`s — so this module (and the registry and hub that hold
/// handles) never names the session actor. Not a `Recipient` itself: that
/// boxes its sender, one more pointer to follow on every delivery.
#[derive(Clone)]
pub struct SessionHandle(Arc<Link<dyn Mailbox>>);

struct Link<M: ?Sized> {
    id: SocketId,
    /// Where frames go (with the outbox that bounds them); shared with the
    /// connection that writes them.
    wire: Arc<Wire>,
    mailbox: M,
}

/// Where a [`SessionHandle`] sends: the session's address, its type erased.
pub(crate) trait Mailbox: Send + Sync + 'static {
    fn send(&self, msg: ToSession);
}

impl<A> Mailbox for Addr<A>
where
    A: Actor + Handler<ToSession>,
    A::Context: ToEnvelope<A, ToSession>,
{
    fn send(&self, msg: ToSession) {
        self.do_send(msg);
    }
}

/// A mailbox that only counts what it is sent: for tests that need a
/// [`SessionHandle`] without a session.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct CountingMailbox(pub(crate) Arc<AtomicUsize>);

#[cfg(test)]
impl CountingMailbox {
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
impl Mailbox for CountingMailbox {
    fn send(&self, _: ToSession) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.0.id)
            .finish()
    }
}

impl SessionHandle {
    /// Made once per session, when it starts (its mailbox exists from then).
    pub(crate) fn new(id: SocketId, wire: Arc<Wire>, mailbox: impl Mailbox) -> Self {
        SessionHandle(Arc::new(Link { id, wire, mailbox }))
    }

    pub fn id(&self) -> SocketId {
        self.0.id
    }

    /// The session's outbound queue accounting.
    pub fn outbox(&self) -> &Outbox {
        self.0.wire.outbox()
    }

    /// Queue a frame for the socket. The frame's bytes are shared, not copied,
    /// and go straight to the connection, not through the session's mailbox;
    /// to an idle plain socket they are written at once, by this thread
    /// ([`Wire::write_through`]). Returns `false` if the frame was not
    /// queued: the socket's queue is full (the session is told once and
    /// closes with 4100), the socket is closing, or, under the drop policy,
    /// the frame was dropped.
    pub fn deliver(&self, frame: &Frame) -> bool {
        self.deliver_in(frame, &mut Fanout::new())
    }

    /// [`Self::deliver`] as one of a fan-out's deliveries, which share
    /// `fanout`'s allowance of writes through to other threads' sockets.
    pub fn deliver_in(&self, frame: &Frame, fanout: &mut Fanout) -> bool {
        let link = &*self.0;
        if link.wire.write_through(frame, fanout) {
            return true;
        }
        let outbox = link.wire.outbox();
        match outbox.reserve(frame.text_len()) {
            Admission::Queued => link.wire.deliver(frame),
            Admission::Overflowed { first } => {
                if first {
                    link.mailbox.send(ToSession::Overflowed);
                }
                false
            }
            Admission::Dropped { first } => {
                if first {
                    warn!(
                        event = "frames_dropped", app_id = outbox.app.id.as_ref(),
                        socket_id:% = link.id, bytes = frame.text_len(),
                        queued = outbox.pending(), queued_bytes = outbox.pending_bytes(),
                        reason = "outbound queue over WEBSOCKET_MAX_MESSAGES / WEBSOCKET_MAX_BYTES";
                        "outbound queue full, dropping frames for this socket \
                         (WEBSOCKET_DISCONNECT_ON_BUFFER_FULL=false)"
                    );
                }
                false
            }
        }
    }

    /// Add the frames written through to this socket to its app's counters.
    pub(crate) fn flush_sent(&self) {
        self.0.wire.flush_sent();
    }

    /// The shard refused a subscription the session had optimistically
    /// recorded (presence channel full); the error frame has already been
    /// delivered. The session forgets the channel.
    pub fn refuse(&self, channel: Arc<str>) {
        self.0.mailbox.send(ToSession::Refused(channel));
    }

    /// Close the socket with this error (4009 terminate, 4200 shutdown, …).
    pub fn disconnect(&self, err: PusherError) {
        self.0.mailbox.send(ToSession::Disconnect(err));
    }

    /// From the worker's hub: a liveness or sign-in deadline has passed.
    pub(crate) fn heartbeat(&self) {
        self.0.mailbox.send(ToSession::Heartbeat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_are_unique_and_round_trip() {
        let a = SocketId::next();
        let b = SocketId::next();
        assert_ne!(a, b);
        let text = a.to_string();
        assert!(text.split_once('.').is_some());
        assert_eq!(text.parse::<SocketId>(), Ok(a));
        assert!("1.".parse::<SocketId>().is_err());
        assert!("a.1".parse::<SocketId>().is_err());
        assert!("1.2.3".parse::<SocketId>().is_err());
    }

    #[test]
    fn socket_ids_parse_only_two_runs_of_ascii_digits() {
        assert_eq!(
            "123.456".parse(),
            Ok(SocketId {
                node: 123,
                seq: 456
            })
        );
        assert_eq!("0.0".parse(), Ok(SocketId { node: 0, seq: 0 }));
        assert_eq!(
            "4294967295.18446744073709551615".parse(),
            Ok(SocketId {
                node: u32::MAX,
                seq: u64::MAX
            }),
            "the largest values fit"
        );
        for bad in [
            "",
            ".",
            "1",
            ".1",
            "1.",
            "1..2",
            "1.2.",
            " 1.2",
            "1.2 ",
            "1 .2",
            "+1.2",
            "1.+2",
            "-1.2",
            "1.-2",
            "1,2",
            "1:2",
            "0x1.2",
            "1e3.2",
            "١.٢",
            "１.２",
            "4294967296.1",
            "1.18446744073709551616",
        ] {
            assert_eq!(bad.parse::<SocketId>(), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn socket_ids_display_as_node_dot_seq() {
        let id = SocketId {
            node: 7,
            seq: 1_000_000,
        };
        assert_eq!(id.to_string(), "7.1000000");
        let next = SocketId::next();
        assert!(next.node < 1_000_000_000, "node is at most nine digits");
        let text = next.to_string();
        let (a, b) = text.split_once('.').unwrap();
        assert!(
            a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()),
            "{text}"
        );
    }

    fn app() -> Arc<App> {
        Arc::new(App::new("id", "key", "secret"))
    }

    /// A registry keeps one handle per subscription: keep it small.
    #[test]
    fn a_handle_is_a_pointer() {
        use std::mem::size_of;
        // A pointer to the link and the mailbox's vtable.
        assert_eq!(size_of::<SessionHandle>(), 2 * size_of::<usize>());
    }

    #[test]
    fn outbox_overflows_at_its_limit_and_stays_overflowed() {
        let o = Outbox::new(Some(2), None, true, app());
        assert_eq!(o.reserve(10), Admission::Queued);
        assert_eq!(o.reserve(10), Admission::Queued);
        assert_eq!(
            o.reserve(10),
            Admission::Overflowed { first: true },
            "third frame is over the limit"
        );
        assert!(o.overflowed());
        o.release(10);
        assert_eq!(
            o.reserve(10),
            Admission::Overflowed { first: false },
            "an overflowed outbox stays closed, and the session is told only once"
        );

        let o = Outbox::new(None, Some(100), true, app());
        assert_eq!(o.reserve(100), Admission::Queued);
        assert_eq!(o.reserve(1), Admission::Overflowed { first: true });
    }

    #[test]
    fn byte_limit_edge_on_an_idle_socket_disconnect_policy() {
        // Exactly the limit fits an empty queue.
        let o = Outbox::new(None, Some(100), true, app());
        assert_eq!(o.reserve(100), Admission::Queued);
        assert_eq!(o.pending_bytes(), 100);
        o.release(100);
        assert_eq!((o.pending(), o.pending_bytes()), (0, 0));

        // One byte more, with nothing queued: overflow, reported once, and
        // nothing is left reserved.
        let o = Outbox::new(None, Some(100), true, app());
        assert_eq!(o.reserve(101), Admission::Overflowed { first: true });
        assert!(o.overflowed());
        assert_eq!((o.pending(), o.pending_bytes()), (0, 0));
        assert_eq!(o.reserve(1), Admission::Overflowed { first: false });
        assert_eq!(
            o.dropped(),
            0,
            "the disconnect policy drops nothing silently"
        );
    }

    #[test]
    fn byte_limit_edge_on_an_idle_socket_drop_policy() {
        let app = app();
        let o = Outbox::new(None, Some(100), false, app.clone());
        assert_eq!(o.reserve(101), Admission::Dropped { first: true });
        assert!(!o.overflowed());
        assert_eq!((o.pending(), o.pending_bytes()), (0, 0));
        assert_eq!(
            o.reserve(100),
            Admission::Queued,
            "a frame that fits still goes"
        );
        o.release(100);
        assert_eq!(o.reserve(1000), Admission::Dropped { first: false });
        assert_eq!(o.dropped(), 2);
        assert_eq!(stats::get(&app.stats.ws_messages_dropped), 2);
    }

    #[test]
    fn drop_policy_drops_frames_but_keeps_the_socket() {
        let o = Outbox::new(Some(1), None, false, app());
        assert_eq!(o.reserve(1), Admission::Queued);
        assert_eq!(o.reserve(1), Admission::Dropped { first: true });
        assert!(!o.overflowed());
        assert_eq!(o.dropped(), 1);
        o.release(1);
        assert_eq!(
            o.reserve(1),
            Admission::Queued,
            "room again once the session caught up"
        );
    }
}
