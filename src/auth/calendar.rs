//! Calendar feed tokens: the capability in a person's `calendar_url`.
//!
//! A calendar application fetches the feed on its own, with no way to log
//! in, so the URL itself is the credential: a JWT signed with the server's
//! key, with its own audience (it can neither open a session nor call the
//! API). It names the person and the session or series whose invite gave
//! it; revoking the person there revokes the feed (`schedule::calendar`).

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::signing_key::SigningKey;

pub(crate) const AUDIENCE: &str = "tandem-calendar";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CalendarClaims {
    /// The person's id (the clinic's).
    pub sub: String,
    /// The session, or series, whose invite carried the feed.
    pub sid: Uuid,
    #[serde(default)]
    pub series: bool,
    pub iat: i64,
    pub jti: Uuid,
    pub aud: String,
}

pub(crate) fn issue(key: &SigningKey, claims: &CalendarClaims) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key.encoding)
        .expect("Ed25519 signing of serialisable claims cannot fail")
}

/// The claims of a feed token this server signed, or `None`.
pub(crate) fn verify(key: &SigningKey, token: &str) -> Option<CalendarClaims> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.leeway = 0;
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["sub", "aud"]);
    jsonwebtoken::decode::<CalendarClaims>(token, &key.decoding, &validation)
        .ok()
        .map(|data| data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_token_is_not_an_invite_and_an_invite_is_not_a_feed_token() {
        let key = SigningKey::generate();
        let claims = CalendarClaims {
            sub: "pat-1".into(),
            sid: Uuid::new_v4(),
            series: true,
            iat: 0,
            jti: Uuid::new_v4(),
            aud: AUDIENCE.into(),
        };
        let token = issue(&key, &claims);
        assert_eq!(verify(&key, &token), Some(claims.clone()));
        assert!(crate::auth::invite::decode(&key, &token).is_err());
        assert_eq!(verify(&SigningKey::generate(), &token), None);
        let invite = crate::auth::invite::issue(
            &key,
            &crate::auth::invite::InviteClaims::new(
                "pat-1",
                claims.sid,
                crate::auth::RosterRole::Patient,
                chrono::Utc::now(),
                chrono::Utc::now(),
                chrono::Utc::now(),
            ),
        );
        assert_eq!(verify(&key, &invite), None);
    }
}
