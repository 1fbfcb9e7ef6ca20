//! The body of `nri-chaos stress-worker`: one stressor process.
//!
//! The main thread does the work ([`WorkerKind`]); a watcher thread ends the process when the
//! deadline passes or the watched process exits (its pidfd becomes readable). Both ends are
//! checked before any work starts: a deadline already past or a watched process already gone
//! (`pidfd_open` fails with ESRCH) exits at once.

use std::ffi::CStr;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{memfd_create, MemfdFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use rustix::time::{clock_gettime, ClockId};

use super::spec::{WorkerKind, WorkerSpec};
use super::StressorError;

/// Exit code: the worker stopped by itself (deadline passed or watched process exited).
pub const EXIT_STOPPED: i32 = 0;
/// Exit code: the worker could not run (watch or allocation failure), reason on stderr.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the arguments did not parse, reason on stderr.
pub const EXIT_BAD_ARGS: i32 = 2;

/// Duty-cycle period of CPU workers.
const CPU_PERIOD: Duration = Duration::from_millis(100);
/// Hash rounds between two clock reads while spinning (a few µs of work).
const SPIN_BATCH: u32 = 1024;
/// Memory is touched one byte per this many bytes (the smallest page size).
const PAGE: usize = 4096;
/// Longest wait of the watcher between two deadline checks (picks up wall-clock changes).
const WATCH_TICK_MS: u128 = 1000;
/// An OOM-fill write slower than this waited on reclaim or on the OOM killer.
const SLOW_FAULT: Duration = Duration::from_millis(2);
/// After a slow fault the OOM filler pauses this long, so that once the OOM killer has
/// killed the watched process the watcher ends this worker before it charges more memory
/// (and becomes the next OOM victim itself).
const OOM_BACKOFF: Duration = Duration::from_millis(50);
/// Pause before retrying a charge the kernel refused.
const ALLOC_RETRY: Duration = Duration::from_millis(10);

/// Runs a stressor worker from its arguments (those after `stress-worker`); returns the
/// process exit code: [`EXIT_STOPPED`], [`EXIT_FAILED`] or [`EXIT_BAD_ARGS`]. When the worker
/// runs, the return happens only on failure: a running worker ends through `exit` from its
/// watcher thread.
pub fn worker_main(args: &[String]) -> i32 {
    let spec = match WorkerSpec::from_args(args) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_BAD_ARGS;
        }
    };
    set_process_name(spec.kind.process_name());
    match run(&spec) {
        Ok(()) => EXIT_STOPPED,
        Err(e) => {
            eprintln!("{e}");
            EXIT_FAILED
        }
    }
}

/// `Ok(())` when the worker has nothing to do (deadline past, watched process gone);
/// otherwise it never returns `Ok`.
fn run(spec: &WorkerSpec) -> Result<(), StressorError> {
    if time_left(spec.deadline_unix_ms).is_none() {
        return Ok(());
    }
    let pidfd = match spec.watch_pid {
        None => None,
        Some(pid) => match open_pidfd(pid) {
            Ok(fd) => Some(fd),
            Err(Errno::SRCH) => return Ok(()),
            Err(e) => {
                return Err(StressorError::Watch {
                    pid,
                    source: e.into(),
                })
            }
        },
    };
    let deadline = spec.deadline_unix_ms;
    let watch_pid = spec.watch_pid.unwrap_or(0);
    thread::Builder::new()
        .name("nri-chaos-watch".to_string())
        .spawn(move || watch(pidfd, watch_pid, deadline))
        .map_err(|e| StressorError::Watch {
            pid: watch_pid,
            source: e,
        })?;
    match spec.kind {
        WorkerKind::Cpu { load_percent } => spin(load_percent),
        WorkerKind::Memory { bytes } => hold(bytes),
        WorkerKind::OomFill {
            step_bytes,
            max_bytes,
        } => fill(step_bytes, max_bytes),
    }
}

