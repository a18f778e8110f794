//! Published pipelines at work: the service the API and pipeline triggers call
//! ([`Pipelines`]: publish, submit, cancel, logs), the [`Executor`] that claims ready
//! steps from the store, runs them and records their ends, and what it calls for each
//! step it claimed:
//!
//! - [`datastore`]: datastores, which resolve a data path to a local file the step can
//!   read ([`Datastores`] per workspace, the built-in `workspaceblobstore` among them,
//!   and those registered through the [`DatastoreRegistry`]: local folders, Azure Blob,
//!   S3 and GCS through object_store, their stored credentials sealed).
//! - [`layout`]: where a run's files live under the data directory (one place computes
//!   every path: output folders, logs).
//! - [`render`]: a core [`Step`](mlgrid_core::pipeline::Step) with one run's values
//!   made into a [`StepSpec`]: the program, its arguments and environment, with
//!   parameter values that never become code.
//! - [`runner`]: [`StepRunner`], what runs a `StepSpec`, and [`LocalProcessRunner`], which
//!   runs it as a local process group with capped logs, a timeout and cancellation.
//! - [`Scheduler`]: fires the ticks of time schedules on one node of a cluster (a
//!   lease), each tick recorded once with its run; [`Schedules`]: what the API asks of
//!   schedules, checked whole before anything is written; [`Watcher`]: polls the
//!   folders of change schedules (a lease too), each change recorded once with its run.
//! - [`reuse`]: the key that says whether an earlier step's outputs can stand for a
//!   step's run, and the copy of those outputs.
//!
//! Files are read and written with tokio's file API or on blocking threads, so that no
//! call here blocks the executor's runtime.

pub mod datastore;
mod definitions;
mod executor;
pub mod layout;
mod leadership;
mod orphans;
pub mod render;
pub mod reuse;
pub mod runner;
mod scheduler;
mod schedules;
mod service;
mod watcher;
mod watches;

pub use datastore::registry::{DatastoreRegistry, EndpointGuard, Registration, RegistryError};
pub use datastore::remote::ObjectStoreDatastore;
pub use datastore::secrets::{DatastoreSecret, SecretKey};
pub use datastore::{
    Datastore, DatastoreError, Datastores, FolderDatastore, LIST_LIMIT, Listing, ObjectInfo, WORKSPACE_BLOB_STORE,
};
pub use definitions::Definitions;
pub use executor::{ClaimHold, Executor, ExecutorConfig, ExecutorHandle};
pub use layout::{DataLayout, LayoutError, RunLayout, StepLayout};
pub use render::{RenderError, StepSpec, render_step};
pub use reuse::{ReuseError, copy_outputs, reuse_key};
pub use runner::{ExitOutcome, LocalProcessRunner, StepExit, StepRunner};
pub use scheduler::{Fired, Plan, RUN_SOURCE, Scheduler, SchedulerConfig, SchedulerHandle, plan};
pub use schedules::{
    DEFAULT_POLLING_SECONDS, MAX_UPCOMING, ScheduleChange, ScheduleSpec, Schedules, Upcoming, WatchSpec,
};
pub use service::{LogChunk, LogStream, PipelineError, Pipelines, Submission, Target};
pub use watcher::{Polled, Watcher, WatcherConfig, WatcherHandle, backoff, version_of};
pub use watches::{DatastoreWatches, WatchRequest};
