//! The pure core of mlgrid: events, subjects, sources and the rules that govern them.
//!
//! Nothing here does I/O, spawns tasks or reads a clock on its own: callers pass times
//! in. The main types:
//!
//! - [`EventGridEvent`] and [`CloudEvent`]: the two wire envelopes, convertible into
//!   each other; [`Event`] holds either, as the store keeps it.
//! - [`ml::MlEvent`]: the five Azure Machine Learning event types with their data
//!   (PascalCase fields, as Azure writes them) and [`ml::MlSubject`], their subjects.
//! - [`filter`]: Event Grid's subscription filters, compiled, and a [`filter::RoutingTable`]
//!   that finds the subscriptions an event matches.
//! - [`pipeline`]: pipeline definitions (steps, typed parameters, data paths), checked
//!   whole, and the placeholders that put values into commands without making them code.
//! - [`publish`]: validation of what publishers send, with Event Grid's rules and limits.
//! - [`resource`]: workspaces and custom topics, their names and resource paths.
//! - [`schedule`]: recurrences (Azure ML's schedule triggers), checked and compiled into
//!   their fire times in an IANA time zone, and what to do with missed and overlapping
//!   ticks.
//! - [`storage`]: data-arrival events, shaped like Azure Storage's `BlobCreated`.
//! - [`redact`]: URLs without their secrets (query, userinfo), for showing and logging.
//!
//! ```
//! use mlgrid_core::ml::{MlEvent, ModelRegistered};
//!
//! let registered = MlEvent::ModelRegistered(ModelRegistered {
//!     model_name: "churn".into(),
//!     model_version: 3,
//!     model_tags: Default::default(),
//!     model_properties: Default::default(),
//! });
//! let topic = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws";
//! let event = registered.to_event_grid(topic, "6e8bc430-9c3a-11d9-9669-0800200c9a66", "2026-11-26T16:00:00.0000000Z");
//! assert_eq!(event.subject, "models/churn:3");
//! assert_eq!(event.event_type, "Microsoft.MachineLearningServices.ModelRegistered");
//! ```

pub mod cloud_event;
pub mod event;
pub mod event_grid;
pub mod filter;
pub mod lifecycle;
pub mod ml;
pub mod pipeline;
pub mod publish;
pub mod redact;
pub mod resource;
pub mod retention;
pub mod retry;
pub mod schedule;
pub mod storage;
pub mod subscription;
pub mod time;
pub mod validation;

pub use cloud_event::CloudEvent;
pub use event::{Event, EventSchema};
pub use event_grid::EventGridEvent;
