//! Datastore watches as the store keeps them: a folder of a workspace's datastore whose
//! new and changed files are published as `Microsoft.Storage.BlobCreated` events into a
//! custom topic (core's `storage`), where event subscriptions route them like any
//! published event.
//!
//! A watch polls as a change schedule does, and shares its seen objects' table under its
//! own id ([`SeenObject`]). An arrival is recorded by moving the file's seen row from the
//! version the watcher read to the new one, in the transaction that appends its event to
//! the topic's log ([`Store::record_arrival`](crate::Store::record_arrival)): a file's
//! version is published once, whatever nodes poll and however often a poll is repeated.

use chrono::{DateTime, Utc};
use mlgrid_core::Event;
use mlgrid_core::storage::BlobCreated;

use crate::error::StoreError;
use crate::model::{NewEvent, SourceId};
use crate::schedules::SeenObject;

/// A watch to create; the caller has checked the datastore, the folder and the interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDatastoreWatch {
    pub name: String,
    /// A datastore of the workspace, as it is named.
    pub datastore: String,
    /// A folder relative to the datastore's root (`""` for the root).
    pub path: String,
    /// Files in subfolders count too.
    pub recursive: bool,
    pub polling_seconds: u32,
    /// The custom topic its events go to.
    pub topic: SourceId,
}

/// A watch as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreWatch {
    pub workspace: SourceId,
    pub workspace_name: String,
    /// A UUID: its seen objects are kept under it, apart from every schedule's.
    pub id: String,
    pub name: String,
    pub datastore: String,
    pub path: String,
    pub recursive: bool,
    pub polling_seconds: u32,
    pub topic: SourceId,
    pub topic_name: String,
    pub next_poll_at: DateTime<Utc>,
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Polls failed in a row (the datastore could not be listed).
    pub poll_failures: u32,
    /// Why the latest poll failed, or what it could not do in full.
    pub last_error: Option<String>,
    /// When the latest event was published.
    pub last_event_at: Option<DateTime<Utc>>,
    pub events_published: u64,
    /// Files count from then: those last modified before are there before.
    pub created_at: DateTime<Utc>,
    pub etag: String,
}

/// A file a watch found new or changed, to publish once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArrival {
    pub watch_id: String,
    /// The topic the event goes to.
    pub topic: SourceId,
    /// The version the watcher read before: none for a file it never saw. The event is
    /// published only if the seen row still has it (compare and set).
    pub previous: Option<String>,
    pub seen: SeenObject,
    /// The event's id, its time (Event Grid's form) and what it tells.
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    pub blob: BlobCreated,
}

pub(crate) fn missing_watch(datastore: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!("watch `{name}` of datastore `{datastore}`"))
}

pub(crate) fn watch_taken(datastore: &str, name: &str) -> String {
    format!(
        "datastore `{datastore}` has a watch `{name}` already (names ignore case); delete it first, or choose another \
         name"
    )
}

/// The event an arrival appends to its topic's log, on `topic` (the topic's resource
/// path).
pub(crate) fn arrival_event(arrival: &NewArrival, topic: &str) -> NewEvent {
    let time = mlgrid_core::time::format_event_time(arrival.event_time);
    let envelope = arrival.blob.to_event_grid(topic, &arrival.event_id, &time);
    NewEvent::from(&Event::EventGrid(envelope))
}
