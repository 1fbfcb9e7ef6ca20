//! `nri-chaos`: the containerd NRI plugin that injects the faults pods ask for in annotations.

mod civil;
mod control;
mod ctl;
mod engine;
mod in_handler;
mod logging;
mod metrics;
mod service;
mod store;
mod supervisor;
mod transport;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Parser, Subcommand};
use injector::{exec_inject, Policy};

use crate::engine::{Engine, Seams};
use crate::logging::LogFormat;
use crate::service::RuntimeInfo;
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
    /// Operator CLI over the control socket of a running `nri-chaos run` (root only).
    Ctl(ctl::CtlArgs),
    /// Check fault annotations in Kubernetes manifests (and/or a policy file) offline, with
    /// the plugin's grammar and policy; exit 1 when anything is bad.
    Validate(validate::ValidateArgs),
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
    /// The OCI hook binary injected into containers with start faults (the policy's
    /// `hook_path` wins).
    #[arg(long, default_value = engine::hooks::DEFAULT_HOOK_PATH)]
    hook_path: String,
    /// Where `ctl inject` puts exec faults for the shim wrappers (absolute; default: the
    /// `NRI_CHAOS_EXEC_DIR` environment variable, else /run/nri-chaos/exec). containerd's
    /// environment must name the same directory for the wrappers.
    #[arg(long)]
    exec_dir: Option<PathBuf>,
    /// Prometheus endpoint (`GET /metrics`), `IP:port` or `off`. Overrides the policy's
    /// `metrics_address`; default 127.0.0.1:9464.
    #[arg(long)]
    metrics_address: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "plain")]
    log_format: LogFormat,
    /// SCHED_FIFO priority of the threads that run NRI handlers (0 = the fair class).
    /// Default 1 where the kernel permits it (else the fair class, with a warning); given
    /// explicitly, a refusal stops the start.
    #[arg(long, env = "NRI_CHAOS_HANDLER_RT_PRIORITY")]
    handler_rt_priority: Option<u8>,
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
    let mut policy = load_policy(args.config.as_deref())?;
    policy
        .hook_path
        .get_or_insert_with(|| args.hook_path.clone());
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating state dir {}", args.state_dir.display()))?;
    let exec_dir = match &args.exec_dir {
        Some(dir) => exec_inject::resolve("--exec-dir", Some(dir.as_os_str())),
        None => exec_inject::from_env(),
    }?;
    let engine = Engine::new(policy, Seams::host(), &args.state_dir, &exec_dir)?;
    engine.replay_journal();
    tracing::info!(
        socket = %args.nri_socket.display(),
        state_dir = %args.state_dir.display(),
        exec_dir = %exec_dir.display(),
        strict = engine.policy().strict,
        domain = %engine.policy().domain,
        "nri-chaos starting"
    );
    let runtime_info = Arc::new(Mutex::new(RuntimeInfo::default()));
    let metrics_text = args
        .metrics_address
        .clone()
        .or_else(|| engine.policy().metrics_address.clone())
        .unwrap_or_else(|| metrics::DEFAULT_ADDRESS.to_string());
    let metrics_address = metrics::parse_address(&metrics_text)?;
    let (metrics_task, metrics_shown) = match metrics_address {
        None => {
            tracing::info!("metrics endpoint off");
            (None, metrics_text)
        }
        // The endpoint is an aid: a port in use must not stop fault injection and recovery.
        Some(address) => match metrics::bind(address).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(address);
                tracing::info!(address = %bound, "metrics listening on http://{bound}/metrics");
                let engine = engine.clone();
                let task = tokio::spawn(metrics::serve(
                    listener,
                    metrics::Limits::DEFAULT,
                    move || engine.metrics_text(),
                ));
                (Some(task), bound.to_string())
            }
            Err(err) => {
                tracing::error!(error = %err, "metrics endpoint not started; nri-chaos runs without it");
                (None, format!("{metrics_text} (not listening)"))
            }
        },
    };
    let control_path = engine
        .policy()
        .control_socket
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| args.state_dir.join(control::SOCKET_NAME));
    let control = control::serve(
        &control_path,
        control::ControlService {
            engine: engine.clone(),
            runtime: runtime_info.clone(),
            started: std::time::Instant::now(),
            socket: control_path.display().to_string(),
            metrics_address: metrics_shown,
        },
    )
    .await?;
    let supervisor = Supervisor {
        socket: args.nri_socket,
        registration: Registration {
            name: args.plugin_name,
            index: args.plugin_index,
        },
        engine: engine.clone(),
        runtime: runtime_info,
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    // The NRI connection and its handlers on a thread of their own (see transport::sched).
    let sched = match args.handler_rt_priority {
        Some(priority) => transport::sched::HandlerSched::from_priority(priority)?,
        None => transport::sched::HandlerSched::Fifo(transport::sched::DEFAULT_RT_PRIORITY),
    };
    let (nri_thread, in_force) = supervisor.spawn(sched, args.handler_rt_priority.is_some())?;
    tracing::info!(sched = ?in_force, "NRI thread's scheduling (the transport and every handler)");
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
    }
    nri_thread.stop(std::time::Duration::from_secs(2)).await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    control.stop().await;
    engine.shutdown(std::time::Duration::from_secs(10)).await;
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
    let log_format = match &cli.command {
        Command::Run(args) => args.log_format,
        _ => LogFormat::Plain,
    };
    let cli = match cli.command {
        Command::Ctl(args) => return ctl_main(args),
        Command::Validate(args) => {
            let (text, ok) = validate::run(&args);
            print!("{text}");
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        command => Cli { command },
    };
    // Dropped last, after every other log line: writes what is still queued.
    let _log = logging::init(log_format);
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
        Command::StressWorker { .. } | Command::Ctl(_) | Command::Validate(_) => Ok(()),
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

/// `nri-chaos ctl`: no logging, a small current-thread runtime; exit 1 with the reason.
fn ctl_main(args: ctl::CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("nri-chaos ctl: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout();
    match runtime.block_on(ctl::run(args, &mut stdout.lock())) {
        Ok(()) | Err(ctl::CtlError::OutputClosed) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nri-chaos ctl: {err}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl(args: &[&str]) -> ctl::CtlArgs {
        let mut all = vec!["nri-chaos", "ctl"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).map(|cli| cli.command) {
            Ok(Command::Ctl(args)) => args,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn ctl_flags_go_before_or_after_the_command() {
        for args in [
            &["--json", "list"][..],
            &["list", "--json"],
            &["list", "-o", "json"],
            &["-o", "json", "list"],
            &["list", "--output", "json"],
        ] {
            let parsed = ctl(args);
            assert!(
                parsed.json || parsed.output == Some(ctl::Output::Json),
                "{args:?}"
            );
            assert!(matches!(
                parsed.command,
                ctl::CtlCommand::List { watch: false }
            ));
        }
        let parsed = ctl(&["recover", "--all", "--socket", "/tmp/x.sock"]);
        assert_eq!(parsed.socket, PathBuf::from("/tmp/x.sock"));
        let parsed = ctl(&["--socket", "/tmp/y.sock", "list", "-w"]);
        assert_eq!(parsed.socket, PathBuf::from("/tmp/y.sock"));
        assert!(matches!(
            parsed.command,
            ctl::CtlCommand::List { watch: true }
        ));
        assert!(Cli::try_parse_from(["nri-chaos", "ctl", "list", "-o", "yaml"]).is_err());
    }
}
