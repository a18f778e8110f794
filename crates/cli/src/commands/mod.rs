//! One module per command group.

pub mod access;
pub mod admin;
pub mod datastores;
pub mod events;
pub mod lifecycle;
pub mod migrate;
pub mod pipelines;
pub mod schedules;
pub mod serve;
pub mod sources;
pub mod subscriptions;
