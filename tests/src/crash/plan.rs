//! One crash round's plan, drawn from the run's seed and the round number alone, so any round
//! can be replayed (`NRI_CHAOS_CRASH_SEED=<s> NRI_CHAOS_CRASH_ROUND=<r>`).

use std::fmt;
use std::time::Duration;

use injector::{Rng, SplitMix64};

/// The fault a pod of the round asks for (one per pod, on its container `app`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill: {after, count}`: each container instance is killed `after` its start until
    /// `count` kills were made, counted across restarts and crashes.
    Kill {
        after_ms: u64,
        count: u32,
    },
    Freeze {
        after_ms: u64,
        duration_ms: u64,
    },
    Stress {
        after_ms: u64,
        duration_ms: u64,
        load: u32,
        memory_mib: u32,
    },
    OomScore {
        after_ms: u64,
        duration_ms: u64,
        score: u32,
    },
    /// Pod scoped (the VM node only: the host kernel has no sch_netem).
    Netem {
        after_ms: u64,
        duration_ms: u64,
        delay_ms: u32,
    },
    /// `start: {delay}`, executed by the OCI hook inside StartContainer.
    StartDelay {
        delay_ms: u64,
    },
}

impl Fault {
    /// The pod annotation asking for it.
    pub fn annotation(&self) -> (&'static str, String) {
        match *self {
            Fault::Kill { after_ms, count } => (
                "kill.nri-chaos.io/container.app",
                format!("{{after: {after_ms}ms, count: {count}}}"),
            ),
            Fault::Freeze {
                after_ms,
                duration_ms,
            } => (
                "freeze.nri-chaos.io/container.app",
                format!("{{after: {after_ms}ms, duration: {duration_ms}ms}}"),
            ),
            Fault::Stress {
                after_ms,
                duration_ms,
                load,
                memory_mib,
            } => (
                "stress.nri-chaos.io/container.app",
                format!(
                    "{{cpu: {{workers: 1, load: {load}}}, memory: {{size: {memory_mib}Mi}}, \
                     after: {after_ms}ms, duration: {duration_ms}ms}}"
                ),
            ),
            Fault::OomScore {
                after_ms,
                duration_ms,
                score,
            } => (
                "oom.nri-chaos.io/container.app",
                format!("{{score: {score}, after: {after_ms}ms, duration: {duration_ms}ms}}"),
            ),
            Fault::Netem {
                after_ms,
                duration_ms,
                delay_ms,
            } => (
                "netem.nri-chaos.io/pod",
                format!("{{delay: {delay_ms}ms, after: {after_ms}ms, duration: {duration_ms}ms}}"),
            ),
            Fault::StartDelay { delay_ms } => (
                "start.nri-chaos.io/container.app",
                format!("{{delay: {delay_ms}ms}}"),
            ),
        }
    }

    /// How long a holding fault holds (`None` for kill and start).
    pub fn holds(&self) -> Option<Duration> {
        match *self {
            Fault::Freeze { duration_ms, .. }
            | Fault::Stress { duration_ms, .. }
            | Fault::OomScore { duration_ms, .. }
            | Fault::Netem { duration_ms, .. } => Some(Duration::from_millis(duration_ms)),
            Fault::Kill { .. } | Fault::StartDelay { .. } => None,
        }
    }

    /// `after` of the fault (0 for start).
    pub fn after(&self) -> Duration {
        Duration::from_millis(match *self {
            Fault::Kill { after_ms, .. }
            | Fault::Freeze { after_ms, .. }
            | Fault::Stress { after_ms, .. }
            | Fault::OomScore { after_ms, .. }
            | Fault::Netem { after_ms, .. } => after_ms,
            Fault::StartDelay { .. } => 0,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Freeze { .. } => "freeze",
            Fault::Stress { .. } => "stress",
            Fault::OomScore { .. } => "oom",
            Fault::Netem { .. } => "netem",
            Fault::StartDelay { .. } => "start",
        }
    }
}

/// What happens to the node at a random moment of the round (times from the round's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// SIGKILL nri-chaos, start it again `pause_ms` later.
    PluginKill { at_ms: u64, pause_ms: u64 },
    /// SIGTERM containerd and start it again (containers and shims keep running).
    ContainerdRestart { at_ms: u64 },
    /// SIGKILL the OCI hook of pod `pod` (a `start` delay) `into_ms` into its delay.
    HookKill { pod: usize, into_ms: u64 },
    /// StopPodSandbox + RemovePodSandbox of pod `pod` while its fault is armed or holding.
    RemovePod { pod: usize, at_ms: u64 },
    /// `nri-chaos ctl recover --all` while faults are being applied and held.
    CtlRecover { at_ms: u64 },
}

