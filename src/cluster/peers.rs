//! The other nodes as this node hears them: when each was last heard, how
//! far its state changes have been applied here, and its connections per
//! app. Plain data with the clock passed in; the bridge acts on what it
//! decides (apply, ask for a snapshot, forget a node).

use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Peer {
    /// When it joined the cluster: from its heartbeats (its uptime), else
    /// when this node first heard it (since it was last forgotten).
    joined: Instant,
    /// `joined` came from a heartbeat.
    joined_known: bool,
    last_seen: Instant,
    /// The last change of this node applied here; `None` while waiting for
    /// its snapshot (nothing applied yet, or a change was missed).
    seq: Option<u64>,
    /// A heartbeat announced this change number while fewer had arrived:
    /// deltas still on their way, or lost; lost if still missing at the
    /// next heartbeat.
    behind: Option<u64>,
    /// A heartbeat came while the snapshot was awaited: if the next one
    /// finds it still awaited, the answer was lost and is asked for again.
    waiting: bool,
    connections: HashMap<String, usize>,
}

/// What to do with a numbered delta.
#[derive(Debug, PartialEq, Eq)]
pub enum DeltaVerdict {
    Apply,
    /// Already covered by a snapshot, or the snapshot is awaited.
    Ignore,
    /// A change was missed: ask the node for its snapshot.
    AskSnapshot,
}

#[derive(Default)]
pub struct Peers {
    nodes: HashMap<u64, Peer>,
}

