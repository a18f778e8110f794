//! Storage for mlgrid: one [`Store`] trait, and its implementations.
//!
//! The store keeps event sources (workspaces and custom topics), principals with their
//! hashed API keys and roles, topic access keys (hashed), and each source's append-only
//! event log with a gap-free, increasing sequence number.
//!
//! **Invariant:** when a write call returns `Ok`, what it wrote is on disk (committed
//! and fsync'd). Callers acknowledge nothing to anyone before that.
//!
//! [`SqliteStore`] is the embedded implementation: WAL mode, `synchronous=FULL`, and
//! one writer task that commits concurrent writes together (group commit), so that one
//! fsync covers many requests.
//!
//! ```no_run
//! # async fn demo() -> mlgrid_store::Result<()> {
//! use mlgrid_core::resource::SourceKind;
//! use mlgrid_store::{NewSource, SqliteStore, Store};
//!
//! let store = SqliteStore::open("mlgrid-data/mlgrid.db").await?;
//! let topic = store
//!     .create_source(&NewSource {
//!         kind: SourceKind::Topic,
//!         name: "orders".into(),
//!         subscription_id: "sub".into(),
//!         resource_group: "rg".into(),
//!     }, &[])
//!     .await?;
//! assert_eq!(topic.last_sequence, 0);
//! store.close().await;
//! # Ok(()) }
//! ```

mod error;
mod model;
mod sqlite;

use async_trait::async_trait;
use mlgrid_core::resource::SourceKind;
use tokio::sync::watch;

pub use error::{Result, StoreError};
pub use model::*;
pub use sqlite::SqliteStore;

/// Largest page of events one read returns.
pub const MAX_READ_LIMIT: u32 = 10_000;

/// Everything mlgrid keeps, behind one interface; held as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates the first principal, named `name`, as Owner of everything, with `key`;
    /// does nothing and returns `false` if any principal exists.
    async fn create_bootstrap_owner(&self, name: &str, key: &ApiKeyHash) -> Result<bool>;

    /// Whether any principal exists.
    async fn has_principals(&self) -> Result<bool>;

    /// The principal holding the API key with this public id, and the key's hash.
    async fn principal_by_key_id(&self, key_id: &str) -> Result<Option<(Principal, ApiKeyHash)>>;

    /// Every role the principal holds.
    async fn role_assignments(&self, principal: PrincipalId) -> Result<Vec<RoleAssignment>>;

    /// Creates a source with its access keys (topics have two, workspaces none).
    async fn create_source(&self, new: &NewSource, keys: &[TopicKey]) -> Result<Source>;

    async fn source(&self, kind: SourceKind, name: &str) -> Result<Source>;

    async fn list_sources(&self, kind: SourceKind) -> Result<Vec<Source>>;

    /// Deletes a source with its keys, roles and events.
    async fn delete_source(&self, kind: SourceKind, name: &str) -> Result<()>;

    async fn topic_keys(&self, source: SourceId) -> Result<Vec<TopicKey>>;

    /// Replaces one access key of a topic.
    async fn replace_topic_key(&self, source: SourceId, key: &TopicKey) -> Result<()>;

    /// Appends events to a source's log and returns the sequence numbers they got, in
    /// order. All or none are appended.
    async fn append_events(&self, source: SourceId, events: Vec<NewEvent>)
    -> Result<AppendReceipt>;

    /// Events of a source with a sequence number above `after`, oldest first, at most
    /// `limit` (capped at [`MAX_READ_LIMIT`]).
    async fn read_events(
        &self,
        source: SourceId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// A counter that changes after every commit that appended events: wait on it to
    /// follow logs without polling.
    fn appended(&self) -> watch::Receiver<u64>;

    /// Finishes queued writes and closes the database. Writes after this fail with
    /// [`StoreError::Closed`].
    async fn close(&self);
}
