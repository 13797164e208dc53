//! Socket identity and the bounded outbound queue through which registries reach a session.

use crate::messages::Deliver;
use crate::session::Session;
use actix::Addr;
use bytestring::ByteString;
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
/// bound; senders check this first and, past the limit, stop delivering and
/// flag the session, which then closes with 4100.
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
}

impl Outbox {
    /// `None` limits mean unbounded (an operator's explicit choice).
    pub fn new(
        max_messages: Option<usize>,
        max_bytes: Option<usize>,
        disconnect_when_full: bool,
    ) -> Self {
        Outbox {
            disconnect_when_full,
            dropped: AtomicU64::new(0),
            pending_messages: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            max_messages: max_messages.unwrap_or(usize::MAX),
            max_bytes: max_bytes.unwrap_or(usize::MAX),
        }
    }

    /// Reserve room for one frame; `false` when the queue is full (and the
    /// outbox is then marked overflowed for good).
    fn reserve(&self, len: usize) -> bool {
        if self.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let messages = self.pending_messages.fetch_add(1, Ordering::AcqRel);
        let bytes = self.pending_bytes.fetch_add(len, Ordering::AcqRel);
        if messages >= self.max_messages || bytes.saturating_add(len) > self.max_bytes {
            self.pending_messages.fetch_sub(1, Ordering::AcqRel);
            self.pending_bytes.fetch_sub(len, Ordering::AcqRel);
            if self.disconnect_when_full {
                self.overflowed.store(true, Ordering::Release);
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return false;
        }
        true
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
}

/// What a registry holds for each subscribed socket: its id and a way to
/// deliver frames to it without blocking.
#[derive(Clone)]
pub struct SessionHandle {
    pub id: SocketId,
    pub addr: Addr<Session>,
    pub outbox: Arc<Outbox>,
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl SessionHandle {
    /// Queue a frame for the session. The frame's bytes are shared, not copied.
    /// Returns `false` if the session's queue is full and the frame was dropped
    /// (the session closes itself with 4100 when it next runs).
    pub fn deliver(&self, frame: &ByteString) -> bool {
        if !self.outbox.reserve(frame.len()) {
            return false;
        }
        self.addr.do_send(Deliver(frame.clone()));
        true
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
    fn outbox_overflows_at_its_limit_and_stays_overflowed() {
        let o = Outbox::new(Some(2), None, true);
        assert!(o.reserve(10));
        assert!(o.reserve(10));
        assert!(!o.reserve(10), "third frame is over the limit");
        assert!(o.overflowed());
        o.release(10);
        assert!(!o.reserve(10), "an overflowed outbox stays closed");

        let o = Outbox::new(None, Some(100), true);
        assert!(o.reserve(100));
        assert!(!o.reserve(1));
    }

    #[test]
    fn drop_policy_drops_frames_but_keeps_the_socket() {
        let o = Outbox::new(Some(1), None, false);
        assert!(o.reserve(1));
        assert!(!o.reserve(1));
        assert!(!o.overflowed());
        assert_eq!(o.dropped(), 1);
        o.release(1);
        assert!(o.reserve(1), "room again once the session caught up");
    }
}
