//! `nri-chaos-hook <hook-point>`: see the `oci_hooks` library.

use std::process::ExitCode;
use std::time::Duration;

use injector::seams::procfs::{ProcessTable, Procfs};
use injector::{Rng, SplitMix64};
use oci_hooks::{HookEnv, EXIT_BAD_INPUT};

/// The real world: `std::thread::sleep`, `/proc`, a time-seeded generator.
struct Host {
    procs: Procfs,
    rng: std::cell::RefCell<SplitMix64>,
}

use injector::faults::netem::NetemFault;
use injector::seams::netlink::netem_options::netem_options;
use injector::seams::netlink::{install_netem, target_links, RouteSocket};

impl HookEnv for Host {
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn procs(&self) -> &dyn ProcessTable {
        &self.procs
    }

    fn draw(&self) -> f64 {
        self.rng.borrow_mut().next_f64()
    }

    fn ensure_netem(&self, pid: u32, netem: &NetemFault) -> Result<String, String> {
        let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
        let mut socket = RouteSocket::open_in_netns(&netns).map_err(|e| e.to_string())?;
        let links =
            target_links(&mut socket, netem.interface.as_deref()).map_err(|e| e.to_string())?;
        let mut pending = Vec::new();
        for link in links {
            let ours = socket
                .root_qdisc(link.index)
                .map_err(|e| e.to_string())?
                .is_some_and(|q| q.is_ours());
            if !ours {
                pending.push(link);
            }
        }
        if pending.is_empty() {
            return Ok("already installed".into());
        }
        let shaped = install_netem(&mut socket, &pending, &netem_options(netem))
            .map_err(|e| e.to_string())?;
        let names: Vec<&str> = shaped.iter().map(|s| s.name.as_str()).collect();
        Ok(format!("installed on {}", names.join(",")))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32);
    let host = Host {
        procs: Procfs::host(),
        rng: std::cell::RefCell::new(SplitMix64::new(seed)),
    };
    match oci_hooks::run(
        &args,
        std::io::stdin(),
        oci_hooks::oci::state::STATE_READ_TIMEOUT,
        &host,
    ) {
        Ok(outcome) => {
            for line in &outcome.messages {
                eprintln!("{line}");
            }
            ExitCode::from(outcome.exit_code)
        }
        Err(err) => {
            eprintln!("nri-chaos-hook: {err}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