impl Disruption {
    /// How long nri-chaos was away: the allowance a holding fault's end gets past its deadline.
    pub fn pause(&self) -> Duration {
        match *self {
            Disruption::PluginKill { pause_ms, .. } => Duration::from_millis(pause_ms),
            _ => Duration::ZERO,
        }
    }
}

/// One round: the pods (one fault each) and the disruption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundPlan {
    pub round: u32,
    pub pods: Vec<Fault>,
    pub disruption: Disruption,
}

/// Which fault kinds the node can execute.
#[derive(Debug, Clone, Copy)]
pub struct Kinds {
    /// sch_netem is there (the VM node).
    pub netem: bool,
    /// Added to every timing allowance: the VM node runs under TCG emulation, where one
    /// probe or CRI call can take hundreds of ms (zero on the host).
    pub slack: Duration,
}

fn range(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

/// The round's own generator: the run's seed and the round number, mixed.
fn round_rng(seed: u64, round: u32) -> SplitMix64 {
    let mut mix = SplitMix64::new(seed ^ u64::from(round).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    SplitMix64::new(mix.next_u64())
}

fn fault(rng: &mut SplitMix64, kinds: Kinds) -> Fault {
    let after_ms = range(rng, 200, 1000);
    let duration_ms = range(rng, 2000, 5000);
    let choices = if kinds.netem { 5 } else { 4 };
    match rng.next_u64() % choices {
        0 => Fault::Kill {
            after_ms: range(rng, 200, 600),
            count: range(rng, 1, 3) as u32,
        },
        1 => Fault::Freeze {
            after_ms,
            duration_ms,
        },
        2 => Fault::Stress {
            after_ms,
            duration_ms,
            load: range(rng, 10, 40) as u32,
            memory_mib: range(rng, 8, 32) as u32,
        },
        3 => Fault::OomScore {
            after_ms,
            duration_ms,
            score: range(rng, 100, 999) as u32,
        },
        _ => Fault::Netem {
            after_ms,
            duration_ms,
            delay_ms: range(rng, 10, 100) as u32,
        },
    }
}

impl RoundPlan {
    /// The plan of `round` under `seed`: 3 or 4 pods with a random fault each, and one
    /// disruption at a random moment of the faults' lives (0.3 s to 3.5 s after the pods'
    /// sandboxes run and their containers are being started).
    pub fn draw(seed: u64, round: u32, kinds: Kinds) -> RoundPlan {
        let mut rng = round_rng(seed, round);
        // 3 or 4 pods; 3 on the VM node, where TCG makes every pod sandbox cost seconds.
        let n = if kinds.netem {
            3
        } else {
            range(&mut rng, 3, 4) as usize
        };
        let mut pods: Vec<Fault> = (0..n).map(|_| fault(&mut rng, kinds)).collect();
        let at_ms = range(&mut rng, 300, 3500);
        let disruption = match rng.next_u64() % 5 {
            0 => Disruption::PluginKill {
                at_ms,
                pause_ms: range(&mut rng, 100, 1500),
            },
            1 => Disruption::ContainerdRestart { at_ms },
            2 => {
                let delay_ms = range(&mut rng, 2500, 4000);
                pods[0] = Fault::StartDelay { delay_ms };
                Disruption::HookKill {
                    pod: 0,
                    into_ms: range(&mut rng, 300, delay_ms - 700),
                }
            }
            3 => Disruption::RemovePod {
                pod: range(&mut rng, 0, n as u64 - 1) as usize,
                at_ms,
            },
            _ => Disruption::CtlRecover { at_ms },
        };
        RoundPlan {
            round,
            pods,
            disruption,
        }
    }
}

impl fmt::Display for RoundPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "round {} disruption={:?} pods=[",
            self.round, self.disruption
        )?;
        for (i, pod) in self.pods.iter().enumerate() {
            let (_, value) = pod.annotation();
            write!(
                f,
                "{}{} {}",
                if i > 0 { "; " } else { "" },
                pod.kind(),
                value
            )?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_replays_from_its_seed_and_number_alone() {
        let kinds = Kinds {
            netem: true,
            slack: Duration::ZERO,
        };
        for round in 0..50 {
            let plan = RoundPlan::draw(42, round, kinds);
            assert_eq!(plan, RoundPlan::draw(42, round, kinds));
            assert!((3..=4).contains(&plan.pods.len()));
            if let Disruption::HookKill { pod, .. } = plan.disruption {
                assert!(matches!(plan.pods[pod], Fault::StartDelay { .. }));
            }
        }
        assert_ne!(RoundPlan::draw(42, 1, kinds), RoundPlan::draw(43, 1, kinds));
        let host = Kinds {
            netem: false,
            slack: Duration::ZERO,
        };
        assert!((0..200).all(|r| RoundPlan::draw(7, r, host)
            .pods
            .iter()
            .all(|p| !matches!(p, Fault::Netem { .. }))));
    }
}
