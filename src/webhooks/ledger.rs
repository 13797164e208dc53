//! What the backend has been told about each channel, so that what it is
//! told next is always consistent with it.
//!
//! The registry reports occupancy and presence as strictly alternating
//! transitions, but a backend must not see a page reload (leave, join) as
//! `channel_vacated` + `channel_occupied`, nor get `channel_occupied` twice.
//! So the ledger keeps, per channel, whether the backend believes it
//! occupied and which members it believes present; a leave waits for the
//! grace period and is told only if nobody came back meanwhile, and a join
//! is told only if the backend does not already believe it. Hence:
//! `channel_occupied` / `channel_vacated` (and `member_added` /
//! `member_removed` per user) strictly alternate, and the last one told
//! always matches the channel's final state.
//!
//! Plain data with the clock passed in; the dispatcher drives it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A channel of an app.
pub type ChannelKey = (Arc<str>, Arc<str>);

/// Something the backend is to be told now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    Occupied(ChannelKey),
    Vacated(ChannelKey),
    MemberAdded(ChannelKey, Arc<str>),
    MemberRemoved(ChannelKey, Arc<str>),
}

#[derive(Default)]
struct Memo {
    /// The backend believes the channel occupied.
    occupied: bool,
    /// A vacate waiting for its grace: the number of its timer.
    vacating: Option<u64>,
    /// Members the backend believes present; `Some(timer)` while their
    /// removal waits for its grace.
    members: HashMap<Arc<str>, Option<u64>>,
}

impl Memo {
    fn idle(&self) -> bool {
        !self.occupied && self.vacating.is_none() && self.members.is_empty()
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    /// Also the order of events due at the same instant: the order they
    /// happened in (member removals before the vacate they lead to).
    timer: u64,
    key: ChannelKey,
    user: Option<Arc<str>>,
}

pub struct Ledger {
    grace: Duration,
    channels: HashMap<ChannelKey, Memo>,
    due: BinaryHeap<Reverse<Due>>,
    timers: u64,
}

impl Ledger {
    pub fn new(grace: Duration) -> Ledger {
        Ledger {
            grace,
            channels: HashMap::new(),
            due: BinaryHeap::new(),
            timers: 0,
        }
    }

    fn timer(&mut self, now: Instant, key: &ChannelKey, user: Option<Arc<str>>) -> u64 {
        self.timers += 1;
        self.due.push(Reverse(Due {
            at: now + self.grace,
            timer: self.timers,
            key: key.clone(),
            user,
        }));
        self.timers
    }

    pub fn occupied(&mut self, key: ChannelKey, out: &mut Vec<Told>) {
        let memo = self.channels.entry(key.clone()).or_default();
        if memo.vacating.take().is_some() {
            // Back within the grace: the backend still believes it occupied.
            return;
        }
        if !memo.occupied {
            memo.occupied = true;
            out.push(Told::Occupied(key));
        }
    }

    pub fn vacated(&mut self, key: ChannelKey, now: Instant, out: &mut Vec<Told>) {
        let Some(memo) = self.channels.get_mut(&key) else {
            return;
        };
        if !memo.occupied || memo.vacating.is_some() {
            return;
        }
        if self.grace.is_zero() {
            memo.occupied = false;
            self.forget_if_idle(&key);
            out.push(Told::Vacated(key));
            return;
        }
        let timer = self.timer(now, &key, None);
        if let Some(memo) = self.channels.get_mut(&key) {
            memo.vacating = Some(timer);
        }
    }

    pub fn member_added(&mut self, key: ChannelKey, user: Arc<str>, out: &mut Vec<Told>) {
        let memo = self.channels.entry(key.clone()).or_default();
        match memo.members.get_mut(&user) {
            // Told already; a pending removal is called off.
            Some(pending) => *pending = None,
            None => {
                memo.members.insert(user.clone(), None);
                out.push(Told::MemberAdded(key, user));
            }
        }
    }

    pub fn member_removed(
        &mut self,
        key: ChannelKey,
        user: Arc<str>,
        now: Instant,
        out: &mut Vec<Told>,
    ) {
        let pending = self
            .channels
            .get(&key)
            .and_then(|m| m.members.get(&user).copied());
        if pending != Some(None) {
            // Never told, or its removal already waits.
            return;
        }
        if self.grace.is_zero() {
            if let Some(memo) = self.channels.get_mut(&key) {
                memo.members.remove(&user);
            }
            self.forget_if_idle(&key);
            out.push(Told::MemberRemoved(key, user));
            return;
        }
        let timer = self.timer(now, &key, Some(user.clone()));
        if let Some(memo) = self.channels.get_mut(&key) {
            memo.members.insert(user, Some(timer));
        }
    }

    /// When the next leave is due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse(d)| d.at)
    }

    /// Tell the leaves whose grace is over by `now`.
    pub fn due(&mut self, now: Instant, out: &mut Vec<Told>) {
        while let Some(Reverse(d)) = self.due.peek() {
            if d.at > now {
                break;
            }
            let Reverse(d) = self.due.pop().expect("peeked");
            self.fire(d, out);
        }
    }

    /// Tell every waiting leave now (shutdown: nobody is coming back).
    pub fn flush(&mut self, out: &mut Vec<Told>) {
        while let Some(Reverse(d)) = self.due.pop() {
            self.fire(d, out);
        }
    }

    fn fire(&mut self, d: Due, out: &mut Vec<Told>) {
        let Some(memo) = self.channels.get_mut(&d.key) else {
            return;
        };
        match d.user {
            None => {
                // A stale timer (called off, then vacated again) is ignored.
                if memo.vacating != Some(d.timer) {
                    return;
                }
                memo.vacating = None;
                memo.occupied = false;
                self.forget_if_idle(&d.key);
                out.push(Told::Vacated(d.key));
            }
            Some(user) => {
                if memo.members.get(&user) != Some(&Some(d.timer)) {
                    return;
                }
                memo.members.remove(&user);
                self.forget_if_idle(&d.key);
                out.push(Told::MemberRemoved(d.key, user));
            }
        }
    }

    fn forget_if_idle(&mut self, key: &ChannelKey) {
        if self.channels.get(key).is_some_and(Memo::idle) {
            self.channels.remove(key);
        }
    }

    /// Channels remembered: none once every channel is vacated and told
    /// (the ledger does not grow with channels that come and go).
    pub fn remembered(&self) -> usize {
        self.channels.len()
    }

    /// Leaves waiting for their grace.
    pub fn waiting(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
