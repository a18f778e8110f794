//! The watcher: polls datastore folders for files added or changed, on one node of a
//! cluster at a time. It watches for two kinds of owner, with one polling code: a change
//! schedule starts a run for each change, a datastore watch publishes a
//! `Microsoft.Storage.BlobCreated` event for it into its topic.
//!
//! The node holding the `watcher` lease (taken and renewed like the scheduler's) sleeps
//! until the earliest poll due of all active change schedules and datastore watches, an
//! index lookup each, or until one changes on this node. A pass ([`Watcher::pass`], which
//! tests drive with any instant as "now") polls every due folder, at most
//! [`WatcherConfig::parallel`] at once, each listing bounded in time
//! ([`WatcherConfig::list_timeout`]) and size (the datastore's `LIST_LIMIT`), so that
//! a slow or unreachable datastore holds up only its own schedules.
//!
//! A poll lists the folder and compares each file with the version the schedule saw
//! last (its e-tag, else its last-modified time and size):
//!
//! - A file not seen, or seen with another version, is a change. Each change is recorded
//!   by the store with a compare and set on the seen row, in the transaction that
//!   submits its run (a change schedule) or appends its event (a datastore watch): a
//!   change starts one run or publishes one event, whichever nodes poll and however
//!   often a poll is repeated after a crash, and a change made while no node polled is
//!   found by the next poll, which compares with what is stored, not with what it
//!   remembers.
//! - Changes count from the schedule's `since` (its creation, or when it was enabled or
//!   pointed at another folder; a watch's creation): the first poll after it records files last modified
//!   before `since - skew` as seen without firing. The skew
//!   ([`WatcherConfig::skew`]) leans towards firing: a file written just before the
//!   schedule was created may start a run, but one written just after it is not missed
//!   when the datastore's clock is a little behind ours.
//! - Files gone from a listing that was not cut short are forgotten, so a file that
//!   comes back is new again, and the seen rows stay as many as the files.
//! - A listing that fails is recorded on the schedule (`last_error`, with the count of
//!   failures in a row), and the next poll backs off ([`backoff`]): other schedules go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use mlgrid_core::pipeline::DataPath;
use mlgrid_core::storage::{BlobCreated, content_type_of, sequencer};
use mlgrid_store::{
    ChangeWatch, DatastoreWatch, FireOutcome, NewArrival, NewChange, NewPipelineRun, PipelineSchedule, PollDone,
    SeenObject, SourceId, Store, StoreError,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::datastore::location::blob_location;
use crate::datastore::{Listing, ObjectInfo};
use crate::leadership::Lease;
use crate::scheduler::RUN_SOURCE;
use crate::service::{Pipelines, Submission, Target};

/// The name of the lease that lets one node of a cluster poll datastore folders.
const LEASE: &str = "watcher";

/// How the watcher paces itself.
#[derive(Debug, Clone, Copy)]
pub struct WatcherConfig {
    /// How long a lease taken or renewed runs.
    pub lease: Duration,
    /// How often the holder renews, and a node without it tries to take it.
    pub renew_every: Duration,
    /// Most polls going at once.
    pub parallel: usize,
    /// Longest one listing may take before the poll counts as failed.
    pub list_timeout: Duration,
    /// Most changes one poll records; the rest are found by a poll that follows at once.
    pub changes_per_poll: usize,
    /// Most change schedules, and most datastore watches, one pass polls.
    pub batch: u32,
    /// How much older than a schedule's `since` a file must be to count as there before.
    pub skew: Duration,
    /// The shortest polling interval a schedule may have: a minute, as Azure ML's; tests
    /// lower it.
    pub min_polling: Duration,
}

impl Default for WatcherConfig {
    fn default() -> Self {
        WatcherConfig {
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            parallel: 8,
            list_timeout: Duration::from_secs(60),
            changes_per_poll: 1_000,
            batch: 500,
            skew: Duration::from_secs(5),
            min_polling: Duration::from_secs(60),
        }
    }
}

/// Wakes the watcher of this node when a change schedule or a datastore watch changed,
/// and says what polling interval it takes.
#[derive(Clone)]
pub struct WatcherHandle {
    wake: Arc<Notify>,
    min_polling: Duration,
}

impl WatcherHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Refuses a polling interval shorter than this server takes, naming the floor.
    pub fn check_interval(&self, polling_seconds: u32) -> Result<(), String> {
        let floor = self.min_polling.as_secs();
        if u64::from(polling_seconds) >= floor {
            Ok(())
        } else if floor == 60 {
            Err(format!(
                "the polling interval must be at least 1 minute (got {polling_seconds} seconds)"
            ))
        } else {
            Err(format!(
                "the polling interval must be at least {floor} seconds (got {polling_seconds})"
            ))
        }
    }
}

