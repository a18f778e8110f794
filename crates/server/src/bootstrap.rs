//! First start: the data directory, the server secret and the first Owner key.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mlgrid_store::{Store, StoreError};

use crate::keys::{MIN_KEY_LEN, ServerSecret, api_key_hash, generate_api_key};

/// Name of the file holding the first Owner's API key, in the data directory.
pub const ADMIN_KEY_FILE: &str = "admin.key";
/// Name of the file holding the server secret, in the data directory.
pub const SECRET_FILE: &str = "secret.key";
/// Name of the bootstrap principal.
pub const ADMIN_PRINCIPAL: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BootstrapError {
    let path = path.to_owned();
    move |source| BootstrapError::Io { action, path, source }
}

/// Creates the data directory with mode 0700 (whatever the umask) if it does not exist.
///
/// An existing directory keeps its mode: it may be a mount point or a directory an
/// operator shares with a backup group on purpose, and changing it behind their back
/// would surprise more than it protects. A warning says when others may enter it.
pub fn prepare_data_dir(dir: &Path) -> Result<(), BootstrapError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error("cannot create data directory", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error("cannot restrict", dir))?;
    } else if let Ok(meta) = fs::metadata(dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            data_dir = %dir.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "other users may enter the data directory (its files are 0600); `chmod 700` it unless that is intended"
        );
    }
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, atomically (temporary file, fsync, rename).
fn write_private(path: &Path, contents: &str) -> Result<(), BootstrapError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error("cannot write", &tmp))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(io_error("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("cannot write", path))
}

fn read_trimmed(path: &Path) -> Result<Option<String>, BootstrapError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("cannot read", path)(e)),
    }
}

/// The server secret: from `from_env` (`MLGRID_SECRET`, which every node of a cluster
/// must share), else from `<dir>/secret.key`, else a new one written there.
pub fn load_or_create_secret(dir: &Path, from_env: Option<&str>) -> Result<ServerSecret, BootstrapError> {
    let invalid = |whence: &str| {
        BootstrapError::Invalid(format!(
            "{whence} is not a server secret: it must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)"
        ))
    };
    if let Some(text) = from_env {
        return ServerSecret::decode(text).ok_or_else(|| invalid("MLGRID_SECRET"));
    }
    let path = dir.join(SECRET_FILE);
    if let Some(text) = read_trimmed(&path)? {
        return ServerSecret::decode(&text).ok_or_else(|| invalid(&path.display().to_string()));
    }
    let secret = ServerSecret::generate();
    write_private(&path, &secret.encode())?;
    Ok(secret)
}

/// Refuses a server secret other than the one the database was set up with (the first
/// node to start records its fingerprint): topic keys and webhook signing secrets are
/// derived from it, so a node with another secret would hand out keys that do not work
/// and sign webhooks that do not verify.
pub async fn check_secret(store: &dyn Store, secret: &ServerSecret) -> Result<(), BootstrapError> {
    if store.secret_fingerprint(&secret.fingerprint()).await? == secret.fingerprint() {
        return Ok(());
    }
    Err(BootstrapError::Invalid(format!(
        "this database was set up with another server secret. Every node sharing a database must use \
         the same secret: set MLGRID_SECRET to the same value on every node, or copy {SECRET_FILE} from the \
         first node's data directory"
    )))
}

/// What [`bootstrap_owner`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// The first Owner was created; its key is in the file (unless it came from the
    /// environment, in which case `None`).
    Created(Option<PathBuf>),
    /// Principals existed already; nothing was changed.
    AlreadyDone,
}

/// Creates the first Owner if the store has no principal. Its key comes from
/// `from_env` (`MLGRID_BOOTSTRAP_KEY`), or from an existing `<dir>/admin.key`, or is
/// generated and written there with mode 0600 before it is stored (so that a crash in
/// between cannot lose the only key). Only its hash is stored.
pub async fn bootstrap_owner(
    store: &dyn Store,
    dir: &Path,
    from_env: Option<&str>,
) -> Result<Bootstrap, BootstrapError> {
    let (key, file) = match from_env {
        Some(key) if key.len() < MIN_KEY_LEN => {
            return Err(BootstrapError::Invalid(format!(
                "MLGRID_BOOTSTRAP_KEY must be at least {MIN_KEY_LEN} characters of random text"
            )));
        }
        Some(key) => (key.to_owned(), None),
        None => {
            let path = dir.join(ADMIN_KEY_FILE);
            match read_trimmed(&path)? {
                Some(key) if !key.is_empty() => (key, Some(path)),
                _ => {
                    if !store.has_principals().await? {
                        let key = generate_api_key();
                        write_private(&path, &key)?;
                        (key, Some(path))
                    } else {
                        return Ok(Bootstrap::AlreadyDone);
                    }
                }
            }
        }
    };
    if store
        .create_bootstrap_owner(ADMIN_PRINCIPAL, &api_key_hash(&key))
        .await?
    {
        Ok(Bootstrap::Created(file))
    } else {
        Ok(Bootstrap::AlreadyDone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_directory_is_private_and_an_existing_one_keeps_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let new = root.path().join("a/b/data");
        prepare_data_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        let shared = root.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o750)).unwrap();
        prepare_data_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o750);
        load_or_create_secret(&new, None).unwrap();
        assert_eq!(mode(&new.join(SECRET_FILE)), 0o600);
    }
}
