//! The app store: every configured app, looked up by id (HTTP API) or key (WebSocket).
//!
//! Apps come from configuration at start-up and do not change while running,
//! so lookups are plain hash-map reads with no locking.

use std::collections::HashMap;
use std::sync::Arc;
use switchyard_actors::app::App;

#[derive(Debug, Default)]
pub struct AppStore {
    by_id: HashMap<Arc<str>, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
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

    pub fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.by_id.get(id).cloned()
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.by_key.get(key).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<App>> {
        self.by_id.values()
    }

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
