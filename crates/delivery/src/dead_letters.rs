//! Writes dead-lettered events to the datastore folder their subscription names, as
//! Event Grid writes them to a storage container: JSON arrays of the events, each with
//! Event Grid's dead-letter fields, under `{folder}/{SOURCE}/{SUBSCRIPTION}/{yyyy}/{MM}/
//! {dd}/{HH}/{uuid}.json`.
//!
//! Dead letters are kept in the store first; a dead letter is marked exported only
//! after its file was written, so a crash in between writes it again (at least once).
//! A subscription whose folder cannot be written holds back only its own dead letters:
//! it is tried again after a backoff, and its error is shown with its delivery counters.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use mlgrid_core::subscription::DeadLetterFolder;
use mlgrid_core::time::format_event_time;
use mlgrid_store::{DeadLetter, EventSubscription, Store, StoreError, SubscriptionId};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;

/// Dead letters written per file, at most.
const PER_FILE: u32 = 1000;
/// How often the exporter looks for new dead letters.
const EVERY: Duration = Duration::from_secs(1);
/// How long a subscription whose export failed waits before the next try, first and at
/// most (doubling in between).
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_LONGEST: Duration = Duration::from_secs(300);

/// Why the dead letters of a subscription could not be written lately, by subscription:
/// shared with the API, which shows it with the subscription's delivery counters.
#[derive(Clone, Default)]
pub struct ExportProblems(Arc<Mutex<HashMap<SubscriptionId, String>>>);

impl ExportProblems {
    /// The last export error of the subscription, if its last export failed.
    pub fn of(&self, subscription: SubscriptionId) -> Option<String> {
        self.0
            .lock()
            .expect("never held across a panic")
            .get(&subscription)
            .cloned()
    }

    fn set(&self, subscription: SubscriptionId, problem: Option<String>) {
        let mut problems = self.0.lock().expect("never held across a panic");
        match problem {
            Some(problem) => problems.insert(subscription, problem),
            None => problems.remove(&subscription),
        };
    }
}

/// A subscription whose export failed: when to try again, and how many times it failed.
struct Failing {
    failures: u32,
    retry_at: tokio::time::Instant,
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_LONGEST)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing dead letters to datastore `{datastore}`: {error}")]
    Datastore { datastore: String, error: String },
}

impl ExportError {
    fn datastore(datastore: &str, error: impl std::fmt::Display) -> ExportError {
        ExportError::Datastore {
            datastore: datastore.to_owned(),
            error: error.to_string(),
        }
    }
}

/// A dead letter as Event Grid writes it: the event with the dead-letter fields added.
pub fn dead_letter_record(dead: &DeadLetter) -> Value {
    let mut record = match serde_json::from_str::<Value>(&dead.body) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    record.insert("deadLetterReason".into(), dead.dead_letter_reason.clone().into());
    record.insert("deliveryAttempts".into(), dead.delivery_attempts.into());
    record.insert("lastDeliveryOutcome".into(), dead.last_delivery_outcome.clone().into());
    record.insert("lastHttpStatusCode".into(), dead.last_http_status_code.into());
    record.insert("publishTime".into(), format_event_time(dead.publish_time).into());
    record.insert(
        "lastDeliveryAttemptTime".into(),
        dead.last_delivery_attempt_time.map(format_event_time).into(),
    );
    Value::Object(record)
}

/// Follows dead letters and writes them to their datastore folders. Datastores are
/// folders under `root` (the data directory's `datastores/`), one per datastore name.
pub struct DeadLetterExporter {
    store: Arc<dyn Store>,
    /// The subscriptions, shared with the node's fan-out and dispatcher.
    catalog: Arc<Catalog>,
    root: PathBuf,
    datastores: HashMap<String, Arc<LocalFileSystem>>,
    failing: HashMap<SubscriptionId, Failing>,
    problems: ExportProblems,
}

impl DeadLetterExporter {
    pub fn new(store: Arc<dyn Store>, root: PathBuf) -> DeadLetterExporter {
        DeadLetterExporter {
            catalog: Catalog::new(store.clone()),
            store,
            root,
            datastores: HashMap::new(),
            failing: HashMap::new(),
            problems: ExportProblems::default(),
        }
    }

    /// Reads the subscriptions from `catalog`, shared with other parts of the node.
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> DeadLetterExporter {
        self.catalog = catalog;
        self
    }

