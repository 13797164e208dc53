//! Worker hub: the sessions living on one worker thread, with the one timer
//! and the one command inbox they share.
//!
//! Fan-out: a registry shard runs on its own thread, so handing a frame to a
//! session is a cross-thread message. Sent per subscriber, that is a boxed
//! actix envelope, a mailbox push and a cross-thread wake per delivery. The
//! shard instead sends one `Deliver` command per worker per broadcast (see
//! [`Fanout`]), and the hub, on the worker's own thread, puts the shared
//! frame in each local session's [`Inbox`]: a queue and a same-thread wake.
//! Every frame from the shards goes this way, so a session receives them in
//! the order the shards sent them, across channels too.
//!
//! Timers: actix polls every future and stream spawned on an actor's context
//! each time the actor wakes, so a heartbeat timer and a shutdown watch per
//! session were polled again for every frame delivered to it. One interval
//! per worker thread instead reads every local session's [`Vitals`] (cells
//! the session updates as it works) and wakes only the sessions due a ping,
//! a 4201 or a sign-in timeout; it also moves their traffic counters into the
//! app's shared counters. Shutdown crosses into each worker once and reaches
//! every socket there (4200).

use crate::app::App;
use crate::error::PusherError;
use crate::messages::{Deliver, Disconnect, Heartbeat};
use crate::session::Session;
use crate::socket::{SessionHandle, SocketId};
use crate::stats;
use actix::Addr;
use bytestring::ByteString;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A session as a shard addresses it: its slot at its hub, and its id
/// (checked there, as the slot may have been reused).
type Address = (u32, SocketId);

/// What crosses into a worker thread.
enum Command {
    /// One frame for some of this worker's sessions.
    Deliver { frame: ByteString, to: Vec<Address> },
    /// Tell every session here to reconnect elsewhere (4200).
    Shutdown,
}

/// Where a session sits: its worker's hub and its slot there. Sendable, so
/// registry shards keep it with each subscriber.
#[derive(Clone)]
pub struct Seat {
    hub: Arc<Link>,
    slot: u32,
}

impl fmt::Debug for Seat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seat").field("slot", &self.slot).finish()
    }
}

/// The sending end of one hub's command channel.
struct Link(mpsc::UnboundedSender<Command>);

impl Link {
    fn send(&self, command: Command) {
        // Fails only once the worker is gone, and its sessions with it.
        let _ = self.0.send(command);
    }
}

/// One broadcast being addressed: recipients grouped by worker, then one
/// command per worker. Workers are few (one per core), so a short list
/// searched linearly beats a map.
pub struct Fanout<'a> {
    frame: &'a ByteString,
    batches: Vec<(&'a Arc<Link>, Vec<Address>)>,
}

impl<'a> Fanout<'a> {
    pub fn new(frame: &'a ByteString) -> Self {
        Fanout {
            frame,
            batches: Vec::new(),
        }
    }

    /// Adds a recipient unless its outbound queue is full (it then closes
    /// with 4100, or drops the frame, per its policy). False if not added.
    pub fn add(&mut self, to: &'a SessionHandle) -> bool {
        if !to.outbox.reserve(self.frame.len()) {
            return false;
        }
        let target = (to.seat.slot, to.id);
        match self
            .batches
            .iter_mut()
            .find(|(hub, _)| Arc::ptr_eq(hub, &to.seat.hub))
        {
            Some((_, to)) => to.push(target),
            None => self.batches.push((&to.seat.hub, vec![target])),
        }
        true
    }

    pub fn send(self) {
        for (hub, to) in self.batches {
            hub.send(Command::Deliver {
                frame: self.frame.clone(),
                to,
            });
        }
    }
}

/// The process's hubs, one per worker thread that has had a session. Cheap
/// to clone; one per server.
#[derive(Clone)]
pub struct Hubs(Arc<Directory>);

struct Directory {
    timing: Timing,
    shutting_down: AtomicBool,
    /// Command senders of the live hubs.
    inboxes: Mutex<Vec<Arc<Link>>>,
}

