//! The Ed25519 key that signs invite links.
//!
//! Generated on first start and kept with 0600 permissions, or supplied by
//! the operator (`auth.signing_key_file`). Whoever holds it can mint links
//! into any session, so it never leaves the server and is never logged.

use std::fs;
use std::io;
use std::path::Path;

use jsonwebtoken::{DecodingKey, EncodingKey};
use rcgen::{KeyPair, PKCS_ED25519};

use crate::private_file;

/// The signing half and the verifying half of the invite key.
#[derive(Clone)]
pub struct SigningKey {
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error(
        "cannot read or write the invite signing key {path} (auth.signing_key_file): {source}"
    )]
    Io { path: String, source: io::Error },
    #[error(
        "{path} (auth.signing_key_file) is not an Ed25519 private key in PKCS#8 PEM form: {reason}"
    )]
    Invalid { path: String, reason: String },
}

impl SigningKey {
    /// Loads the key at `path`, generating it first when the file is absent.
    pub fn load_or_generate(path: &Path) -> Result<SigningKey, SigningKeyError> {
        let io_err = |source| SigningKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        if !path.exists() {
            let pair =
                KeyPair::generate_for(&PKCS_ED25519).map_err(|e| SigningKeyError::Invalid {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            private_file::write(path, pair.serialize_pem().as_bytes()).map_err(io_err)?;
            tracing::info!(path = %path.display(), "generated a new invite signing key");
        } else if private_file::is_exposed(path).map_err(io_err)? {
            tracing::warn!(path = %path.display(), "the invite signing key is readable by other users; chmod 600 it");
        }
        let pem = fs::read_to_string(path).map_err(io_err)?;
        Self::from_pem(&pem).map_err(|reason| SigningKeyError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Builds the key from a PKCS#8 PEM Ed25519 private key.
    pub(crate) fn from_pem(pem: &str) -> Result<SigningKey, String> {
        let pair = KeyPair::from_pem(pem).map_err(|e| e.to_string())?;
        if pair.algorithm() != &PKCS_ED25519 {
            return Err("the key is not Ed25519".into());
        }
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let decoding = DecodingKey::from_ed_pem(pair.public_key_pem().as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(SigningKey { encoding, decoding })
    }

    /// A fresh key held only in memory (tests).
    pub fn generate() -> SigningKey {
        let pair = KeyPair::generate_for(&PKCS_ED25519).expect("Ed25519 key generation");
        Self::from_pem(&pair.serialize_pem()).expect("a generated key is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-key.pem");
        SigningKey::load_or_generate(&path).unwrap();
        let first = fs::read(&path).unwrap();
        assert!(!private_file::is_exposed(&path).unwrap());
        SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), first);
    }

    #[test]
    fn a_non_ed25519_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        private_file::write(
            &path,
            KeyPair::generate().unwrap().serialize_pem().as_bytes(),
        )
        .unwrap();
        let err = SigningKey::load_or_generate(&path).unwrap_err();
        assert!(err.to_string().contains("auth.signing_key_file"), "{err}");
    }
}
