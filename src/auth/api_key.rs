//! API keys for the clinic's systems.
//!
//! A key is 256 random bits shown once at creation. Only its SHA-256 is
//! stored: with that much entropy a fast hash is as safe as a slow one, and
//! a stolen database yields no usable key. The `tdm_` prefix lets secret
//! scanners recognise a leaked key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::ApiRole;

pub(crate) const PREFIX: &str = "tdm_";

/// Keys are for the clinic's systems. A person (a clinician) gets a staff
/// token instead: it names them, expires within hours, and its use is
/// audited as theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "API keys are for systems; give clinicians a staff token (tandem token issue --role clinician)"
)]
pub(crate) struct PeopleUseStaffTokens;

/// A new secret key for a system with `role`, to be shown once.
pub(crate) fn issue(role: ApiRole) -> Result<String, PeopleUseStaffTokens> {
    match role {
        ApiRole::Clinician => Err(PeopleUseStaffTokens),
        ApiRole::Admin | ApiRole::Scheduler | ApiRole::Compliance | ApiRole::Metrics => {
            Ok(generate())
        }
    }
}

/// A new secret key, to be shown once.
fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The form a key is stored and looked up in.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_prefixed_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX));
        assert_eq!(a.len(), PREFIX.len() + 43);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[PREFIX.len()..]));
    }

    #[test]
    fn clinicians_get_staff_tokens_not_keys() {
        assert_eq!(issue(ApiRole::Clinician), Err(PeopleUseStaffTokens));
        for role in [
            ApiRole::Admin,
            ApiRole::Scheduler,
            ApiRole::Compliance,
            ApiRole::Metrics,
        ] {
            assert!(issue(role).unwrap().starts_with(PREFIX));
        }
    }
}