fn open_pidfd(pid: u32) -> Result<OwnedFd, Errno> {
    let raw = i32::try_from(pid).map_err(|_| Errno::INVAL)?;
    let pid = Pid::from_raw(raw).ok_or(Errno::INVAL)?;
    pidfd_open(pid, PidfdFlags::empty())
}

/// Time until `deadline_unix_ms`, `None` once it has passed.
fn time_left(deadline_unix_ms: u64) -> Option<Duration> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Duration::from_millis(deadline_unix_ms)
        .checked_sub(now)
        .filter(|left| !left.is_zero())
}

/// The watcher thread: exits the process at the deadline or when the pidfd turns readable
/// (the watched process exited).
fn watch(pidfd: Option<OwnedFd>, pid: u32, deadline_unix_ms: u64) -> ! {
    loop {
        let Some(left) = time_left(deadline_unix_ms) else {
            std::process::exit(EXIT_STOPPED);
        };
        // Round up so the last wait ends at or after the deadline, not just before it.
        let tick_ms = left.as_nanos().div_ceil(1_000_000).min(WATCH_TICK_MS);
        let Some(fd) = &pidfd else {
            thread::sleep(Duration::from_millis(tick_ms as u64));
            continue;
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let tick = Timespec {
            tv_sec: (tick_ms / 1000) as i64,
            tv_nsec: ((tick_ms % 1000) * 1_000_000) as _,
        };
        match poll(&mut fds, Some(&tick)) {
            // POLLIN (exited) or POLLHUP/POLLERR: either way the process is gone.
            Ok(n) if n > 0 => std::process::exit(EXIT_STOPPED),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                let source = e.into();
                eprintln!("{}", StressorError::Watch { pid, source });
                std::process::exit(EXIT_FAILED);
            }
        }
    }
}

/// Names the process (PR_SET_NAME on the main thread names the process in `/proc/<pid>/comm`;
/// the kernel cuts it to 15 bytes). Best effort: the name only helps `ps` readers.
fn set_process_name(name: &CStr) {
    let _ = rustix::thread::set_name(name);
}

/// One round of a 64-bit mix (SplitMix64): real work the optimiser cannot drop.
fn mix(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu_time() -> Duration {
    Duration::try_from(clock_gettime(ClockId::ThreadCPUTime)).unwrap_or(Duration::ZERO)
}

/// CPU worker: per [`CPU_PERIOD`], spins until it has used `load_percent`% of the period in
/// CPU time (not wall time, so time spent preempted by other work does not count as load),
/// or the period ends, then sleeps the rest.
fn spin(load_percent: u8) -> ! {
    let busy = CPU_PERIOD * u32::from(load_percent.min(100)) / 100;
    let mut state = u64::from(std::process::id());
    let mut period_start = Instant::now();
    loop {
        let period_end = period_start + CPU_PERIOD;
        let cpu_start = thread_cpu_time();
        loop {
            for _ in 0..SPIN_BATCH {
                state = mix(state);
            }
            state = black_box(state);
            if thread_cpu_time().saturating_sub(cpu_start) >= busy || Instant::now() >= period_end {
                break;
            }
        }
        let now = Instant::now();
        if period_end > now {
            thread::sleep(period_end - now);
            period_start = period_end;
        } else if now - period_end > CPU_PERIOD {
            // Far behind (throttled or stopped): start afresh rather than catching up.
            period_start = now;
        } else {
            period_start = period_end;
        }
    }
}

/// Reserves `bytes` (untouched: nothing is charged yet).
fn reserve(bytes: u64) -> Result<Vec<u8>, StressorError> {
    let len = usize::try_from(bytes).map_err(|_| StressorError::Allocate {
        bytes,
        reason: "larger than the address space".to_string(),
    })?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|e| StressorError::Allocate {
            bytes,
            reason: e.to_string(),
        })?;
    Ok(buf)
}

/// Writes one byte per page of `buf`'s capacity so every page is faulted in and charged to
/// the cgroup.
fn touch(buf: &mut Vec<u8>) {
    for page in buf.spare_capacity_mut().chunks_mut(PAGE) {
        if let Some(first) = page.first_mut() {
            MaybeUninit::write(first, 0xA5);
        }
    }
    // The bytes are never read: make the writes observable so they are not optimised out.
    black_box(buf);
}

