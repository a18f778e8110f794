//! Registering datastores, and each workspace's [`Datastores`] built from the store.
//!
//! A registration is checked whole before anything is stored: the settings its kind
//! needs (and no others), where its credentials come from, a user-given endpoint against
//! the server's address rules (as webhooks are: no metadata or private addresses unless
//! the server allows them), and finally the datastore itself, reached by listing its
//! root within [`REACH_TIMEOUT`]. Wrong credentials or an unreachable endpoint refuse the
//! registration with what to check; only then is a stored secret sealed and the row
//! written.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mlgrid_store::{
    CredentialSource, DatastoreKind, DatastoreSettings, NewDatastore, SourceId, Store, StoreError, StoredDatastore,
};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use sha2::{Digest, Sha256};

use super::remote::{DOWNLOAD_TIMEOUT, ObjectStoreDatastore};
use super::secrets::{DatastoreSecret, SecretKey};
use super::{Datastore, DatastoreError, Datastores, FolderDatastore, Listing, WORKSPACE_BLOB_STORE, relative_prefix};
use crate::layout::DataLayout;

/// Longest the check of a new registration may take to list the datastore's root.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the server may connect to a URL a user gave; the server answers with its
/// webhook address rules.
#[async_trait]
pub trait EndpointGuard: Send + Sync {
    /// Refuses `url` with the reason (naming the address and the flag that would allow
    /// it, never the URL), or lets it through.
    async fn check(&self, url: &str) -> Result<(), String>;
}

/// A datastore to register, as the API takes it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub name: String,
    pub kind: DatastoreKind,
    pub settings: DatastoreSettings,
    pub credentials: CredentialSource,
    /// Given exactly when `credentials` is `stored`.
    pub secret: Option<DatastoreSecret>,
}

