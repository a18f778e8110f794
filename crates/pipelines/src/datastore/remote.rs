//! Remote datastores (Azure Blob, S3, GCS) through the object_store crate.
//!
//! A step reads local files, so [`ObjectStoreDatastore::resolve`] downloads the object
//! into a cache under the data directory and gives the cached file. A cached file is
//! keyed by the datastore's registration, the object's path and its version (its e-tag,
//! else its time and size), so an object changed since is fetched again and an unchanged
//! one is not. The cache is bounded: one file may have at most [`MAX_FILE_BYTES`], a
//! download may take at most [`DOWNLOAD_TIMEOUT`], and after each download the least
//! recently fetched entries go until the datastore's cache holds at most
//! [`CACHE_LIMIT_BYTES`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Datastore, DatastoreError, Listing, list_objects, object_path, relative_path};

/// Largest file a data path may be.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Most a datastore's cache keeps after a download.
pub const CACHE_LIMIT_BYTES: u64 = 32 * 1024 * 1024 * 1024;
/// Longest a metadata request (the object's version, a listing) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a download may take.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A datastore in an object store, with a local cache of the files it resolved.
pub struct ObjectStoreDatastore {
    name: String,
    store: Arc<dyn ObjectStore>,
    /// The cache of this datastore's registration: a registration made again (another
    /// bucket, perhaps) gets another folder.
    cache: PathBuf,
}

impl ObjectStoreDatastore {
    /// `store` is rooted at the datastore's root (its prefix applied already).
    pub fn new(name: impl Into<String>, store: Arc<dyn ObjectStore>, cache: PathBuf) -> ObjectStoreDatastore {
        ObjectStoreDatastore {
            name: name.into(),
            store,
            cache,
        }
    }

    fn unreachable(&self, what: String) -> DatastoreError {
        DatastoreError::Unreachable {
            datastore: self.name.clone(),
            reason: what,
        }
    }

    fn io(&self, path: &str, source: io::Error) -> DatastoreError {
        DatastoreError::Io {
            datastore: self.name.clone(),
            path: path.to_owned(),
            source,
        }
    }

    /// The object's metadata, or `NotFound`.
    async fn head(&self, path: &str) -> Result<object_store::ObjectMeta, DatastoreError> {
        let location = object_path(&relative_path(&self.name, path)?);
        match tokio::time::timeout(REQUEST_TIMEOUT, self.store.head(&location)).await {
            Err(_) => Err(self.unreachable(format!("reading `{path}` took longer than {REQUEST_TIMEOUT:?}"))),
            Ok(Err(object_store::Error::NotFound { .. })) => Err(DatastoreError::NotFound {
                datastore: self.name.clone(),
                path: path.to_owned(),
            }),
            Ok(Err(e)) => Err(self.unreachable(format!("reading `{path}` failed: {e}"))),
            Ok(Ok(meta)) if meta.size > MAX_FILE_BYTES => Err(DatastoreError::TooLarge {
                datastore: self.name.clone(),
                path: path.to_owned(),
                size: meta.size,
                limit: MAX_FILE_BYTES,
            }),
            Ok(Ok(meta)) => Ok(meta),
        }
    }

    /// Downloads the object at `meta` into `partial`, checking its size.
    async fn download(
        &self,
        path: &str,
        meta: &object_store::ObjectMeta,
        partial: &Path,
    ) -> Result<(), DatastoreError> {
        let got = self
            .store
            .get(&meta.location)
            .await
            .map_err(|e| self.unreachable(format!("fetching `{path}` failed: {e}")))?;
        let mut file = tokio::fs::File::create(partial).await.map_err(|e| self.io(path, e))?;
        let mut stream = got.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(format!("fetching `{path}` failed: {e}")))?;
            written += chunk.len() as u64;
            if written > MAX_FILE_BYTES {
                return Err(DatastoreError::TooLarge {
                    datastore: self.name.clone(),
                    path: path.to_owned(),
                    size: written,
                    limit: MAX_FILE_BYTES,
                });
            }
            file.write_all(&chunk).await.map_err(|e| self.io(path, e))?;
        }
        file.sync_all().await.map_err(|e| self.io(path, e))?;
        if written != meta.size {
            return Err(self.unreachable(format!(
                "`{path}` changed while it was fetched ({written} bytes of {}); submit again",
                meta.size
            )));
        }
        Ok(())
    }
}