    /// Reports export errors to `problems` (which the API reads).
    pub fn with_problems(mut self, problems: ExportProblems) -> DeadLetterExporter {
        self.problems = problems;
        self
    }

    fn datastore(&mut self, name: &str) -> Result<Arc<LocalFileSystem>, ExportError> {
        if let Some(store) = self.datastores.get(name) {
            return Ok(store.clone());
        }
        let folder = self.root.join(name);
        std::fs::create_dir_all(&folder)
            .map_err(|e| ExportError::datastore(name, format!("creating {}: {e}", folder.display())))?;
        let store = Arc::new(LocalFileSystem::new_with_prefix(&folder).map_err(|e| ExportError::datastore(name, e))?);
        self.datastores.insert(name.to_owned(), store.clone());
        Ok(store)
    }

    /// Writes every dead letter not written yet, but those of subscriptions waiting out
    /// a backoff; returns how many it wrote. A subscription whose datastore refuses the
    /// files is noted (and logged), and the others go on.
    pub async fn pass(&mut self) -> Result<usize, ExportError> {
        let subscriptions = self.catalog.current().await?;
        let mut written = 0;
        let now = tokio::time::Instant::now();
        for subscription in &subscriptions.all {
            if self.failing.get(&subscription.id).is_some_and(|f| f.retry_at > now) {
                continue;
            }
            let Some(destination) = &subscription.spec.dead_letter_destination else {
                continue;
            };
            let Some(source) = subscriptions.source(subscription.source_id) else {
                // Deleted with its subscriptions and their dead letters.
                continue;
            };
            match self.export(subscription, &source.name, &destination.properties).await {
                Ok(count) => {
                    written += count;
                    if self.failing.remove(&subscription.id).is_some() {
                        self.problems.set(subscription.id, None);
                    }
                }
                Err(refused @ ExportError::Datastore { .. }) => {
                    let failing = self.failing.entry(subscription.id).or_insert(Failing {
                        failures: 0,
                        retry_at: now,
                    });
                    failing.failures += 1;
                    let wait = backoff(failing.failures);
                    failing.retry_at = now + wait;
                    let problem = refused.to_string();
                    tracing::warn!(subscription = %subscription.name, %problem, retry_in_s = wait.as_secs(), "exporting dead letters failed");
                    self.problems.set(subscription.id, Some(problem));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(written)
    }

    async fn export(
        &mut self,
        subscription: &EventSubscription,
        source: &str,
        destination: &DeadLetterFolder,
    ) -> Result<usize, ExportError> {
        let mut written = 0;
        loop {
            let dead = self.store.unexported_dead_letters(subscription.id, PER_FILE).await?;
            if dead.is_empty() {
                return Ok(written);
            }
            let records: Vec<Value> = dead.iter().map(dead_letter_record).collect();
            let body = serde_json::to_vec(&records).expect("JSON values serialize");
            let now = Utc::now();
            let folder = destination.folder.trim_matches('/');
            let file = format!(
                "{folder}{}{}/{}/{}/{}.json",
                if folder.is_empty() { "" } else { "/" },
                source.to_uppercase(),
                subscription.name.to_uppercase(),
                now.format("%Y/%m/%d/%H"),
                uuid::Uuid::new_v4()
            );
            let datastore = self.datastore(&destination.datastore_name)?;
            let name = &destination.datastore_name;
            let path = Path::parse(&file).map_err(|e| ExportError::datastore(name, e))?;
            datastore
                .put(&path, PutPayload::from(body))
                .await
                .map_err(|e| ExportError::datastore(name, e))?;
            let sequences: Vec<u64> = dead.iter().map(|d| d.sequence).collect();
            written += sequences.len();
            metrics::counter!("mlgrid_dead_letters_exported_total").increment(sequences.len() as u64);
            self.store
                .mark_dead_letters_exported(subscription.id, sequences)
                .await?;
        }
    }

    /// Exports until `shutdown`, once a second.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            match self.pass().await {
                Err(ExportError::Store(StoreError::Closed)) => return,
                Err(error) => tracing::warn!(%error, "exporting dead letters failed; retrying"),
                Ok(_) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_export_backs_off_doubling_up_to_five_minutes() {
        let waits: Vec<u64> = [1, 2, 3, 9, 10, 100].map(|n| backoff(n).as_secs()).to_vec();
        assert_eq!(waits, [1, 2, 4, 256, 300, 300]);
    }
}
