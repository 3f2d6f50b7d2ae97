//! The second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps,
//! what every authenticator app reads), with the `totp-rs` crate.
//!
//! A code is accepted for its own step and one step either side (clock
//! drift), and each step at most once: a code seen over a shoulder or
//! replayed from a log is no good once used.

use chrono::{DateTime, Utc};
use totp_rs::{Algorithm, Secret, TOTP};

const STEP_SECONDS: u64 = 30;
const DIGITS: usize = 6;
const ISSUER: &str = "Tandem";

/// A new base32 secret (160 bits, RFC 4226's recommendation).
pub fn new_secret() -> String {
    match Secret::generate_secret().to_encoded() {
        Secret::Encoded(text) => text,
        Secret::Raw(_) => unreachable!("to_encoded gives the encoded form"),
    }
}

fn totp(secret: &str, account: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().ok()?;
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP_SECONDS,
        bytes,
        Some(ISSUER.into()),
        account.replace(':', ""),
    )
    .ok()
}

/// The `otpauth://` URL an authenticator app takes (as a link or typed).
pub fn setup_url(secret: &str, account: &str) -> Option<String> {
    totp(secret, account).map(|t| t.get_url())
}

/// The step `code` belongs to when it is right at `now` and newer than
/// `last_step` (the last one accepted); none otherwise.
pub fn accept(secret: &str, code: &str, now: DateTime<Utc>, last_step: Option<i64>) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "x")?;
    let now_step = now.timestamp().max(0) / STEP_SECONDS as i64;
    (now_step - 1..=now_step + 1)
        .filter(|step| last_step.is_none_or(|last| *step > last))
        .find(|step| totp.check(&code, *step as u64 * STEP_SECONDS))
}

/// The code of `secret` at `now` (for the demo and the tests).
pub fn code_at(secret: &str, now: DateTime<Utc>) -> Option<String> {
    totp(secret, "x").map(|t| t.generate(now.timestamp().max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vector() {
        // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s.
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let at: DateTime<Utc> = "1970-01-01T00:00:59Z".parse().unwrap();
        assert_eq!(code_at(secret, at).unwrap(), "287082");
    }

    #[test]
    fn a_code_is_good_once_and_only_near_its_time() {
        let secret = new_secret();
        let now: DateTime<Utc> = "2026-03-02T15:00:10Z".parse().unwrap();
        let code = code_at(&secret, now).unwrap();
        let step = accept(&secret, &code, now, None).expect("right code");
        assert_eq!(accept(&secret, &code, now, Some(step)), None, "not twice");
        let later = now + chrono::Duration::seconds(31);
        assert!(accept(&secret, &code, later, None).is_some(), "drift");
        let much_later = now + chrono::Duration::minutes(3);
        assert!(accept(&secret, &code, much_later, None).is_none());
        assert!(accept(&secret, "12345", now, None).is_none());
        assert!(setup_url(&secret, "a@b.example")
            .unwrap()
            .starts_with("otpauth://totp/Tandem:a%40b.example?"));
    }
}
