//! The console's accounts and sessions against the database: the I/O side
//! of the rules in [`crate::console`] (throttle, session expiry, password,
//! second factor). Used by the console's handlers, by the REST
//! API's caller check (a console cookie is a credential there too) and by
//! `tandem staff`.
//!
//! Every sign-in, sign-out, logoff and failure goes into the sign-in audit;
//! when the audit cannot be written, the sign-in does not happen.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use url::Url;
use uuid::Uuid;

use crate::auth::ApiRole;
use crate::config::Config;
use crate::console::account::{self, StaffAccount};
use crate::console::session::{self, ConsoleSession, Ended, Stage};
use crate::console::throttle::Locked;
use crate::console::{new_secret, password, second_factor, secret_hash};
use crate::store::staff::{LinkPurpose, SignInRecord};
use crate::store::{Store, StoreError};

/// How long a set-up (or demo sign-in) link works.
pub const LINK_LIFETIME: Duration = Duration::hours(24);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    Invalid(String),
    #[error("The email or password is not right.")]
    WrongPassword,
    #[error(
        "The authentication code is not right. Codes change every 30 seconds; use the newest one."
    )]
    WrongCode,
    #[error("{0}")]
    Locked(String),
    #[error("You are not signed in, or your session has ended. Please sign in again.")]
    SignedOut,
    #[error("This link is not valid: it was used already, has expired, or was replaced. Ask an administrator for a new one.")]
    BadLink,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Store(#[from] StoreError),
}

/// The result of a correct password.
pub struct SignedIn {
    /// The cookie's value.
    pub cookie: String,
    pub stage: Stage,
}

/// What set-up gives the person.
#[derive(Debug, serde::Serialize)]
pub struct SetUp {
    pub email: String,
    /// Shown once, for the authenticator app; none when TOTP is off.
    pub totp_secret: Option<String>,
    pub otpauth_url: Option<String>,
}

#[derive(Clone)]
pub struct StaffConsole {
    store: Store,
    pub require_totp: bool,
    pub idle: Duration,
    public_url: Url,
    /// The program's time zone: "Today" is its day, times are shown in it.
    pub timezone: chrono_tz::Tz,
    /// The weekly IOP target (attendance.weekly_minimum_minutes).
    pub weekly_target_minutes: u32,
}

impl StaffConsole {
    pub fn new(store: Store, config: &Config) -> StaffConsole {
        StaffConsole {
            store,
            require_totp: config.console.require_totp,
            idle: session::idle_timeout(config.console.idle_timeout_minutes),
            public_url: config.public_url(),
            timezone: config.default_timezone(),
            weekly_target_minutes: config.attendance.weekly_minimum_minutes,
        }
    }

    fn link(&self, fragment: &str, token: &str) -> String {
        let mut url = self.public_url.clone();
        url.set_path("/console/");
        url.set_fragment(Some(&format!("{fragment}={token}")));
        url.to_string()
    }

    async fn new_link(
        &self,
        account: Uuid,
        purpose: LinkPurpose,
        now: DateTime<Utc>,
    ) -> Result<String, ConsoleError> {
        let token = new_secret();
        self.store
            .insert_staff_link(
                &secret_hash(&token),
                account,
                purpose,
                now,
                now + LINK_LIFETIME,
            )
            .await?;
        let fragment = match purpose {
            LinkPurpose::Setup => "setup",
            LinkPurpose::SignIn => "signin",
        };
        Ok(self.link(fragment, &token))
    }

