//! Worker hub: the sessions living on one worker thread, with the one timer
//! and the one command inbox they share.
//!
//! actix polls every future and stream spawned on an actor's context each
//! time the actor wakes. A heartbeat timer and a shutdown watch per session
//! were therefore polled again for every frame delivered to it, on the
//! fan-out hot path. The hub takes both out of the sessions: one interval per
//! worker thread reads every local session's [`Vitals`] (cells the session
//! updates as it works) and wakes only the sessions that are due a ping, a
//! 4201 or a sign-in timeout; it also moves their traffic counters into the
//! app's shared counters. One command channel per worker carries shutdown
//! into the thread, so a 4200 reaches every socket without a watch per
//! session.
//!
//! The hub is also the one thing that still runs for a session that is no
//! longer polled. actix-http polls a WebSocket (and so its actor) only while
//! less than 32 KiB wait to be written; a client that stops reading can
//! leave more than that, and then its session acts on nothing — not its
//! 4201 deadline, not its full queue (4100), not its own close. On its tick
//! the hub resets the connection of a session that is overdue to have closed
//! (see [`wedged`]), which lets the HTTP layer drop it.

use crate::app::App;
use crate::closing::{Conn, CLOSE_ABORT_TIMEOUT};
use crate::error::PusherError;
use crate::socket::{Outbox, SessionHandle, SocketId};
use crate::stats;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What crosses into a worker thread.
enum Command {
    /// Tell every session here to reconnect elsewhere (4200).
    Shutdown,
}

/// The process's hubs, one per worker thread that has had a session. Cheap
/// to clone; one per server.
#[derive(Clone)]
pub struct Hubs(Arc<Directory>);

struct Directory {
    timing: Timing,
    shutting_down: AtomicBool,
    /// Command senders of the live hubs.
    inboxes: Mutex<Vec<mpsc::UnboundedSender<Command>>>,
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

    /// The timeouts the hubs enforce (and sessions advertise).
    pub fn timing(&self) -> &Timing {
        &self.0.timing
    }

