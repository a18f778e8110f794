//! `mlgrid bench NAME`: reproducible performance figures.
//!
//! Every bench starts what it needs (a server on a free loopback port with a temporary
//! data directory) unless `--server` is given, reports progress on stderr, and prints
//! its result as one JSON object on the last line of stdout.

pub mod deliver;
pub mod filter;
pub mod local_server;
pub mod pipeline;
pub mod publish;
pub mod receivers;
pub mod schedules;
pub mod soak;
pub mod stats;
pub mod topic;
