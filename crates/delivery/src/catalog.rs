//! The subscription catalog: every subscription as the store keeps it (its definition
//! parsed once, at the store boundary) with its source, read again only when the store's
//! subscriptions version changes. The fan-out, the dispatcher and the dead-letter
//! exporter of a node share one, so a change is read once, not once per part and pass.

use std::collections::HashMap;
use std::sync::Arc;

use mlgrid_core::resource::SourceKind;
use mlgrid_store::{EventSubscription, Source, SourceId, Store, StoreError};
use tokio::sync::Mutex;

/// The subscriptions at one version of the store's subscriptions.
#[derive(Debug)]
pub struct Subscriptions {
    /// The version they were read at: a part that built something of them rebuilds it
    /// when this changes.
    pub version: u64,
    /// By source and name.
    pub all: Vec<EventSubscription>,
    sources: HashMap<SourceId, Source>,
}

impl Subscriptions {
    /// The source a subscription belongs to, unless it was deleted since.
    pub fn source(&self, id: SourceId) -> Option<&Source> {
        self.sources.get(&id)
    }

    /// The resource path of a source (the `topic` of its events), or `""` once deleted.
    pub fn topic(&self, id: SourceId) -> String {
        self.source(id).map(Source::topic).unwrap_or_default()
    }
}

/// A node's catalog of subscriptions.
pub struct Catalog {
    store: Arc<dyn Store>,
    current: Mutex<Option<Arc<Subscriptions>>>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>) -> Arc<Catalog> {
        Arc::new(Catalog {
            store,
            current: Mutex::new(None),
        })
    }

    /// The subscriptions as of the store's current version: one cheap version read,
    /// and the subscriptions and sources read again only when it changed.
    pub async fn current(&self) -> Result<Arc<Subscriptions>, StoreError> {
        let version = self.store.subscriptions_version().await?;
        let mut current = self.current.lock().await;
        if let Some(known) = &*current
            && known.version == version
        {
            return Ok(known.clone());
        }
        // Read after the version: a change in between makes the next call read again.
        let mut sources = HashMap::new();
        for kind in [SourceKind::Workspace, SourceKind::Topic] {
            sources.extend(self.store.list_sources(kind).await?.into_iter().map(|s| (s.id, s)));
        }
        let read = Arc::new(Subscriptions {
            version,
            all: self.store.list_subscriptions(None).await?,
            sources,
        });
        *current = Some(read.clone());
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use mlgrid_core::subscription::ProvisioningState;

    use super::*;

    #[tokio::test]
    async fn the_catalog_reads_again_only_when_subscriptions_change() {
        let fixture = crate::fixture::topic_with_subscription(ProvisioningState::Succeeded).await;
        let (store, topic) = (fixture.store.clone(), &fixture.topic);
        let catalog = Catalog::new(store.clone());
        let one = catalog.current().await.unwrap();
        assert!(
            Arc::ptr_eq(&one, &catalog.current().await.unwrap()),
            "no change, no read"
        );
        store.delete_subscription(topic.id, "sub", None).await.unwrap();
        let empty = catalog.current().await.unwrap();
        assert!(empty.all.is_empty());
        assert_ne!(one.version, empty.version);
        assert_eq!(one.all.len(), 1);
        assert_eq!(
            one.all[0].spec.destination.properties.endpoint_url,
            "https://127.0.0.1/"
        );
        assert_eq!(one.topic(topic.id), topic.topic());
    }
}
