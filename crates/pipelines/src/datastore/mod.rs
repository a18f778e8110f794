//! Datastores: where a pipeline's data paths are read from.
//!
//! A step reads local files, so a datastore's one job here is to give the local path of
//! a file it holds. The local folder datastore gives the file where it is; a remote one
//! (S3, Azure Blob, GCS) will download it into a local cache and give that, which is why
//! [`Datastore::resolve`] is async. Data path values can come from untrusted events, so
//! a path is always relative to the datastore's root and can never lead out of it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::layout::{DataLayout, LayoutError};

/// The datastore every workspace has, a folder under the data directory.
pub const WORKSPACE_BLOB_STORE: &str = "workspaceblobstore";

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
}

/// A place data paths are read from.
#[async_trait]
pub trait Datastore: Send + Sync {
    fn name(&self) -> &str;

    /// The local path of the file or folder at `path`, relative to the datastore's root.
    async fn resolve(&self, path: &str) -> Result<PathBuf, DatastoreError>;
}

/// A datastore that is a local folder.
#[derive(Debug, Clone)]
pub struct FolderDatastore {
    name: String,
    root: PathBuf,
}

impl FolderDatastore {
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> FolderDatastore {
        FolderDatastore {
            name: name.into(),
            root: root.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` checked to stay below the root by its text: relative, without `..`.
    fn relative(&self, path: &str) -> Result<PathBuf, DatastoreError> {
        let invalid = |reason| DatastoreError::InvalidPath {
            datastore: self.name.clone(),
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
        if relative.as_os_str().is_empty() {
            return Err(invalid(
                "it names no file; give the path of a file or folder in the datastore",
            ));
        }
        Ok(relative)
    }
}

#[async_trait]
impl Datastore for FolderDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    /// The canonical path of the file, which must exist and, symbolic links followed,
    /// still be inside the root.
    async fn resolve(&self, path: &str) -> Result<PathBuf, DatastoreError> {
        let relative = self.relative(path)?;
        let failed = |source: io::Error| {
            if source.kind() == io::ErrorKind::NotFound {
                DatastoreError::NotFound {
                    datastore: self.name.clone(),
                    path: path.to_owned(),
                }
            } else {
                DatastoreError::Io {
                    datastore: self.name.clone(),
                    path: path.to_owned(),
                    source,
                }
            }
        };
        let root = tokio::fs::canonicalize(&self.root).await.map_err(failed)?;
        let file = tokio::fs::canonicalize(root.join(relative)).await.map_err(failed)?;
        if !file.starts_with(&root) {
            return Err(DatastoreError::Escapes {
                datastore: self.name.clone(),
                path: path.to_owned(),
            });
        }
        Ok(file)
    }
}

/// The built-in datastore: a folder datastore whose folder is made when first used.
struct BuiltIn(FolderDatastore);

#[async_trait]
impl Datastore for BuiltIn {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn resolve(&self, path: &str) -> Result<PathBuf, DatastoreError> {
        tokio::fs::create_dir_all(self.0.root())
            .await
            .map_err(|source| DatastoreError::Io {
                datastore: self.0.name().to_owned(),
                path: path.to_owned(),
                source,
            })?;
        self.0.resolve(path).await
    }
}

/// The datastores of one workspace: the built-in `workspaceblobstore`, a folder under the
/// data directory, and any registered with [`Datastores::with`].
pub struct Datastores {
    workspace: String,
    by_name: BTreeMap<String, Arc<dyn Datastore>>,
}

impl Datastores {
    pub fn new(layout: &DataLayout, workspace: &str) -> Result<Datastores, LayoutError> {
        let built_in = FolderDatastore::new(WORKSPACE_BLOB_STORE, layout.datastore(WORKSPACE_BLOB_STORE)?);
        Ok(Datastores {
            workspace: workspace.to_owned(),
            by_name: [(
                WORKSPACE_BLOB_STORE.to_owned(),
                Arc::new(BuiltIn(built_in)) as Arc<dyn Datastore>,
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

    /// The local path of `path` on the datastore named `datastore`.
    pub async fn resolve(&self, datastore: &str, path: &str) -> Result<PathBuf, DatastoreError> {
        match self.by_name.get(datastore) {
            Some(store) => store.resolve(path).await,
            None => Err(DatastoreError::Unknown {
                workspace: self.workspace.clone(),
                name: datastore.to_owned(),
                known: self.names(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_file() -> (tempfile::TempDir, FolderDatastore) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir_all(root.join("raw")).unwrap();
        std::fs::write(root.join("raw/latest.csv"), "a,b\n1,2\n").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
        (dir, FolderDatastore::new("local", root))
    }

    #[tokio::test]
    async fn a_relative_path_resolves_to_the_file_inside() {
        let (_dir, store) = store_with_file();
        let file = store.resolve("raw/latest.csv").await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "a,b\n1,2\n");
        assert!(file.is_absolute());
        assert_eq!(store.resolve("./raw/latest.csv").await.unwrap(), file);
    }

    #[tokio::test]
    async fn paths_out_of_the_root_are_refused() {
        let (dir, store) = store_with_file();
        let absolute = dir.path().join("secret.txt");
        for (path, says) in [
            ("../secret.txt", "`..` is not allowed"),
            ("raw/../../secret.txt", "`..` is not allowed"),
            (absolute.to_str().unwrap(), "it is absolute"),
            ("", "names no file"),
            (".", "names no file"),
            ("a\0b", "NUL"),
        ] {
            let error = store.resolve(path).await.unwrap_err();
            assert!(matches!(error, DatastoreError::InvalidPath { .. }), "{path:?}: {error}");
            assert!(error.to_string().contains(says), "{path:?}: {error}");
        }
    }

    #[tokio::test]
    async fn a_symbolic_link_out_of_the_root_is_refused() {
        let (dir, store) = store_with_file();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), store.root().join("raw/link.csv")).unwrap();
        std::os::unix::fs::symlink(dir.path(), store.root().join("up")).unwrap();
        for path in ["raw/link.csv", "up/secret.txt"] {
            let error = store.resolve(path).await.unwrap_err();
            assert!(matches!(error, DatastoreError::Escapes { .. }), "{path}: {error}");
            assert!(error.to_string().contains("leads outside the datastore"), "{error}");
        }
        std::os::unix::fs::symlink("latest.csv", store.root().join("raw/alias.csv")).unwrap();
        assert!(
            store.resolve("raw/alias.csv").await.is_ok(),
            "a link inside the root is fine"
        );
    }

    #[tokio::test]
    async fn a_missing_file_names_the_datastore_and_path() {
        let (_dir, store) = store_with_file();
        let error = store.resolve("raw/missing.csv").await.unwrap_err();
        assert!(matches!(error, DatastoreError::NotFound { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "datastore `local` has no file `raw/missing.csv`: upload it there, or assign a path that exists"
        );
    }

    #[tokio::test]
    async fn the_workspace_blob_store_is_made_on_first_use_and_unknown_names_list_the_known() {
        let data = tempfile::tempdir().unwrap();
        let layout = DataLayout::new(data.path());
        let (_other_dir, other) = store_with_file();
        let datastores = Datastores::new(&layout, "ws1").unwrap().with(Arc::new(other));
        let error = datastores.resolve(WORKSPACE_BLOB_STORE, "x.csv").await.unwrap_err();
        assert!(matches!(error, DatastoreError::NotFound { .. }), "{error}");
        let root = layout.datastore(WORKSPACE_BLOB_STORE).unwrap();
        assert!(root.is_dir(), "made on first use");
        std::fs::write(root.join("x.csv"), "1").unwrap();
        assert!(datastores.resolve(WORKSPACE_BLOB_STORE, "x.csv").await.is_ok());
        assert!(datastores.resolve("local", "raw/latest.csv").await.is_ok());
        let unknown = datastores.resolve("s3store", "x.csv").await.unwrap_err().to_string();
        assert_eq!(
            unknown,
            "workspace `ws1` has no datastore `s3store`; use one of its datastores: local, workspaceblobstore"
        );
    }

    #[tokio::test]
    async fn a_registered_datastore_may_stand_for_the_built_in_one() {
        let data = tempfile::tempdir().unwrap();
        let (_dir, elsewhere) = store_with_file();
        let replacement = FolderDatastore::new(WORKSPACE_BLOB_STORE, elsewhere.root());
        let datastores = Datastores::new(&DataLayout::new(data.path()), "ws1")
            .unwrap()
            .with(Arc::new(replacement));
        let file = datastores
            .resolve(WORKSPACE_BLOB_STORE, "raw/latest.csv")
            .await
            .unwrap();
        assert!(file.starts_with(elsewhere.root().canonicalize().unwrap()));
        assert_eq!(datastores.names(), [WORKSPACE_BLOB_STORE]);
    }
}
