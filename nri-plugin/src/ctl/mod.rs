//! `nri-chaos ctl`: the operator CLI over the control socket. Human tables by default,
//! `--json` / `-o json` for scripts; the global flags go before or after the command, as with
//! kubectl. Errors say what to do next.

mod events;
mod explain;
mod render;

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nri_chaos_proto::control::{InjectRequest, ListRequest, RecoverRequest, StatusRequest};
use nri_chaos_proto::control_ttrpc::ControlClient;
use thiserror::Error;
use tokio::net::UnixStream;
use ttrpc::r#async::transport::Socket;
use ttrpc::r#async::Client;

/// Every call gives up after this (Recover waits up to 10 s for recoveries).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// `-o` / `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned tables for people.
    Table,
    /// JSON for scripts (one object per line when following events).
    Json,
}

/// `nri-chaos ctl` arguments.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The control socket of `nri-chaos run`.
    #[arg(long, global = true, default_value = "/run/nri-chaos/control.sock")]
    pub socket: PathBuf,
    /// Print JSON instead of tables (same as `-o json`).
    #[arg(long, global = true)]
    pub json: bool,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

impl CtlArgs {
    /// `--json` or `-o json`; `--json -o table` is a contradiction.
    fn json(&self) -> Result<bool, CtlError> {
        match (self.json, self.output) {
            (true, Some(Output::Table)) => Err(CtlError::Usage(
                "--json and -o table contradict each other; pick one".to_string(),
            )),
            (json, output) => Ok(json || output == Some(Output::Json)),
        }
    }
}

/// What to ask.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// Faults (armed, applied, recovered, stopped, failed) and rejected annotations, including
    /// faults resumed from the journal after a restart (source `journal`).
    List {
        /// Then follow the events live (like `ctl events`), until Ctrl-C.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Stop a fault now (a holding fault is recovered, e.g. a freeze is thawed).
    Recover {
        /// The fault id (from `ctl list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Every active fault.
        #[arg(long)]
        all: bool,
    },
    /// Arm a fault on a running container, with the annotation grammar; `after` counts from
    /// now. Examples: `inject default/web/app kill '{after: 2s}'`,
    /// `inject default/web/app '{kill: {}}'`, `inject default/web freeze '{duration: 10s}'`.
    Inject {
        /// `namespace/pod` (every container) or `namespace/pod/container`.
        target: String,
        /// The fault kind (`kill`, `freeze`, ...), or a one-entry mapping `{kind: value}`.
        fault: String,
        /// The fault value, e.g. `{after: 1s, signal: SIGTERM}` (default `{}`).
        value: Option<String>,
    },
    /// The daemon: NRI connection, runtime, protocol, uptime, policy, counts.
    Status,
    /// Follow what the daemon does, live: faults armed, applied, recovered, stopped, failed,
    /// and annotations rejected; one line (or JSON object) per event, until Ctrl-C.
    Events {
        /// Print the recent events the daemon still holds first.
        #[arg(long)]
        all: bool,
    },
    /// The fields of a fault kind: types, defaults and an example annotation (no daemon
    /// needed).
    Explain {
        /// The fault kind (`kill`, `freeze`, `netem`, `stress`, `oom`, `start`, `exec`).
        kind: String,
    },
}

