//! The app store: every configured app, looked up by id (HTTP API) or key (WebSocket).
//!
//! Apps from configuration are fixed at start-up: plain hash-map reads with
//! no locking. With a database app manager ([`database`]), the apps not
//! configured are looked up in the database through its cache: the entry
//! points (a WebSocket connecting, an API request, `/up/{app_id}`) call
//! [`AppStore::find_by_key`] / [`AppStore::find_by_id`], which may query it;
//! everything else ([`AppStore::by_id`], [`AppStore::all`]) sees what is
//! cached, fresh or not.

pub mod database;

use std::collections::HashMap;
use std::sync::Arc;
use switchyard_actors::app::App;

use database::AppDatabase;

#[derive(Default)]
pub struct AppStore {
    by_id: HashMap<Arc<str>, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
    database: Option<Arc<AppDatabase>>,
}

impl std::fmt::Debug for AppStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStore")
            .field("apps", &self.by_id.keys().collect::<Vec<_>>())
            .field("database", &self.database.as_ref().map(|d| d.label()))
            .finish()
    }
}

impl AppStore {
    pub fn new(apps: Vec<App>) -> AppStore {
        let mut store = AppStore::default();
        for app in apps {
            let app = Arc::new(app);
            store.by_id.insert(app.id.clone(), app.clone());
            store.by_key.insert(app.key.clone(), app);
        }
        store
    }

    /// Also serve the apps of `database` (after the configured ones).
    pub fn with_database(mut self, database: Arc<AppDatabase>) -> AppStore {
        self.database = Some(database);
        self
    }

    pub fn database(&self) -> Option<&Arc<AppDatabase>> {
        self.database.as_ref()
    }

    /// A configured app, or a database app as cached (never a query).
    pub fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.by_id
            .get(id)
            .cloned()
            .or_else(|| self.database.as_ref()?.cached(true, id))
    }

    /// A configured app, or a database app as cached (never a query).
    pub fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.by_key
            .get(key)
            .cloned()
            .or_else(|| self.database.as_ref()?.cached(false, key))
    }

    /// A configured app, or the database's current version of one.
    pub async fn find_by_id(&self, id: &str) -> Option<Arc<App>> {
        if let Some(app) = self.by_id.get(id) {
            return Some(app.clone());
        }
        self.database.as_ref()?.find_by_id(id).await
    }

    /// A configured app, or the database's current version of one.
    pub async fn find_by_key(&self, key: &str) -> Option<Arc<App>> {
        if let Some(app) = self.by_key.get(key) {
            return Some(app.clone());
        }
        self.database.as_ref()?.find_by_key(key).await
    }

    /// The configured apps, then the database apps in the cache.
    pub fn all(&self) -> Vec<Arc<App>> {
        let mut apps: Vec<Arc<App>> = self.by_id.values().cloned().collect();
        if let Some(db) = &self.database {
            apps.extend(
                db.cached_apps()
                    .into_iter()
                    .filter(|app| !self.by_id.contains_key(&app.id)),
            );
        }
        apps
    }

    /// The id to keep another node's state or events under: a known app's
    /// own id; with a database, any id (the app may simply not have been
    /// read here yet, and its channels must still count cluster-wide);
    /// otherwise `None` (an app this node is not configured with).
    pub fn cluster_id(&self, id: &str) -> Option<Arc<str>> {
        match self.by_id(id) {
            Some(app) => Some(app.id.clone()),
            None if self.database.is_some() && !id.is_empty() => Some(Arc::from(id)),
            None => None,
        }
    }

    /// The configured apps (database apps are not counted).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_by_id_and_by_key() {
        let store = AppStore::new(vec![
            App::new("id1", "key1", "s1"),
            App::new("id2", "key2", "s2"),
        ]);
        assert_eq!(store.by_id("id2").unwrap().key, "key2");
        assert_eq!(&*store.by_key("key1").unwrap().id, "id1");
        assert!(
            store.by_id("key1").is_none(),
            "ids and keys are separate namespaces"
        );
        assert_eq!(store.len(), 2);
    }
}
