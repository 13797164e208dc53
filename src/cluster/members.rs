//! Who is in the cluster as this node sees it — itself and every node it
//! hears — for the one decision that needs a single node per channel: which
//! node tells the backend (webhooks) about a channel's cluster-wide changes.
//!
//! Each channel belongs to the eligible node with the highest hash of
//! (node, app, channel) (rendezvous hashing): every node computes the same
//! owner from the same members without talking, and a node joining or
//! leaving moves only its own share of channels. A node is eligible once it
//! has been in the cluster for a warm-up (the node timeout), in its own
//! view and in the others': a new node learns the cluster's state from
//! snapshots in that time, and must not tell the backend about channels
//! that were there before it. Its own warm-up starts when it starts, the
//! others' when they first hear it (later): so around a join two nodes may
//! briefly both tell a change, never neither.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

/// One node and when it may own channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub eligible_from: Instant,
}

/// This node and the receiving end of the members list.
#[derive(Clone)]
pub struct MembersView {
    pub me: u64,
    pub members: watch::Receiver<Arc<[Member]>>,
}

impl MembersView {
    /// One node alone (no cluster): it owns everything.
    pub fn alone(me: u64) -> MembersView {
        let (_, members) = watch::channel(Arc::from(
            [Member {
                id: me,
                eligible_from: Instant::now(),
            }]
            .as_slice(),
        ));
        MembersView { me, members }
    }

    /// The owner of `channel` of `app_id` now, among `members`.
    pub fn owner_among(members: &[Member], app_id: &str, channel: &str, now: Instant) -> u64 {
        let eligible = members.iter().filter(|m| m.eligible_from <= now);
        // Nobody warmed up yet (the whole cluster just started): everyone.
        let pick = |it: &mut dyn Iterator<Item = &Member>| {
            it.max_by_key(|m| (score(m.id, app_id, channel), m.id))
                .map(|m| m.id)
        };
        pick(&mut eligible.clone())
            .or_else(|| pick(&mut members.iter()))
            .unwrap_or(0)
    }

    /// Whether this node tells `channel`'s changes now.
    pub fn owns(&self, app_id: &str, channel: &str) -> bool {
        let members = self.members.borrow();
        Self::owner_among(&members, app_id, channel, Instant::now()) == self.me
    }
}

/// FNV-1a over the node id and the names: stable across processes, builds
/// and platforms, which the owner choice must be.
fn score(node: u64, app_id: &str, channel: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&node.to_le_bytes());
    eat(app_id.as_bytes());
    eat(&[0]);
    eat(channel.as_bytes());
    // FNV's low bits mix poorly for short inputs: finish like splitmix64.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn m(id: u64, eligible_from: Instant) -> Member {
        Member { id, eligible_from }
    }

    #[test]
    fn every_node_picks_the_same_owner_and_a_leaver_moves_only_its_share() {
        let t = Instant::now();
        let three = [m(1, t), m(2, t), m(3, t)];
        let two = [m(1, t), m(2, t)];
        let mut owned = [0usize; 4];
        let mut moved = 0;
        for i in 0..3000 {
            let c = format!("channel-{i}");
            let owner = MembersView::owner_among(&three, "app", &c, t);
            // Order of the list does not matter.
            let reversed: Vec<Member> = three.iter().rev().copied().collect();
            assert_eq!(owner, MembersView::owner_among(&reversed, "app", &c, t));
            owned[owner as usize] += 1;
            let after = MembersView::owner_among(&two, "app", &c, t);
            if owner != 3 {
                assert_eq!(after, owner, "{c} moved though its owner stayed");
            } else {
                moved += 1;
            }
        }
        for (node, n) in owned.iter().enumerate().skip(1) {
            assert!((800..1200).contains(n), "node {node} owns {n} of 3000");
        }
        assert_eq!(moved, owned[3]);
    }

    #[test]
    fn a_node_owns_nothing_until_it_has_warmed_up_unless_nobody_has() {
        let t = Instant::now();
        let later = t + Duration::from_secs(3);
        let members = [m(1, t), m(2, later)];
        for i in 0..200 {
            let c = format!("c{i}");
            assert_eq!(MembersView::owner_among(&members, "app", &c, t), 1);
        }
        let cold = [m(1, later), m(2, later)];
        let owners: std::collections::HashSet<u64> = (0..200)
            .map(|i| MembersView::owner_among(&cold, "app", &format!("c{i}"), t))
            .collect();
        assert_eq!(owners.len(), 2, "a cold cluster still has owners");
        let alone = MembersView::alone(7);
        assert!(alone.owns("app", "anything"));
    }
}
