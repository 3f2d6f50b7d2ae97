//! Passwords: argon2id (the `argon2` crate's defaults, OWASP's minimum
//! parameters), stored as a PHC string that carries its own salt and
//! parameters.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The shortest password accepted (NIST SP 800-63B asks for at least 8;
/// a clinic's staff handle health information).
pub const MIN_LENGTH: usize = 12;

/// A password too short, in words; none when it may be used.
pub fn weakness(password: &str) -> Option<String> {
    (password.chars().count() < MIN_LENGTH)
        .then(|| format!("the password must have at least {MIN_LENGTH} characters"))
}

/// The argon2id hash of `password`, with a fresh salt.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches the stored `hash`.
pub fn matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to check against when the account does not exist, so that a
/// wrong email costs as long as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("no account has this password"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_own_hash_only() {
        let stored = hash("correct horse battery");
        assert!(stored.starts_with("$argon2id$"));
        assert!(matches(&stored, "correct horse battery"));
        assert!(!matches(&stored, "correct horse batterY"));
        assert!(!matches("not a hash", "x"));
        assert_ne!(stored, hash("correct horse battery"), "salted");
        assert!(weakness("short").is_some());
        assert!(weakness("long enough pass").is_none());
    }
}