/// When a session needs its heartbeat run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A client silent this long is pinged.
    pub activity_timeout: Duration,
    /// A pinged client silent this long is closed with 4201.
    pub pong_timeout: Duration,
    /// Apps that require sign-in close sockets not signed in by then.
    pub signin_timeout: Duration,
}

impl Timing {
    /// The hub's tick: a quarter of the shortest timeout, so a deadline is
    /// acted on at most 25 % late, between 100 ms and 5 s.
    fn tick(&self) -> Duration {
        (self
            .activity_timeout
            .min(self.pong_timeout)
            .min(self.signin_timeout)
            / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl fmt::Debug for Hubs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hubs")
            .field("timing", &self.0.timing)
            .field("shutting_down", &self.0.shutting_down)
            .finish()
    }
}

impl Hubs {
    pub fn new(timing: Timing) -> Hubs {
        Hubs(Arc::new(Directory {
            timing,
            shutting_down: AtomicBool::new(false),
            inboxes: Mutex::new(Vec::new()),
        }))
    }

    /// Every session, now and from now on, is told to reconnect elsewhere
    /// (`pusher:error` 4200 and a close with 4200).
    pub fn shutdown(&self) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
        let inboxes = self.0.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        for inbox in inboxes.iter() {
            inbox.send(Command::Shutdown);
        }
    }

    /// This thread's hub, started on first use. Must run on an actix
    /// arbiter (a worker thread), as sessions do.
    pub(crate) fn local(&self) -> Rc<Hub> {
        thread_local! {
            static LOCAL: RefCell<Vec<(std::sync::Weak<Directory>, Rc<Hub>)>> = const { RefCell::new(Vec::new()) };
        }
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            // Forget hubs of directories that are gone or whose task ended
            // (a runtime stopped on this thread).
            local.retain(|(dir, hub)| dir.strong_count() > 0 && !hub.link.0.is_closed());
            if let Some((_, hub)) = local
                .iter()
                .find(|(dir, _)| std::ptr::eq(dir.as_ptr(), Arc::as_ptr(&self.0)))
            {
                return hub.clone();
            }
            let hub = self.start_hub();
            local.push((Arc::downgrade(&self.0), hub.clone()));
            hub
        })
    }

    fn start_hub(&self) -> Rc<Hub> {
        let (tx, rx) = mpsc::unbounded_channel();
        let link = Arc::new(Link(tx));
        let hub = Rc::new(Hub {
            seats: RefCell::new(Slots::new()),
            closing: Cell::new(false),
            link: link.clone(),
            timing: self.0.timing,
        });
        {
            let mut inboxes = self.0.inboxes.lock().unwrap_or_else(|e| e.into_inner());
            inboxes.retain(|i| !i.0.is_closed());
            inboxes.push(link);
        }
        // Checked after registering: a shutdown that ran before this hub was
        // listed is seen here, one that runs after finds it in the list.
        if self.0.shutting_down.load(Ordering::SeqCst) {
            hub.closing.set(true);
        }
        actix::spawn(run(Rc::downgrade(&hub), rx, self.0.timing.tick()));
        hub
    }
}

/// The hub's task: commands from other threads and the heartbeat tick.
async fn run(hub: Weak<Hub>, mut inbox: mpsc::UnboundedReceiver<Command>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = inbox.recv() => match (command, hub.upgrade()) {
                (Some(Command::Deliver { frame, to }), Some(hub)) => hub.deliver(&frame, &to),
                (Some(Command::Shutdown), Some(hub)) => hub.shut_down(),
                _ => return,
            },
            _ = interval.tick() => match hub.upgrade() {
                Some(hub) => hub.tick(Instant::now()),
                None => return,
            },
        }
    }
}

/// A slab keyed by slot number, each entry tagged with its socket id: O(1)
/// lookup for the slot a [`Seat`] carries, and a slot reused by a newer
/// session never receives what was addressed to the one that left.
struct Slots<T> {
    entries: Vec<Option<(SocketId, T)>>,
    free: Vec<u32>,
}

