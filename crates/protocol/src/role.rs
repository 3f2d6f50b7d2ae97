//! The roles a session's roster knows. They travel in invite tokens, in
//! `joined` and in participant lists, so they belong to the protocol.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A person's role on a session's roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RosterRole {
    Patient,
    Partner,
    Observer,
    Clinician,
}

impl RosterRole {
    pub fn as_str(self) -> &'static str {
        match self {
            RosterRole::Patient => "patient",
            RosterRole::Partner => "partner",
            RosterRole::Observer => "observer",
            RosterRole::Clinician => "clinician",
        }
    }
}

impl fmt::Display for RosterRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RosterRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "patient" => Ok(RosterRole::Patient),
            "partner" => Ok(RosterRole::Partner),
            "observer" => Ok(RosterRole::Observer),
            "clinician" => Ok(RosterRole::Clinician),
            _ => Err(()),
        }
    }
}
