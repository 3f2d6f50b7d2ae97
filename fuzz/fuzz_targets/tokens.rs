//! Any string presented as an invite link's token or a staff token: checking
//! it never panics, and nothing but a token this key signed is accepted.
#![no_main]

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use tandem::auth::invite;
use tandem::auth::signing_key::SigningKey;
use tandem::auth::staff;

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate)
}

fuzz_target!(|input: (&str, i64)| {
    let (token, seconds) = input;
    let now = DateTime::<Utc>::from_timestamp(seconds.rem_euclid(4_102_444_800), 0)
        .expect("a time before 2100");
    // A fresh key signed nothing the fuzzer could know: every token fails.
    assert!(invite::verify(key(), token, now).is_err());
    assert!(staff::verify(key(), token, now).is_none());
});