    /// A new account and its one-time set-up link.
    pub async fn add(
        &self,
        email: &str,
        name: &str,
        roles: &[ApiRole],
        roster_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(StaffAccount, String), ConsoleError> {
        account::check_new(email, name, roles, roster_id).map_err(ConsoleError::Invalid)?;
        let account = StaffAccount {
            id: Uuid::new_v4(),
            email: account::normal_email(email),
            name: name.trim().to_owned(),
            roles: roles.to_vec(),
            roster_id: roster_id.map(|r| r.trim().to_owned()),
            password_hash: None,
            totp_secret: None,
            totp_last_step: None,
            created_at: now,
            disabled_at: None,
        };
        if !self.store.insert_staff(&account).await? {
            return Err(ConsoleError::Conflict(format!(
                "a staff account with the email {} exists already",
                account.email
            )));
        }
        let link = self.new_link(account.id, LinkPurpose::Setup, now).await?;
        Ok((account, link))
    }

    pub async fn find(&self, email: &str) -> Result<StaffAccount, ConsoleError> {
        self.store
            .staff_by_email(&account::normal_email(email))
            .await?
            .ok_or_else(|| {
                ConsoleError::NotFound(format!("no staff account has the email {email}"))
            })
    }

    pub async fn find_id(&self, id: Uuid) -> Result<StaffAccount, ConsoleError> {
        self.store
            .staff_by_id(id)
            .await?
            .ok_or_else(|| ConsoleError::NotFound("no such staff account".into()))
    }

    pub async fn accounts(&self) -> Result<Vec<StaffAccount>, ConsoleError> {
        Ok(self.store.staff_accounts().await?)
    }

    /// Disables the account and ends its sessions.
    pub async fn disable(
        &self,
        account: &StaffAccount,
        now: DateTime<Utc>,
    ) -> Result<(), ConsoleError> {
        self.store.set_staff_disabled(account.id, Some(now)).await?;
        Ok(())
    }

    /// Clears the second factor (and the password with `password`), ends
    /// the sessions, lifts a lock-out; the new set-up link.
    pub async fn reset(
        &self,
        account: &StaffAccount,
        password: bool,
        now: DateTime<Utc>,
    ) -> Result<String, ConsoleError> {
        self.store.reset_staff(account.id, password, now).await?;
        self.store.sign_in_cleared(&account.email).await?;
        self.new_link(account.id, LinkPurpose::Setup, now).await
    }

    /// A one-time sign-in link (the demo's admin only: it skips the
    /// password and the second factor).
    pub async fn sign_in_link(
        &self,
        account: &StaffAccount,
        now: DateTime<Utc>,
    ) -> Result<String, ConsoleError> {
        self.new_link(account.id, LinkPurpose::SignIn, now).await
    }

    /// Sets the password (and makes the TOTP secret) from a set-up link.
    pub async fn set_up(
        &self,
        token: &str,
        new_password: &str,
        now: DateTime<Utc>,
    ) -> Result<SetUp, ConsoleError> {
        if let Some(problem) = password::weakness(new_password) {
            return Err(ConsoleError::Invalid(problem));
        }
        let id = self
            .store
            .use_staff_link(&secret_hash(token), LinkPurpose::Setup, now)
            .await?
            .ok_or(ConsoleError::BadLink)?;
        let account = self.find_id(id).await?;
        let secret = self.require_totp.then(second_factor::new_secret);
        let hash = password::hash(new_password);
        self.store
            .set_staff_credentials(id, &hash, secret.as_deref())
            .await?;
        let otpauth_url = secret
            .as_deref()
            .and_then(|s| second_factor::setup_url(s, &account.email));
        Ok(SetUp {
            email: account.email,
            totp_secret: secret,
            otpauth_url,
        })
    }

    async fn audit(
        &self,
        account: Option<&StaffAccount>,
        email: &str,
        address: IpAddr,
        event: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ConsoleError> {
        self.store
            .record_sign_in(&SignInRecord {
                at: now,
                account_id: account.map(|a| a.id),
                email: email.to_owned(),
                address: address.to_string(),
                event: event.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// A failure: counted, audited, and the person told in words.
    async fn failed(
        &self,
        account: Option<&StaffAccount>,
        email: &str,
        address: IpAddr,
        event: &str,
        error: ConsoleError,
        now: DateTime<Utc>,
    ) -> ConsoleError {
        let locked = match self.store.sign_in_failed(email, address, now).await {
            Ok(locked) => locked,
            Err(e) => return e.into(),
        };
        if let Err(e) = self.audit(account, email, address, event, now).await {
            return e;
        }
        match locked {
            Some(locked) => {
                if let Err(e) = self.audit(account, email, address, "locked_out", now).await {
                    return e;
                }
                ConsoleError::Locked(locked.message(now))
            }
            None => error,
        }
    }

    /// Refuses, in words, an account or address that is locked out.
    async fn check_throttle(
        &self,
        email: &str,
        address: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Locked>, ConsoleError> {
        Ok(
            match self.store.sign_in_lockout(email, address, now).await? {
                Some(locked) => Err(locked),
                None => Ok(()),
            },
        )
    }

    async fn open(
        &self,
        account: &StaffAccount,
        stage: Stage,
        now: DateTime<Utc>,
    ) -> Result<String, ConsoleError> {
        let cookie = new_secret();
        let session = ConsoleSession {
            id: Uuid::new_v4(),
            account_id: account.id,
            csrf_token: new_secret(),
            stage,
            created_at: now,
            last_seen_at: now,
            ended_at: None,
        };
        self.store
            .insert_console_session(&session, &secret_hash(&cookie))
            .await?;
        Ok(cookie)
    }

    /// Email and password. A right password opens a session that, with
    /// TOTP on, waits for the code.
    pub async fn sign_in(
        &self,
        email: &str,
        given_password: &str,
        address: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<SignedIn, ConsoleError> {
        let email = account::normal_email(email);
        if let Err(locked) = self.check_throttle(&email, address, now).await? {
            self.audit(None, &email, address, "refused_locked", now)
                .await?;
            return Err(ConsoleError::Locked(locked.message(now)));
        }
        let account = self.store.staff_by_email(&email).await?;
        let hash = account
            .as_ref()
            .and_then(|a| a.password_hash.as_deref())
            .unwrap_or(password::decoy());
        let right = password::matches(hash, given_password);
        let usable = account
            .as_ref()
            .filter(|a| right && a.password_hash.is_some() && a.disabled_at.is_none());
        let Some(account) = usable else {
            let event = match &account {
                None => "failed_unknown_email",
                Some(a) if a.disabled_at.is_some() => "failed_disabled",
                _ => "failed_password",
            };
            return Err(self
                .failed(
                    account.as_ref(),
                    &email,
                    address,
                    event,
                    ConsoleError::WrongPassword,
                    now,
                )
                .await);
        };
        if self.require_totp && account.totp_secret.is_none() {
            self.audit(Some(account), &email, address, "failed_not_set_up", now)
                .await?;
            return Err(ConsoleError::Invalid(
                "This account has no authentication app set up yet: open your set-up link, or ask an administrator for a new one.".into(),
            ));
        }
        let stage = if self.require_totp {
            self.audit(Some(account), &email, address, "password_accepted", now)
                .await?;
            Stage::SecondFactor
        } else {
            self.store.sign_in_cleared(&email).await?;
            self.audit(Some(account), &email, address, "signed_in", now)
                .await?;
            Stage::SignedIn
        };
        let cookie = self.open(account, stage, now).await?;
        Ok(SignedIn { cookie, stage })
    }

    /// The TOTP code after the password.
    pub async fn second_factor(
        &self,
        cookie: &str,
        code: &str,
        address: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<(), ConsoleError> {
        let (session, account) = self.session(cookie, now).await?;
        if session.stage != Stage::SecondFactor {
            return Ok(());
        }
        let email = account.email.clone();
        if let Err(locked) = self.check_throttle(&email, address, now).await? {
            self.audit(Some(&account), &email, address, "refused_locked", now)
                .await?;
            self.store.end_console_session(session.id, now).await?;
            return Err(ConsoleError::Locked(locked.message(now)));
        }
        let step = account
            .totp_secret
            .as_deref()
            .and_then(|secret| second_factor::accept(secret, code, now, account.totp_last_step));
        let accepted = match step {
            Some(step) => self.store.use_totp_step(account.id, step).await?,
            None => false,
        };
        if !accepted {
            let error = self
                .failed(
                    Some(&account),
                    &email,
                    address,
                    "failed_code",
                    ConsoleError::WrongCode,
                    now,
                )
                .await;
            if matches!(error, ConsoleError::Locked(_)) {
                self.store.end_console_session(session.id, now).await?;
            }
            return Err(error);
        }
        self.store.sign_in_cleared(&email).await?;
        self.audit(Some(&account), &email, address, "signed_in", now)
            .await?;
        self.store.promote_console_session(session.id, now).await?;
        Ok(())
    }

    /// The demo's one-time sign-in link.
    pub async fn use_sign_in_link(
        &self,
        token: &str,
        address: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<String, ConsoleError> {
        let id = self
            .store
            .use_staff_link(&secret_hash(token), LinkPurpose::SignIn, now)
            .await?
            .ok_or(ConsoleError::BadLink)?;
        let account = self.find_id(id).await?;
        if account.disabled_at.is_some() {
            return Err(ConsoleError::BadLink);
        }
        self.audit(
            Some(&account),
            &account.email,
            address,
            "signed_in_with_link",
            now,
        )
        .await?;
        self.open(&account, Stage::SignedIn, now).await
    }

    /// The session of `cookie` at `now`, whatever its stage. An expired one
    /// is ended (and its logoff audited) here.
    pub async fn session(
        &self,
        cookie: &str,
        now: DateTime<Utc>,
    ) -> Result<(ConsoleSession, StaffAccount), ConsoleError> {
        let session = self
            .store
            .console_session(&secret_hash(cookie))
            .await?
            .ok_or(ConsoleError::SignedOut)?;
        let account = self.find_id(session.account_id).await?;
        if account.disabled_at.is_some() {
            return Err(ConsoleError::SignedOut);
        }
        if let Err(ended) = session.check(self.idle, now) {
            if ended != Ended::SignedOut && self.store.end_console_session(session.id, now).await? {
                self.audit(
                    Some(&account),
                    &account.email,
                    IpAddr::from([0, 0, 0, 0]),
                    ended.audit_event(),
                    now,
                )
                .await?;
            }
            return Err(ConsoleError::SignedOut);
        }
        Ok((session, account))
    }

    /// A signed-in session (the second factor passed). Looking is no
    /// activity: [`StaffConsole::touch`] is.
    pub async fn signed_in(
        &self,
        cookie: &str,
        now: DateTime<Utc>,
    ) -> Result<(ConsoleSession, StaffAccount), ConsoleError> {
        let (session, account) = self.session(cookie, now).await?;
        if session.stage != Stage::SignedIn {
            return Err(ConsoleError::SignedOut);
        }
        Ok((session, account))
    }

    /// Activity: the session's idle timeout starts again at `now`.
    pub async fn touch(
        &self,
        session: &mut ConsoleSession,
        now: DateTime<Utc>,
    ) -> Result<(), ConsoleError> {
        self.store.touch_console_session(session.id, now).await?;
        session.last_seen_at = now;
        Ok(())
    }

    pub async fn sign_out(
        &self,
        cookie: &str,
        address: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<(), ConsoleError> {
        let Ok((session, account)) = self.session(cookie, now).await else {
            return Ok(());
        };
        if self.store.end_console_session(session.id, now).await? {
            self.audit(Some(&account), &account.email, address, "signed_out", now)
                .await?;
        }
        Ok(())
    }

    pub async fn sign_in_audit(&self, limit: u32) -> Result<Vec<SignInRecord>, ConsoleError> {
        Ok(self.store.sign_in_audit(limit).await?)
    }
}
