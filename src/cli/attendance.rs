//! `tandem attendance ...` and `tandem token issue`: compliance work on the
//! server machine, on the same database and with the same audit trail as
//! the API.

use chrono::{DateTime, Duration, Utc};
use clap::Subcommand;
use uuid::Uuid;

use super::DbArgs;
use crate::attendance::ledger::{Ledger, Verification};
use crate::attendance::service::{Attendance, Export, Format};
use crate::auth::ApiRole;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(crate) enum AttendanceCommand {
    /// Recompute the ledger's hash chain: OK with the count and head hash, or
    /// the first event that does not match (exit code 1).
    Verify {
        #[command(flatten)]
        db: DbArgs,
    },
    /// One session's attendance, or every session in a time range.
    Export {
        /// The session's id (or use --from and --to).
        session: Option<Uuid>,
        /// RFC 3339 start of a range.
        #[arg(long, requires = "to", conflicts_with = "session")]
        from: Option<DateTime<Utc>>,
        /// RFC 3339 end of a range.
        #[arg(long, requires = "from")]
        to: Option<DateTime<Utc>>,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The weekly IOP report per patient.
    Weekly {
        /// The week, as YYYY-Www (e.g. 2026-W48), in the program's time zone.
        #[arg(long)]
        week: String,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The export audit log: who exported what, when.
    Audit {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Output {
    /// json or csv.
    #[arg(long, default_value = "json")]
    format: String,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
}

impl Output {
    fn write(&self, export: &Export) -> anyhow::Result<()> {
        match &self.output {
            Some(path) => {
                std::fs::write(path, &export.bytes)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                eprintln!(
                    "{} rows written to {} (SHA-256 {})",
                    export.rows,
                    path.display(),
                    export.sha256
                );
            }
            None => std::io::Write::write_all(&mut std::io::stdout(), &export.bytes)?,
        }
        Ok(())
    }
}

/// Who the audit log names for exports made on the server's command line.
fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

async fn attendance(db: &DbArgs) -> anyhow::Result<Attendance> {
    let config = db.load()?;
    let store = Store::connect(&config.database(), false).await?;
    let ledger = Ledger::start(store).await?;
    Ok(Attendance::new(
        ledger,
        config.attendance.clone(),
        config.default_timezone(),
    ))
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Issue a staff token for a person (compliance staff, a clinician).
    Issue {
        /// What the token may do.
        #[arg(long, value_enum)]
        role: ApiRole,
        /// The person's staff id (recorded in the export audit log).
        #[arg(long)]
        subject: String,
        /// Hours until it expires (at most 168).
        #[arg(long, default_value_t = 8)]
        hours: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub(crate) async fn run(command: AttendanceCommand) -> anyhow::Result<()> {
    let now = Utc::now();
    let format = |out: &Output| {
        Format::parse(Some(&out.format)).map_err(|e| anyhow::anyhow!("--format: {e}"))
    };
    match command {
        AttendanceCommand::Export {
            session,
            from,
            to,
            out,
            db,
        } => {
            let attendance = attendance(&db).await?;
            let export = match (session, from, to) {
                (Some(id), _, _) => {
                    attendance
                        .session_export(id, format(&out)?, &actor(), now)
                        .await?
                }
                (None, Some(from), Some(to)) => {
                    attendance
                        .range_export(from, to, format(&out)?, &actor(), now)
                        .await?
                }
                _ => anyhow::bail!("give a session id, or --from and --to"),
            };
            out.write(&export)?;
        }
        AttendanceCommand::Weekly { week, out, db } => {
            let export = attendance(&db)
                .await?
                .weekly_export(&week, format(&out)?, &actor(), now)
                .await?;
            out.write(&export)?;
        }
        AttendanceCommand::Audit { db } => {
            for record in attendance(&db).await?.audit_log().await? {
                let at = chrono::DateTime::from_timestamp_millis(record.at).unwrap_or_default();
                println!(
                    "{}  {:<24}  {:<7}  {:<4}  {:>6} rows  {}  {}",
                    at.format("%Y-%m-%d %H:%M:%S UTC"),
                    record.actor,
                    record.what,
                    record.format,
                    record.rows,
                    record.sha256,
                    record.filter
                );
            }
        }
        AttendanceCommand::Verify { db } => {
            match attendance(&db).await?.verify(&actor(), now).await? {
                Verification::Ok { events, head } => {
                    println!("OK: {events} events, head {head}");
                }
                Verification::Broken {
                    seq,
                    expected_seq,
                    problem,
                } => {
                    anyhow::bail!(
                        "the attendance ledger does not verify: event {seq} (expected {expected_seq}): {problem}"
                    );
                }
            }
        }
    }
    Ok(())
}

pub(crate) async fn token(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Issue {
        role,
        subject,
        hours,
        db,
    } = command;
    if !(1..=168).contains(&hours) {
        anyhow::bail!("--hours must be between 1 and 168");
    }
    let (_, scheduler) = db.open().await?;
    let token = scheduler.issue_staff(&subject, role, Utc::now(), Duration::hours(hours));
    eprintln!("A {role} staff token for {subject}, valid for {hours} hours:");
    println!("{token}");
    Ok(())
}
