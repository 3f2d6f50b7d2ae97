//! Standard Webhooks signatures (<https://www.standardwebhooks.com>).
//!
//! A secret is `whsec_` + base64 of 32 random bytes; the signature of a
//! delivery is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! sent in `webhook-signature` next to `webhook-id` and
//! `webhook-timestamp`. Any Standard Webhooks library verifies it; the
//! steps are in docs/webhooks.md.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub(crate) const PREFIX: &str = "whsec_";

/// A new random secret, as shown once to the admin.
pub(crate) fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header value for `body` sent as message `id`
/// at `timestamp` (seconds since the epoch). `None` when the stored
/// secret is not a `whsec_` base64 key.
pub(crate) fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference
    /// libraries (secret, id, timestamp, payload and signature).
    #[test]
    fn the_specification_example_signs_the_same() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn a_new_secret_signs_and_a_bad_one_does_not() {
        let secret = new_secret();
        assert!(secret.starts_with(PREFIX));
        assert!(sign(&secret, "msg_1", 1, b"{}").is_some());
        assert_eq!(sign("not-a-secret", "msg_1", 1, b"{}"), None);
    }
}
