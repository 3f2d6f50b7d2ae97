//! `tandem staff add|disable|reset|list`: staff accounts for the console,
//! on the server machine. `add` and `reset` print a one-time set-up link
//! (24 h) where the person sets a password and their authenticator app.

use chrono::Utc;
use clap::Subcommand;

use super::{open_store, DbArgs};
use crate::console::account::{parse_roles, roles_text};
use crate::http::staff::{StaffConsole, LINK_LIFETIME};

#[derive(Debug, Subcommand)]
pub(crate) enum StaffCommand {
    /// Add a staff account; prints its one-time set-up link.
    Add {
        #[arg(long)]
        email: String,
        /// The name shown in the console.
        #[arg(long)]
        name: String,
        /// One or more of admin, scheduler, clinician, compliance
        /// (comma-separated).
        #[arg(long = "role", value_name = "ROLES")]
        roles: String,
        /// For a clinician: the id they appear under on session rosters.
        #[arg(long)]
        roster_id: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable an account and end its console sessions.
    Disable {
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Clear an account's password and second factor, end its sessions and
    /// lift a lock-out; prints a new set-up link.
    Reset {
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the accounts.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

async fn open(db: &DbArgs) -> anyhow::Result<StaffConsole> {
    let config = db.load()?;
    let store = open_store(&config, false).await?;
    Ok(StaffConsole::new(store, &config))
}

pub(crate) async fn run(command: StaffCommand) -> anyhow::Result<()> {
    let now = Utc::now();
    let hours = LINK_LIFETIME.num_hours();
    match command {
        StaffCommand::Add {
            email,
            name,
            roles,
            roster_id,
            db,
        } => {
            let console = open(&db).await?;
            let roles = parse_roles(&roles).map_err(anyhow::Error::msg)?;
            let (account, link) = console
                .add(&email, &name, &roles, roster_id.as_deref(), now)
                .await?;
            println!(
                "Staff account {} ({}) added.",
                account.email,
                roles_text(&account.roles)
            );
            println!("Set-up link (works once, for {hours} h): {link}");
        }
        StaffCommand::Disable { email, db } => {
            let console = open(&db).await?;
            let account = console.find(&email).await?;
            console.disable(&account, now).await?;
            println!(
                "Staff account {} disabled; its console sessions ended.",
                account.email
            );
        }
        StaffCommand::Reset { email, db } => {
            let console = open(&db).await?;
            let account = console.find(&email).await?;
            let link = console.reset(&account, true, now).await?;
            println!(
                "Staff account {}: password and second factor cleared, sessions ended.",
                account.email
            );
            println!("Set-up link (works once, for {hours} h): {link}");
        }
        StaffCommand::List { db } => {
            let console = open(&db).await?;
            for a in console.accounts().await? {
                let state = if a.disabled_at.is_some() {
                    "disabled"
                } else if a.password_hash.is_none() {
                    "not set up"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    a.email,
                    a.name,
                    roles_text(&a.roles),
                    a.roster_id.as_deref().unwrap_or("-"),
                    state
                );
            }
        }
    }
    Ok(())
}
