//! Local folder datastores, and the built-in `workspaceblobstore`, a folder of the data
//! directory made when first used.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use object_store::local::LocalFileSystem;

use super::{Datastore, DatastoreError, Listing, WORKSPACE_BLOB_STORE, list_objects, relative_path};
use crate::layout::{DataLayout, LayoutError};

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
}

#[async_trait]
impl Datastore for FolderDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    /// The canonical path of the file, which must exist and, symbolic links followed,
    /// still be inside the root.
    async fn resolve(&self, path: &str) -> Result<PathBuf, DatastoreError> {
        let relative = relative_path(&self.name, path)?;
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

    /// Listed through object_store's local file system, as remote datastores are.
    async fn list(&self, prefix: &str, recursive: bool) -> Result<Listing, DatastoreError> {
        let failed = |source: io::Error| DatastoreError::Io {
            datastore: self.name.clone(),
            path: prefix.to_owned(),
            source,
        };
        let root = tokio::fs::canonicalize(&self.root).await.map_err(failed)?;
        let files = LocalFileSystem::new_with_prefix(root).map_err(|e| failed(io::Error::other(e)))?;
        list_objects(&files, &self.name, prefix, recursive).await
    }
}

/// The built-in datastore: a folder datastore whose folder is made when first used.
pub(super) struct BuiltIn(FolderDatastore);

impl BuiltIn {
    pub(super) fn new(layout: &DataLayout) -> Result<BuiltIn, LayoutError> {
        Ok(BuiltIn(FolderDatastore::new(
            WORKSPACE_BLOB_STORE,
            layout.datastore(WORKSPACE_BLOB_STORE)?,
        )))
    }

    async fn made(&self, path: &str) -> Result<(), DatastoreError> {
        tokio::fs::create_dir_all(self.0.root())
            .await
            .map_err(|source| DatastoreError::Io {
                datastore: self.0.name().to_owned(),
                path: path.to_owned(),
                source,
            })
    }
}

#[async_trait]
impl Datastore for BuiltIn {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn resolve(&self, path: &str) -> Result<PathBuf, DatastoreError> {
        self.made(path).await?;
        self.0.resolve(path).await
    }

    async fn list(&self, prefix: &str, recursive: bool) -> Result<Listing, DatastoreError> {
        self.made(prefix).await?;
        self.0.list(prefix, recursive).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::{DatastoreError, Datastores, WORKSPACE_BLOB_STORE};
    use crate::layout::DataLayout;
    use std::sync::Arc;

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
