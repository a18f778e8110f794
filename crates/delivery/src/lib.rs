//! Getting events to the subscribers that asked for them.
//!
//! - The [`Fanout`] follows every source's event log and records, for each event, the
//!   subscriptions whose filters it matches (a delivery each). It is a resumable step:
//!   its position in each log (the cursor) moves in the same transaction that records
//!   the matches, so after a crash it goes on where it stopped and records nothing twice.
//! - The [`Catalog`] holds a node's subscriptions, typed, read again only when they
//!   change; the fan-out, the dispatcher and the exporter share it.
//! - The [`Dispatcher`] claims due deliveries with a lease, sends them in batches to their
//!   destinations (webhooks, with Event Grid's headers), and records every attempt:
//!   delivered, retried on Event Grid's schedule, or dead-lettered.
//! - The [`DeadLetterExporter`] writes dead letters to the datastore folder their
//!   subscription names.
//! - Every request is signed the Standard Webhooks way ([`sign`]) with the subscription's
//!   secret, which [`WebhookSecrets`] derives from the server secret.
//! - The [`Validator`] sends Event Grid's endpoint validation handshake before a webhook
//!   subscription receives anything, and [`Handshakes`] makes the state changes it
//!   decides.
//! - The [`AddressPolicy`] keeps webhooks away from metadata, private and loopback
//!   addresses unless allowed.
//! - The [`Clock`] is the time expiry, the validation window and leases go by: the
//!   system's, or in tests a [`ManualClock`] that stands still until moved.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn mlgrid_store::Store>, secrets: std::sync::Arc<dyn mlgrid_delivery::WebhookSecrets>) {
//! use mlgrid_delivery::{Dispatcher, DispatcherConfig, Fanout};
//!
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let fanout = tokio::spawn(Fanout::new(store.clone(), chrono::Duration::minutes(5)).run(shutdown.clone()));
//! let dispatcher = Dispatcher::new(store, DispatcherConfig::default(), secrets).unwrap();
//! let delivery = tokio::spawn(dispatcher.run(shutdown.clone()));
//! // ... serve ...
//! shutdown.cancel();
//! fanout.await.unwrap();
//! delivery.await.unwrap();
//! # }
//! ```

mod address_guard;
mod catalog;
mod clock;
mod dead_letters;
mod destination;
mod dispatcher;
mod fanout;
#[cfg(test)]
mod fixture;
mod http;
mod signature;
mod validation;

pub use address_guard::AddressPolicy;
pub use catalog::{Catalog, Subscriptions};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, system_clock};
pub use dead_letters::{DeadLetterExporter, ExportProblems, dead_letter_record};
pub use destination::pipeline::{Launch, LaunchError, PipelineLauncher};
pub use dispatcher::{Dispatcher, DispatcherConfig};
pub use fanout::Fanout;
pub use signature::{WebhookSecrets, sign};
pub use validation::{HandshakeError, HandshakeRequest, Handshakes, Validator, needs_handshake};
