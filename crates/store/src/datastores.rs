//! Registered datastores as the store keeps them: a workspace's named places to read
//! data from (a local folder, an Azure Blob container, an S3 or GCS bucket), their
//! non-secret settings, where their credentials come from, and a stored secret only as
//! the sealed text the server made of it (the store never sees a secret in the clear).
//!
//! A datastore in use cannot be deleted: [`DatastoreUsers`] are what refuse it, and the
//! error names them.

use std::fmt;

use chrono::{DateTime, Utc};
use mlgrid_core::pipeline::Pipeline;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::pipelines::PublishedPipeline;

/// What kind of place a datastore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatastoreKind {
    Local,
    AzureBlob,
    S3,
    Gcs,
}

impl DatastoreKind {
    pub const ALL: [DatastoreKind; 4] = [
        DatastoreKind::Local,
        DatastoreKind::AzureBlob,
        DatastoreKind::S3,
        DatastoreKind::Gcs,
    ];

    /// The name the API, the CLI and the database use.
    pub fn as_str(self) -> &'static str {
        match self {
            DatastoreKind::Local => "local",
            DatastoreKind::AzureBlob => "azureblob",
            DatastoreKind::S3 => "s3",
            DatastoreKind::Gcs => "gcs",
        }
    }

    pub fn parse(text: &str) -> Option<DatastoreKind> {
        DatastoreKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Where a datastore's credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    /// A secret given when the datastore was created, kept sealed.
    Stored,
    /// The server's own environment (the object store client's usual variables).
    Environment,
    /// None are needed: a local folder.
    None,
}

impl CredentialSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialSource::Stored => "stored",
            CredentialSource::Environment => "environment",
            CredentialSource::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<CredentialSource> {
        [
            CredentialSource::Stored,
            CredentialSource::Environment,
            CredentialSource::None,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }
}

/// A datastore's settings that are not secret, each used by some kinds only (the
/// datastore service checks which a kind needs). Kept as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreSettings {
    /// A local datastore's folder, absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// An Azure storage account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// An Azure Blob container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// An S3 or GCS bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// An S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The service's URL, when not the cloud's own (an S3-compatible server, Azurite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The folder inside the bucket or container that is the datastore's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A secret as the server sealed it: opaque text the store keeps as it is. Its `Debug`
/// shows nothing of it, so that a logged datastore shows no ciphertext either.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(pub String);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(<redacted>)")
    }
}

/// A datastore to register.
#[derive(Debug, Clone)]
pub struct NewDatastore {
    pub name: String,
    pub kind: DatastoreKind,
    pub settings: DatastoreSettings,
    pub credentials: CredentialSource,
    /// Present exactly when `credentials` is [`CredentialSource::Stored`].
    pub secret: Option<SealedSecret>,
}

/// A registered datastore.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDatastore {
    pub name: String,
    pub kind: DatastoreKind,
    pub settings: DatastoreSettings,
    pub credentials: CredentialSource,
    pub secret: Option<SealedSecret>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub etag: String,
}

/// What uses a datastore, and so keeps it from being deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatastoreUsers {
    /// Enabled pipelines with a data path on the datastore, as `name` version `v` (`id`).
    pub pipelines: Vec<String>,
    /// Change schedules that watch it, enabled or not (a disabled one would fail when
    /// enabled again), by name.
    pub schedules: Vec<String>,
    /// Datastore watches of it, by name.
    pub watches: Vec<String>,
}

impl DatastoreUsers {
    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty() && self.schedules.is_empty() && self.watches.is_empty()
    }

    /// The refusal of a delete, naming every user and how to free the datastore.
    pub(crate) fn refusal(&self, datastore: &str) -> StoreError {
        let mut users = Vec::new();
        if !self.pipelines.is_empty() {
            users.push(format!(
                "pipelines {} have data paths on it (disable them: `mlgrid pipeline disable`)",
                self.pipelines.join(", ")
            ));
        }
        if !self.schedules.is_empty() {
            let names: Vec<String> = self.schedules.iter().map(|n| format!("`{n}`")).collect();
            users.push(format!(
                "change schedules {} watch it (delete them: `mlgrid schedule delete`)",
                names.join(", ")
            ));
        }
        if !self.watches.is_empty() {
            let names: Vec<String> = self.watches.iter().map(|n| format!("`{n}`")).collect();
            users.push(format!(
                "watches {} publish its files' arrivals (delete them: `mlgrid datastore watch delete`)",
                names.join(", ")
            ));
        }
        StoreError::Conflict(format!(
            "datastore `{datastore}` is in use, so it cannot be deleted: {}; then delete the datastore",
            users.join("; ")
        ))
    }
}

/// The enabled pipelines among `pipelines` that have a data path on `datastore` (names
/// compared ignoring case, as datastore names are unique). A definition that no longer
/// parses is counted as a user: it cannot be shown not to be one.
pub(crate) fn pipelines_using(datastore: &str, pipelines: &[PublishedPipeline]) -> Vec<String> {
    pipelines
        .iter()
        .filter(|p| p.enabled)
        .filter(|p| match Pipeline::parse(&p.definition) {
            Ok(parsed) => parsed
                .data_paths
                .values()
                .any(|path| path.datastore.eq_ignore_ascii_case(datastore)),
            Err(_) => true,
        })
        .map(|p| format!("`{}` version {} ({})", p.name, p.version, p.id))
        .collect()
}

pub(crate) fn missing_datastore(name: &str) -> StoreError {
    StoreError::NotFound(format!("datastore `{name}`"))
}

pub(crate) fn datastore_taken(name: &str) -> String {
    format!(
        "datastore `{name}` already exists (names are unique ignoring case); delete it first to replace it, \
         or choose another name"
    )
}