/// The cache entry of one version of one object: a hash of its path and version.
fn cache_key(meta: &object_store::ObjectMeta) -> String {
    let version = match &meta.e_tag {
        Some(e_tag) => format!("etag {e_tag}"),
        None => format!("time {} size {}", meta.last_modified.to_rfc3339(), meta.size),
    };
    let digest = Sha256::digest(format!("{}\n{version}", meta.location).as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl Datastore for ObjectStoreDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn resolve(&self, path: &str) -> Result<PathBuf, DatastoreError> {
        let meta = self.head(path).await?;
        let entry = self.cache.join(cache_key(&meta));
        let file_name = meta.location.filename().unwrap_or("data").to_owned();
        let file = entry.join(&file_name);
        if tokio::fs::metadata(&file).await.is_ok_and(|m| m.len() == meta.size) {
            // Touched, so that eviction takes the least recently used first.
            let _ = std::fs::File::open(&entry).and_then(|dir| dir.set_modified(std::time::SystemTime::now()));
            return Ok(file);
        }
        tokio::fs::create_dir_all(&self.cache)
            .await
            .map_err(|e| self.io(path, e))?;
        let partial = self.cache.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
        let fetched = tokio::time::timeout(DOWNLOAD_TIMEOUT, self.download(path, &meta, &partial)).await;
        let fetched = fetched.unwrap_or_else(|_| {
            Err(self.unreachable(format!("fetching `{path}` took longer than {DOWNLOAD_TIMEOUT:?}")))
        });
        if let Err(e) = fetched {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::create_dir_all(&entry).await.map_err(|e| self.io(path, e))?;
        tokio::fs::rename(&partial, &file).await.map_err(|e| self.io(path, e))?;
        let cache = self.cache.clone();
        let keep = entry.clone();
        let _ = tokio::task::spawn_blocking(move || evict(&cache, &keep, CACHE_LIMIT_BYTES)).await;
        Ok(file)
    }

    /// Only the object's metadata is read.
    async fn check(&self, path: &str) -> Result<(), DatastoreError> {
        self.head(path).await.map(drop)
    }

    async fn list(&self, prefix: &str, recursive: bool) -> Result<Listing, DatastoreError> {
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            list_objects(&*self.store, &self.name, prefix, recursive),
        )
        .await
        {
            Ok(listing) => listing,
            Err(_) => Err(self.unreachable(format!("listing `{prefix}` took longer than {REQUEST_TIMEOUT:?}"))),
        }
    }
}

/// Removes the least recently used entries of `cache` (but `keep`) until the entries
/// hold at most `limit` bytes. Best effort: a file in use by a step stays readable
/// through its open handle.
fn evict(cache: &Path, keep: &Path, limit: u64) -> io::Result<()> {
    let mut entries = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(cache)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let mut size = 0;
        for file in std::fs::read_dir(entry.path())? {
            size += file?.metadata()?.len();
        }
        total += size;
        entries.push((entry.metadata()?.modified()?, entry.path(), size));
    }
    entries.sort();
    for (_, path, size) in entries {
        if total <= limit {
            break;
        }
        if path != keep {
            std::fs::remove_dir_all(&path)?;
            total -= size;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    async fn datastore() -> (tempfile::TempDir, Arc<InMemory>, ObjectStoreDatastore) {
        let cache = tempfile::tempdir().unwrap();
        let memory = Arc::new(InMemory::new());
        memory
            .put(&"raw/latest.csv".into(), PutPayload::from_static(b"a,b\n1,2\n"))
            .await
            .unwrap();
        let store = ObjectStoreDatastore::new("lake", memory.clone(), cache.path().join("lake"));
        (cache, memory, store)
    }

    #[tokio::test]
    async fn a_remote_file_is_fetched_once_and_again_when_it_changes() {
        let (_cache, memory, store) = datastore().await;
        let first = store.resolve("raw/latest.csv").await.unwrap();
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "a,b\n1,2\n");
        assert!(first.ends_with("latest.csv"), "{first:?}");
        assert_eq!(store.resolve("./raw/latest.csv").await.unwrap(), first, "cached");
        memory
            .put(&"raw/latest.csv".into(), PutPayload::from_static(b"a,b\n3,4\n"))
            .await
            .unwrap();
        let second = store.resolve("raw/latest.csv").await.unwrap();
        assert_ne!(second, first);
        assert_eq!(std::fs::read_to_string(&second).unwrap(), "a,b\n3,4\n");
    }

    #[tokio::test]
    async fn remote_paths_follow_the_folder_rules() {
        let (_cache, _memory, store) = datastore().await;
        for (path, says) in [
            ("../secret.txt", "`..` is not allowed"),
            ("raw/../../x", "`..` is not allowed"),
            ("/etc/passwd", "it is absolute"),
            ("", "names no file"),
        ] {
            let error = store.resolve(path).await.unwrap_err();
            assert!(error.to_string().contains(says), "{path:?}: {error}");
        }
        let missing = store.resolve("raw/missing.csv").await.unwrap_err();
        assert!(matches!(missing, DatastoreError::NotFound { .. }), "{missing}");
        assert!(store.check("raw/latest.csv").await.is_ok());
    }

    #[tokio::test]
    async fn listings_are_flat_or_recursive() {
        let (_cache, memory, store) = datastore().await;
        memory
            .put(&"raw/2024/jan.csv".into(), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let flat = store.list("raw", false).await.unwrap();
        let paths: Vec<_> = flat.objects.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["raw/latest.csv"]);
        let deep = store.list("", true).await.unwrap();
        assert_eq!(deep.objects.len(), 2);
        assert!(!deep.truncated);
        assert!(deep.objects.iter().all(|o| o.e_tag.is_some()));
        assert!(store.list("..", true).await.is_err());
    }

    #[test]
    fn eviction_keeps_the_newest_entries_within_the_limit() {
        let cache = tempfile::tempdir().unwrap();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let dir = cache.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("f"), vec![0u8; 10]).unwrap();
            let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + i as u64);
            std::fs::File::open(&dir).unwrap().set_modified(when).unwrap();
        }
        evict(cache.path(), &cache.path().join("new"), 20).unwrap();
        assert!(!cache.path().join("old").exists());
        assert!(cache.path().join("mid").exists() && cache.path().join("new").exists());
    }
}
