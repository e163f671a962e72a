//! `switchboard`: the contact-centre hub, one binary with one subcommand per role.
#![forbid(unsafe_code)]

mod admin;
mod all;
mod app;
mod config;
mod connector;
mod console;
mod database;
mod demo;
mod migrate;
mod print_config;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Omnichannel contact-centre hub.
///
/// Configuration: built-in defaults, then the TOML file given with --config, then environment
/// variables SWITCHBOARD_<SECTION>__<KEY> (e.g. SWITCHBOARD_DATABASE__URL). `switchboard
/// config` prints the result.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version)]
struct Cli {
    /// TOML configuration file (see config/switchboard.example.toml)
    #[arg(long, short = 'c', global = true, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations, print what was applied, exit
    Migrate,
    /// Run every component in this process on one HTTP listener (http.bind) until SIGTERM
    /// or Ctrl-C.
    ///
    /// Connects to PostgreSQL and migrates it, starts the coordinator (coord.backend),
    /// serves /healthz, /readyz and /metrics, and prints their URLs on stdout.
    All,
    /// Run the chatserver alone: the agent WebSocket API and routing, until SIGTERM.
    ///
    /// Several may run against one PostgreSQL and one ZooKeeper (active-active).
    Chatserver,
    /// Run the file server alone: upload, download and signed links under /api/v1/files, and
    /// the retention job (on one node at a time), until SIGTERM.
    Fileserver,
    /// Run the interaction loader alone: the REST API for integrators (interactions by period,
    /// exports, admin, webhooks; /api/v1/openapi.json) and webhook delivery, until SIGTERM.
    ///
    /// Several may run against one PostgreSQL; they share the webhook outbox.
    Loader,
    /// Run the messenger connector of one account until SIGTERM: long polling or the webhook
    /// route, and the outbox (paced, in order per chat, retried).
    ///
    /// Start two for one account on different hosts (or ports): they elect a leader through
    /// ZooKeeper and the other takes over when it dies.
    Connector {
        /// The account (accounts.id) to serve
        #[arg(long, value_name = "UUID")]
        account: uuid::Uuid,
    },
    /// Run the video channel alone: the SFU on its UDP port (video.udp_bind), signalling at
    /// /api/v1/video/ws, the rooms API under /api/v1/video/rooms and the call pages, until
    /// SIGTERM.
    Video,
    /// Print the effective configuration as TOML, secrets masked
    Config,
    /// Mint a bearer token signed with jwt.hs256_secret (for tests, demos and service accounts)
    Token(token::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Config => print_config::run(&config),
        Command::Migrate => match init_logging(&config) {
            Ok(()) => migrate::run(config).await,
            Err(code) => return code,
        },
        Command::All => match init_logging(&config) {
            Ok(()) => all::run(config, app::EVERYTHING).await,
            Err(code) => return code,
        },
        Command::Chatserver => match init_logging(&config) {
            Ok(()) => all::run(config, &[app::Component::Chatserver]).await,
            Err(code) => return code,
        },
        Command::Fileserver => match init_logging(&config) {
            Ok(()) => all::run(config, &[app::Component::Fileserver]).await,
            Err(code) => return code,
        },
        Command::Loader => match init_logging(&config) {
            Ok(()) => all::run(config, &[app::Component::Loader]).await,
            Err(code) => return code,
        },
        Command::Connector { account } => match init_logging(&config) {
            Ok(()) => all::run(config, &[app::Component::Connector(account)]).await,
            Err(code) => return code,
        },
        Command::Video => match init_logging(&config) {
            Ok(()) => all::run(config, &[app::Component::Video]).await,
            Err(code) => return code,
        },
        Command::Token(args) => token::run(&config, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) -> Result<(), ExitCode> {
    ops::telemetry::init(config.log.format, &config.log.filter).map_err(|e| {
        eprintln!("switchboard: {e}");
        ExitCode::from(2)
    })
}
