//! `tandem people`, `tandem slots` and `tandem series`: the scheduling API
//! on the server machine, with the same validation and messages (requests
//! are the API's JSON bodies, read from files or built from flags).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::sessions::explain_request;
use super::DbArgs;
use crate::schedule::{AvailabilityRequest, PersonRequest, SeriesRequest, SlotRequest};

#[derive(Debug, Subcommand)]
pub(crate) enum PeopleCommand {
    /// Create or replace a person (the id is the clinic's roster id).
    Put {
        id: String,
        #[arg(long)]
        name: String,
        /// patient, partner, observer or clinician.
        #[arg(long)]
        role: String,
        /// IANA time zone, e.g. America/New_York.
        #[arg(long)]
        timezone: String,
        #[arg(long)]
        household: Option<String>,
        #[arg(long)]
        mrn: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace a person's availability with a JSON document shaped like
    /// the body of PUT /v1/people/{id}/availability.
    Availability {
        id: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show a person and their availability (JSON).
    Show {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SlotsArgs {
    /// The people who must all be free, comma-separated ids.
    #[arg(long, value_delimiter = ',', required = true)]
    people: Vec<String>,
    /// Length of the slot.
    #[arg(long)]
    minutes: i64,
    /// RFC 3339 start of the range.
    #[arg(long)]
    from: String,
    /// RFC 3339 end of the range (at most 62 days after --from).
    #[arg(long)]
    to: String,
    #[arg(long, default_value_t = 15)]
    step: i64,
    /// Minutes kept free before and after every session.
    #[arg(long, default_value_t = 0)]
    gap: i64,
    #[arg(long, default_value_t = 20)]
    limit: i64,
    /// Print the API's JSON instead of one line per slot.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SeriesCommand {
    /// Create every occurrence of a series from a JSON file shaped like the
    /// body of POST /v1/series; prints the series and one link per person.
    Create {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show a series and its occurrences (JSON).
    Show {
        series: Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Cancel the occurrences still to come; past ones stay.
    Cancel {
        series: Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn read_json<T: DeserializeOwned>(file: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) async fn people(command: PeopleCommand) -> anyhow::Result<()> {
    let now = Utc::now();
    match command {
        PeopleCommand::Put {
            id,
            name,
            role,
            timezone,
            household,
            mrn,
            db,
        } => {
            let (_, scheduler) = db.open().await?;
            let request = PersonRequest {
                name: Some(name),
                role: Some(role),
                timezone: Some(timezone),
                household,
                mrn,
            };
            let (_, created) = scheduler
                .put_person(&id, &request, now)
                .await
                .map_err(|e| explain_request("the person", e))?;
            println!(
                "{} person {id}",
                if created { "created" } else { "updated" }
            );
        }
        PeopleCommand::Availability { id, file, db } => {
            let (_, scheduler) = db.open().await?;
            let request: AvailabilityRequest = read_json(&file)?;
            scheduler
                .put_availability(&id, &request, now)
                .await
                .map_err(|e| explain_request("the availability", e))?;
            println!("stored the availability of {id}");
        }
        PeopleCommand::Show { id, db } => {
            let (_, scheduler) = db.open().await?;
            let person = scheduler
                .person(&id)
                .await
                .map_err(|e| explain_request("the person", e))?;
            let availability = scheduler.availability(&id).await.ok();
            print_json(&serde_json::json!({"person": person, "availability": availability}))?;
        }
    }
    Ok(())
}

pub(crate) async fn slots(args: SlotsArgs) -> anyhow::Result<()> {
    let (_, scheduler) = args.db.open().await?;
    let request = SlotRequest {
        people: Some(args.people),
        duration_minutes: Some(args.minutes),
        from: Some(args.from),
        to: Some(args.to),
        step_minutes: Some(args.step),
        gap_minutes: Some(args.gap),
        limit: Some(args.limit),
    };
    let slots = scheduler
        .search_slots(&request, Utc::now())
        .await
        .map_err(|e| explain_request("the search", e))?;
    if args.json {
        let list: Vec<_> = slots
            .iter()
            .map(|(s, e)| serde_json::json!({"starts_at": s, "ends_at": e}))
            .collect();
        return print_json(&serde_json::json!({ "slots": list }));
    }
    if slots.is_empty() {
        println!("no common slot in that range");
    }
    for (start, end) in &slots {
        println!("{}  {}", rfc3339(start), rfc3339(end));
    }
    Ok(())
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) async fn series(command: SeriesCommand) -> anyhow::Result<()> {
    let now = Utc::now();
    match command {
        SeriesCommand::Create { file, db } => {
            let (_, scheduler) = db.open().await?;
            let request: SeriesRequest = read_json(&file)?;
            let series = scheduler
                .create_series(&request, now)
                .await
                .map_err(|e| explain_request("the series", e))?;
            let id = series.record.id;
            println!("series {id}: {} sessions", series.sessions.len());
            for s in &series.sessions {
                println!("  {}  {}", s.id, rfc3339(&s.starts_at));
            }
            let invites = scheduler
                .series_invites(id, now)
                .await
                .map_err(|e| explain_request("the series", e))?;
            for invite in invites {
                println!("{:<10} {}", invite.role.as_str(), invite.url);
            }
        }
        SeriesCommand::Show { series, db } => {
            let (_, scheduler) = db.open().await?;
            let series = scheduler
                .series(series)
                .await
                .map_err(|e| explain_request("the series", e))?;
            print_json(&series.view(now))?;
        }
        SeriesCommand::Cancel { series, db } => {
            let (_, scheduler) = db.open().await?;
            scheduler
                .cancel_series(series, now)
                .await
                .map_err(|e| explain_request("the series", e))?;
            println!("cancelled the sessions of series {series} still to come");
        }
    }
    Ok(())
}
