//! The members of one presence channel, keyed by user id.
//!
//! A user with several sockets on the channel is one member: `member_added`
//! goes out when the first socket joins and `member_removed` when the last
//! one leaves.

use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;

/// A presence member as the subscribing socket declared it in `channel_data`.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: Arc<str>,
    /// Raw `user_info` JSON, relayed untouched.
    pub user_info: Option<Arc<RawValue>>,
}

#[derive(Debug)]
struct Entry {
    info: Option<Arc<RawValue>>,
    sockets: usize,
}

#[derive(Debug, Default)]
pub struct Roster {
    members: HashMap<Arc<str>, Entry>,
}

/// What a change to the roster means for the other subscribers.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// The user's first socket: announce `member_added`.
    Added,
    /// Another socket of a user already present: nothing to announce.
    AlreadyPresent,
}

impl Roster {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, user_id: &str) -> bool {
        self.members.contains_key(user_id)
    }

    pub fn add(&mut self, member: &Member) -> Change {
        match self.members.get_mut(&*member.user_id) {
            Some(entry) => {
                entry.sockets += 1;
                Change::AlreadyPresent
            }
            None => {
                self.members.insert(
                    member.user_id.clone(),
                    Entry {
                        info: member.user_info.clone(),
                        sockets: 1,
                    },
                );
                Change::Added
            }
        }
    }

    /// Remove one socket of `user_id`; `true` when it was the user's last.
    pub fn remove(&mut self, user_id: &str) -> bool {
        let Some(entry) = self.members.get_mut(user_id) else {
            return false;
        };
        entry.sockets -= 1;
        if entry.sockets == 0 {
            self.members.remove(user_id);
            true
        } else {
            false
        }
    }

    pub fn user_ids(&self) -> Vec<Arc<str>> {
        self.members.keys().cloned().collect()
    }

    /// `{"presence":{"ids":[…],"hash":{…},"count":n}}` as sent in
    /// `subscription_succeeded`.
    pub fn snapshot_json(&self) -> String {
        self.snapshot_json_with(std::iter::empty())
    }

    /// [`Self::snapshot_json`] with the members of other nodes as well (a
    /// user present here and there appears once, with this node's info).
    pub fn snapshot_json_with<'a>(
        &'a self,
        others: impl Iterator<Item = (&'a Arc<str>, Option<&'a RawValue>)>,
    ) -> String {
        #[derive(Serialize)]
        struct Presence<'a> {
            ids: Vec<&'a str>,
            hash: HashMap<&'a str, Option<&'a RawValue>>,
            count: usize,
        }
        #[derive(Serialize)]
        struct Wrapper<'a> {
            presence: Presence<'a>,
        }
        let mut hash: HashMap<&str, Option<&RawValue>> = self
            .members
            .iter()
            .map(|(k, e)| (&**k, e.info.as_deref()))
            .collect();
        for (id, info) in others {
            hash.entry(&**id).or_insert(info);
        }
        let ids: Vec<&str> = hash.keys().copied().collect();
        serde_json::to_string(&Wrapper {
            presence: Presence {
                count: ids.len(),
                ids,
                hash,
            },
        })
        .expect("presence snapshot serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, info: &str) -> Member {
        Member {
            user_id: id.into(),
            user_info: Some(Arc::from(RawValue::from_string(info.to_string()).unwrap())),
        }
    }

    #[test]
    fn users_count_once_across_sockets() {
        let mut r = Roster::default();
        assert_eq!(r.add(&member("42", r#"{"name":"Ada"}"#)), Change::Added);
        assert_eq!(
            r.add(&member("42", r#"{"name":"Ada"}"#)),
            Change::AlreadyPresent
        );
        assert_eq!(r.add(&member("7", "null")), Change::Added);
        assert_eq!(r.len(), 2);
        assert!(!r.remove("42"), "one of two sockets left");
        assert!(r.contains("42"));
        assert!(r.remove("42"), "last socket left");
        assert!(!r.contains("42"));
        assert!(!r.remove("nobody"));

        let snap: serde_json::Value = serde_json::from_str(&r.snapshot_json()).unwrap();
        assert_eq!(snap["presence"]["count"], 1);
        assert_eq!(snap["presence"]["ids"][0], "7");
        assert!(snap["presence"]["hash"]["7"].is_null());
    }
}
