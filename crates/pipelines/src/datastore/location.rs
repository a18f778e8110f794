//! Where a datastore's file is, as a blob event tells it: its container, its name in the
//! container, and its URL.
//!
//! Remote datastores name the real place: the Azure Blob container (the URL on the
//! account's endpoint, or on the datastore's own endpoint, such as Azurite's), the S3 or
//! GCS bucket (a virtual-hosted S3 URL, or path-style on a custom endpoint), and the
//! object's key with the datastore's prefix in front, as the service itself would name
//! it. A folder on the server (a `local` datastore, or the built-in
//! `workspaceblobstore`) has no container and no URL that another machine could open:
//! its container is the datastore's name and its URL
//! `mlgrid://{workspace}/datastores/{datastore}/{path}`, which names the file without
//! telling where on the server's disk it is.

use mlgrid_store::{DatastoreKind, StoredDatastore};
use url::Url;

/// A file's place, as `BlobCreated` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLocation {
    pub container: String,
    /// The name in the container: the datastore's prefix, then the path.
    pub blob: String,
    pub url: String,
}

/// The place of `path` (relative to the datastore's root) on the datastore `datastore`
/// of `workspace`, registered as `registered` (none for the built-in one).
pub fn blob_location(
    workspace: &str,
    datastore: &str,
    registered: Option<&StoredDatastore>,
    path: &str,
) -> BlobLocation {
    let on_server = || BlobLocation {
        container: datastore.to_owned(),
        blob: path.to_owned(),
        url: joined(&format!("mlgrid://{workspace}/datastores/{datastore}"), path),
    };
    let Some(registered) = registered.filter(|r| r.kind != DatastoreKind::Local) else {
        return on_server();
    };
    let settings = &registered.settings;
    let blob = match settings.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{path}"),
        _ => path.to_owned(),
    };
    let endpoint = settings.endpoint.as_deref().map(|e| e.trim_end_matches('/'));
    let (container, base) = match registered.kind {
        DatastoreKind::AzureBlob => {
            let container = settings.container.clone().unwrap_or_default();
            let account = settings.account.as_deref().unwrap_or_default();
            let base = match endpoint {
                Some(endpoint) => format!("{endpoint}/{container}"),
                None => format!("https://{account}.blob.core.windows.net/{container}"),
            };
            (container, base)
        }
        DatastoreKind::S3 => {
            let bucket = settings.bucket.clone().unwrap_or_default();
            let region = settings.region.as_deref().unwrap_or("us-east-1");
            let base = match endpoint {
                Some(endpoint) => format!("{endpoint}/{bucket}"),
                None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            };
            (bucket, base)
        }
        DatastoreKind::Gcs => {
            let bucket = settings.bucket.clone().unwrap_or_default();
            let base = format!("https://storage.googleapis.com/{bucket}");
            (bucket, base)
        }
        DatastoreKind::Local => return on_server(),
    };
    BlobLocation {
        url: joined(&base, &blob),
        container,
        blob,
    }
}

/// `base` with the `/`-separated `path` appended, each segment percent-encoded.
fn joined(base: &str, path: &str) -> String {
    match Url::parse(base) {
        Ok(mut url) => {
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.pop_if_empty().extend(path.split('/'));
            }
            url.to_string()
        }
        Err(_) => format!("{base}/{path}"),
    }
}

#[cfg(test)]
mod tests {
    use mlgrid_store::{CredentialSource, DatastoreSettings};

    use super::*;

    fn registered(kind: DatastoreKind, settings: DatastoreSettings) -> StoredDatastore {
        StoredDatastore {
            name: "lake".into(),
            kind,
            settings,
            credentials: CredentialSource::Environment,
            secret: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            etag: "e".into(),
        }
    }

    #[test]
    fn a_folder_is_its_own_container_with_an_mlgrid_url() {
        let at = blob_location("ws", "workspaceblobstore", None, "in/a b.csv");
        assert_eq!(at.container, "workspaceblobstore");
        assert_eq!(at.blob, "in/a b.csv");
        assert_eq!(at.url, "mlgrid://ws/datastores/workspaceblobstore/in/a%20b.csv");
    }

    #[test]
    fn remote_kinds_name_their_container_and_the_prefixed_object() {
        let azure = registered(
            DatastoreKind::AzureBlob,
            DatastoreSettings {
                account: Some("acct".into()),
                container: Some("data".into()),
                prefix: Some("/raw/".into()),
                ..DatastoreSettings::default()
            },
        );
        let at = blob_location("ws", "lake", Some(&azure), "in/a.csv");
        assert_eq!((at.container.as_str(), at.blob.as_str()), ("data", "raw/in/a.csv"));
        assert_eq!(at.url, "https://acct.blob.core.windows.net/data/raw/in/a.csv");

        let s3 = DatastoreSettings {
            bucket: Some("training".into()),
            region: Some("eu-west-1".into()),
            ..DatastoreSettings::default()
        };
        let at = blob_location("ws", "lake", Some(&registered(DatastoreKind::S3, s3.clone())), "a.csv");
        assert_eq!(at.url, "https://training.s3.eu-west-1.amazonaws.com/a.csv");
        let minio = DatastoreSettings {
            endpoint: Some("http://127.0.0.1:9000/".into()),
            ..s3
        };
        let at = blob_location("ws", "lake", Some(&registered(DatastoreKind::S3, minio)), "a.csv");
        assert_eq!(
            (at.container.as_str(), at.url.as_str()),
            ("training", "http://127.0.0.1:9000/training/a.csv")
        );

        let gcs = DatastoreSettings {
            bucket: Some("b".into()),
            ..DatastoreSettings::default()
        };
        let at = blob_location("ws", "lake", Some(&registered(DatastoreKind::Gcs, gcs)), "a.csv");
        assert_eq!(at.url, "https://storage.googleapis.com/b/a.csv");
    }
}
