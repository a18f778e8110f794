//! Getting events to the subscribers that asked for them.
//!
//! The [`Fanout`] follows every source's event log and records, for each event, the
//! subscriptions whose filters it matches (a delivery each). It is a resumable step:
//! its position in each log (the cursor) moves in the same transaction that records
//! the matches, so after a crash it goes on where it stopped and records nothing twice.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn mlgrid_store::Store>) {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let fanout = tokio::spawn(mlgrid_delivery::Fanout::new(store).run(shutdown.clone()));
//! // ... serve ...
//! shutdown.cancel();
//! fanout.await.unwrap();
//! # }
//! ```

mod fanout;

pub use fanout::Fanout;
