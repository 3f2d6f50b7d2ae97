//! `tandem sessions ...` and `tandem invite`.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use clap::{Args, Subcommand};
use uuid::Uuid;

use super::DbArgs;
use crate::schedule::{
    ClinicianRequest, Invite, ParticipantRequest, ScheduleError, Session, SessionRequest,
    SettingsRequest,
};

#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// Schedule a session, from flags or from a JSON file shaped like the
    /// REST API's request body.
    Create(CreateArgs),
    /// List sessions that overlap a time range.
    List {
        /// RFC 3339 start of the range (default: open).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// RFC 3339 end of the range (default: open).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show one session and its roster.
    Show {
        session: Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Cancel a session.
    Cancel {
        session: Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke one participant's links.
    Revoke {
        session: Uuid,
        participant: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// A JSON file with the request body of POST /v1/sessions.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["title", "kind", "clinician", "participant"])]
    file: Option<PathBuf>,
    #[arg(long)]
    title: Option<String>,
    /// couple, group or individual.
    #[arg(long)]
    kind: Option<String>,
    /// RFC 3339 start time, or "now".
    #[arg(long, default_value = "now")]
    starts_at: String,
    /// RFC 3339 end time (or use --minutes).
    #[arg(long, conflicts_with = "minutes")]
    ends_at: Option<String>,
    /// Length in minutes from the start.
    #[arg(long, default_value_t = 60)]
    minutes: i64,
    /// IANA time zone of the program, e.g. America/New_York.
    #[arg(long)]
    timezone: Option<String>,
    /// The clinician: id=ID,name=NAME
    #[arg(long, value_name = "id=ID,name=NAME")]
    clinician: Option<String>,
    /// A participant (repeat): id=ID,name=NAME,role=patient|partner|observer[,household=H][,mrn=M]
    #[arg(long, value_name = "id=..,name=..,role=..")]
    participant: Vec<String>,
    /// Admit rostered people without a click while the clinician is present.
    #[arg(long)]
    auto_admit: bool,
    /// Schedule it even where it overlaps another session of one of its
    /// people (recorded on the session).
    #[arg(long)]
    allow_overlap: bool,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Args)]
pub(crate) struct InviteArgs {
    session: Uuid,
    /// Print the API's JSON instead of one line per person.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Parses `key=value,key=value`.
fn fields(flag: &str, raw: &str) -> anyhow::Result<HashMap<String, String>> {
    raw.split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--{flag} {raw:?}: expected key=value pairs separated by commas")
            })?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

impl CreateArgs {
    fn request(&self, now: DateTime<Utc>) -> anyhow::Result<SessionRequest> {
        if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            return serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("{} is not a valid session request: {e}", file.display())
            });
        }
        let starts_at = if self.starts_at == "now" {
            now
        } else {
            DateTime::parse_from_rfc3339(&self.starts_at)
                .map_err(|_| {
                    anyhow::anyhow!("--starts-at {:?} is not an RFC 3339 time", self.starts_at)
                })?
                .with_timezone(&Utc)
        };
        let ends_at = match &self.ends_at {
            Some(raw) => raw.clone(),
            None => (starts_at + Duration::minutes(self.minutes)).to_rfc3339(),
        };
        let clinician = self
            .clinician
            .as_deref()
            .map(|raw| {
                let mut f = fields("clinician", raw)?;
                anyhow::Ok(ClinicianRequest {
                    id: f.remove("id"),
                    name: f.remove("name"),
                })
            })
            .transpose()?;
        let participants = self
            .participant
            .iter()
            .map(|raw| {
                let mut f = fields("participant", raw)?;
                let p = ParticipantRequest {
                    id: f.remove("id"),
                    name: f.remove("name"),
                    role: f.remove("role"),
                    household: f.remove("household"),
                    mrn: f.remove("mrn"),
                };
                if let Some(key) = f.keys().next() {
                    anyhow::bail!("--participant {raw:?}: unknown key {key:?}");
                }
                Ok(p)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SessionRequest {
            title: self.title.clone(),
            kind: self.kind.clone(),
            starts_at: Some(starts_at.to_rfc3339()),
            ends_at: Some(ends_at),
            timezone: self.timezone.clone(),
            clinician,
            participants: Some(participants),
            settings: Some(SettingsRequest {
                auto_admit: Some(self.auto_admit),
                ..Default::default()
            }),
            allow_overlap: Some(self.allow_overlap),
        })
    }
}

