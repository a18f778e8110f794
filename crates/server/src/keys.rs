//! API keys of principals and access keys of topics.
//!
//! Keys are random (256 bits) and only their SHA-256 is stored; a presented key is
//! hashed and compared with the stored hash in constant time. SHA-256 suffices because
//! keys are random, not chosen by people. A principal key is found by a public id: the
//! first 16 hex digits of its hash.
//!
//! Topic keys must be shown again on request (`topic key list`), so they are derived
//! rather than stored: key = HMAC-SHA256(server secret, salt), with a random salt kept
//! per key. A stolen database alone reveals no key.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use mlgrid_store::{ApiKeyHash, KeyName, SubscriptionId, TopicKey};

/// Prefix of generated principal keys, so that leaked keys are easy to recognise.
const API_KEY_PREFIX: &str = "mlg_";
/// Shortest key accepted from `MLGRID_BOOTSTRAP_KEY`.
pub const MIN_KEY_LEN: usize = 32;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn sha256_hex(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random principal key: `mlg_` and 43 characters of base64url.
pub fn generate_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// What the store keeps of a principal key.
pub fn api_key_hash(key: &str) -> ApiKeyHash {
    let hash = sha256_hex(key);
    ApiKeyHash {
        key_id: hash[..16].to_owned(),
        hash,
    }
}

/// Whether `presented` hashes to `stored`, compared in constant time.
pub fn hash_matches(presented: &str, stored_hash: &str) -> bool {
    sha256_hex(presented).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// The secret from which topic keys are derived; 32 random bytes.
#[derive(Clone)]
pub struct ServerSecret([u8; 32]);

impl ServerSecret {
    pub fn generate() -> ServerSecret {
        ServerSecret(random_bytes())
    }

    /// Reads the base64 form written by [`Self::encode`].
    pub fn decode(text: &str) -> Option<ServerSecret> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        Some(ServerSecret(bytes.try_into().ok()?))
    }

    pub fn encode(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// A fresh access key named `name`: what to store, and the key itself.
    pub fn new_topic_key(&self, name: KeyName) -> (TopicKey, String) {
        let salt = URL_SAFE_NO_PAD.encode(random_bytes::<16>());
        let key = self.derive(&salt);
        let stored = TopicKey {
            name,
            salt,
            hash: sha256_hex(&key),
        };
        (stored, key)
    }

    /// The key a stored topic key stands for, or `None` if this secret did not make it
    /// (the server secret was changed since).
    pub fn reveal_topic_key(&self, stored: &TopicKey) -> Option<String> {
        let key = self.derive(&stored.salt);
        hash_matches(&key, &stored.hash).then_some(key)
    }

    /// A fresh random salt for a webhook signing secret.
    pub fn new_webhook_salt(&self) -> String {
        URL_SAFE_NO_PAD.encode(random_bytes::<16>())
    }

    /// The webhook signing secret a salt stands for (32 bytes).
    pub fn webhook_secret(&self, salt: &str) -> Vec<u8> {
        self.mac(b"mlgrid webhook secret v1:", salt).to_vec()
    }

    /// The `validationCode` of the handshake for one definition of a subscription (its
    /// id and etag), shaped as a UUID like Event Grid's.
    pub fn validation_code(&self, subscription: SubscriptionId, etag: &str) -> String {
        let mac = self.mac(b"mlgrid validation code v1:", &format!("{subscription}:{etag}"));
        let bytes: [u8; 16] = mac[..16].try_into().expect("a SHA-256 MAC has 32 bytes");
        uuid::Uuid::from_bytes(bytes).to_string()
    }

    /// The token of a validation URL issued at `issued` (Unix seconds) for one definition
    /// of a subscription.
    pub fn validation_token(&self, subscription: SubscriptionId, etag: &str, issued: i64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(b"mlgrid validation url v1:", &format!("{subscription}:{etag}:{issued}")))
    }

    /// Whether `token` is the token of that validation URL, compared in constant time.
    pub fn validation_token_matches(&self, token: &str, subscription: SubscriptionId, etag: &str, issued: i64) -> bool {
        let expected = self.validation_token(subscription, etag, issued);
        token.as_bytes().ct_eq(expected.as_bytes()).into()
    }

    /// A fingerprint of the secret that reveals nothing of it: the HMAC of a constant.
    /// Nodes sharing a database compare fingerprints to find out that they share the
    /// secret.
    pub fn fingerprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(b"mlgrid secret fingerprint v1", ""))
    }

    fn derive(&self, salt: &str) -> String {
        STANDARD.encode(self.mac(b"mlgrid topic key v1:", salt))
    }

    /// HMAC-SHA256 under the server secret of `purpose` followed by `input`.
    /// The key datastore credentials are sealed with at rest (see
    /// `mlgrid_pipelines::SecretKey`): one per server secret, so every node of a cluster
    /// opens what another sealed.
    pub fn datastore_key(&self) -> mlgrid_pipelines::SecretKey {
        mlgrid_pipelines::SecretKey::new(self.mac(b"mlgrid datastore secret key v1:", ""))
    }

    fn mac(&self, purpose: &[u8], input: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(purpose);
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

impl mlgrid_delivery::WebhookSecrets for ServerSecret {
    fn secret(&self, salt: &str) -> Vec<u8> {
        self.webhook_secret(salt)
    }
}

/// A signing secret as Standard Webhooks writes it: `whsec_` and the base64 key.
pub fn format_webhook_secret(secret: &[u8]) -> String {
    format!("whsec_{}", STANDARD.encode(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_random_and_verified_by_hash() {
        let (a, b) = (generate_api_key(), generate_api_key());
        assert_ne!(a, b);
        assert!(a.starts_with("mlg_") && a.len() == 47, "{a}");
        let stored = api_key_hash(&a);
        assert!(hash_matches(&a, &stored.hash));
        assert!(!hash_matches(&b, &stored.hash));
        assert!(!stored.hash.contains(&a));
    }

    #[test]
    fn topic_keys_are_derived_again_only_with_the_same_secret() {
        let secret = ServerSecret::generate();
        let (stored, key) = secret.new_topic_key(KeyName::Key1);
        assert_eq!(secret.reveal_topic_key(&stored).as_deref(), Some(key.as_str()));
        assert!(hash_matches(&key, &stored.hash));
        assert_eq!(ServerSecret::generate().reveal_topic_key(&stored), None);
        let (other, other_key) = secret.new_topic_key(KeyName::Key1);
        assert_ne!(other.salt, stored.salt);
        assert_ne!(other_key, key);
    }

    #[test]
    fn secrets_round_trip_through_base64_and_are_not_printed() {
        let secret = ServerSecret::generate();
        let again = ServerSecret::decode(&secret.encode()).unwrap();
        assert_eq!(again.0, secret.0);
        assert!(ServerSecret::decode("c2hvcnQ=").is_none());
        assert_eq!(format!("{secret:?}"), "ServerSecret(..)");
    }

    #[test]
    fn fingerprints_tell_secrets_apart() {
        let secret = ServerSecret::generate();
        let again = ServerSecret::decode(&secret.encode()).unwrap();
        assert_eq!(secret.fingerprint(), again.fingerprint());
        assert_ne!(secret.fingerprint(), ServerSecret::generate().fingerprint());
        assert!(!secret.fingerprint().contains(&secret.encode()));
    }
}
