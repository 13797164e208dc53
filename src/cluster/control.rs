//! What nodes tell each other besides events: who is alive, what each holds
//! (its channel state, as changes and as snapshots), and requests to act.
//!
//! JSON after a 3-byte magic (`SYc`), on the same pub/sub channel as the
//! events, so everything one node publishes reaches the others in the order
//! it was published (a member's `member_added` before its client events).
//! Much rarer than events (a subscription, a heartbeat), so readability
//! wins over a binary layout here.
//!
//! State replication: each node numbers its state changes (`seq`). A peer
//! applies a [`Control::Delta`] only if it is the next number; anything else
//! (a delta dropped on a full queue or during an outage) makes the peer ask
//! that node for a [`Control::Snapshot`], which replaces all it knew.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

pub const MAGIC: [u8; 3] = *b"SYc";

/// One control message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// Sent every heartbeat interval: the node is alive. `seq` is its last
    /// state change so far (a peer behind it missed one); `connections`
    /// its open sockets per app (for cluster-wide connection limits).
    Heartbeat {
        node: u64,
        seq: u64,
        connections: Vec<AppConnections>,
        /// Milliseconds since the node joined (started its bridge), so every
        /// node agrees on when it may own channels (`super::members`).
        #[serde(default)]
        up_ms: u64,
    },
    /// State changes, numbered `seq` (one per registry operation).
    Delta {
        node: u64,
        seq: u64,
        changes: Vec<StateChange>,
    },
    /// Everything the node holds, as of its change `seq`.
    Snapshot {
        node: u64,
        seq: u64,
        channels: Vec<ChannelState>,
    },
    /// "Send your snapshot": from a node that (re)joined (`target` none:
    /// everyone answers) or that missed a change of `target`.
    Sync { node: u64, target: Option<u64> },
    /// Close this user's sockets (the HTTP API's `terminate_connections`,
    /// or with `reconnect`, `force_reconnect`).
    Terminate {
        node: u64,
        app_id: String,
        user_id: String,
        /// Absent from nodes older than `force_reconnect`: terminate.
        #[serde(default)]
        reconnect: bool,
    },
}

impl Control {
    /// The node that sent it.
    pub fn node(&self) -> u64 {
        match self {
            Control::Heartbeat { node, .. }
            | Control::Delta { node, .. }
            | Control::Snapshot { node, .. }
            | Control::Sync { node, .. }
            | Control::Terminate { node, .. } => *node,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppConnections {
    pub app_id: String,
    pub count: usize,
}

/// One change of one channel on the sending node.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateChange {
    pub app_id: String,
    pub channel: String,
    #[serde(flatten)]
    pub kind: ChangeKind,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ChangeKind {
    /// The node's subscription count on the channel (0: it has none left).
    Count { count: usize },
    /// The node has a first socket of this user on the presence channel.
    MemberAdded {
        user_id: String,
        /// The raw `user_info` JSON, as text: serde cannot carry a raw
        /// value inside a tagged enum.
        user_info: Option<String>,
    },
    /// The node's last socket of this user left the presence channel.
    MemberRemoved { user_id: String },
}

/// One channel the sending node holds, whole.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChannelState {
    pub app_id: String,
    pub channel: String,
    pub count: usize,
    /// Presence channels: user id and raw `user_info` JSON text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<(String, Option<String>)>,
}

/// Why a message on the cluster channel is not a control message we read.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("not a control message")]
    Foreign,
    #[error("malformed control message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// `user_info` text as the registry keeps it; text that is not JSON (only
/// from a foreign or broken sender) is dropped rather than relayed.
pub fn user_info(text: Option<String>) -> Option<Arc<RawValue>> {
    RawValue::from_string(text?).ok().map(Arc::from)
}

pub fn is_control(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

pub fn encode(out: &mut Vec<u8>, message: &Control) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    serde_json::to_writer(&mut *out, message).expect("control messages serialise");
}

pub fn decode(bytes: &[u8]) -> Result<Control, ControlError> {
    let json = bytes.strip_prefix(&MAGIC).ok_or(ControlError::Foreign)?;
    Ok(serde_json::from_slice(json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_message_reads_back_and_garbage_is_refused() {
        let message = Control::Delta {
            node: u64::MAX,
            seq: 7,
            changes: vec![
                StateChange {
                    app_id: "app".into(),
                    channel: "presence-room".into(),
                    kind: ChangeKind::MemberAdded {
                        user_id: "42".into(),
                        user_info: Some(r#"{"name":"Ada"}"#.into()),
                    },
                },
                StateChange {
                    app_id: "app".into(),
                    channel: "presence-room".into(),
                    kind: ChangeKind::Count { count: 3 },
                },
            ],
        };
        let mut buf = Vec::new();
        encode(&mut buf, &message);
        assert!(is_control(&buf));
        let Control::Delta { node, seq, changes } = decode(&buf).unwrap() else {
            panic!("not a delta");
        };
        assert_eq!((node, seq, changes.len()), (u64::MAX, 7, 2));
        match &changes[0].kind {
            ChangeKind::MemberAdded { user_id, user_info } => {
                assert_eq!(user_id, "42");
                let info = super::user_info(user_info.clone()).unwrap();
                assert_eq!(info.get(), r#"{"name":"Ada"}"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(changes[1].kind, ChangeKind::Count { count: 3 }));

        assert!(matches!(decode(b"SY\x01..."), Err(ControlError::Foreign)));
        assert!(matches!(
            decode(b"SYc{\"type\":\"nope\"}"),
            Err(ControlError::Malformed(_))
        ));
        assert!(matches!(decode(b"SYc"), Err(ControlError::Malformed(_))));
        assert!(super::user_info(Some("{not json".into())).is_none());
    }
}
