//! What both backends share about access: the rules that keep someone able to manage
//! mlgrid, and the offline recovery of an Owner when nobody is.

use std::path::Path;

use crate::error::Result;
use crate::model::ApiKeyHash;

/// Why the last usable Owner of everything keeps its role.
pub(crate) const LAST_OWNER_ROLE: &str = "this is the last Owner of all workspaces and topics with a usable key; \
     grant Owner on all workspaces and topics to another principal first";

/// Why the last usable Owner of everything keeps its keys, and what to do instead.
pub(crate) fn last_owner_keys(name: &str) -> String {
    format!(
        "principal `{name}` is the last Owner of all workspaces and topics with a usable key: revoking its keys \
         would lock everyone out. Create another Owner first (create a principal, grant it Owner on all \
         workspaces and topics, and check that its key works), then revoke these keys"
    )
}

/// Where [`recover_owner`] writes: the embedded database file, or a PostgreSQL URL.
#[derive(Debug, Clone, Copy)]
pub enum RecoveryTarget<'a> {
    /// The SQLite database file (`<data-dir>/mlgrid.db`).
    Sqlite(&'a Path),
    /// The PostgreSQL database the nodes share.
    Postgres(&'a str),
}

/// What [`recover_owner`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The principal that holds the new key and Owner on everything.
    pub principal: String,
    /// Whether the principal was created (`false`: it existed and got one more key).
    pub created: bool,
}

/// Gives the principal `name` (created if missing) the API key `key` and Owner on every
/// workspace and topic, in one transaction: the way back in when no Owner has a usable
/// key. For someone with access to the database's files or its PostgreSQL role, not an
/// API call.
///
/// It writes straight to the database, beside a running server or a stopped one, and
/// does not migrate or open the store: on SQLite it takes neither the data directory's
/// lock file (which a running server holds, and which only says that one server uses
/// the database) nor anything but SQLite's own write lock, for one short transaction,
/// waiting up to 30 s for the server's writer like another writer would. Servers read a
/// caller's key and roles from the database on every call, so the key works at once.
pub async fn recover_owner(target: RecoveryTarget<'_>, name: &str, key: &ApiKeyHash) -> Result<Recovered> {
    match target {
        RecoveryTarget::Sqlite(path) => crate::sqlite::recover_owner(path, name, key).await,
        RecoveryTarget::Postgres(url) => crate::postgres::recover_owner(url, name, key).await,
    }
}