/// Turns validation errors into one readable message.
fn explain(error: ScheduleError) -> anyhow::Error {
    explain_request("the session", error)
}

/// Validation errors of `what` as one readable message, a field a line,
/// with the API's words.
pub(crate) fn explain_request(what: &str, error: ScheduleError) -> anyhow::Error {
    match error {
        ScheduleError::Invalid(problems) => {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("  {}: {}", p.field, p.message))
                .collect();
            anyhow::anyhow!("{what} is not valid:\n{}", lines.join("\n"))
        }
        other => other.into(),
    }
}

fn print_summary(session: &Session, now: DateTime<Utc>) {
    println!(
        "{}  {:<10}  {:<9}  {} – {}  {}",
        session.id,
        session.kind.as_str(),
        format!("{:?}", session.status(now)).to_lowercase(),
        session.starts_at.format("%Y-%m-%d %H:%M"),
        session.ends_at.format("%H:%M UTC"),
        session.title
    );
}

/// One line per person: role, name, link.
pub(crate) fn print_invites(session: &Session, invites: &[Invite]) {
    let width = session
        .roster
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0);
    for invite in invites {
        let name = session
            .member(&invite.participant_id)
            .map_or("", |p| p.name.as_str());
        println!(
            "{:<10} {:<width$}  {}",
            invite.role.as_str(),
            name,
            invite.url
        );
    }
}

pub(crate) async fn run(command: SessionsCommand) -> anyhow::Result<()> {
    let now = Utc::now();
    match command {
        SessionsCommand::Create(args) => {
            let (_, scheduler) = args.db.open().await?;
            let request = args.request(now)?;
            let session = scheduler.create(&request, now).await.map_err(explain)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&session.view(now))?);
            } else {
                print_summary(&session, now);
            }
        }
        SessionsCommand::List { from, to, json, db } => {
            let (_, scheduler) = db.open().await?;
            let sessions = scheduler.list(from, to).await.map_err(explain)?;
            if json {
                let views: Vec<_> = sessions.iter().map(|s| s.view(now)).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "sessions": views }))?
                );
            } else {
                for session in &sessions {
                    print_summary(session, now);
                }
            }
        }
        SessionsCommand::Show { session, db } => {
            let (_, scheduler) = db.open().await?;
            let session = scheduler.get(session).await.map_err(explain)?;
            println!("{}", serde_json::to_string_pretty(&session.view(now))?);
        }
        SessionsCommand::Cancel { session, db } => {
            let (_, scheduler) = db.open().await?;
            scheduler.cancel(session, now).await.map_err(explain)?;
            println!("cancelled session {session}");
        }
        SessionsCommand::Revoke {
            session,
            participant,
            db,
        } => {
            let (_, scheduler) = db.open().await?;
            scheduler
                .revoke(session, &participant, now)
                .await
                .map_err(explain)?;
            println!("revoked {participant}'s links to session {session}");
        }
    }
    Ok(())
}

pub(crate) async fn invite(args: InviteArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let (_, scheduler) = args.db.open().await?;
    let session = scheduler.get(args.session).await.map_err(explain)?;
    let invites = scheduler
        .invites(args.session, now)
        .await
        .map_err(explain)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "invites": invites }))?
        );
    } else {
        print_invites(&session, &invites);
    }
    scheduler.close().await;
    Ok(())
}
