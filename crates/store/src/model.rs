//! What the store keeps: sources, principals, keys and events.

use chrono::{DateTime, Utc};
use mlgrid_core::EventSchema;
use mlgrid_core::resource::{SourceKind, resource_path};
use mlgrid_core::retention::{LogEntry, Retention, RetentionSpan};
use serde::{Deserialize, Serialize};

/// Store-assigned id of a source: a number of its own type, so that it is never passed
/// where a subscription's or a principal's id is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct SourceId(pub i64);

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Store-assigned id of a principal.
pub type PrincipalId = i64;

/// A workspace or custom topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: SourceId,
    pub kind: SourceKind,
    pub name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub created_at: DateTime<Utc>,
    /// Sequence number of the newest event, 0 when there is none.
    pub last_sequence: u64,
    /// The retention the source set for itself (unset parts take the server's).
    pub retention: SourceRetention,
    /// Events up to this sequence are pruned: reads start after it.
    pub pruned_through: u64,
    /// Bytes of the bodies of the source's stored events.
    pub stored_bytes: u64,
}

impl Source {
    /// The resource path that is the `topic` of this source's events.
    pub fn topic(&self) -> String {
        resource_path(self.kind, &self.subscription_id, &self.resource_group, &self.name)
    }
}

/// What is needed to create a source.
#[derive(Debug, Clone)]
pub struct NewSource {
    pub kind: SourceKind,
    pub name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub retention: SourceRetention,
}

/// A source's own retention: `time` unset takes the server's default, `max_bytes` unset
/// sets no size limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceRetention {
    pub time: Option<RetentionSpan>,
    pub max_bytes: Option<u64>,
}

impl SourceRetention {
    /// The retention that applies, with the server's default time.
    pub fn resolve(&self, default_time: RetentionSpan) -> Retention {
        Retention {
            time: self.time.unwrap_or(default_time),
            max_bytes: self.max_bytes,
        }
    }
}

/// The old end of a source's log, as retention judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogHead {
    pub pruned_through: u64,
    pub stored_bytes: u64,
    /// Events up to here need no more routing: the fan-out's cursor, or the earliest
    /// start of the source's subscriptions (its last sequence when it has none).
    pub routed_through: u64,
    /// The oldest events after the asked sequence (and after `pruned_through`), in order.
    pub entries: Vec<LogEntry>,
}

/// What one pruning batch of a log removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedEvents {
    pub events: u64,
    pub bytes: u64,
    /// The source's mark after the batch.
    pub pruned_through: u64,
}

/// Finished deliveries and attempts older than these may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCutoffs {
    pub delivered_before: DateTime<Utc>,
    pub dead_before: DateTime<Utc>,
    pub attempts_before: DateTime<Utc>,
}

/// Delivery history of one source that was (or would be) pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryCounts {
    /// Delivered deliveries.
    pub deliveries: u64,
    pub dead_letters: u64,
    pub attempts: u64,
}

impl HistoryCounts {
    pub fn add(&mut self, other: HistoryCounts) {
        self.deliveries += other.deliveries;
        self.dead_letters += other.dead_letters;
        self.attempts += other.attempts;
    }
}

/// Which of a topic's two access keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyName {
    Key1,
    Key2,
}

impl KeyName {
    pub const BOTH: [KeyName; 2] = [KeyName::Key1, KeyName::Key2];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyName::Key1 => "key1",
            KeyName::Key2 => "key2",
        }
    }

    pub fn parse(s: &str) -> Option<KeyName> {
        KeyName::BOTH.into_iter().find(|k| k.as_str() == s)
    }
}

/// A topic access key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicKey {
    pub name: KeyName,
    /// Random salt from which the key is derived with the server secret.
    pub salt: String,
    /// Hex SHA-256 of the key.
    pub hash: String,
}

/// A holder of API keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub id: PrincipalId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An API key as stored: its public id and the hash of the whole key.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyHash {
    pub key_id: String,
    pub hash: String,
}

/// Roles granted on workspaces and topics, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Owner,
    Contributor,
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Contributor => "Contributor",
            Role::Reader => "Reader",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Owner, Role::Contributor, Role::Reader]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }
}

/// A role granted to a principal, on one source or (when `source_id` is `None`) on all.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleAssignment {
    pub principal_id: PrincipalId,
    pub source_id: Option<SourceId>,
    pub role: Role,
}

/// A role assignment with the names it refers to, for listing.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleGrant {
    pub id: i64,
    pub principal: String,
    /// The source the role is held on; `None` for every source.
    pub source: Option<(SourceKind, String)>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A principal with how many API keys it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct PrincipalSummary {
    pub principal: Principal,
    pub keys: u64,
}

/// An event to append to a source's log.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub schema: EventSchema,
    pub event_type: String,
    pub subject: String,
    /// The event as JSON in its schema.
    pub body: String,
}

impl From<&mlgrid_core::Event> for NewEvent {
    fn from(event: &mlgrid_core::Event) -> Self {
        NewEvent {
            id: event.id().to_owned(),
            schema: event.schema(),
            event_type: event.event_type().to_owned(),
            subject: event.subject().to_owned(),
            body: event.to_json(),
        }
    }
}

/// An event in a source's log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the source's log: 1, 2, 3, ... with no gaps.
    pub sequence: u64,
    pub id: String,
    pub schema: EventSchema,
    pub event_type: String,
    pub subject: String,
    /// When the store accepted the event.
    pub published_at: DateTime<Utc>,
    pub body: String,
}

/// The sequence numbers given to a batch of appended events: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    pub first_sequence: u64,
    pub last_sequence: u64,
}
