//! A staff account: one person (unique user, as HIPAA asks), their email,
//! display name, roles and, for a clinician, the roster id they appear under
//! in sessions.
//!
//! Roles mean what API roles mean ([`ApiRole`]). An account may hold
//! several (a clinician who is also the program's admin).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::ApiRole;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffAccount {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub roles: Vec<ApiRole>,
    /// The id a clinician has on rosters (`clinician.id` of sessions).
    pub roster_id: Option<String>,
    /// argon2id PHC string; none until the person set a password.
    pub password_hash: Option<String>,
    /// Base32 TOTP secret; none until set up.
    pub totp_secret: Option<String>,
    /// The last TOTP time step accepted: a code is good once.
    pub totp_last_step: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl StaffAccount {
    pub fn has(&self, role: ApiRole) -> bool {
        self.roles.contains(&role)
    }

    /// The one role the REST API's checks see first: admin when held.
    pub fn primary_role(&self) -> ApiRole {
        [
            ApiRole::Admin,
            ApiRole::Scheduler,
            ApiRole::Compliance,
            ApiRole::Clinician,
        ]
        .into_iter()
        .find(|r| self.has(*r))
        .unwrap_or(ApiRole::Clinician)
    }

    /// Who, in the export audit and the sign-in audit.
    pub fn actor(&self) -> String {
        format!("staff:{}", self.email)
    }

    /// Sees every session (admins and schedulers); a clinician only sees
    /// the sessions they lead.
    pub fn sees_all_sessions(&self) -> bool {
        self.has(ApiRole::Admin) || self.has(ApiRole::Scheduler)
    }

    /// May this account see the session led by `clinician_id`?
    pub fn may_see_session(&self, clinician_id: &str) -> bool {
        self.sees_all_sessions() || self.roster_id.as_deref() == Some(clinician_id)
    }
}

/// The new account's fields, checked: a clear sentence for each problem.
pub fn check_new(
    email: &str,
    name: &str,
    roles: &[ApiRole],
    roster_id: Option<&str>,
) -> Result<(), String> {
    let email = email.trim();
    let valid_email = email
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.ends_with('.'))
        && !email.contains(char::is_whitespace);
    if !valid_email {
        return Err(format!("{email:?} is not an email address"));
    }
    if name.trim().is_empty() {
        return Err("the name is empty".into());
    }
    if roles.is_empty() {
        return Err("give at least one role: admin, scheduler, clinician or compliance".into());
    }
    if roles.contains(&ApiRole::Clinician) && roster_id.is_none_or(|r| r.trim().is_empty()) {
        return Err(
            "a clinician needs the roster id they appear under in sessions (--roster-id)".into(),
        );
    }
    Ok(())
}

/// Emails are compared without case.
pub fn normal_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// `admin,clinician` → roles; the unknown one named.
pub fn parse_roles(raw: &str) -> Result<Vec<ApiRole>, String> {
    let mut roles = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let role: ApiRole = part.parse().map_err(|()| {
            format!("{part:?} is not a role: use admin, scheduler, clinician or compliance")
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

pub fn roles_text(roles: &[ApiRole]) -> String {
    roles
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(roles: &[ApiRole], roster: Option<&str>) -> StaffAccount {
        StaffAccount {
            id: Uuid::new_v4(),
            email: "a@clinic.example".into(),
            name: "A".into(),
            roles: roles.to_vec(),
            roster_id: roster.map(Into::into),
            password_hash: None,
            totp_secret: None,
            totp_last_step: None,
            created_at: Utc::now(),
            disabled_at: None,
        }
    }

    #[test]
    fn a_clinician_sees_only_the_sessions_they_lead() {
        let clinician = account(&[ApiRole::Clinician], Some("dr-lee"));
        assert!(clinician.may_see_session("dr-lee"));
        assert!(!clinician.may_see_session("dr-kim"));
        let admin = account(&[ApiRole::Admin, ApiRole::Clinician], Some("dr-lee"));
        assert!(admin.may_see_session("dr-kim"));
        assert_eq!(admin.primary_role(), ApiRole::Admin);
        let compliance = account(&[ApiRole::Compliance], None);
        assert!(!compliance.may_see_session("dr-kim"));
    }

    #[test]
    fn new_accounts_are_checked_in_words() {
        assert!(check_new("x@clinic.example", "X", &[ApiRole::Admin], None).is_ok());
        assert!(check_new("x", "X", &[ApiRole::Admin], None)
            .unwrap_err()
            .contains("not an email"));
        assert!(
            check_new("x@clinic.example", "X", &[ApiRole::Clinician], None)
                .unwrap_err()
                .contains("roster id")
        );
        assert!(check_new("x@clinic.example", "X", &[], None).is_err());
        assert_eq!(
            parse_roles("admin, clinician,admin").unwrap(),
            vec![ApiRole::Admin, ApiRole::Clinician]
        );
        assert!(parse_roles("nurse").unwrap_err().contains("nurse"));
    }
}
