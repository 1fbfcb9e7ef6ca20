//! `nri-chaos-hook <hook-point>`: see the `oci_hooks` library.

use std::process::ExitCode;
use std::time::Duration;

use injector::faults::{HostKernel, Kernel};
use injector::{Rng, SplitMix64};
use oci_hooks::{HookEnv, EXIT_BAD_INPUT};

/// The real world: `std::thread::sleep`, the kernel's seams, a time-seeded generator.
struct Host {
    kernel: HostKernel,
    rng: std::cell::RefCell<SplitMix64>,
}

impl HookEnv for Host {
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn kernel(&self) -> Kernel<'_> {
        self.kernel.kernel()
    }

    fn draw(&self) -> f64 {
        self.rng.borrow_mut().next_f64()
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
        kernel: HostKernel::default(),
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
