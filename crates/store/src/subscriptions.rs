//! Event subscriptions as the store keeps them, and the matches the fan-out records.

use chrono::{DateTime, Utc};
use mlgrid_core::subscription::{ProvisioningState, SubscriptionSpec};

use crate::model::SourceId;

/// Store-assigned id of an event subscription: a number of its own type, so that it is
/// never passed where a source's id is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct SubscriptionId(pub i64);

impl std::fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An event subscription. Its definition is typed here: the store keeps it as JSON text,
/// parses it once when it reads the row (a row that does not parse is `Corrupt`), and
/// serializes it when it writes; the server validates it before storing.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSubscription {
    pub id: SubscriptionId,
    pub source_id: SourceId,
    pub name: String,
    /// The definition (Event Grid's `properties` a client sets).
    pub spec: SubscriptionSpec,
    /// `Succeeded`, or a state of the validation handshake.
    pub provisioning_state: ProvisioningState,
    /// When the subscription stops receiving and is removed.
    pub expires_at: Option<DateTime<Utc>>,
    /// It matches only events with a greater sequence: those published after it was
    /// created.
    pub start_sequence: u64,
    /// Its delivery rows up to this sequence were pruned: what it matched there is no
    /// longer listed.
    pub pruned_through: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub etag: String,
    /// The signing secret, as a salt the server secret derives it from.
    pub secret_salt: String,
    /// The secret before the last rotation, still signing until `previous_until`.
    pub previous_salt: Option<(String, DateTime<Utc>)>,
}

/// A subscription to create or replace.
#[derive(Debug, Clone)]
pub struct SubscriptionPut {
    pub name: String,
    pub spec: SubscriptionSpec,
    pub provisioning_state: ProvisioningState,
    pub expires_at: Option<DateTime<Utc>>,
    /// The signing secret's salt, used when the subscription is created (a replaced
    /// subscription keeps its secret).
    pub secret_salt: String,
}

/// A definition as the store keeps it: JSON text, read back by `subscription_from_row`.
pub(crate) fn spec_json(spec: &SubscriptionSpec) -> String {
    serde_json::to_string(spec).expect("a definition is strings, numbers and flags: it always serializes")
}

/// Matches the fan-out found in one stretch of a source's log.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedBatch {
    pub source: SourceId,
    /// The cursor the batch started from; recording fails (`Conflict`) if another
    /// router moved it meanwhile.
    pub from_sequence: u64,
    /// The last sequence routed: the new cursor.
    pub to_sequence: u64,
    /// (subscription, event sequence) pairs.
    pub matches: Vec<(SubscriptionId, u64)>,
    /// When set, the deliveries are created claimed until then: the router hands them
    /// to its own dispatcher directly, without a claim.
    pub lease_until: Option<DateTime<Utc>>,
}
