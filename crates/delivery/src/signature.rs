//! Standard Webhooks signatures, so that receivers can check a delivery came from here.
//!
//! `webhook-id` names the message (the same on every retry), `webhook-timestamp` is the
//! Unix time of the attempt, and `webhook-signature` holds `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">` for each current secret, space-separated: during a
//! rotation's grace period both the new and the old secret sign.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Gives the signing secret a subscription's salt stands for; the server derives it from
/// its own secret, so secrets are never stored.
pub trait WebhookSecrets: Send + Sync {
    fn secret(&self, salt: &str) -> Vec<u8>;
}

/// The `webhook-signature` header value for `body`, signed with each of `secrets`.
pub fn sign(secrets: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .map(|secret| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body.as_bytes());
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks specification's reference implementations.
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let signature = sign(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_current_secret_signs() {
        let signature = sign(&[vec![1; 32], vec![2; 32]], "id", 1, "[]");
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