impl<T> Slots<T> {
    fn new() -> Self {
        Slots {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    fn insert(&mut self, id: SocketId, value: T) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = Some((id, value));
                slot
            }
            None => {
                self.entries.push(Some((id, value)));
                (self.entries.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, slot: u32, id: SocketId) -> Option<T> {
        let place = self.entries.get_mut(slot as usize)?;
        if place.as_ref().is_some_and(|(held, _)| *held == id) {
            self.free.push(slot);
            place.take().map(|(_, v)| v)
        } else {
            None
        }
    }

    fn get(&self, slot: u32, id: SocketId) -> Option<&T> {
        match self.entries.get(slot as usize) {
            Some(Some((held, v))) if *held == id => Some(v),
            _ => None,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().flatten().map(|(_, v)| v)
    }
}

/// The sessions of one worker thread.
pub(crate) struct Hub {
    seats: RefCell<Slots<Resident>>,
    /// Set once the server shuts down: sessions joining later are closed at once.
    closing: Cell<bool>,
    link: Arc<Link>,
    timing: Timing,
}

/// What a session leaves with its hub when it joins.
pub(crate) struct Resident {
    pub id: SocketId,
    pub addr: Addr<Session>,
    pub vitals: Rc<Vitals>,
    pub inbox: Rc<Inbox>,
    pub app: Arc<App>,
}

impl Hub {
    /// A session joins the hub when it starts; the seat is how shards reach it.
    pub(crate) fn join(&self, resident: Resident) -> Seat {
        if self.closing.get() {
            resident
                .addr
                .do_send(Disconnect(PusherError::ReconnectImmediately));
        }
        let slot = self.seats.borrow_mut().insert(resident.id, resident);
        Seat {
            hub: self.link.clone(),
            slot,
        }
    }

    /// A session leaves when it stops.
    pub(crate) fn leave(&self, seat: &Seat, id: SocketId) {
        // Dropped outside the borrow: dropping frees the session's inbox.
        let gone = self.seats.borrow_mut().remove(seat.slot, id);
        drop(gone);
    }

    fn deliver(&self, frame: &ByteString, to: &[Address]) {
        let seats = self.seats.borrow();
        for (slot, id) in to {
            // A session that left since the shard addressed it is skipped.
            if let Some(resident) = seats.get(*slot, *id) {
                resident.inbox.push(frame.clone());
            }
        }
    }

    fn shut_down(&self) {
        self.closing.set(true);
        for resident in self.seats.borrow().iter() {
            resident
                .addr
                .do_send(Disconnect(PusherError::ReconnectImmediately));
        }
    }

    fn tick(&self, now: Instant) {
        for resident in self.seats.borrow().iter() {
            resident.vitals.flush_traffic(&resident.app);
            if resident.vitals.due(now, &self.timing) {
                resident.addr.do_send(Heartbeat);
            }
        }
    }
}

/// A session's queue of frames from the shards, filled by its hub and
/// drained by the session (a message stream on its context), both on the
/// worker's thread: no lock, no envelope, a same-thread wake.
#[derive(Default)]
pub struct Inbox {
    frames: RefCell<VecDeque<ByteString>>,
    waker: Cell<Option<std::task::Waker>>,
}

impl Inbox {
    fn push(&self, frame: ByteString) {
        self.frames.borrow_mut().push_back(frame);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The stream a session adds to its context; it never ends.
    pub fn stream(self: &Rc<Self>) -> InboxStream {
        InboxStream(self.clone())
    }
}

pub struct InboxStream(Rc<Inbox>);

impl futures_core::Stream for InboxStream {
    type Item = Deliver;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Deliver>> {
        // Bind first: the queue's borrow must end before the waker is stored.
        let next = self.0.frames.borrow_mut().pop_front();
        match next {
            Some(frame) => std::task::Poll::Ready(Some(Deliver(frame))),
            None => {
                self.0.waker.set(Some(cx.waker().clone()));
                std::task::Poll::Pending
            }
        }
    }
}

/// What a session shares with its hub: when it was last heard from, whether
/// a ping is out, its sign-in deadline, and traffic not yet counted in the
/// app's totals. Cells, because the session and its hub share one thread.
#[derive(Debug)]
pub struct Vitals {
    last_seen: Cell<Instant>,
    ping_sent: Cell<Option<Instant>>,
    signin_deadline: Cell<Option<Instant>>,
    sent_messages: Cell<u64>,
    sent_bytes: Cell<u64>,
    received_messages: Cell<u64>,
    received_bytes: Cell<u64>,
}

impl Vitals {
    pub fn new(now: Instant) -> Vitals {
        Vitals {
            last_seen: Cell::new(now),
            ping_sent: Cell::new(None),
            signin_deadline: Cell::new(None),
            sent_messages: Cell::new(0),
            sent_bytes: Cell::new(0),
            received_messages: Cell::new(0),
            received_bytes: Cell::new(0),
        }
    }

    /// The client sent something: it is alive, and any ping is answered.
    pub fn heard(&self, now: Instant) {
        self.last_seen.set(now);
        self.ping_sent.set(None);
        self.received_messages.set(self.received_messages.get() + 1);
    }

    pub fn received_bytes(&self, n: usize) {
        self.received_bytes
            .set(self.received_bytes.get() + n as u64);
    }

    pub fn sent(&self, n: usize) {
        self.sent_messages.set(self.sent_messages.get() + 1);
        self.sent_bytes.set(self.sent_bytes.get() + n as u64);
    }

    pub fn last_seen(&self) -> Instant {
        self.last_seen.get()
    }

    pub fn ping_sent(&self) -> Option<Instant> {
        self.ping_sent.get()
    }

    pub fn set_ping_sent(&self, at: Option<Instant>) {
        self.ping_sent.set(at);
    }

    pub fn signin_deadline(&self) -> Option<Instant> {
        self.signin_deadline.get()
    }

    pub fn set_signin_deadline(&self, at: Option<Instant>) {
        self.signin_deadline.set(at);
    }

    /// Whether the session must run its heartbeat: a ping to send, a ping
    /// unanswered too long, or a sign-in deadline passed.
    pub fn due(&self, now: Instant, timing: &Timing) -> bool {
        let liveness = match self.ping_sent.get() {
            Some(sent) => now.saturating_duration_since(sent) >= timing.pong_timeout,
            None => now.saturating_duration_since(self.last_seen.get()) >= timing.activity_timeout,
        };
        liveness || self.signin_deadline.get().is_some_and(|d| now >= d)
    }

    /// Moves the traffic counted so far into the app's shared counters: one
    /// atomic add per counter per tick instead of one per frame on a cache
    /// line every worker thread touches.
    pub fn flush_traffic(&self, app: &App) {
        let s = &app.stats;
        for (cell, total) in [
            (&self.sent_messages, &s.ws_messages_sent),
            (&self.sent_bytes, &s.ws_bytes_sent),
            (&self.received_messages, &s.ws_messages_received),
            (&self.received_bytes, &s.ws_bytes_received),
        ] {
            let n = cell.take();
            if n > 0 {
                stats::add(total, n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            signin_timeout: Duration::from_secs(3600),
        }
    }

    #[test]
    fn tick_is_a_quarter_of_the_shortest_timeout_within_bounds() {
        assert_eq!(
            timing().tick(),
            Duration::from_millis(7500).min(Duration::from_secs(5))
        );
        let fast = Timing {
            activity_timeout: Duration::from_secs(1),
            pong_timeout: Duration::from_secs(2),
            ..timing()
        };
        assert_eq!(fast.tick(), Duration::from_millis(250));
        let signin = Timing {
            signin_timeout: Duration::from_secs(2),
            ..timing()
        };
        assert_eq!(signin.tick(), Duration::from_millis(500));
        let tiny = Timing {
            activity_timeout: Duration::from_millis(10),
            pong_timeout: Duration::from_millis(10),
            ..timing()
        };
        assert_eq!(tiny.tick(), Duration::from_millis(100));
    }

    #[test]
    fn due_after_silence_then_after_an_unanswered_ping() {
        let t0 = Instant::now();
        let v = Vitals::new(t0);
        let t = timing();
        assert!(!v.due(t0 + Duration::from_secs(119), &t));
        assert!(v.due(t0 + Duration::from_secs(120), &t));
        // The session pings; the hub waits for the pong timeout.
        let pinged = t0 + Duration::from_secs(120);
        v.set_ping_sent(Some(pinged));
        assert!(!v.due(pinged + Duration::from_secs(29), &t));
        assert!(v.due(pinged + Duration::from_secs(30), &t));
        // Any frame from the client answers the ping.
        v.heard(pinged + Duration::from_secs(1));
        assert_eq!(v.ping_sent(), None);
        assert!(!v.due(pinged + Duration::from_secs(30), &t));
    }

    fn id(seq: u64) -> SocketId {
        SocketId { node: 1, seq }
    }

    #[test]
    fn slots_reuse_freed_places_and_ignore_stale_addresses() {
        let mut slots = Slots::new();
        let a = slots.insert(id(1), "a");
        let b = slots.insert(id(2), "b");
        assert_ne!(a, b);
        assert_eq!(slots.get(a, id(1)), Some(&"a"));
        assert_eq!(slots.get(a, id(2)), None, "wrong socket for the slot");
        assert_eq!(slots.remove(a, id(2)), None, "only the holder can leave");
        assert_eq!(slots.remove(a, id(1)), Some("a"));
        assert_eq!(slots.remove(a, id(1)), None, "already gone");
        // The freed slot goes to the next session; the old address misses.
        let c = slots.insert(id(3), "c");
        assert_eq!(c, a);
        assert_eq!(slots.get(a, id(1)), None);
        assert_eq!(slots.get(c, id(3)), Some(&"c"));
        assert_eq!(slots.get(99, id(3)), None);
        let mut all: Vec<_> = slots.iter().copied().collect();
        all.sort_unstable();
        assert_eq!(all, ["b", "c"]);
    }

    /// Counts wakes, to check the inbox wakes its session exactly when needed.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn inbox_yields_frames_in_order_and_wakes_a_waiting_session_once() {
        use futures_core::Stream;
        let counter = Arc::new(CountingWaker(Default::default()));
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let inbox = Rc::new(Inbox::default());
        let mut stream = inbox.stream();
        let mut next = |cx: &mut std::task::Context<'_>| match Pin::new(&mut stream).poll_next(cx) {
            std::task::Poll::Ready(Some(Deliver(f))) => Some(f.to_string()),
            std::task::Poll::Ready(None) => panic!("the inbox stream never ends"),
            std::task::Poll::Pending => None,
        };
        assert_eq!(next(&mut cx), None);
        inbox.push(ByteString::from_static("one"));
        inbox.push(ByteString::from_static("two"));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "one wake for a burst");
        assert_eq!(next(&mut cx).as_deref(), Some("one"));
        assert_eq!(next(&mut cx).as_deref(), Some("two"));
        assert_eq!(next(&mut cx), None);
        inbox.push(ByteString::from_static("three"));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(next(&mut cx).as_deref(), Some("three"));
    }

    #[test]
    fn due_at_the_signin_deadline() {
        let t0 = Instant::now();
        let v = Vitals::new(t0);
        v.set_signin_deadline(Some(t0 + Duration::from_secs(5)));
        assert!(!v.due(t0 + Duration::from_secs(4), &timing()));
        assert!(v.due(t0 + Duration::from_secs(5), &timing()));
        v.set_signin_deadline(None);
        assert!(!v.due(t0 + Duration::from_secs(5), &timing()));
    }
}