impl Peers {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The node was heard from; `true` if it is new here (its snapshot is
    /// needed before its deltas mean anything).
    pub fn heard(&mut self, node: u64, now: Instant) -> bool {
        match self.nodes.get_mut(&node) {
            Some(p) => {
                p.last_seen = p.last_seen.max(now);
                false
            }
            None => {
                self.nodes.insert(
                    node,
                    Peer {
                        joined: now,
                        joined_known: false,
                        last_seen: now,
                        seq: None,
                        behind: None,
                        waiting: false,
                        connections: HashMap::new(),
                    },
                );
                true
            }
        }
    }

    pub fn delta(&mut self, node: u64, seq: u64) -> DeltaVerdict {
        let Some(p) = self.nodes.get_mut(&node) else {
            return DeltaVerdict::AskSnapshot;
        };
        match p.seq {
            None => DeltaVerdict::Ignore,
            Some(applied) if seq <= applied => DeltaVerdict::Ignore,
            Some(applied) if seq == applied + 1 => {
                p.seq = Some(seq);
                DeltaVerdict::Apply
            }
            Some(_) => {
                p.seq = None;
                p.waiting = false;
                DeltaVerdict::AskSnapshot
            }
        }
    }

    /// The node's snapshot, as of its change `seq`, was applied.
    pub fn snapshot(&mut self, node: u64, seq: u64) {
        if let Some(p) = self.nodes.get_mut(&node) {
            p.seq = Some(seq);
            p.behind = None;
            p.waiting = false;
        }
    }

    /// A heartbeat: the node's connections, and whether a change it made
    /// has been missed (then its snapshot is needed: `true`).
    pub fn heartbeat(&mut self, node: u64, seq: u64, connections: HashMap<String, usize>) -> bool {
        let Some(p) = self.nodes.get_mut(&node) else {
            return false;
        };
        p.connections = connections;
        let Some(applied) = p.seq else {
            let again = p.waiting;
            p.waiting = true;
            return again;
        };
        if applied >= seq {
            p.behind = None;
            return false;
        }
        // Missing since the previous heartbeat too: lost, not late.
        if p.behind.is_some_and(|b| applied < b) {
            p.seq = None;
            p.behind = None;
            p.waiting = false;
            return true;
        }
        p.behind = Some(seq);
        false
    }

    /// Every node's state is to be resent (this node was cut off): each
    /// must send a snapshot, and none is declared dead before `grace` has
    /// passed from `now` (they are reconnecting too).
    pub fn rejoin(&mut self, now: Instant, grace: Duration) {
        for p in self.nodes.values_mut() {
            p.seq = None;
            p.behind = None;
            p.waiting = false;
            p.last_seen = now + grace;
        }
    }

    /// Nodes not heard from for longer than `timeout`: removed and returned.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<u64> {
        let dead: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_seen) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            self.nodes.remove(id);
        }
        dead
    }

    /// Every node heard, with when it joined.
    pub fn members(&self) -> impl Iterator<Item = (u64, Instant)> + '_ {
        self.nodes.iter().map(|(id, p)| (*id, p.joined))
    }

    /// The node says when it joined (its first heartbeat here); `true` if
    /// that changed what is known.
    pub fn joined(&mut self, node: u64, joined: Instant) -> bool {
        match self.nodes.get_mut(&node) {
            Some(p) if !p.joined_known => {
                p.joined = joined.min(p.joined);
                p.joined_known = true;
                true
            }
            _ => false,
        }
    }

    /// Open sockets of an app on all other nodes.
    pub fn connections(&self, app_id: &str) -> usize {
        self.nodes
            .values()
            .filter_map(|p| p.connections.get(app_id))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_apply_in_order_and_a_gap_asks_for_the_snapshot() {
        let now = Instant::now();
        let mut peers = Peers::default();
        assert!(peers.heard(1, now), "new");
        assert!(!peers.heard(1, now));
        assert_eq!(peers.delta(1, 5), DeltaVerdict::Ignore, "no snapshot yet");
        peers.snapshot(1, 5);
        assert_eq!(peers.delta(1, 5), DeltaVerdict::Ignore, "in the snapshot");
        assert_eq!(peers.delta(1, 6), DeltaVerdict::Apply);
        assert_eq!(peers.delta(1, 8), DeltaVerdict::AskSnapshot, "7 missed");
        assert_eq!(peers.delta(1, 9), DeltaVerdict::Ignore, "waiting");
        peers.snapshot(1, 9);
        assert_eq!(peers.delta(1, 10), DeltaVerdict::Apply);
        assert_eq!(peers.delta(2, 1), DeltaVerdict::AskSnapshot, "unknown node");
    }

    #[test]
    fn a_heartbeat_ahead_twice_means_a_lost_change() {
        let now = Instant::now();
        let mut peers = Peers::default();
        peers.heard(1, now);
        peers.snapshot(1, 3);
        let conns = HashMap::from([("app".to_string(), 4)]);
        assert!(!peers.heartbeat(1, 3, conns.clone()));
        assert!(!peers.heartbeat(1, 4, conns.clone()), "4 may be on its way");
        assert_eq!(peers.delta(1, 4), DeltaVerdict::Apply);
        assert!(!peers.heartbeat(1, 5, conns.clone()), "5 may be on its way");
        assert!(peers.heartbeat(1, 5, conns.clone()), "5 never came");
        assert_eq!(peers.connections("app"), 4);
        // The snapshot asked for is awaited for one heartbeat, then asked again.
        assert!(!peers.heartbeat(1, 5, conns.clone()));
        assert!(peers.heartbeat(1, 5, conns.clone()), "the answer was lost");
        peers.snapshot(1, 5);
        assert!(!peers.heartbeat(1, 5, conns.clone()));
        assert_eq!(peers.connections("other"), 0);
    }

    #[test]
    fn silent_nodes_expire_but_not_during_the_grace_after_a_rejoin() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(3);
        let mut peers = Peers::default();
        peers.heard(1, t0);
        peers.heard(2, t0);
        peers.heard(2, t0 + Duration::from_secs(2));
        assert_eq!(
            peers.expire(t0 + Duration::from_secs(3), timeout),
            Vec::<u64>::new()
        );
        assert_eq!(
            peers.expire(t0 + Duration::from_millis(3001), timeout),
            vec![1]
        );
        peers.rejoin(t0 + Duration::from_secs(10), Duration::from_secs(5));
        assert!(peers
            .expire(t0 + Duration::from_secs(17), timeout)
            .is_empty());
        assert_eq!(
            peers.expire(t0 + Duration::from_millis(18_001), timeout),
            vec![2]
        );
        assert_eq!(peers.len(), 0);
    }
}
