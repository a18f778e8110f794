//! Datastores: where a pipeline's data paths are read from.
//!
//! A step reads local files, so a datastore's main job here is to give the local path of
//! a file it holds. The local folder datastore gives the file where it is; a remote one
//! (S3, Azure Blob, GCS) downloads it into a local cache and gives that, which is why
//! [`Datastore::resolve`] is async. Data path values can come from untrusted events, so
//! a path is always relative to the datastore's root and can never lead out of it
//! ([`relative_path`], the one check every kind applies). Datastores also list what
//! they hold ([`Datastore::list`], bounded), which data change schedules poll.
//!
//! - [`folder`]: local folders, and the built-in `workspaceblobstore`.
//! - [`location`]: where a file is, as a data-arrival event tells it (container, URL).
//! - [`remote`]: datastores behind the object_store crate, with their download cache.
//! - [`secrets`]: stored credentials, sealed under a key of the server's.
//! - [`registry`]: registering datastores (checked and reached before anything is
//!   stored), and each workspace's [`Datastores`] built from what is registered.

pub mod folder;
pub mod location;
pub mod registry;
pub mod remote;
pub mod secrets;

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

pub use folder::FolderDatastore;

/// The datastore every workspace has, a folder under the data directory.
pub const WORKSPACE_BLOB_STORE: &str = "workspaceblobstore";

/// At most this many objects are listed by one [`Datastore::list`]; a listing cut there
/// says so ([`Listing::truncated`]), and the caller lists narrower prefixes.
pub const LIST_LIMIT: usize = 10_000;

/// Why a datastore could not give a file, saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    #[error("datastore `{datastore}` cannot take the path `{path}`: {reason}")]
    InvalidPath {
        datastore: String,
        path: String,
        reason: &'static str,
    },
    #[error("datastore `{datastore}` has no file `{path}`: upload it there, or assign a path that exists")]
    NotFound { datastore: String, path: String },
    #[error(
        "datastore `{datastore}`: the path `{path}` leads outside the datastore through a symbolic link; \
         put the file itself in the datastore"
    )]
    Escapes { datastore: String, path: String },
    #[error("workspace `{workspace}` has no datastore `{name}`; use one of its datastores: {}", .known.join(", "))]
    Unknown {
        workspace: String,
        name: String,
        known: Vec<String>,
    },
    #[error("datastore `{datastore}`, path `{path}`: {source}")]
    Io {
        datastore: String,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The service behind a remote datastore failed or did not answer.
    #[error("datastore `{datastore}` cannot be reached: {reason}")]
    Unreachable { datastore: String, reason: String },
    #[error(
        "datastore `{datastore}`: the file `{path}` has {size} bytes, more than the {limit} bytes a data path \
         may have; split it, or read it in the step itself"
    )]
    TooLarge {
        datastore: String,
        path: String,
        size: u64,
        limit: u64,
    },
}

/// One object (file) a datastore holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the datastore's root, `/`-separated.
    pub path: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    /// The service's version tag of the object's content, when it has one.
    pub e_tag: Option<String>,
}

/// What one [`Datastore::list`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<ObjectInfo>,
    /// More objects matched than [`LIST_LIMIT`]: only the first are in `objects`.
    pub truncated: bool,
}

/// A place data paths are read from.
#[async_trait]
pub trait Datastore: Send + Sync {
    fn name(&self) -> &str;

    /// The local path of the file or folder at `path`, relative to the datastore's root.
    async fn resolve(&self, path: &str) -> Result<PathBuf, DatastoreError>;

    /// Whether `path` names a file the datastore could resolve, without fetching it: what
    /// a submission checks.
    async fn check(&self, path: &str) -> Result<(), DatastoreError> {
        self.resolve(path).await.map(drop)
    }

    /// The files under `prefix` (a folder relative to the root, `""` for the root
    /// itself): only those directly in it, or with `recursive` those below too. At most
    /// [`LIST_LIMIT`].
    async fn list(&self, prefix: &str, recursive: bool) -> Result<Listing, DatastoreError>;
}

