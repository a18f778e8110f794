//! Datastore credentials kept by the server, sealed at rest.
//!
//! A secret given when a datastore is registered is sealed with ChaCha20-Poly1305 under
//! a key the server derives from its server secret, bound (as associated data) to the
//! workspace and datastore it was given for, so that a sealed secret copied to another
//! row does not open. The store keeps only the sealed text; a stolen database alone
//! reveals no credential. Neither type here shows its content in `Debug`, and nothing
//! here puts a secret into an error.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use mlgrid_store::{SealedSecret, SourceId};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The version tag of the sealed format: `v1:` and base64 of nonce (12 bytes) and
/// ciphertext with its tag.
const SEALED_V1: &str = "v1:";
const NONCE_BYTES: usize = 12;

/// The credentials of a remote datastore, those of its kind set.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreSecret {
    /// An Azure storage account's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key: Option<String>,
    /// An S3 access key's id (not secret by itself, but only useful with its key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// A GCS service account's JSON key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key: Option<String>,
}

impl fmt::Debug for DatastoreSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatastoreSecret(<redacted>)")
    }
}

/// Why a sealed secret did not open: the server secret changed since it was sealed, or
/// the row was altered. Says nothing of the secret.
#[derive(Debug, thiserror::Error)]
#[error(
    "the stored credentials of datastore `{datastore}` cannot be opened with this server's secret (was the \
     server secret changed?); delete the datastore and create it again with its credentials"
)]
pub struct UnsealError {
    pub datastore: String,
}

/// The key datastore secrets are sealed with; 32 bytes the server derives from its
/// server secret.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    pub fn new(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(self.0))
    }

    /// What the secret is bound to: its workspace and datastore (ignoring case, as
    /// datastore names are found).
    fn bound_to(workspace: SourceId, datastore: &str) -> String {
        format!(
            "mlgrid datastore secret v1:{workspace}/{}",
            datastore.to_ascii_lowercase()
        )
    }

    pub fn seal(&self, workspace: SourceId, datastore: &str, secret: &DatastoreSecret) -> SealedSecret {
        let plain = serde_json::to_vec(secret).expect("a datastore secret serializes to JSON");
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let aad = Self::bound_to(workspace, datastore);
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 seals any message under 256 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        SealedSecret(format!("{SEALED_V1}{}", STANDARD.encode(bytes)))
    }

    pub fn open(
        &self,
        workspace: SourceId,
        datastore: &str,
        sealed: &SealedSecret,
    ) -> Result<DatastoreSecret, UnsealError> {
        let failed = || UnsealError {
            datastore: datastore.to_owned(),
        };
        let bytes = sealed
            .0
            .strip_prefix(SEALED_V1)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|bytes| bytes.len() > NONCE_BYTES)
            .ok_or_else(failed)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().expect("split at the nonce's length");
        let aad = Self::bound_to(workspace, datastore);
        let plain = self
            .cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| failed())?;
        serde_json::from_slice(&plain).map_err(|_| failed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> DatastoreSecret {
        DatastoreSecret {
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI-secret".into()),
            ..DatastoreSecret::default()
        }
    }

    #[test]
    fn a_sealed_secret_opens_for_its_datastore_only() {
        let key = SecretKey::new([7; 32]);
        let sealed = key.seal(SourceId(1), "Lake", &secret());
        assert!(!sealed.0.contains("wJalrXUtnFEMI"), "sealed, not encoded");
        assert_eq!(key.open(SourceId(1), "lake", &sealed).unwrap(), secret());
        assert!(key.open(SourceId(2), "lake", &sealed).is_err(), "another workspace");
        assert!(key.open(SourceId(1), "other", &sealed).is_err(), "another datastore");
        let other_key = SecretKey::new([8; 32]);
        let refused = other_key.open(SourceId(1), "lake", &sealed).unwrap_err();
        assert!(refused.to_string().contains("server secret changed"), "{refused}");
        assert_ne!(
            key.seal(SourceId(1), "lake", &secret()),
            key.seal(SourceId(1), "lake", &secret())
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?} {:?}", secret(), SecretKey::new([7; 32]));
        assert!(
            !shown.contains("wJalr") && !shown.contains("AKID") && !shown.contains('7'),
            "{shown}"
        );
    }
}
