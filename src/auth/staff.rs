//! Staff tokens: short-lived signed credentials for people (compliance
//! staff, clinicians using the API), issued by an admin on the server with
//! `tandem token issue`.
//!
//! They are JWTs signed with the same Ed25519 key as invites but with their
//! own audience, so a staff token can never open a session and an invite can
//! never call the API. They cannot be revoked one by one; keep them short
//! (default 8 hours, at most 7 days) and rotate the signing key to void them
//! all.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::signing_key::SigningKey;
use super::ApiRole;

pub(crate) const AUDIENCE: &str = "tandem-staff";

/// The longest a staff token may live.
pub(crate) const MAX_LIFETIME: Duration = Duration::days(7);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffClaims {
    /// Who: the clinic's staff id (shown in the export audit log).
    pub sub: String,
    pub role: ApiRole,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub aud: String,
}

/// Signs a staff token for `subject` with `role`, valid from `now` for
/// `lifetime` (capped at [`MAX_LIFETIME`]).
pub(crate) fn issue(
    key: &SigningKey,
    subject: &str,
    role: ApiRole,
    now: DateTime<Utc>,
    lifetime: Duration,
) -> String {
    let claims = StaffClaims {
        sub: subject.to_owned(),
        role,
        iat: now.timestamp(),
        exp: (now + lifetime.min(MAX_LIFETIME)).timestamp(),
        jti: Uuid::new_v4(),
        aud: AUDIENCE.to_owned(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key.encoding)
        .expect("Ed25519 signing of serialisable claims cannot fail")
}

/// The claims of a valid, unexpired staff token at `now`.
pub fn verify(key: &SigningKey, token: &str, now: DateTime<Utc>) -> Option<StaffClaims> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.leeway = 0;
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["sub", "aud", "exp"]);
    let claims = jsonwebtoken::decode::<StaffClaims>(token, &key.decoding, &validation)
        .ok()?
        .claims;
    (now.timestamp() < claims.exp && claims.iat <= now.timestamp() + 60).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::invite::{self, InviteClaims};
    use crate::auth::RosterRole;

    #[test]
    fn a_staff_token_works_until_it_expires_and_only_with_its_key() {
        let key = SigningKey::generate();
        let now: DateTime<Utc> = "2026-03-02T15:00:00Z".parse().unwrap();
        let token = issue(&key, "cm-12", ApiRole::Compliance, now, Duration::hours(8));
        let claims = verify(&key, &token, now + Duration::hours(7)).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role),
            ("cm-12", ApiRole::Compliance)
        );
        assert!(verify(&key, &token, now + Duration::hours(8)).is_none());
        assert!(verify(&SigningKey::generate(), &token, now).is_none());
        let long = issue(&key, "x", ApiRole::Admin, now, Duration::days(30));
        assert!(
            verify(&key, &long, now + MAX_LIFETIME).is_none(),
            "lifetime is capped"
        );
    }

    #[test]
    fn invites_and_staff_tokens_do_not_mix() {
        let key = SigningKey::generate();
        let now: DateTime<Utc> = "2026-03-02T15:00:00Z".parse().unwrap();
        let invite_claims = InviteClaims::new(
            "p",
            Uuid::new_v4(),
            RosterRole::Clinician,
            now,
            now + Duration::hours(1),
            now,
        );
        let invite_token = invite::issue(&key, &invite_claims);
        assert!(
            verify(&key, &invite_token, now).is_none(),
            "an invite is not a staff token"
        );
        let staff = issue(&key, "cm", ApiRole::Admin, now, Duration::hours(1));
        assert!(
            invite::verify(&key, &staff, now).is_err(),
            "a staff token is not an invite"
        );
    }
}