/// Errors of `ctl`, worded for the operator.
#[derive(Debug, Error)]
pub enum CtlError {
    /// No socket file.
    #[error("nri-chaos is not running: no socket at {0} (start it with `nri-chaos run`, or pass --socket)")]
    NotRunning(PathBuf),
    /// A socket file nobody listens on.
    #[error("nri-chaos is not running: nobody listens on {0} (a stale socket; start it with `nri-chaos run`, or pass --socket)")]
    Stale(PathBuf),
    /// Not root.
    #[error("the control socket is root only: {0} refused this user (run `nri-chaos ctl` as root, e.g. with sudo)")]
    RootOnly(PathBuf),
    /// Other connect failures.
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The call failed on the wire.
    #[error("the call to nri-chaos failed: {0}")]
    Call(String),
    /// The daemon went away while `ctl` was following it.
    #[error("nri-chaos went away: the control socket {path} closed ({reason}); no more events")]
    Gone {
        /// The socket.
        path: PathBuf,
        /// What the transport said.
        reason: String,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed (other than a closed pipe).
    #[error("writing the output: {0}")]
    Output(std::io::Error),
    /// Whoever read the output went away (`ctl events | head`): stop quietly.
    #[error("the output was closed")]
    OutputClosed,
}

async fn connect(path: &Path) -> Result<ControlClient, CtlError> {
    match UnixStream::connect(path).await {
        Ok(stream) => Ok(ControlClient::new(Client::new(Socket::new(stream)))),
        Err(err) => Err(match err.kind() {
            ErrorKind::NotFound => CtlError::NotRunning(path.to_path_buf()),
            ErrorKind::PermissionDenied => CtlError::RootOnly(path.to_path_buf()),
            ErrorKind::ConnectionRefused => CtlError::Stale(path.to_path_buf()),
            _ => CtlError::Connect {
                path: path.to_path_buf(),
                source: err,
            },
        }),
    }
}

fn call_error(path: &Path, err: ttrpc::Error) -> CtlError {
    match err {
        ttrpc::Error::RpcStatus(status) => CtlError::Refused(status.message().to_string()),
        other => {
            if !rustix::process::geteuid().is_root() {
                // The server closes connections of non-root peers before reading a byte.
                CtlError::RootOnly(path.to_path_buf())
            } else {
                CtlError::Call(other.to_string())
            }
        }
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(i64::try_from(CALL_TIMEOUT.as_nanos()).unwrap_or(i64::MAX))
}

/// Splits `inject` arguments into (kind, value): `kill '{after: 1s}'`, `kill` (value `{}`),
/// or the one-entry mapping `'{kill: {after: 1s}}'`.
pub fn inject_fault(fault: &str, value: Option<&str>) -> Result<(String, String), CtlError> {
    if let Some(value) = value {
        return Ok((fault.to_string(), value.to_string()));
    }
    let trimmed = fault.trim();
    if !trimmed.starts_with('{') && !trimmed.contains(':') {
        return Ok((trimmed.to_string(), "{}".to_string()));
    }
    let usage = |why: &str| {
        CtlError::Usage(format!(
            "fault '{fault}': {why}; write `KIND VALUE` (kill '{{after: 1s}}') or one mapping '{{kill: {{after: 1s}}}}'"
        ))
    };
    let docs = yaml_rust2::YamlLoader::load_from_str(trimmed)
        .map_err(|err| usage(&format!("not YAML ({err})")))?;
    let Some(yaml_rust2::Yaml::Hash(map)) = docs.into_iter().next() else {
        return Err(usage("not a mapping"));
    };
    if map.len() != 1 {
        return Err(usage("the mapping must have exactly one fault kind"));
    }
    let Some((yaml_rust2::Yaml::String(kind), inner)) = map.into_iter().next() else {
        return Err(usage("the fault kind must be a name"));
    };
    let inner = match inner {
        yaml_rust2::Yaml::Null => yaml_rust2::Yaml::Hash(Default::default()),
        other => other,
    };
    let mut text = String::new();
    yaml_rust2::YamlEmitter::new(&mut text)
        .dump(&inner)
        .map_err(|err| usage(&err.to_string()))?;
    let text = text.strip_prefix("---").unwrap_or(&text).trim().to_string();
    Ok((kind, text))
}

/// Writes `text`; a reader that went away (`| head`) ends the command quietly.
fn emit(out: &mut dyn Write, text: &str) -> Result<(), CtlError> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Err(CtlError::OutputClosed),
        Err(err) => Err(CtlError::Output(err)),
    }
}

