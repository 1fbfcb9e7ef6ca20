//! `nri-chaos`: the containerd NRI plugin that injects the faults pods ask for in annotations.

mod engine;
mod service;
mod stats;
mod supervisor;
mod transport;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Parser, Subcommand};
use injector::Policy;

use crate::engine::{Engine, Seams};
use crate::service::RuntimeInfo;
use crate::stats::Stats;
use crate::supervisor::Supervisor;
use crate::transport::session::Registration;

const DEFAULT_SOCKET: &str = "/var/run/nri/nri.sock";
const DEFAULT_CONFIG: &str = "/etc/nri-chaos/config.toml";
const DEFAULT_STATE_DIR: &str = "/run/nri-chaos";

#[derive(Debug, Parser)]
#[command(
    name = "nri-chaos",
    version,
    about = "Fault injection from inside the container runtime path (containerd NRI plugin)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the plugin: register with containerd over NRI and inject annotated faults.
    Run(RunArgs),
    /// Internal: a stressor process started by `nri-chaos run` (not for direct use).
    #[command(hide = true, name = "stress-worker")]
    StressWorker {
        /// Worker flags (see injector::stressor::WorkerSpec).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// containerd's NRI socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    nri_socket: PathBuf,
    /// Admin policy (TOML). A missing file at the default path means default policy.
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (firing ledger; journal of active faults).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Plugin name to register with.
    #[arg(long, default_value = "nri-chaos")]
    plugin_name: String,
    /// Plugin index (two digits; plugins are called in ascending order).
    #[arg(long, default_value = "50", value_parser = parse_index)]
    plugin_index: String,
}

fn parse_index(value: &str) -> Result<String, String> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_string())
    } else {
        Err(format!(
            "plugin index '{value}' must be exactly two digits (00-99)"
        ))
    }
}

fn load_policy(config: Option<&Path>) -> anyhow::Result<Policy> {
    let (path, explicit) = match config {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CONFIG), false),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            Policy::from_toml_str(&text).with_context(|| format!("config {}", path.display()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => {
            tracing::info!(path = %path.display(), "no config file; default policy");
            Ok(Policy::default())
        }
        Err(err) => Err(err).with_context(|| format!("reading config {}", path.display())),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let policy = load_policy(args.config.as_deref())?;
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating state dir {}", args.state_dir.display()))?;
    let stats = Arc::new(Stats::default());
    let engine = Engine::new(policy, Seams::host(), stats.clone(), &args.state_dir)?;
    engine.replay_journal();
    tracing::info!(
        socket = %args.nri_socket.display(),
        state_dir = %args.state_dir.display(),
        strict = engine.policy().strict,
        domain = %engine.policy().domain,
        "nri-chaos starting"
    );
    let supervisor = Supervisor {
        socket: args.nri_socket,
        registration: Registration {
            name: args.plugin_name,
            index: args.plugin_index,
        },
        engine: engine.clone(),
        stats: stats.clone(),
        runtime: Arc::new(Mutex::new(RuntimeInfo::default())),
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    let supervised = tokio::spawn(supervisor.run());
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
    }
    supervised.abort();
    engine.shutdown(std::time::Duration::from_secs(10)).await;
    for summary in stats.summaries() {
        tracing::info!(target: "nri_chaos::stats", "latency {summary}");
    }
    tracing::info!("nri-chaos stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::StressWorker { args } = &cli.command {
        // A stressor: no logging, no async runtime; it exits at its deadline or with its
        // container (see injector::stressor).
        let code = injector::stressor::worker_main(args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("nri-chaos: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::StressWorker { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("nri-chaos: {err:#}");
            ExitCode::from(2)
        }
    }
}
