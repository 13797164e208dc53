//! This node's own channel state, as the other nodes must know it: each
//! channel's subscription count and presence members, kept from the
//! registry's transitions, numbered, and turned into deltas (one per
//! operation) or a whole snapshot.
//!
//! Kept here rather than asked of the shards: a snapshot must be exactly
//! the state after change `seq`, and the shards change concurrently. One
//! mutex orders numbering, the copy and the queueing of each delta; it is
//! taken per subscribe / unsubscribe (never per published event) and never
//! held across an await.

use super::control::{ChangeKind, ChannelState, Control, StateChange};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use switchyard_actors::registry::{Change, Transition};

#[derive(Default)]
struct ChannelMirror {
    count: usize,
    members: HashMap<Arc<str>, Option<Arc<RawValue>>>,
}

#[derive(Default)]
pub struct MirrorState {
    /// The number of the last change.
    seq: u64,
    channels: HashMap<(Arc<str>, Arc<str>), ChannelMirror>,
}

#[derive(Default)]
pub struct Mirror(Mutex<MirrorState>);

impl Mirror {
    pub fn lock(&self) -> MutexGuard<'_, MirrorState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MirrorState {
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Apply one operation's transitions; the delta the other nodes need,
    /// numbered, or `None` when nothing they keep changed (a cache miss).
    pub fn apply(&mut self, node: u64, batch: &[Transition]) -> Option<Control> {
        let mut changes = Vec::new();
        for t in batch {
            let key = (t.app_id.clone(), t.channel.clone());
            let kind = match &t.change {
                Change::CountChanged { count } => {
                    if *count == 0 {
                        self.channels.remove(&key);
                    } else {
                        self.channels.entry(key).or_default().count = *count;
                    }
                    ChangeKind::Count { count: *count }
                }
                Change::MemberAdded { user_id, user_info } => {
                    self.channels
                        .entry(key)
                        .or_default()
                        .members
                        .insert(user_id.clone(), user_info.clone());
                    ChangeKind::MemberAdded {
                        user_id: user_id.to_string(),
                        user_info: user_info.as_ref().map(|v| v.get().to_string()),
                    }
                }
                Change::MemberRemoved { user_id } => {
                    if let Some(c) = self.channels.get_mut(&key) {
                        c.members.remove(user_id);
                    }
                    ChangeKind::MemberRemoved {
                        user_id: user_id.to_string(),
                    }
                }
                Change::Occupied | Change::Vacated | Change::CacheMiss => continue,
            };
            changes.push(StateChange {
                app_id: t.app_id.to_string(),
                channel: t.channel.to_string(),
                kind,
            });
        }
        if changes.is_empty() {
            return None;
        }
        self.seq += 1;
        Some(Control::Delta {
            node,
            seq: self.seq,
            changes,
        })
    }

    /// Everything, as of the last change.
    pub fn snapshot(&self, node: u64) -> Control {
        let channels = self
            .channels
            .iter()
            .map(|((app_id, channel), c)| ChannelState {
                app_id: app_id.to_string(),
                channel: channel.to_string(),
                count: c.count,
                members: c
                    .members
                    .iter()
                    .map(|(id, info)| (id.to_string(), info.as_ref().map(|v| v.get().to_string())))
                    .collect(),
            })
            .collect();
        Control::Snapshot {
            node,
            seq: self.seq,
            channels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(channel: &str, change: Change) -> Transition {
        Transition {
            app_id: Arc::from("app"),
            channel: Arc::from(channel),
            change,
        }
    }

    #[test]
    fn deltas_are_numbered_and_a_snapshot_is_the_state_after_the_last() {
        let mut m = MirrorState::default();
        assert!(
            m.apply(9, &[t("cache-x", Change::CacheMiss)]).is_none(),
            "nothing the others keep"
        );
        assert_eq!(m.seq(), 0);
        let joined = [
            t("presence-r", Change::Occupied),
            t(
                "presence-r",
                Change::MemberAdded {
                    user_id: Arc::from("1"),
                    user_info: None,
                },
            ),
            t("presence-r", Change::CountChanged { count: 1 }),
        ];
        let Some(Control::Delta { node, seq, changes }) = m.apply(9, &joined) else {
            panic!("a delta");
        };
        assert_eq!((node, seq, changes.len()), (9, 1, 2));
        m.apply(9, &[t("public", Change::CountChanged { count: 2 })]);
        let left = [
            t(
                "presence-r",
                Change::MemberRemoved {
                    user_id: Arc::from("1"),
                },
            ),
            t("presence-r", Change::CountChanged { count: 0 }),
            t("presence-r", Change::Vacated),
        ];
        m.apply(9, &left);
        assert_eq!(m.seq(), 3);
        let Control::Snapshot { seq, channels, .. } = m.snapshot(9) else {
            panic!("a snapshot");
        };
        assert_eq!(seq, 3);
        assert_eq!(channels.len(), 1, "the vacated channel is gone");
        assert_eq!(
            (channels[0].channel.as_str(), channels[0].count),
            ("public", 2)
        );
    }
}
