//! Event subscriptions as the store keeps them, and the matches the fan-out records.

use chrono::{DateTime, Utc};

use crate::model::SourceId;

/// Store-assigned id of an event subscription.
pub type SubscriptionId = i64;

/// An event subscription. The store keeps its definition as JSON text and does not
/// interpret it; the server validates it before storing.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSubscription {
    pub id: SubscriptionId,
    pub source_id: SourceId,
    pub name: String,
    /// The definition (Event Grid's `properties` a client sets), as JSON.
    pub spec: String,
    /// `Succeeded`, or a state of the validation handshake.
    pub provisioning_state: String,
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
    pub spec: String,
    pub provisioning_state: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// The signing secret's salt, used when the subscription is created (a replaced
    /// subscription keeps its secret).
    pub secret_salt: String,
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