/// `path` checked to stay below a datastore's root by its text: relative, without `..`,
/// naming something. Every kind of datastore takes paths through this one check.
pub fn relative_path(datastore: &str, path: &str) -> Result<PathBuf, DatastoreError> {
    let relative = relative_prefix(datastore, path)?;
    if relative.as_os_str().is_empty() {
        return Err(DatastoreError::InvalidPath {
            datastore: datastore.to_owned(),
            path: path.to_owned(),
            reason: "it names no file; give the path of a file or folder in the datastore",
        });
    }
    Ok(relative)
}

/// [`relative_path`] for a folder to list, which may be the root (empty).
pub(crate) fn relative_prefix(datastore: &str, path: &str) -> Result<PathBuf, DatastoreError> {
    let invalid = |reason| DatastoreError::InvalidPath {
        datastore: datastore.to_owned(),
        path: path.to_owned(),
        reason,
    };
    if path.contains('\0') {
        return Err(invalid("it contains a NUL byte"));
    }
    let mut relative = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(invalid("`..` is not allowed; give the path from the datastore's root"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(
                    "it is absolute; give the path relative to the datastore's root, without a leading `/`",
                ));
            }
        }
    }
    Ok(relative)
}

/// A checked relative path as an object store's path.
fn object_path(relative: &Path) -> ObjectPath {
    ObjectPath::from_iter(relative.iter().map(|part| part.to_string_lossy().into_owned()))
}

/// The listing of an object store under `prefix`, bounded by [`LIST_LIMIT`]; what every
/// kind of datastore lists through (folders through object_store's local file system).
async fn list_objects(
    store: &dyn ObjectStore,
    datastore: &str,
    prefix: &str,
    recursive: bool,
) -> Result<Listing, DatastoreError> {
    let relative = relative_prefix(datastore, prefix)?;
    let location = (!relative.as_os_str().is_empty()).then(|| object_path(&relative));
    let failed = |e: object_store::Error| DatastoreError::Unreachable {
        datastore: datastore.to_owned(),
        reason: format!("listing `{prefix}` failed: {e}"),
    };
    let mut metas = if recursive {
        store
            .list(location.as_ref())
            .take(LIST_LIMIT + 1)
            .try_collect::<Vec<_>>()
            .await
            .map_err(failed)?
    } else {
        store
            .list_with_delimiter(location.as_ref())
            .await
            .map_err(failed)?
            .objects
    };
    let truncated = metas.len() > LIST_LIMIT;
    metas.truncate(LIST_LIMIT);
    let objects = metas
        .into_iter()
        .map(|meta| ObjectInfo {
            path: meta.location.to_string(),
            size: meta.size,
            last_modified: meta.last_modified,
            e_tag: meta.e_tag,
        })
        .collect();
    Ok(Listing { objects, truncated })
}

/// The datastores of one workspace: the built-in `workspaceblobstore`, a folder under the
/// data directory, and any registered with [`Datastores::with`].
pub struct Datastores {
    workspace: String,
    by_name: BTreeMap<String, Arc<dyn Datastore>>,
}

impl Datastores {
    pub fn new(layout: &crate::layout::DataLayout, workspace: &str) -> Result<Datastores, crate::LayoutError> {
        Ok(Datastores {
            workspace: workspace.to_owned(),
            by_name: [(
                WORKSPACE_BLOB_STORE.to_owned(),
                Arc::new(folder::BuiltIn::new(layout)?) as Arc<dyn Datastore>,
            )]
            .into(),
        })
    }

    /// Adds a datastore, replacing one of the same name (the built-in one too: a server
    /// may keep `workspaceblobstore` in an object store).
    pub fn with(mut self, datastore: Arc<dyn Datastore>) -> Datastores {
        self.by_name.insert(datastore.name().to_owned(), datastore);
        self
    }

    /// The names of the workspace's datastores, sorted.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The datastore named `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Datastore>, DatastoreError> {
        self.by_name.get(name).ok_or_else(|| DatastoreError::Unknown {
            workspace: self.workspace.clone(),
            name: name.to_owned(),
            known: self.names(),
        })
    }

    /// The local path of `path` on the datastore named `datastore`.
    pub async fn resolve(&self, datastore: &str, path: &str) -> Result<PathBuf, DatastoreError> {
        self.get(datastore)?.resolve(path).await
    }

    /// Whether `path` is a file of the datastore named `datastore` (fetching nothing).
    pub async fn check(&self, datastore: &str, path: &str) -> Result<(), DatastoreError> {
        self.get(datastore)?.check(path).await
    }
}