impl Default for WatcherHandle {
    fn default() -> Self {
        WatcherHandle {
            wake: Arc::default(),
            min_polling: WatcherConfig::default().min_polling,
        }
    }
}

/// When a schedule whose polls failed `failures` times in a row is polled next: its
/// interval, doubled for each failure after the first, at most an hour (or its
/// interval, when that is longer).
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let cap = interval.max(Duration::from_secs(3600));
    let doublings = failures.saturating_sub(1).min(20);
    interval.saturating_mul(1 << doublings).min(cap)
}

/// The version of an object that tells one content from the next: its e-tag, else its
/// last-modified time and size.
pub fn version_of(object: &ObjectInfo) -> String {
    match &object.e_tag {
        Some(tag) => tag.clone(),
        None => format!("{}/{}", object.last_modified.to_rfc3339(), object.size),
    }
}

fn seen(object: &ObjectInfo) -> SeenObject {
    SeenObject {
        path: object.path.clone(),
        version: version_of(object),
        size: object.size,
        last_modified: object.last_modified,
    }
}

/// What one poll of a change schedule or a datastore watch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Polled {
    /// The schedule's or the watch's id.
    pub watcher_id: String,
    /// The changes a schedule's poll recorded, in order: (path, outcome, run).
    pub fired: Vec<(String, FireOutcome, Option<String>)>,
    /// The changes a watch's poll published, in order: (path, sequence in the topic).
    pub published: Vec<(String, u64)>,
    /// Files recorded as there before the schedule watched.
    pub quiet: usize,
    /// Why the folder could not be listed.
    pub error: Option<String>,
}

/// A change found by a poll, before it is recorded.
struct Found {
    previous: Option<String>,
    object: ObjectInfo,
}

/// What a poll makes of a listing: the files to record without firing, and the changes.
fn sort_out(
    listing: &Listing,
    seen_before: &HashMap<String, SeenObject>,
    baseline: Option<DateTime<Utc>>,
) -> (Vec<SeenObject>, Vec<Found>) {
    let mut objects: Vec<&ObjectInfo> = listing.objects.iter().collect();
    objects.sort_by(|a, b| (a.last_modified, &a.path).cmp(&(b.last_modified, &b.path)));
    let (mut quiet, mut found) = (Vec::new(), Vec::new());
    for object in objects {
        let previous = seen_before.get(&object.path).map(|s| s.version.clone());
        if previous.as_deref() == Some(version_of(object).as_str()) {
            continue;
        }
        if baseline.is_some_and(|before| object.last_modified <= before) {
            quiet.push(seen(object));
        } else {
            found.push(Found {
                previous,
                object: object.clone(),
            });
        }
    }
    (quiet, found)
}

/// What the watcher polls: a change schedule's folder, whose changes start runs, or a
/// datastore watch's, whose changes are published as events.
#[derive(Debug, Clone)]
enum Watched {
    Schedule(Box<PipelineSchedule>, ChangeWatch),
    Arrivals(DatastoreWatch),
}

impl Watched {
    fn id(&self) -> &str {
        match self {
            Watched::Schedule(s, _) => &s.id,
            Watched::Arrivals(w) => &w.id,
        }
    }

    fn workspace(&self) -> SourceId {
        match self {
            Watched::Schedule(s, _) => s.workspace,
            Watched::Arrivals(w) => w.workspace,
        }
    }

    fn name(&self) -> &str {
        match self {
            Watched::Schedule(s, _) => &s.name,
            Watched::Arrivals(w) => &w.name,
        }
    }

