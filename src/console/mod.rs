//! The staff console's rules: who a staff account is ([`account`]), how
//! its password and second factor are checked ([`password`],
//! [`second_factor`]), when failed sign-ins lock an account or an address
//! out ([`throttle`]) and when a signed-in console session ends
//! ([`session`]).
//!
//! Everything here is pure (time is an argument); the database lives in
//! `store::staff`, the I/O that puts the rules to work in `http::staff` and
//! the handlers in `http::console`, so the rules a clinic's security
//! officer asks about are tested without sockets or clocks.

pub mod account;
pub mod password;
pub mod second_factor;
pub mod session;
pub mod throttle;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new random secret (256 bits) for a cookie, a CSRF token or a
/// one-time link.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The form a secret (cookie, one-time link) is stored and looked up in:
/// with 256 random bits a fast hash is as safe as a slow one, and a stolen
/// database holds nothing that signs anyone in.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
