//! Who may do what.
//!
//! Two kinds of credentials exist. Patients and clinicians join with a
//! per-participant invite token ([`invite`]): a signed, time-bound JWT that
//! travels only in the link's URL fragment. The clinic's systems call the REST
//! API with an API key ([`api_key`]) that carries one [`ApiRole`]; staff
//! (compliance, clinicians) use short-lived staff tokens ([`staff`]).

pub mod api_key;
pub(crate) mod calendar;
pub mod invite;
pub mod signing_key;
pub mod staff;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use tandem_protocol::RosterRole;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    /// Everything.
    Admin,
    /// Sessions, rosters, invites and revocation: what an EHR or scheduler needs.
    Scheduler,
    /// Attendance reports and exports, nothing else.
    Compliance,
    /// Annotations on attendance (staff tokens for clinicians).
    Clinician,
    /// `GET /metrics` and nothing else: the key Prometheus scrapes with.
    Metrics,
}

impl ApiRole {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ApiRole::Admin => "admin",
            ApiRole::Scheduler => "scheduler",
            ApiRole::Compliance => "compliance",
            ApiRole::Clinician => "clinician",
            ApiRole::Metrics => "metrics",
        }
    }
}

impl FromStr for ApiRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "admin" => Ok(ApiRole::Admin),
            "scheduler" => Ok(ApiRole::Scheduler),
            "compliance" => Ok(ApiRole::Compliance),
            "clinician" => Ok(ApiRole::Clinician),
            "metrics" => Ok(ApiRole::Metrics),
            _ => Err(()),
        }
    }
}

impl fmt::Display for ApiRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
