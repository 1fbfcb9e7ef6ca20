//! `containerd-shim-nri-chaos-v2`: a containerd runtime v2 shim in front of the real
//! `containerd-shim-runc-v2`. containerd runs it for a handler whose `runtime_path` names it
//! (`runtime_type = "io.containerd.runc.v2"`, so runc's options pass through untouched).
//!
//! - `start`: runs the runc shim's `start` with the same arguments, environment and stdin,
//!   starts the wrapper's server (once per runc shim, i.e. per pod) on `<runc socket>.nri-chaos`
//!   and answers in the runc shim's form (address, JSON or 2.3 `BootstrapResult`) with it.
//! - `delete` and anything else: the runc shim runs in this process's place (`exec`), so its
//!   answer, output and exit status reach containerd unchanged.
//! - `--nri-chaos-serve ...`: the server (see `serve`).

mod answer;
mod error;
mod runc;
mod serve;
mod start;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

use anyhow::Context;

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
            start::Outcome::Failed { stdout, status } => {
                let _ = std::io::stdout().write_all(&stdout);
                let code = status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(1);
                Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
            }
        };
    }
    let binary = runc::locate(args)?;
    let err = Command::new(&binary).args(args).exec();
    Err(err).with_context(|| format!("exec {}", binary.display()))
}
