//! What the other nodes of a cluster hold on one channel, as they report it:
//! their subscription counts and their presence members.
//!
//! A node replicates its own channel state to the others (the bridge sends
//! each node's transitions, and a full snapshot when one is asked for); each
//! receiving shard keeps it here, next to its local channels, so the answers
//! that must be cluster-wide — `member_added` / `member_removed` once per
//! user, the presence roster in `subscription_succeeded`, the counts of the
//! HTTP API — come from one place, without asking other nodes at request
//! time. Kept per node, so a node that leaves or dies is removed exactly.

use crate::presence::Member;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;

/// A node of the cluster, as the bridge names it (random per process).
pub type NodeId = u64;

/// One channel of one other node, whole: an entry of that node's snapshot.
#[derive(Debug, Clone)]
pub struct RemoteChannelState {
    pub app_id: Arc<str>,
    pub channel: Arc<str>,
    /// Subscribed sockets on that node.
    pub count: usize,
    /// Presence channels: the distinct users with a socket on that node.
    pub members: Vec<Member>,
}

#[derive(Debug)]
struct RemoteMember {
    info: Option<Arc<RawValue>>,
    /// The nodes that have at least one socket of this user on the channel
    /// (a handful at most: a Vec beats a set).
    nodes: Vec<NodeId>,
}

/// What a change to a remote channel means for this node's subscribers,
/// given whether the user is present locally.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Visible {
    /// Nothing changes for local subscribers.
    No,
    /// The user is newly present in the cluster.
    Joined,
    /// The user has left the whole cluster.
    Left,
}

/// One channel as the other nodes hold it.
#[derive(Debug, Default)]
pub(super) struct RemoteChannel {
    counts: HashMap<NodeId, usize>,
    members: HashMap<Arc<str>, RemoteMember>,
}

impl RemoteChannel {
    pub(super) fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.members.is_empty()
    }

    /// Subscriptions over all other nodes.
    pub(super) fn count(&self) -> usize {
        self.counts.values().sum()
    }

    /// Subscriptions on one other node.
    pub(super) fn count_of(&self, node: NodeId) -> usize {
        self.counts.get(&node).copied().unwrap_or(0)
    }

    pub(super) fn has_member(&self, user_id: &str) -> bool {
        self.members.contains_key(user_id)
    }

    pub(super) fn members(&self) -> impl Iterator<Item = (&Arc<str>, Option<&RawValue>)> {
        self.members.iter().map(|(id, m)| (id, m.info.as_deref()))
    }

    /// `node` now has `count` subscriptions; returns whether the total moved.
    pub(super) fn set_count(&mut self, node: NodeId, count: usize) -> bool {
        let before = self.counts.get(&node).copied().unwrap_or(0);
        if count == 0 {
            self.counts.remove(&node);
        } else {
            self.counts.insert(node, count);
        }
        before != count
    }

    /// `node` has a (first) socket of this user.
    pub(super) fn add_member(
        &mut self,
        node: NodeId,
        user_id: &Arc<str>,
        info: Option<Arc<RawValue>>,
        local: bool,
    ) -> Visible {
        match self.members.get_mut(&**user_id) {
            Some(m) => {
                if !m.nodes.contains(&node) {
                    m.nodes.push(node);
                }
                Visible::No
            }
            None => {
                self.members.insert(
                    user_id.clone(),
                    RemoteMember {
                        info,
                        nodes: vec![node],
                    },
                );
                if local {
                    Visible::No
                } else {
                    Visible::Joined
                }
            }
        }
    }

    /// `node` has no socket of this user any more.
    pub(super) fn remove_member(&mut self, node: NodeId, user_id: &str, local: bool) -> Visible {
        let Some(m) = self.members.get_mut(user_id) else {
            return Visible::No;
        };
        m.nodes.retain(|n| *n != node);
        if !m.nodes.is_empty() {
            return Visible::No;
        }
        self.members.remove(user_id);
        if local {
            Visible::No
        } else {
            Visible::Left
        }
    }

    /// The users `node` has here, for replacing or forgetting its state.
    pub(super) fn members_of(&self, node: NodeId) -> Vec<Arc<str>> {
        self.members
            .iter()
            .filter(|(_, m)| m.nodes.contains(&node))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(super) fn has_node(&self, node: NodeId) -> bool {
        self.counts.contains_key(&node) || self.members.values().any(|m| m.nodes.contains(&node))
    }
}
