//! What the API asks of datastore watches: creating one, checked whole before anything
//! is written (a datastore of the workspace, a folder inside it, an interval the server
//! takes). The topic is the caller's to find and authorize. Each change
//! wakes the watcher, so a new watch's first poll is not left waiting behind the one the
//! watcher sleeps until.

use std::sync::Arc;

use mlgrid_store::{DatastoreWatch, NewDatastoreWatch, SourceId, Store, StoreError};

use crate::datastore::{DatastoreError, relative_prefix};
use crate::schedules::DEFAULT_POLLING_SECONDS;
use crate::service::{PipelineError, Pipelines};
use crate::watcher::WatcherHandle;

/// A watch as a person writes it: everything but the topic may be left out.
#[derive(Debug, Clone, Default)]
pub struct WatchRequest {
    /// A folder relative to the datastore's root; its root when left out.
    pub path: Option<String>,
    pub recursive: bool,
    /// Default: [`DEFAULT_POLLING_SECONDS`], as change schedules.
    pub polling_seconds: Option<u32>,
}

/// Datastore watches of every workspace, as the API uses them.
#[derive(Clone)]
pub struct DatastoreWatches {
    store: Arc<dyn Store>,
    pipelines: Pipelines,
    watcher: WatcherHandle,
}

impl DatastoreWatches {
    pub fn new(store: Arc<dyn Store>, pipelines: Pipelines, watcher: WatcherHandle) -> DatastoreWatches {
        DatastoreWatches {
            store,
            pipelines,
            watcher,
        }
    }

    /// Creates the watch `name` of `datastore`, publishing into `topic`. An unknown
    /// datastore is `NotFound` naming the workspace's datastores; a path outside the
    /// datastore or an interval below the server's floor is `Invalid` naming the rule.
    pub async fn create(
        &self,
        workspace: SourceId,
        datastore: &str,
        name: &str,
        topic: SourceId,
        request: WatchRequest,
    ) -> Result<DatastoreWatch, PipelineError> {
        if name.trim().is_empty() {
            return Err(PipelineError::Invalid("a watch needs a name".to_owned()));
        }
        let path = request.path.unwrap_or_else(|| ".".to_owned());
        let folder = relative_prefix(datastore, &path).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        let polling_seconds = request.polling_seconds.unwrap_or(DEFAULT_POLLING_SECONDS);
        self.watcher
            .check_interval(polling_seconds)
            .map_err(PipelineError::Invalid)?;
        let datastores = self.pipelines.datastores(workspace).await?;
        let found = datastores.get(datastore).map_err(|e| match e {
            DatastoreError::Unknown { .. } => PipelineError::Store(StoreError::NotFound(e.to_string())),
            other => PipelineError::Invalid(other.to_string()),
        })?;
        let new = NewDatastoreWatch {
            name: name.to_owned(),
            datastore: found.name().to_owned(),
            path: folder.to_string_lossy().into_owned(),
            recursive: request.recursive,
            polling_seconds,
            topic,
        };
        let created = self.store.create_datastore_watch(workspace, new).await?;
        self.watcher.wake();
        Ok(created)
    }
}
