//! `containerd-shim-nri-chaos-v2`: a containerd runtime v2 shim in front of the real
//! `containerd-shim-runc-v2`. containerd runs it for a handler whose `runtime_path` names it
//! (`runtime_type = "io.containerd.runc.v2"`, so runc's options pass through untouched).
//!
//! - `start`: runs the runc shim's `start` with the same arguments, environment and stdin,
//!   starts the wrapper's server (once per runc shim, i.e. per pod) on `<runc socket>.nri-chaos`
//!   and answers in the runc shim's form (address, JSON or 2.3 `BootstrapResult`) with it.
//! - `delete`: the runc shim's `delete` runs; its answer and exit status reach containerd
//!   unchanged; then dead sockets of the bundle's wrapper and runc shim are removed.
//! - anything else: the runc shim runs in this process's place (`exec`).
//! - `--nri-chaos-serve ...`: the server (see `serve`): forwards the task API and executes
//!   the `exec` fault (`intercept`) from the plan the plugin wrote into each container's OCI
//!   annotations (`plan`).

mod answer;
mod conn;
mod delete;
mod error;
mod execs;
mod frame;
mod group;
mod inject;
mod intercept;
mod plan;
mod planning;
mod procfs;
mod runc;
mod serve;
mod start;
mod timing;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

use anyhow::Context;

/// One line on stderr (the server's goes to containerd's shim log). Unlike `eprintln!`, a
/// failed write (a full or closed log FIFO) is dropped, never a panic.
pub fn log(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            // containerd shows a failed shim's output in its error.
            eprintln!("containerd-shim-nri-chaos-v2: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[OsString]) -> anyhow::Result<ExitCode> {
    if args.first().is_some_and(|a| a == serve::SERVE_FLAG) {
        let serve_args = serve::ServeArgs::parse(&args[1..])?;
        serve::run(&serve_args)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.last().is_some_and(|a| a == "start") {
        return match start::run(args)? {
            start::Outcome::Answer(bytes) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes).context("writing the start answer")?;
                out.flush().context("writing the start answer")?;
                Ok(ExitCode::SUCCESS)
            }
            start::Outcome::Failed { stdout, status } => pass_back(&stdout, status),
        };
    }
    if args.last().is_some_and(|a| a == "delete") {
        let (stdout, status) = delete::run(args)?;
        return pass_back(&stdout, status);
    }
    let binary = runc::locate(args)?;
    let err = Command::new(&binary).args(args).exec();
    Err(err).with_context(|| format!("exec {}", binary.display()))
}

/// Prints the runc shim's stdout and exits as it did.
fn pass_back(stdout: &[u8], status: std::process::ExitStatus) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(stdout)
        .context("writing the runc shim's answer")?;
    out.flush().context("writing the runc shim's answer")?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
