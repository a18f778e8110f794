//! One module per command group.

pub mod events;
pub mod serve;
pub mod sources;
