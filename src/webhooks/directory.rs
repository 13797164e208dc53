//! Which apps have webhooks, and what each wants told.
//!
//! Read by the shards (through the [`Listener`](super::Listener)) for every
//! transition, so a read is one uncontended lock and a hash lookup; written
//! when an app is read: at start-up for the configured apps, and each time
//! the app database reads a row (its `webhooks` column, or `policy.webhooks`),
//! which happens at most once per app per cache TTL.
//!
//! With a database, an app this node has not read yet (another node's
//! channel, say) or one read longer than the TTL ago is *unknown* here: its
//! transitions go to the dispatcher, which reads the app before routing
//! them. So a webhook added, changed or removed in the table takes effect
//! within the TTL, on every node, whether or not the node serves sockets of
//! that app.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use log::warn;
use serde_json::Value;
use switchyard_actors::app::App;

use super::config::{EventKind, EventSet, Target, WebhookSettings};

/// One app's webhooks and what signs them.
#[derive(Debug)]
pub struct Hooks {
    pub key: Arc<str>,
    pub secret: Arc<str>,
    pub targets: Arc<[Target]>,
    /// What any of the targets selects.
    pub events: EventSet,
    /// The JSON the targets were read from (database apps): a new read of
    /// the same row keeps these hooks, and their lanes, as they are.
    raw: Option<Value>,
}

impl Hooks {
    fn new(app: &App, targets: Arc<[Target]>, raw: Option<Value>) -> Hooks {
        let events = targets
            .iter()
            .fold(EventSet::default(), |s, t| s.union(t.events));
        Hooks {
            key: Arc::from(app.key.as_str()),
            secret: Arc::from(app.secret.expose()),
            targets,
            events,
            raw,
        }
    }

    fn same_source(&self, app: &App, raw: Option<&Value>) -> bool {
        self.raw.as_ref() == raw && *self.key == app.key && *self.secret == *app.secret.expose()
    }
}

struct Entry {
    hooks: Arc<Hooks>,
    /// `None`: a configured app, fixed for the life of the server.
    fresh_until: Option<Instant>,
}

/// Entries kept before stale database apps are forgotten.
const CAPACITY: usize = 10_000;

pub struct Directory {
    entries: RwLock<HashMap<Arc<str>, Entry>>,
    /// Parses database rows' webhooks with the global defaults.
    settings: WebhookSettings,
    /// Apps may appear and change while running (an app database).
    dynamic: bool,
    ttl: Duration,
}

impl Directory {
    /// The configured apps' webhooks; with `database_ttl`, apps read from a
    /// database come and go, each entry trusted for that long.
    pub fn new(
        settings: &WebhookSettings,
        apps: &[App],
        database_ttl: Option<Duration>,
    ) -> Directory {
        let mut entries = HashMap::new();
        for app in apps {
            if let Some(targets) = settings.apps.get(app.id.as_ref()) {
                let hooks = Arc::new(Hooks::new(app, targets.clone(), None));
                entries.insert(
                    app.id.clone(),
                    Entry {
                        hooks,
                        fresh_until: None,
                    },
                );
            }
        }
        Directory {
            entries: RwLock::new(entries),
            settings: WebhookSettings {
                apps: HashMap::new(),
                ..settings.clone()
            },
            dynamic: database_ttl.is_some(),
            ttl: database_ttl.unwrap_or_default(),
        }
    }

    /// Nothing can ever have webhooks: no configured app has any and no
    /// database can add one.
    pub fn is_idle(&self) -> bool {
        !self.dynamic && self.entries.read().unwrap().is_empty()
    }

    /// Whether events of these kinds may be wanted for `app_id`: true when
    /// some webhook selects one, or when the app is unknown or stale here
    /// (the dispatcher reads it and decides).
    pub fn may_want(&self, app_id: &str, kinds: &[EventKind]) -> bool {
        let entries = self.entries.read().unwrap();
        match entries.get(app_id) {
            Some(e) if e.fresh_until.is_none_or(|t| t > Instant::now()) => {
                kinds.iter().any(|k| e.hooks.events.contains(*k))
            }
            _ => self.dynamic,
        }
    }