    /// The datastore, the folder and whether its subfolders count.
    fn folder(&self) -> (&str, &str, bool) {
        match self {
            Watched::Schedule(_, c) => (&c.datastore, &c.path, c.recursive),
            Watched::Arrivals(w) => (&w.datastore, &w.path, w.recursive),
        }
    }

    fn interval(&self) -> Duration {
        let seconds = match self {
            Watched::Schedule(_, c) => c.polling_seconds,
            Watched::Arrivals(w) => w.polling_seconds,
        };
        Duration::from_secs(u64::from(seconds.max(1)))
    }

    /// Whether this poll is the first since changes count, and so records what is older
    /// than `since` without firing.
    fn since(&self) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        match self {
            Watched::Schedule(s, c) => (c.since, s.last_poll_at),
            Watched::Arrivals(w) => (w.created_at, w.last_poll_at),
        }
    }

    fn poll_failures(&self) -> u32 {
        match self {
            Watched::Schedule(s, _) => s.poll_failures,
            Watched::Arrivals(w) => w.poll_failures,
        }
    }
}

/// Polls the folders of change schedules and datastore watches.
#[derive(Clone)]
pub struct Watcher {
    store: Arc<dyn Store>,
    pipelines: Pipelines,
    node: String,
    config: WatcherConfig,
    wake: Arc<Notify>,
}

impl Watcher {
    pub fn new(store: Arc<dyn Store>, pipelines: Pipelines, node: impl Into<String>) -> Watcher {
        Watcher {
            store,
            pipelines,
            node: node.into(),
            config: WatcherConfig::default(),
            wake: Arc::default(),
        }
    }

    pub fn with_config(mut self, config: WatcherConfig) -> Watcher {
        self.config = config;
        self
    }

    /// What wakes this watcher: give it to whatever changes schedules on this node.
    pub fn handle(&self) -> WatcherHandle {
        WatcherHandle {
            wake: self.wake.clone(),
            min_polling: self.config.min_polling,
        }
    }

