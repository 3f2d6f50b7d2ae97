//! Invite tokens: one per participant and session, signed, time-bound.
//!
//! A token is a JWT (EdDSA) whose claims say who (`sub`, the clinic's
//! participant id), where (`sid`), as what (`role`) and when (`nbf`..`exp`:
//! the session window widened by the early-join window and the overrun
//! grace). It rides in the link's fragment (`/j/SESSION#t=TOKEN`) so it
//! never reaches an access log or a Referer header.
//!
//! Verification takes `now` as an argument: the window is checked here to the
//! second, with no leeway and no hidden clock, so the boundaries are tested
//! exactly. The signature alone does not admit anyone: the roster is the
//! authority (see `room::admission`).

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::signing_key::SigningKey;
use super::RosterRole;

/// The audience that marks a JWT as an invite, so that no other token the
/// server signs can be used to join a session.
pub(crate) const AUDIENCE: &str = "tandem-invite";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteClaims {
    /// The participant id the clinic gave in the roster.
    pub sub: String,
    /// The session id.
    pub sid: Uuid,
    pub role: RosterRole,
    /// Unix seconds: the link opens (session start − early-join window).
    pub nbf: i64,
    /// Unix seconds: the link closes (session end + overrun grace).
    pub exp: i64,
    /// Unix seconds: when the link was issued.
    pub iat: i64,
    /// A unique id for this link.
    pub jti: Uuid,
    pub aud: String,
    /// A series link: `sid` names a series, and the link admits its holder
    /// to whichever occurrence's window is open at the join
    /// (`Scheduler::resolve_invite`). Absent (false) in session links.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub series: bool,
}

impl InviteClaims {
    pub fn new(
        participant: &str,
        session: Uuid,
        role: RosterRole,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
        issued_at: DateTime<Utc>,
    ) -> InviteClaims {
        InviteClaims {
            sub: participant.to_owned(),
            sid: session,
            role,
            nbf: opens_at.timestamp(),
            // Rounded up: the link never closes before the session does
            // (the room refuses joins after its close on its own).
            exp: closes_at.timestamp() + i64::from(closes_at.timestamp_subsec_millis() > 0),
            iat: issued_at.timestamp(),
            jti: Uuid::new_v4(),
            aud: AUDIENCE.to_owned(),
            series: false,
        }
    }

    /// A link to every occurrence of series `series` (see [`InviteClaims::series`]).
    pub fn for_series(
        participant: &str,
        series: Uuid,
        role: RosterRole,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
        issued_at: DateTime<Utc>,
    ) -> InviteClaims {
        InviteClaims {
            series: true,
            ..InviteClaims::new(participant, series, role, opens_at, closes_at, issued_at)
        }
    }

    pub(crate) fn opens_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.nbf, 0).single().unwrap_or_default()
    }

    pub(crate) fn closes_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.exp, 0).single().unwrap_or_default()
    }
}

/// Why a token is not usable on its own terms (before the roster is asked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is not a valid Tandem invite")]
    Invalid,
    #[error("the link expired at {expired_at}")]
    Expired {
        expired_at: DateTime<Utc>,
        claims: Box<InviteClaims>,
    },
    #[error("the link opens at {opens_at}")]
    NotYetOpen {
        opens_at: DateTime<Utc>,
        claims: Box<InviteClaims>,
    },
}

/// Signs `claims` into a compact JWT.
pub fn issue(key: &SigningKey, claims: &InviteClaims) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key.encoding)
        .expect("Ed25519 signing of serialisable claims cannot fail")
}

/// Checks the signature, the audience and the window `nbf <= now < exp`.
pub fn verify(
    key: &SigningKey,
    token: &str,
    now: DateTime<Utc>,
) -> Result<InviteClaims, TokenError> {
    let claims = decode(key, token)?;
    let (opens_at, closes_at) = (claims.opens_at(), claims.closes_at());
    judge(claims, opens_at, closes_at, now)
}