    /// Whether the dispatcher must read `app_id` before routing its events.
    pub fn needs_lookup(&self, app_id: &str, now: Instant) -> bool {
        if !self.dynamic {
            return false;
        }
        let entries = self.entries.read().unwrap();
        entries
            .get(app_id)
            .is_none_or(|e| e.fresh_until.is_some_and(|t| t <= now))
    }

    /// The app's webhooks as last read (`None`: it has none).
    pub fn hooks(&self, app_id: &str) -> Option<Arc<Hooks>> {
        let entries = self.entries.read().unwrap();
        entries
            .get(app_id)
            .map(|e| e.hooks.clone())
            .filter(|h| !h.targets.is_empty())
    }

    /// The configured apps with webhooks (their lanes start at once, to
    /// deliver what a durable queue kept from an earlier run).
    pub fn configured(&self) -> Vec<(Arc<str>, Arc<Hooks>)> {
        let entries = self.entries.read().unwrap();
        entries
            .iter()
            .filter(|(_, e)| e.fresh_until.is_none())
            .map(|(id, e)| (id.clone(), e.hooks.clone()))
            .collect()
    }

    /// A database row was read: `raw` is its webhooks (the `webhooks`
    /// column, or `policy.webhooks`, which wins). Invalid webhooks are
    /// logged and the app served without them: one bad row must not take
    /// an app's sockets down.
    pub fn read_from_database(&self, app: &App, raw: Option<&Value>) {
        if !self.dynamic {
            return;
        }
        let raw = raw.filter(|v| !v.is_null());
        let now = Instant::now();
        let fresh_until = Some(now + self.ttl);
        let mut entries = self.entries.write().unwrap();
        if let Some(entry) = entries.get_mut(&app.id) {
            if entry.fresh_until.is_none() {
                return;
            }
            if entry.hooks.same_source(app, raw) {
                entry.fresh_until = fresh_until;
                return;
            }
        }
        let targets: Arc<[Target]> = match raw {
            None => Arc::from(Vec::new()),
            Some(raw) => {
                let key = format!("the webhooks of app {} in the database", app.id);
                let mut warnings = Vec::new();
                let parsed = self.settings.parse_targets(raw, &key, &mut warnings);
                for w in warnings {
                    warn!(event = "app_webhooks_warning", app_id = app.id.as_ref(); "{w}");
                }
                match parsed {
                    Ok(targets) => Arc::from(targets),
                    Err(e) => {
                        warn!(
                            event = "app_webhooks_invalid", app_id = app.id.as_ref();
                            "app {} is served without webhooks: {e}", app.id
                        );
                        Arc::from(Vec::new())
                    }
                }
            }
        };
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.fresh_until.is_none_or(|t| t > now));
        }
        entries.insert(
            app.id.clone(),
            Entry {
                hooks: Arc::new(Hooks::new(app, targets, raw.cloned())),
                fresh_until,
            },
        );
    }

    /// The dispatcher could not read `app_id` (unknown, or the database is
    /// down): keep what is known for another TTL (nothing, if nothing), so
    /// its events are not looked up one by one.
    pub fn keep(&self, app_id: &Arc<str>) {
        if !self.dynamic {
            return;
        }
        let fresh_until = Some(Instant::now() + self.ttl.min(super::LOOKUP_BACKOFF));
        let mut entries = self.entries.write().unwrap();
        match entries.get_mut(app_id) {
            Some(e) if e.fresh_until.is_some() => e.fresh_until = fresh_until,
            Some(_) => {}
            None => {
                let hooks = Arc::new(Hooks {
                    key: Arc::from(""),
                    secret: Arc::from(""),
                    targets: Arc::from(Vec::new()),
                    events: EventSet::default(),
                    raw: None,
                });
                entries.insert(app_id.clone(), Entry { hooks, fresh_until });
            }
        }
    }
}