/// Memory worker: raises its memory cgroup's usage by `bytes` in all, its own footprint
/// included (see [`hold_size`]), and holds that.
fn hold(bytes: u64) -> Result<(), StressorError> {
    let own = own_charge().unwrap_or(0);
    let mut buf = reserve(hold_size(bytes, own))?;
    touch(&mut buf);
    loop {
        thread::sleep(Duration::from_secs(3600));
        black_box(&mut buf);
    }
}

/// What this process charges to its memory cgroup already: its anonymous pages (`RssAnon`:
/// heap, stacks, relocated data) and page tables (`VmPTE`), from `/proc/self/status`. Its
/// file-backed pages (the binary, libc) were charged to whoever read them first, not here.
fn own_charge() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.trim().strip_suffix("kB")?.trim().parse().ok()
    };
    Some((kib("RssAnon:")? + kib("VmPTE:")?) * 1024)
}

/// The buffer to touch so that the usage rises by `bytes` in all: what the worker charges
/// already (`own`) comes off, and so do the page tables of the buffer itself (one 8-byte entry
/// per 4 KiB page, 1/512 of it). Never 0: the kernel rounds a charge up to a page anyway.
fn hold_size(bytes: u64, own: u64) -> u64 {
    (bytes.saturating_sub(own) / 513 * 512).max(PAGE as u64)
}

/// Bytes written into the memfd per write(2) (16 pages).
const FILL_CHUNK: usize = 64 << 10;
/// What the OOM filler writes: nonzero, so no page can be shared or left out.
static FILL_BYTES: [u8; FILL_CHUNK] = [0xA5; FILL_CHUNK];
/// The OOM filler asks for this oom_score_adj (best effort: lowering needs CAP_SYS_RESOURCE),
/// so the container's processes rank first; still killable as a last resort.
const FILLER_OOM_SCORE_ADJ: &str = "-999";

/// OOM filler: writes `step_bytes` at a time into a memfd (charged to the memory cgroup, not
/// in this process's RSS), up to `max_bytes`, then holds what it charged.
fn fill(step_bytes: u64, max_bytes: u64) -> Result<(), StressorError> {
    // Best effort: fails with EACCES without CAP_SYS_RESOURCE, and the memfd keeps this
    // worker's badness low anyway.
    let _ = std::fs::write("/proc/self/oom_score_adj", FILLER_OOM_SCORE_ADJ);
    let memfd = memfd_create("nri-chaos-oom", MemfdFlags::CLOEXEC).map_err(|e| {
        StressorError::Allocate {
            bytes: step_bytes,
            reason: format!("memfd_create: {}", std::io::Error::from(e)),
        }
    })?;
    let mut filled: u64 = 0;
    let mut warned = false;
    loop {
        let step_end = filled.saturating_add(step_bytes).min(max_bytes);
        if filled >= step_end {
            // Everything charged and the container still alive: hold until the end.
            thread::sleep(Duration::from_secs(3600));
            continue;
        }
        while filled < step_end {
            let len = usize::try_from(step_end - filled).map_or(FILL_CHUNK, |n| n.min(FILL_CHUNK));
            let started = Instant::now();
            match rustix::io::write(&memfd, &FILL_BYTES[..len]) {
                Ok(n) => filled += n as u64,
                Err(Errno::INTR) => {}
                Err(e) => {
                    // ENOMEM/ENOSPC: the OOM killer found nothing to free yet; retry.
                    if !warned {
                        eprintln!(
                            "{}; retrying",
                            StressorError::Allocate {
                                bytes: len as u64,
                                reason: std::io::Error::from(e).to_string(),
                            }
                        );
                        warned = true;
                    }
                    thread::sleep(ALLOC_RETRY);
                }
            }
            if started.elapsed() > SLOW_FAULT {
                thread::sleep(OOM_BACKOFF);
            }
        }
    }
}
