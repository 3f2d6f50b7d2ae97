//! `tandem apikey ...` and `tandem config check`.

use std::path::PathBuf;

use chrono::Utc;
use clap::Subcommand;
use uuid::Uuid;

use super::DbArgs;
use crate::auth::{api_key, ApiRole};
use crate::config::Config;
use crate::store::Store;
use crate::tls;

#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Create a key; it is printed once and stored only as a hash.
    Create {
        /// What the key may do.
        #[arg(long, value_enum, default_value = "scheduler")]
        role: ApiRole,
        /// Who or what uses the key, e.g. "EHR scheduler".
        #[arg(long, default_value = "api key")]
        label: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List keys (never the keys themselves).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by its id; requests with it get 401 at once.
    Revoke {
        id: Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file and the files it points to.
    Check {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Creates a key with `role` in `store`, returning the secret.
pub async fn create_api_key(store: &Store, role: ApiRole, label: &str) -> anyhow::Result<String> {
    let key = api_key::issue(role)?;
    store
        .insert_new_api_key(&key, role, label, Utc::now())
        .await?;
    Ok(key)
}

pub(crate) async fn api_key(command: ApiKeyCommand) -> anyhow::Result<()> {
    match command {
        ApiKeyCommand::Create { role, label, db } => {
            let config = db.load()?;
            let store = Store::connect(&config.database(), false).await?;
            let key = create_api_key(&store, role, &label).await?;
            eprintln!("Created a {role} API key. It is shown only now; store it safely:");
            println!("{key}");
        }
        ApiKeyCommand::List { db } => {
            let config = db.load()?;
            let store = Store::connect(&config.database(), false).await?;
            println!(
                "{:<36}  {:<10}  {:<20}  {:<8}  LABEL",
                "ID", "ROLE", "CREATED", "STATE"
            );
            for key in store.api_keys().await? {
                println!(
                    "{:<36}  {:<10}  {:<20}  {:<8}  {}",
                    key.id,
                    key.role,
                    key.created_at.format("%Y-%m-%d %H:%M UTC"),
                    if key.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    key.label
                );
            }
        }
        ApiKeyCommand::Revoke { id, db } => {
            let config = db.load()?;
            let store = Store::connect(&config.database(), false).await?;
            if store.revoke_api_key(id, Utc::now()).await? {
                println!("revoked API key {id}");
            } else {
                anyhow::bail!("no active API key with id {id}");
            }
        }
    }
    Ok(())
}

pub(crate) fn config(command: ConfigCommand) -> anyhow::Result<()> {
    let ConfigCommand::Check { config: file } = command;
    let config = Config::load(file.as_deref(), Config::env())?;
    tls::server_config(
        &config.tls.cert_file,
        &config.tls.key_file,
        &config.tls.min_version,
    )
    .map_err(|e| anyhow::anyhow!("invalid configuration:\n  tls: {e}"))?;
    println!("configuration OK");
    println!("  public_url   {}", config.public_url);
    println!("  listen       {}", config.server.listen);
    match config.server.redirect_listen {
        Some(addr) => println!("  redirect     {addr} (plain HTTP, redirects only)"),
        None => println!("  redirect     off"),
    }
    println!("  certificate  {}", config.tls.cert_file.display());
    println!("  database     {}", config.database());
    println!("  signing key  {}", config.signing_key_path().display());
    Ok(())
}