    /// One pass at `now`: polls every due change schedule and datastore watch (at most a
    /// batch of each), a few at once. Returns what each poll did, in no particular order.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Vec<Polled>, StoreError> {
        let schedules = self.store.due_polls(now, self.config.batch).await?;
        let watches = self.store.due_watches(now, self.config.batch).await?;
        let due = schedules
            .into_iter()
            .filter_map(|s| s.watch.clone().map(|c| Watched::Schedule(Box::new(s), c)))
            .chain(watches.into_iter().map(Watched::Arrivals));
        let permits = Arc::new(Semaphore::new(self.config.parallel.max(1)));
        let mut polls = JoinSet::new();
        for watched in due {
            let watcher = self.clone();
            let permits = permits.clone();
            polls.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
                watcher.poll_folder(&watched, now).await
            });
        }
        let mut polled = Vec::new();
        let mut failed = None;
        while let Some(done) = polls.join_next().await {
            match done {
                Ok(Ok(poll)) => polled.push(poll),
                Ok(Err(e)) => failed = Some(e),
                Err(e) => tracing::error!(error = %e, "a poll of a datastore folder panicked"),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(polled),
        }
    }

    /// The folder's listing, bounded in time.
    async fn list(&self, watched: &Watched) -> Result<Listing, String> {
        let (datastore, path, recursive) = watched.folder();
        let listing = async {
            let datastores = self
                .pipelines
                .datastores(watched.workspace())
                .await
                .map_err(|e| e.to_string())?;
            let datastore = datastores.get(datastore).map_err(|e| e.to_string())?;
            datastore.list(path, recursive).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.config.list_timeout, listing).await {
            Ok(listed) => listed,
            Err(_) => Err(format!(
                "listing `{path}` on datastore `{datastore}` took longer than {} s",
                self.config.list_timeout.as_secs()
            )),
        }
    }

    /// Polls one change schedule at `now`: records its changes, each with its run, then
    /// how the poll went.
    pub async fn poll(&self, schedule: &PipelineSchedule, now: DateTime<Utc>) -> Result<Polled, StoreError> {
        match &schedule.watch {
            Some(watch) => {
                self.poll_folder(&Watched::Schedule(Box::new(schedule.clone()), watch.clone()), now)
                    .await
            }
            None => Ok(Polled {
                watcher_id: schedule.id.clone(),
                ..Polled::default()
            }),
        }
    }

    /// Polls one folder at `now`: records its changes (each with its run, or its event),
    /// then how the poll went.
    async fn poll_folder(&self, watched: &Watched, now: DateTime<Utc>) -> Result<Polled, StoreError> {
        let id = watched.id().to_owned();
        let mut polled = Polled {
            watcher_id: id.clone(),
            ..Polled::default()
        };
        let interval = watched.interval();
        let after = |wait: Duration| now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
        let listing = match self.list(watched).await {
            Ok(listing) => listing,
            Err(reason) => {
                let failures = watched.poll_failures().saturating_add(1);
                let next = after(backoff(interval, failures));
                let error = format!(
                    "polling failed {failures} time(s) in a row, next try at {}: {reason}",
                    next.to_rfc3339()
                );
                tracing::warn!(watcher = %watched.name(), %error, "a watched datastore cannot be listed");
                self.store
                    .record_poll(PollDone {
                        watcher_id: id,
                        polled_at: now,
                        next_poll_at: next,
                        error: Some(error.clone()),
                        failures,
                    })
                    .await?;
                polled.error = Some(error);
                return Ok(polled);
            }
        };
        let seen_before: HashMap<String, SeenObject> = self
            .store
            .seen_objects(&id)
            .await?
            .into_iter()
            .map(|o| (o.path.clone(), o))
            .collect();
        let (since, last_poll_at) = watched.since();
        let first_since = last_poll_at.is_none_or(|last| last < since);
        let skew = TimeDelta::from_std(self.config.skew).unwrap_or(TimeDelta::zero());
        let baseline = first_since.then(|| since - skew);
        let (quiet, found) = sort_out(&listing, &seen_before, baseline);
        polled.quiet = quiet.len();
        if !quiet.is_empty() {
            self.store.record_seen(&id, quiet).await?;
        }
        if !listing.truncated {
            let listed: std::collections::HashSet<&str> = listing.objects.iter().map(|o| o.path.as_str()).collect();
            let gone: Vec<String> = seen_before
                .keys()
                .filter(|path| !listed.contains(path.as_str()))
                .cloned()
                .collect();
            if !gone.is_empty() {
                self.store.forget_seen(&id, gone).await?;
            }
        }
        let backlog = found.len() > self.config.changes_per_poll;
        for (i, change) in found.into_iter().take(self.config.changes_per_poll).enumerate() {
            // Unique within the schedule or watch, in the order the changes were found.
            let found_at = now + TimeDelta::microseconds(i64::try_from(i).unwrap_or(i64::MAX));
            match watched {
                Watched::Schedule(schedule, watch) => {
                    if let Some(fired) = self.fire(schedule, watch, change, found_at).await? {
                        polled.fired.push(fired);
                    }
                }
                Watched::Arrivals(watch) => {
                    if let Some(published) = self.publish(watch, change, found_at).await? {
                        polled.published.push(published);
                    }
                }
            }
        }
        let error = listing.truncated.then(|| {
            format!(
                "the folder holds more than {} files: only the first are watched; watch a narrower path",
                crate::datastore::LIST_LIMIT
            )
        });
        self.store
            .record_poll(PollDone {
                watcher_id: id,
                polled_at: now,
                next_poll_at: if backlog { now } else { after(interval) },
                error,
                failures: 0,
            })
            .await?;
        Ok(polled)
    }

    /// Publishes one change as a `BlobCreated` event into the watch's topic; `None` when
    /// it was published before.
    async fn publish(
        &self,
        watch: &DatastoreWatch,
        change: Found,
        found_at: DateTime<Utc>,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let registered = match self.store.datastore(watch.workspace, &watch.datastore).await {
            Ok(registered) => Some(registered),
            // The built-in `workspaceblobstore` has no row.
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let object = &change.object;
        let at = blob_location(
            &watch.workspace_name,
            &watch.datastore,
            registered.as_ref(),
            &object.path,
        );
        let id = || uuid::Uuid::new_v4().to_string();
        // Orders a blob's events as text, as Azure's does: later polls find later changes.
        let order = u128::try_from(found_at.timestamp_micros()).unwrap_or_default();
        let blob = BlobCreated::new(&at.container, &at.blob, &at.url)
            .with_content(&version_of(object), object.size, content_type_of(&object.path))
            .with_ids(&id(), &id(), &id(), sequencer(order));
        let arrival = NewArrival {
            watch_id: watch.id.clone(),
            topic: watch.topic,
            previous: change.previous,
            seen: seen(object),
            event_id: id(),
            event_time: found_at,
            blob,
        };
        Ok(self
            .store
            .record_arrival(arrival)
            .await?
            .map(|sequence| (change.object.path, sequence)))
    }

    /// Records one change with its run (or why it has none); `None` when the change was
    /// recorded before.
    async fn fire(
        &self,
        schedule: &PipelineSchedule,
        watch: &ChangeWatch,
        change: Found,
        fire_time: DateTime<Utc>,
    ) -> Result<Option<(String, FireOutcome, Option<String>)>, StoreError> {
        let record = |outcome, reason| NewChange {
            schedule_id: schedule.id.clone(),
            previous: change.previous.clone(),
            seen: seen(&change.object),
            fire_time,
            outcome,
            reason,
        };
        let (record, run) = match self.prepare(schedule, watch, &change.object.path, fire_time).await? {
            Ok(run) => (record(FireOutcome::Started, None), Some(run)),
            Err(reason) => (record(FireOutcome::Failed, Some(reason)), None),
        };
        let started = run.is_some();
        let recorded = match self.store.record_change(schedule.workspace, record.clone(), run).await {
            Ok(recorded) => recorded,
            // Refused as a whole (the pipeline was disabled meanwhile, say): the change
            // is recorded as failed, with why, and not tried again.
            Err(StoreError::Conflict(reason) | StoreError::Invalid(reason) | StoreError::NotFound(reason))
                if started =>
            {
                let failed = NewChange {
                    outcome: FireOutcome::Failed,
                    reason: Some(reason),
                    ..record
                };
                self.store.record_change(schedule.workspace, failed, None).await?
            }
            Err(e) => return Err(e),
        };
        let Some(fire) = recorded.fire else {
            return Ok(None);
        };
        if fire.outcome == FireOutcome::Started {
            self.pipelines.wake_executor();
        } else {
            tracing::warn!(schedule = %schedule.name, path = %change.object.path, reason = ?fire.reason, "a change could not start its run");
        }
        Ok(Some((change.object.path, fire.outcome, fire.run_id)))
    }

    /// The run a change starts, checked as any submission, with the changed file in the
    /// schedule's data-path parameter; `Err` says why it cannot start.
    async fn prepare(
        &self,
        schedule: &PipelineSchedule,
        watch: &ChangeWatch,
        path: &str,
        fire_time: DateTime<Utc>,
    ) -> Result<Result<NewPipelineRun, String>, StoreError> {
        let data_paths = watch
            .data_path_parameter
            .iter()
            .map(|name| {
                let value = DataPath {
                    datastore: watch.datastore.clone(),
                    path: path.to_owned(),
                };
                (name.clone(), value)
            })
            .collect();
        let submission = Submission {
            experiment_name: schedule.experiment_name.clone(),
            parameters: schedule.parameters.clone(),
            data_paths,
            run_source: RUN_SOURCE.to_owned(),
            description: Some(format!("schedule {} on a change of {path}", schedule.name)),
            tags: [
                ("azureml.schedule".to_owned(), schedule.name.clone()),
                ("azureml.changedpath".to_owned(), path.to_owned()),
            ]
            .into(),
            continue_on_step_failure: schedule.continue_on_step_failure,
            idempotency_key: Some(format!("schedule:{}:{}", schedule.id, fire_time.to_rfc3339())),
        };
        let target = Target::Pipeline(schedule.pipeline_id.clone());
        self.pipelines
            .prepare_scheduled(schedule.workspace, target, submission)
            .await
    }

    /// Polls change schedules and datastore watches until `stop`, while this node holds
    /// the watcher lease.
    pub async fn run(self, stop: CancellationToken) {
        let lease = Lease {
            store: &*self.store,
            name: LEASE,
            node: &self.node,
            term: self.config.lease,
            renew_every: self.config.renew_every,
        };
        lease.hold(&self.wake, stop, |now| self.pass_and_wait(now)).await;
    }

    /// A pass, then how long to wait for the next: until the earliest poll due.
    async fn pass_and_wait(&self, now: DateTime<Utc>) -> Result<Duration, StoreError> {
        let polled = self.pass(now).await?;
        let fired: usize = polled.iter().map(|p| p.fired.len()).sum();
        if fired > 0 {
            tracing::info!(changes = fired, "change schedules fired");
        }
        let published: usize = polled.iter().map(|p| p.published.len()).sum();
        if published > 0 {
            tracing::info!(events = published, "datastore watches published arrivals");
        }
        Ok(match self.store.earliest_poll().await? {
            Some(at) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => self.config.renew_every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(path: &str, tag: Option<&str>, modified: &str) -> ObjectInfo {
        ObjectInfo {
            path: path.into(),
            size: 3,
            last_modified: modified.parse().unwrap(),
            e_tag: tag.map(str::to_owned),
        }
    }

    #[test]
    fn backoff_doubles_from_the_interval_up_to_an_hour() {
        let minute = Duration::from_secs(60);
        assert_eq!(backoff(minute, 1), minute);
        assert_eq!(backoff(minute, 2), 2 * minute);
        assert_eq!(backoff(minute, 4), 8 * minute);
        assert_eq!(backoff(minute, 30), Duration::from_secs(3600));
        let day = Duration::from_secs(86_400);
        assert_eq!(
            backoff(day, 3),
            day,
            "never sooner than the interval, never later than it when over an hour"
        );
    }

    #[test]
    fn a_version_is_the_e_tag_else_the_time_and_size() {
        assert_eq!(version_of(&object("a", Some("\"x\""), "2026-01-01T00:00:00Z")), "\"x\"");
        assert_eq!(
            version_of(&object("a", None, "2026-01-01T00:00:00Z")),
            "2026-01-01T00:00:00+00:00/3"
        );
    }

    #[test]
    fn a_baseline_keeps_older_files_quiet_and_changes_come_oldest_first() {
        let listing = Listing {
            objects: vec![
                object("new-b.csv", Some("b"), "2026-01-01T00:02:00Z"),
                object("old.csv", Some("o"), "2025-12-31T00:00:00Z"),
                object("new-a.csv", Some("a"), "2026-01-01T00:01:00Z"),
                object("same.csv", Some("s"), "2026-01-01T00:03:00Z"),
                object("edited.csv", Some("e2"), "2025-12-31T00:00:00Z"),
            ],
            truncated: false,
        };
        let before: HashMap<String, SeenObject> = [("same.csv", "s"), ("edited.csv", "e1")]
            .into_iter()
            .map(|(path, version)| {
                let o = SeenObject {
                    path: path.into(),
                    version: version.into(),
                    size: 3,
                    last_modified: "2025-01-01T00:00:00Z".parse().unwrap(),
                };
                (path.to_owned(), o)
            })
            .collect();
        let since = "2026-01-01T00:00:00Z".parse().unwrap();
        let (quiet, found) = sort_out(&listing, &before, Some(since));
        let quiet: Vec<_> = quiet.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(quiet, ["edited.csv", "old.csv"]);
        let found: Vec<_> = found.iter().map(|f| f.object.path.as_str()).collect();
        assert_eq!(found, ["new-a.csv", "new-b.csv"]);

        let (quiet, found) = sort_out(&listing, &before, None);
        assert!(quiet.is_empty(), "after the first poll, every change fires");
        let found: Vec<_> = found
            .iter()
            .map(|f| (f.object.path.as_str(), f.previous.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                ("edited.csv", Some("e1")),
                ("old.csv", None),
                ("new-a.csv", None),
                ("new-b.csv", None)
            ]
        );
    }
}