    /// Every session, now and from now on, is told to reconnect elsewhere
    /// (`pusher:error` 4200 and a close with 4200).
    pub fn shutdown(&self) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
        let inboxes = self.0.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        for inbox in inboxes.iter() {
            // A closed inbox belongs to a worker that is already gone.
            let _ = inbox.send(Command::Shutdown);
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
            local.retain(|(dir, hub)| dir.strong_count() > 0 && !hub.inbox.is_closed());
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
        let hub = Rc::new(Hub {
            sessions: RefCell::new(HashMap::new()),
            closing: Cell::new(false),
            inbox: tx.clone(),
            timing: self.0.timing,
        });
        {
            let mut inboxes = self.0.inboxes.lock().unwrap_or_else(|e| e.into_inner());
            inboxes.retain(|i| !i.is_closed());
            inboxes.push(tx);
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

/// The sessions of one worker thread.
pub(crate) struct Hub {
    sessions: RefCell<HashMap<SocketId, Member>>,
    /// Set once the server shuts down: sessions joining later are closed at once.
    closing: Cell<bool>,
    inbox: mpsc::UnboundedSender<Command>,
    timing: Timing,
}

struct Member {
    /// To wake the session, and its outbox: to tell a session that can no
    /// longer act ([`wedged`]) and end it.
    session: SessionHandle,
    vitals: Rc<Vitals>,
    app: Arc<App>,
    conn: Conn,
    /// When the hub first saw the session's outbox overflowed.
    overflowed_since: Cell<Option<Instant>>,
}

/// Whether a session is overdue to have closed yet is still here: it is no
/// longer polled (its client stopped reading with more than actix-http's
/// write buffer waiting), so only resetting its connection ends it.
///
/// - Its outbox overflowed (it owes a 4100) more than the close bound
///   ([`CLOSE_ABORT_TIMEOUT`]) plus a tick ago.
/// - Its client has been silent past the 4201 deadline (activity and pong
///   timeouts, each acted on up to a tick late) plus the close bound and a
///   tick.
///
/// A session that is polled has closed and left the hub well before either.
fn wedged(
    now: Instant,
    outbox: &Outbox,
    vitals: &Vitals,
    overflowed_since: &Cell<Option<Instant>>,
    timing: &Timing,
    tick: Duration,
) -> bool {
    if outbox.overflowed() {
        let since = overflowed_since.get().unwrap_or(now);
        overflowed_since.set(Some(since));
        if now.saturating_duration_since(since) >= CLOSE_ABORT_TIMEOUT + tick {
            return true;
        }
    }
    let liveness = timing.activity_timeout + timing.pong_timeout + 2 * tick;
    now.saturating_duration_since(vitals.last_seen()) >= liveness + CLOSE_ABORT_TIMEOUT + tick
}

impl Hub {
    /// A session joins the hub when it starts.
    pub(crate) fn join(
        &self,
        session: SessionHandle,
        vitals: Rc<Vitals>,
        app: Arc<App>,
        conn: Conn,
    ) {
        if self.closing.get() {
            session.disconnect(PusherError::ReconnectImmediately);
        }
        self.sessions.borrow_mut().insert(
            session.id(),
            Member {
                session,
                vitals,
                app,
                conn,
                overflowed_since: Cell::new(None),
            },
        );
    }

    /// A session leaves when it stops.
    pub(crate) fn leave(&self, id: SocketId) {
        self.sessions.borrow_mut().remove(&id);
    }

    fn shut_down(&self) {
        self.closing.set(true);
        for member in self.sessions.borrow().values() {
            member.session.disconnect(PusherError::ReconnectImmediately);
        }
    }

    fn tick(&self, now: Instant) {
        let tick = self.timing.tick();
        for (id, m) in self.sessions.borrow().iter() {
            m.vitals.flush_traffic(&m.app);
            m.session.flush_sent();
            let stuck = wedged(
                now,
                m.session.outbox(),
                &m.vitals,
                &m.overflowed_since,
                &self.timing,
                tick,
            );
            if stuck {
                // The reset makes the HTTP layer drop the connection, which
                // stops the session (and it leaves the hub) on a later turn.
                if m.conn.abort() {
                    log::warn!(
                        event = "connection_reset", app_id = m.app.id.as_ref(),
                        socket_id:% = id, reason = "overdue to close; its client does not read";
                        "resetting a connection whose session can no longer act"
                    );
                }
            } else if m.vitals.due(now, &self.timing).is_some() {
                m.session.heartbeat();
            }
        }
    }
}

/// A session deadline that has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The app requires sign-in and the sign-in timeout has run out.
    SignIn,
    /// A ping went unanswered for the pong timeout: close with 4201.
    Pong,
    /// Silent for the activity timeout: send `pusher:ping`.
    Ping,
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

    /// The deadline that has passed, if any: the hub wakes the session for
    /// it and the session acts on it. A passed sign-in deadline comes first.
    pub fn due(&self, now: Instant, timing: &Timing) -> Option<Deadline> {
        if self.signin_deadline.get().is_some_and(|d| now >= d) {
            return Some(Deadline::SignIn);
        }
        match self.ping_sent.get() {
            Some(sent) if now.saturating_duration_since(sent) >= timing.pong_timeout => {
                Some(Deadline::Pong)
            }
            None if now.saturating_duration_since(self.last_seen.get())
                >= timing.activity_timeout =>
            {
                Some(Deadline::Ping)
            }
            _ => None,
        }
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
        assert_eq!(v.due(t0 + Duration::from_secs(119), &t), None);
        assert_eq!(
            v.due(t0 + Duration::from_secs(120), &t),
            Some(Deadline::Ping)
        );
        // The session pings; the hub waits for the pong timeout.
        let pinged = t0 + Duration::from_secs(120);
        v.set_ping_sent(Some(pinged));
        assert_eq!(v.due(pinged + Duration::from_secs(29), &t), None);
        assert_eq!(
            v.due(pinged + Duration::from_secs(30), &t),
            Some(Deadline::Pong)
        );
        // Any frame from the client answers the ping.
        v.heard(pinged + Duration::from_secs(1));
        assert_eq!(v.ping_sent(), None);
        assert_eq!(v.due(pinged + Duration::from_secs(30), &t), None);
    }

    #[test]
    fn due_at_the_signin_deadline() {
        let t0 = Instant::now();
        let v = Vitals::new(t0);
        v.set_signin_deadline(Some(t0 + Duration::from_secs(5)));
        assert_eq!(v.due(t0 + Duration::from_secs(4), &timing()), None);
        assert_eq!(
            v.due(t0 + Duration::from_secs(5), &timing()),
            Some(Deadline::SignIn)
        );
        // Past the activity timeout too: the sign-in deadline comes first.
        assert_eq!(
            v.due(t0 + Duration::from_secs(200), &timing()),
            Some(Deadline::SignIn)
        );
        v.set_signin_deadline(None);
        assert_eq!(v.due(t0 + Duration::from_secs(5), &timing()), None);
        assert_eq!(
            v.due(t0 + Duration::from_secs(200), &timing()),
            Some(Deadline::Ping)
        );
    }

    #[test]
    fn a_session_is_wedged_only_once_overdue_to_close() {
        let t = timing();
        let tick = t.tick();
        let t0 = Instant::now();
        let v = Vitals::new(t0);
        let app = Arc::new(App::new("id", "key", "secret"));
        let since = Cell::new(None);

        // A healthy session: silent, but not yet past its 4201 deadline and
        // the close bound.
        let outbox = Outbox::new(Some(1), None, true, app.clone());
        let due = t.activity_timeout + t.pong_timeout + 3 * tick + CLOSE_ABORT_TIMEOUT;
        let s = Duration::from_secs(1);
        assert!(!wedged(t0 + due - s, &outbox, &v, &since, &t, tick));
        assert!(wedged(t0 + due, &outbox, &v, &since, &t, tick));
        v.heard(t0 + due);
        assert!(!wedged(t0 + due, &outbox, &v, &since, &t, tick));

        // Overflowed (it owes a 4100): the bound runs from when the hub
        // first sees it.
        let t1 = t0 + due;
        assert_eq!(
            outbox.reserve(2),
            crate::socket::Admission::Queued,
            "the first frame fits"
        );
        assert!(matches!(
            outbox.reserve(2),
            crate::socket::Admission::Overflowed { first: true }
        ));
        assert!(!wedged(t1, &outbox, &v, &since, &t, tick));
        assert_eq!(since.get(), Some(t1));
        let grace = CLOSE_ABORT_TIMEOUT + tick;
        assert!(!wedged(t1 + grace - s, &outbox, &v, &since, &t, tick));
        assert!(wedged(t1 + grace, &outbox, &v, &since, &t, tick));
    }
}