/// Why a registration was refused, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is wrong; the message names the field and what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The datastore could not be reached with the settings and credentials given.
    #[error(transparent)]
    Unreachable(DatastoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The datastores of every workspace: registering them, and building a workspace's.
#[derive(Clone)]
pub struct DatastoreRegistry {
    store: Arc<dyn Store>,
    layout: DataLayout,
    key: SecretKey,
    guard: Arc<dyn EndpointGuard>,
}

impl DatastoreRegistry {
    pub fn new(
        store: Arc<dyn Store>,
        layout: DataLayout,
        key: SecretKey,
        guard: Arc<dyn EndpointGuard>,
    ) -> DatastoreRegistry {
        DatastoreRegistry {
            store,
            layout,
            key,
            guard,
        }
    }

    /// Checks a registration whole, reaches the datastore, then stores it (its secret
    /// sealed). Nothing is stored when any of it fails.
    pub async fn create(&self, workspace: SourceId, new: Registration) -> Result<StoredDatastore, RegistryError> {
        check_name(&new.name)?;
        check_settings(new.kind, &new.settings)?;
        check_credentials(&new)?;
        match self.store.datastore(workspace, &new.name).await {
            Ok(existing) => {
                return Err(StoreError::Conflict(format!(
                    "datastore `{}` already exists (names are unique ignoring case); delete it first to replace \
                     it, or choose another name",
                    existing.name
                ))
                .into());
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(endpoint) = &new.settings.endpoint {
            self.guard
                .check(endpoint)
                .await
                .map_err(|reason| RegistryError::Invalid(format!("endpoint: {reason}")))?;
        }
        let datastore = match new.kind {
            DatastoreKind::Local => {
                let path = new.settings.path.as_deref().unwrap_or_default();
                Arc::new(FolderDatastore::new(new.name.clone(), path)) as Arc<dyn Datastore>
            }
            kind => {
                let store = object_store_for(kind, &new.settings, new.credentials, new.secret.as_ref())
                    .map_err(RegistryError::Invalid)?;
                Arc::new(ObjectStoreDatastore::new(
                    new.name.clone(),
                    store,
                    self.layout.cache_root(),
                ))
            }
        };
        reach(&*datastore, new.kind).await?;
        let secret = new.secret.as_ref().map(|s| self.key.seal(workspace, &new.name, s));
        let stored = self
            .store
            .create_datastore(
                workspace,
                NewDatastore {
                    name: new.name,
                    kind: new.kind,
                    settings: new.settings,
                    credentials: new.credentials,
                    secret,
                },
            )
            .await?;
        Ok(stored)
    }

    /// The datastores of a workspace: the built-in one and every registered one. A
    /// registered datastore that cannot be built now (its endpoint refused, its secret
    /// not opening) is there all the same, failing with the reason when used.
    pub async fn datastores(&self, workspace: SourceId) -> Result<Datastores, RegistryError> {
        let mut datastores =
            Datastores::new(&self.layout, &workspace.to_string()).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        for row in self.store.list_datastores(workspace).await? {
            let built = match self.build(workspace, &row).await {
                Ok(built) => built,
                Err(reason) => Arc::new(Unavailable {
                    name: row.name.clone(),
                    reason,
                }),
            };
            datastores = datastores.with(built);
        }
        Ok(datastores)
    }

    async fn build(&self, workspace: SourceId, row: &StoredDatastore) -> Result<Arc<dyn Datastore>, String> {
        if row.kind == DatastoreKind::Local {
            let path = row.settings.path.as_deref().unwrap_or_default();
            return Ok(Arc::new(FolderDatastore::new(row.name.clone(), path)));
        }
        if let Some(endpoint) = &row.settings.endpoint {
            self.guard.check(endpoint).await.map_err(|r| format!("endpoint: {r}"))?;
        }
        let secret = row
            .secret
            .as_ref()
            .map(|sealed| self.key.open(workspace, &row.name, sealed))
            .transpose()
            .map_err(|e| e.to_string())?;
        let store = object_store_for(row.kind, &row.settings, row.credentials, secret.as_ref())?;
        let registration: String = Sha256::digest(row.etag.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let cache = self
            .layout
            .cache_root()
            .join(workspace.to_string())
            .join(hex_name(&row.name))
            .join(registration);
        Ok(Arc::new(ObjectStoreDatastore::new(row.name.clone(), store, cache)))
    }
}

/// A name as a folder name that no name can make special (`.`, `..`, `/`).
fn hex_name(name: &str) -> String {
    name.to_ascii_lowercase().bytes().map(|b| format!("{b:02x}")).collect()
}

/// Lists the root within [`REACH_TIMEOUT`]; a failure says what to check for the kind.
async fn reach(datastore: &dyn Datastore, kind: DatastoreKind) -> Result<Listing, RegistryError> {
    let check = match kind {
        DatastoreKind::Local => "that the folder exists and the server may read it",
        DatastoreKind::AzureBlob => "the endpoint, the account and container names, and the account key",
        DatastoreKind::S3 => "the endpoint, the bucket and region, and the access key id and secret access key",
        DatastoreKind::Gcs => "the bucket and the service account key",
    };
    let refused = |reason: String| {
        RegistryError::Unreachable(DatastoreError::Unreachable {
            datastore: datastore.name().to_owned(),
            reason: format!("{reason}; check {check}. Nothing was stored"),
        })
    };
    match tokio::time::timeout(REACH_TIMEOUT, datastore.list("", false)).await {
        Err(_) => Err(refused(format!("listing its root took longer than {REACH_TIMEOUT:?}"))),
        Ok(Err(DatastoreError::Unreachable { reason, .. })) => Err(refused(reason)),
        Ok(Err(e)) => Err(refused(e.to_string())),
        Ok(Ok(listing)) => Ok(listing),
    }
}

/// Datastore names: letters, digits and `_`, starting with a letter, as Azure ML's.
fn check_name(name: &str) -> Result<(), RegistryError> {
    let ok = name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(RegistryError::Invalid(format!(
            "name: `{name}` is not a datastore name; use letters, digits and `_`, starting with a letter (at most \
             255)"
        )));
    }
    if name.eq_ignore_ascii_case(WORKSPACE_BLOB_STORE) {
        return Err(RegistryError::Invalid(format!(
            "name: `{WORKSPACE_BLOB_STORE}` is the built-in datastore of every workspace; choose another name"
        )));
    }
    Ok(())
}

/// The settings a kind needs, and those it does not take.
fn check_settings(kind: DatastoreKind, settings: &DatastoreSettings) -> Result<(), RegistryError> {
    let fields = [
        ("path", settings.path.is_some()),
        ("account", settings.account.is_some()),
        ("container", settings.container.is_some()),
        ("bucket", settings.bucket.is_some()),
        ("region", settings.region.is_some()),
        ("endpoint", settings.endpoint.is_some()),
        ("prefix", settings.prefix.is_some()),
    ];
    let (required, optional): (&[&str], &[&str]) = match kind {
        DatastoreKind::Local => (&["path"], &[]),
        DatastoreKind::AzureBlob => (&["account", "container"], &["endpoint", "prefix"]),
        DatastoreKind::S3 => (&["bucket"], &["region", "endpoint", "prefix"]),
        DatastoreKind::Gcs => (&["bucket"], &["prefix"]),
    };
    let kind_name = kind.as_str();
    for (field, given) in fields {
        if required.contains(&field) && !given {
            return Err(RegistryError::Invalid(format!(
                "{field}: a {kind_name} datastore needs one"
            )));
        }
        if given && !required.contains(&field) && !optional.contains(&field) {
            return Err(RegistryError::Invalid(format!(
                "{field}: a {kind_name} datastore takes no {field}; it takes {}",
                required.iter().chain(optional).copied().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if let Some(path) = &settings.path {
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(RegistryError::Invalid(
                "path: give the folder's absolute path on the server".to_owned(),
            ));
        }
        if !path.is_dir() {
            return Err(RegistryError::Invalid(format!(
                "path: `{}` is not a folder the server can read; create it first",
                path.display()
            )));
        }
    }
    if let Some(prefix) = &settings.prefix {
        relative_prefix("(new)", prefix).map_err(|e| match e {
            DatastoreError::InvalidPath { reason, .. } => RegistryError::Invalid(format!("prefix: {reason}")),
            other => RegistryError::Invalid(format!("prefix: {other}")),
        })?;
    }
    if let Some(endpoint) = &settings.endpoint {
        let url = url::Url::parse(endpoint)
            .map_err(|e| RegistryError::Invalid(format!("endpoint: `{endpoint}` is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(RegistryError::Invalid(format!(
                "endpoint: `{endpoint}` must be an http:// or https:// URL with a host"
            )));
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(RegistryError::Invalid(
                "endpoint: give the URL without a query or user info; credentials go in the secret".to_owned(),
            ));
        }
    }
    Ok(())
}

/// Where credentials come from, for the kind: none for a folder; the environment or a
/// stored secret with the kind's fields for the others.
fn check_credentials(new: &Registration) -> Result<(), RegistryError> {
    let kind = new.kind.as_str();
    let invalid = |text: String| Err(RegistryError::Invalid(text));
    match (new.kind, new.credentials, &new.secret) {
        (DatastoreKind::Local, CredentialSource::None, None) => Ok(()),
        (DatastoreKind::Local, ..) => invalid("credentials: a local datastore takes none".to_owned()),
        (_, CredentialSource::None, _) => invalid(format!(
            "credentials: a {kind} datastore needs `stored` or `environment`"
        )),
        (_, CredentialSource::Environment, None) => Ok(()),
        (_, CredentialSource::Environment, Some(_)) => invalid(
            "secret: credentials from the environment take no secret; give `credentials: stored` to store it"
                .to_owned(),
        ),
        (_, CredentialSource::Stored, None) => invalid(format!(
            "secret: stored credentials need a secret ({})",
            secret_fields(new.kind)
        )),
        (kind_of, CredentialSource::Stored, Some(secret)) => {
            let complete = match kind_of {
                DatastoreKind::AzureBlob => {
                    secret.account_key.is_some()
                        && secret.access_key_id.is_none()
                        && secret.secret_access_key.is_none()
                        && secret.service_account_key.is_none()
                }
                DatastoreKind::S3 => {
                    secret.access_key_id.is_some()
                        && secret.secret_access_key.is_some()
                        && secret.account_key.is_none()
                        && secret.service_account_key.is_none()
                }
                DatastoreKind::Gcs => {
                    secret.service_account_key.is_some()
                        && secret.account_key.is_none()
                        && secret.access_key_id.is_none()
                        && secret.secret_access_key.is_none()
                }
                DatastoreKind::Local => false,
            };
            if complete {
                Ok(())
            } else {
                invalid(format!(
                    "secret: a {kind} datastore's secret has exactly {}",
                    secret_fields(kind_of)
                ))
            }
        }
    }
}

fn secret_fields(kind: DatastoreKind) -> &'static str {
    match kind {
        DatastoreKind::AzureBlob => "`accountKey`",
        DatastoreKind::S3 => "`accessKeyId` and `secretAccessKey`",
        DatastoreKind::Gcs => "`serviceAccountKey`",
        DatastoreKind::Local => "nothing",
    }
}

/// The object store of a remote datastore, rooted at its prefix. Requests are retried
/// twice within 15 s, connections time out after 5 s, and whole requests (downloads) after
/// [`DOWNLOAD_TIMEOUT`].
fn object_store_for(
    kind: DatastoreKind,
    settings: &DatastoreSettings,
    credentials: CredentialSource,
    secret: Option<&DatastoreSecret>,
) -> Result<Arc<dyn ObjectStore>, String> {
    let from_env = credentials == CredentialSource::Environment;
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(DOWNLOAD_TIMEOUT)
        .with_allow_http(settings.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 2,
        retry_timeout: Duration::from_secs(15),
    };
    let secret = secret.cloned().unwrap_or_default();
    let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match kind {
        DatastoreKind::AzureBlob => {
            let mut builder = if from_env {
                MicrosoftAzureBuilder::from_env()
            } else {
                MicrosoftAzureBuilder::new()
            };
            builder = builder
                .with_account(settings.account.clone().unwrap_or_default())
                .with_container_name(settings.container.clone().unwrap_or_default())
                .with_client_options(options)
                .with_retry(retry);
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            if let Some(key) = secret.account_key {
                builder = builder.with_access_key(key);
            }
            builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        DatastoreKind::S3 => {
            let mut builder = if from_env {
                AmazonS3Builder::from_env()
            } else {
                AmazonS3Builder::new()
            };
            builder = builder
                .with_bucket_name(settings.bucket.clone().unwrap_or_default())
                .with_region(settings.region.clone().unwrap_or_else(|| "us-east-1".to_owned()))
                .with_client_options(options)
                .with_retry(retry);
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            if let (Some(id), Some(key)) = (secret.access_key_id, secret.secret_access_key) {
                builder = builder.with_access_key_id(id).with_secret_access_key(key);
            }
            builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        DatastoreKind::Gcs => {
            let mut builder = if from_env {
                GoogleCloudStorageBuilder::from_env()
            } else {
                GoogleCloudStorageBuilder::new()
            };
            builder = builder
                .with_bucket_name(settings.bucket.clone().unwrap_or_default())
                .with_client_options(options)
                .with_retry(retry);
            if let Some(key) = secret.service_account_key {
                builder = builder.with_service_account_key(key);
            }
            builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        DatastoreKind::Local => unreachable!("local datastores are folders, not object stores"),
    };
    // Builder errors name settings (a missing account, a malformed key), never a key's value.
    let store = built.map_err(|e| format!("the {} datastore cannot be set up: {e}", kind.as_str()))?;
    Ok(match settings.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => Arc::new(PrefixStore::new(store, prefix)),
        _ => store,
    })
}

/// A registered datastore that could not be built; every use says why.
struct Unavailable {
    name: String,
    reason: String,
}

impl Unavailable {
    fn error(&self) -> DatastoreError {
        DatastoreError::Unreachable {
            datastore: self.name.clone(),
            reason: self.reason.clone(),
        }
    }
}

#[async_trait]
impl Datastore for Unavailable {
    fn name(&self) -> &str {
        &self.name
    }

    async fn resolve(&self, _path: &str) -> Result<std::path::PathBuf, DatastoreError> {
        Err(self.error())
    }

    async fn list(&self, _prefix: &str, _recursive: bool) -> Result<Listing, DatastoreError> {
        Err(self.error())
    }
}