/// Checks the signature and the audience only: the claims of a link the
/// server issued, whatever the time. The window is then judged with
/// [`judge`], against the token's own times or the session record's.
pub fn decode(key: &SigningKey, token: &str) -> Result<InviteClaims, TokenError> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["sub", "aud", "nbf", "exp"]);
    jsonwebtoken::decode::<InviteClaims>(token, &key.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|_| TokenError::Invalid)
}

/// Judges `claims` against the window `opens_at <= now < closes_at`, to
/// the second (a rescheduled session's link is judged against the
/// session's current window, not the one it was issued for).
pub fn judge(
    claims: InviteClaims,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<InviteClaims, TokenError> {
    let (nbf, exp) = (
        opens_at.timestamp(),
        closes_at.timestamp() + i64::from(closes_at.timestamp_subsec_millis() > 0),
    );
    let now = now.timestamp();
    if now < nbf {
        return Err(TokenError::NotYetOpen {
            opens_at: Utc.timestamp_opt(nbf, 0).single().unwrap_or_default(),
            claims: Box::new(claims),
        });
    }
    if now >= exp {
        return Err(TokenError::Expired {
            expired_at: Utc.timestamp_opt(exp, 0).single().unwrap_or_default(),
            claims: Box::new(claims),
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    fn claims(nbf: i64, exp: i64) -> InviteClaims {
        InviteClaims::new(
            "p-1",
            Uuid::new_v4(),
            RosterRole::Patient,
            at(nbf),
            at(exp),
            at(nbf),
        )
    }

    #[test]
    fn a_token_round_trips_with_every_claim() {
        let key = SigningKey::generate();
        let c = claims(1_000, 2_000);
        let token = issue(&key, &c);
        assert_eq!(verify(&key, &token, at(1_500)).unwrap(), c);
        let payload: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.split('.').nth(1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        for claim in ["sub", "sid", "role", "nbf", "exp", "jti"] {
            assert!(payload.get(claim).is_some(), "missing {claim}");
        }
        assert_eq!(payload["role"], "patient");
    }

    #[test]
    fn the_window_holds_to_the_second() {
        let key = SigningKey::generate();
        let token = issue(&key, &claims(1_000, 2_000));
        let cases = [
            (999, "not_yet_open"),
            (1_000, "ok"),
            (1_999, "ok"),
            (2_000, "expired"),
            (2_001, "expired"),
        ];
        for (now, expected) in cases {
            let got = match verify(&key, &token, at(now)) {
                Ok(_) => "ok",
                Err(TokenError::NotYetOpen { .. }) => "not_yet_open",
                Err(TokenError::Expired { .. }) => "expired",
                Err(TokenError::Invalid) => "invalid",
            };
            assert_eq!(got, expected, "at {now}");
        }
    }

    #[test]
    fn a_token_signed_by_another_key_is_invalid() {
        let token = issue(&SigningKey::generate(), &claims(0, i64::from(i32::MAX)));
        assert_eq!(
            verify(&SigningKey::generate(), &token, at(10)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_tampered_token_is_invalid() {
        let key = SigningKey::generate();
        let token = issue(&key, &claims(0, 100));
        let mut forged = claims(0, 100);
        forged.role = RosterRole::Clinician;
        let forged_payload = issue(&key, &forged).split('.').nth(1).unwrap().to_owned();
        let parts: Vec<&str> = token.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(verify(&key, &spliced, at(10)), Err(TokenError::Invalid));
        assert_eq!(
            verify(&key, "not-a-token", at(10)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_for_another_audience_is_invalid() {
        let key = SigningKey::generate();
        let mut c = claims(0, 100);
        c.aud = "tandem-staff".into();
        assert_eq!(
            verify(&key, &issue(&key, &c), at(10)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn window_reports_the_opening_time() {
        let key = SigningKey::generate();
        let open = at(1_700_000_000);
        let c = InviteClaims::new(
            "p-1",
            Uuid::new_v4(),
            RosterRole::Partner,
            open,
            open + Duration::hours(2),
            open,
        );
        match verify(&key, &issue(&key, &c), open - Duration::seconds(1)) {
            Err(TokenError::NotYetOpen { opens_at, .. }) => assert_eq!(opens_at, open),
            other => panic!("{other:?}"),
        }
    }
}