/// Runs one `ctl` command, writing what it prints to `out`.
pub async fn run(args: CtlArgs, out: &mut dyn Write) -> Result<(), CtlError> {
    let json = args.json()?;
    if let CtlCommand::Explain { kind } = &args.command {
        return emit(out, &explain::explain(kind, json)?);
    }
    let client = connect(&args.socket).await?;
    let path = args.socket.as_path();
    let text = match args.command {
        // Answered above, without the daemon.
        CtlCommand::Explain { .. } => String::new(),
        CtlCommand::List { watch } => {
            // The sequence number first, so that nothing between the list and the feed is lost.
            let since = if watch {
                Some(events::current(&client, path).await?)
            } else {
                None
            };
            let list = client
                .list(ctx(), &ListRequest::default())
                .await
                .map_err(|err| call_error(path, err))?;
            let text = match (json, since) {
                (true, None) => render::list_json(&list),
                (true, Some(_)) => format!("{}\n", render::list_value(&list)),
                (false, _) => render::list_table(&list),
            };
            match since {
                None => text,
                Some(since) => {
                    emit(out, &text)?;
                    return events::follow(&client, path, since, json, out).await;
                }
            }
        }
        CtlCommand::Events { all } => {
            let since = if all {
                0
            } else {
                events::current(&client, path).await?
            };
            return events::follow(&client, path, since, json, out).await;
        }
        CtlCommand::Recover { id, all } => {
            let request = RecoverRequest {
                id: id.unwrap_or(0),
                all,
                ..Default::default()
            };
            let recovered = client
                .recover(ctx(), &request)
                .await
                .map_err(|err| call_error(path, err))?;
            if json {
                render::faults_json(&recovered.recovered)
            } else if recovered.recovered.is_empty() {
                "no active fault to recover\n".to_string()
            } else {
                format!(
                    "recovered {} fault(s):\n{}",
                    recovered.recovered.len(),
                    render::faults_table(&recovered.recovered)
                )
            }
        }
        CtlCommand::Inject {
            target,
            fault,
            value,
        } => {
            let (kind, value) = inject_fault(&fault, value.as_deref())?;
            let request = InjectRequest {
                target,
                kind,
                value,
                ..Default::default()
            };
            let armed = client
                .inject(ctx(), &request)
                .await
                .map_err(|err| call_error(path, err))?;
            if json {
                render::faults_json(&armed.armed)
            } else {
                format!(
                    "armed {} fault(s):\n{}",
                    armed.armed.len(),
                    render::faults_table(&armed.armed)
                )
            }
        }
        CtlCommand::Status => {
            let status = client
                .status(ctx(), &StatusRequest::default())
                .await
                .map_err(|err| call_error(path, err))?;
            if json {
                render::status_json(&status)
            } else {
                render::status_text(&status)
            }
        }
    };
    emit(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_arguments() {
        assert_eq!(
            inject_fault("kill", Some("{after: 1s}")).unwrap(),
            ("kill".to_string(), "{after: 1s}".to_string())
        );
        assert_eq!(
            inject_fault("kill", None).unwrap(),
            ("kill".to_string(), "{}".to_string())
        );
        assert_eq!(
            inject_fault("{kill: {}}", None).unwrap(),
            ("kill".to_string(), "{}".to_string())
        );
        let (kind, value) = inject_fault("{freeze: {duration: 5s, after: 1s}}", None).unwrap();
        assert_eq!(kind, "freeze");
        let fields = injector::FaultRequest::parse(injector::FaultKind::Freeze, "k", &value)
            .expect("re-emitted value parses");
        assert_eq!(fields.timing.duration, Some(Duration::from_secs(5)));
        let err = inject_fault("{kill: {}, freeze: {}}", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly one"), "{err}");
    }

    #[tokio::test]
    async fn connect_errors_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("control.sock");
        let err = connect(&missing).await.err().unwrap().to_string();
        assert!(
            err.starts_with("nri-chaos is not running: no socket at"),
            "{err}"
        );
        assert!(err.contains("nri-chaos run"), "{err}");
        // A socket file with nobody listening.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let err = connect(&stale).await.err().unwrap().to_string();
        assert!(err.contains("nobody listens"), "{err}");
    }
}
