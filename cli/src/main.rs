//! `capy`: the operator CLI. Mints API keys and serves the whole stack locally.

mod portal;
mod replay;
mod serve;

use std::net::SocketAddr;

use capy_shared::auth::mint_api_key;
use capy_shared::config::{self, Settings};
use capy_shared::domain::api_key::ApiKeyRecord;
use capy_shared::domain::ids::is_valid_org_id;
use capy_shared::ports::ApiKeyStore;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "capy", version, about = "Capy Webhooks operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage API keys (stored as SHA-256 hashes in the table named by TABLE_NAME).
    ApiKeys {
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Create the table and queues if missing, then serve every route and run the consumers.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000", env = "CAPY_ADDR")]
        addr: SocketAddr,
        /// Mint an API key for this organization at start and print it with a curl example.
        #[arg(long)]
        dev_key_org: Option<String>,
    },
    /// Send an endpoint's deliveries of a time window again (a replay job), with progress.
    Replay(replay::ReplayArgs),
    /// The organization's jobs (replays): list, show, cancel.
    Jobs {
        #[command(subcommand)]
        command: replay::JobsCommand,
    },
}

#[derive(Subcommand)]
enum ApiKeysCommand {
    /// Mint a key; prints the key, and only the key, on stdout.
    Create {
        #[arg(long)]
        org: String,
        /// Scope the key to one project of the organization.
        #[arg(long)]
        project: Option<String>,
    },
    /// Revoke a key: it answers 401 from then on. Reads the key from stdin when not given.
    Revoke {
        #[arg(long)]
        key: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::ApiKeys {
            command: ApiKeysCommand::Create { org, project },
        } => create_key(&org, project.as_deref()).await,
        Command::ApiKeys {
            command: ApiKeysCommand::Revoke { key },
        } => revoke_key(key).await,
        Command::Serve { addr, dev_key_org } => serve::run(addr, dev_key_org).await,
        Command::Replay(args) => replay::replay(args).await,
        Command::Jobs { command } => replay::jobs(command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn create_key(org: &str, project: Option<&str>) -> Result<(), String> {
    let (key, _) = store_new_key(org, project).await?;
    println!("{key}");
    Ok(())
}

/// Mints a key in the table named by TABLE_NAME: the key and its stored record.
async fn store_new_key(org: &str, project: Option<&str>) -> Result<(String, ApiKeyRecord), String> {
    if !is_valid_org_id(org) || project.is_some_and(|p| !is_valid_org_id(p)) {
        return Err(
            "organization and project ids are 1-128 characters of letters, digits, '_' and '-'"
                .into(),
        );
    }
    let settings = Settings::from_env(false)?;
    let sdk = config::aws_config().await;
    let table = config::table(&settings, &sdk);
    let minted = mint_api_key(org, project);
    table.put(&minted.record).await.map_err(|e| {
        format!(
            "could not store the key in table {}: {e}",
            settings.table_name
        )
    })?;
    Ok((minted.key, minted.record))
}

/// A key `capy replay`/`capy jobs` mint for themselves when given none, revoked at the end.
pub(crate) struct TemporaryKey {
    key: String,
    record: ApiKeyRecord,
}

impl TemporaryKey {
    pub(crate) async fn mint(org: &str) -> Result<Self, String> {
        let (key, record) = store_new_key(org, None).await?;
        Ok(Self { key, record })
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) async fn revoke(mut self) -> Result<(), String> {
        let settings = Settings::from_env(false)?;
        let sdk = config::aws_config().await;
        self.record.revoked_at = Some(capy_shared::domain::time::now());
        config::table(&settings, &sdk)
            .put(&self.record)
            .await
            .map_err(|e| e.to_string())
    }
}

async fn revoke_key(key: Option<String>) -> Result<(), String> {
    let key = match key {
        Some(k) => k,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            line
        }
    };
    let hash = capy_shared::auth::hash_api_key(key.trim());
    let settings = Settings::from_env(false)?;
    let sdk = config::aws_config().await;
    let table = config::table(&settings, &sdk);
    let mut record = table
        .get(&hash)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no such API key")?;
    if record.revoked_at.is_none() {
        record.revoked_at = Some(capy_shared::domain::time::now());
        table.put(&record).await.map_err(|e| e.to_string())?;
    }
    eprintln!("revoked the key of organization {}", record.organization_id);
    Ok(())
}
