//! Unit tests: command lines, spec helpers, /proc stat parsing, and pid placement through the
//! pre_exec hook into plain files (runs anywhere, no root needed).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

use super::*;
use crate::faults::stress::{CpuStress, MemoryStress};
use crate::units::Size;

fn args(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

#[test]
fn stressor_spec_args_round_trip() {
    let specs = [
        WorkerSpec {
            kind: WorkerKind::Cpu { load_percent: 50 },
            deadline_unix_ms: 1_767_225_600_000,
            watch_pid: Some(4242),
        },
        WorkerSpec {
            kind: WorkerKind::Memory { bytes: 64 << 20 },
            deadline_unix_ms: 1,
            watch_pid: None,
        },
        WorkerSpec {
            kind: WorkerKind::OomFill {
                step_bytes: 4096,
                max_bytes: 32 << 20,
            },
            deadline_unix_ms: u64::MAX,
            watch_pid: Some(0x7fff_ffff),
        },
    ];
    for spec in specs {
        assert_eq!(WorkerSpec::from_args(&spec.to_args()).unwrap(), spec);
    }
    assert_eq!(
        specs[0].to_args(),
        args("--kind cpu --load-percent 50 --deadline-unix-ms 1767225600000 --watch-pid 4242")
    );
    // Flag order does not matter.
    assert_eq!(
        WorkerSpec::from_args(&args("--deadline-unix-ms 9 --bytes 10 --kind memory")).unwrap(),
        WorkerSpec {
            kind: WorkerKind::Memory { bytes: 10 },
            deadline_unix_ms: 9,
            watch_pid: None
        }
    );
}

#[test]
fn stressor_spec_parsing_is_strict_and_names_flag_and_value() {
    let cases = [
        ("", "stress-worker: flag --kind is required"),
        ("--kind", "stress-worker: flag --kind has no value"),
        (
            "--kind gpu --deadline-unix-ms 1",
            "stress-worker: --kind 'gpu' is not a worker kind (cpu, memory, oom-fill)",
        ),
        (
            "--kind cpu --deadline-unix-ms 1",
            "stress-worker: flag --load-percent is required",
        ),
        (
            "--kind cpu --load-percent 0 --deadline-unix-ms 1",
            "stress-worker: --load-percent '0' is out of range (1 to 100)",
        ),
        (
            "--kind cpu --load-percent 101 --deadline-unix-ms 1",
            "stress-worker: --load-percent '101' is out of range (1 to 100)",
        ),
        (
            "--kind cpu --load-percent +5 --deadline-unix-ms 1",
            "stress-worker: --load-percent '+5' is not a decimal number",
        ),
        (
            "--kind cpu --load-percent 50%",
            "stress-worker: --load-percent '50%' is not a decimal number",
        ),
        (
            "--kind cpu --load-percent 50",
            "stress-worker: flag --deadline-unix-ms is required",
        ),
        (
            "--kind cpu --load-percent 50 --bytes 5 --deadline-unix-ms 1",
            "stress-worker: flag --bytes does not apply to --kind cpu",
        ),
        (
            "--kind memory --bytes 0 --deadline-unix-ms 1",
            "stress-worker: --bytes '0' is zero; it must be above zero",
        ),
        (
            "--kind memory --bytes 99999999999999999999 --deadline-unix-ms 1",
            "stress-worker: --bytes '99999999999999999999' is too large",
        ),
        (
            "--kind oom-fill --step-bytes 4096 --max-bytes 9 --load-percent 5 --deadline-unix-ms 1",
            "stress-worker: flag --load-percent does not apply to --kind oom-fill",
        ),
        (
            "--kind oom-fill --step-bytes -1 --max-bytes 9 --deadline-unix-ms 1",
            "stress-worker: --step-bytes '-1' is not a decimal number",
        ),
        (
            "--kind memory --bytes 1 --deadline-unix-ms 1 --watch-pid 0",
            "stress-worker: --watch-pid '0' is not a process id (1 to 2147483647)",
        ),
        (
            "--kind memory --bytes 1 --deadline-unix-ms 1 --watch-pid 2147483648",
            "stress-worker: --watch-pid '2147483648' is not a process id (1 to 2147483647)",
        ),
        (
            "--kind memory --bytes 1 --deadline-unix-ms 1 --bytes 2",
            "stress-worker: flag --bytes is given more than once",
        ),
        (
            "--kind memory --bytes 1 --deadline-unix-ms=1",
            "stress-worker: unknown flag '--deadline-unix-ms=1'",
        ),
        ("cpu", "stress-worker: unknown flag 'cpu'"),
        (
            "--kind oom-fill --step-bytes 4096 --deadline-unix-ms 1",
            "stress-worker: flag --max-bytes is required",
        ),
        (
            "--kind memory --bytes 1 --max-bytes 2 --deadline-unix-ms 1",
            "stress-worker: flag --max-bytes does not apply to --kind memory",
        ),
    ];
    for (text, want) in cases {
        let err = WorkerSpec::from_args(&args(text)).unwrap_err();
        assert_eq!(err.to_string(), want, "args: {text}");
    }
}

#[test]
fn stressor_worker_main_refuses_bad_args_and_stops_at_past_deadline() {
    assert_eq!(worker_main(&args("--kind nope")), EXIT_BAD_ARGS);
    // A deadline in the past: nothing to do, exits at once.
    assert_eq!(
        worker_main(&args("--kind cpu --load-percent 100 --deadline-unix-ms 1")),
        EXIT_STOPPED
    );
}

#[test]
fn stressor_cpu_and_memory_specs() {
    let cpu = cpu_specs(
        &CpuStress {
            workers: 3,
            load: 80,
        },
        77,
        Some(9),
    );
    assert_eq!(cpu.len(), 3);
    assert!(cpu.iter().all(|s| *s
        == WorkerSpec {
            kind: WorkerKind::Cpu { load_percent: 80 },
            deadline_unix_ms: 77,
            watch_pid: Some(9)
        }));

    let mem = MemoryStress {
        size: Size::Bytes(0),
        workers: 3,
    };
    let bytes: Vec<u64> = memory_specs(&mem, 10, 5, None)
        .iter()
        .map(|s| match s.kind {
            WorkerKind::Memory { bytes } => bytes,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bytes, vec![4, 3, 3]);
    assert_eq!(bytes.iter().sum::<u64>(), 10);
    // Fewer bytes than workers: no empty worker.
    assert_eq!(memory_specs(&mem, 2, 5, None).len(), 2);
    assert!(memory_specs(&mem, 0, 5, None).is_empty());
    let one = MemoryStress {
        size: Size::Bytes(0),
        workers: 1,
    };
    assert_eq!(
        memory_specs(&one, 64 << 20, 5, Some(1)),
        vec![WorkerSpec {
            kind: WorkerKind::Memory { bytes: 64 << 20 },
            deadline_unix_ms: 5,
            watch_pid: Some(1)
        }]
    );
    assert_eq!(
        oom_fill_spec(256 << 20, 5, Some(1)).kind,
        WorkerKind::OomFill {
            step_bytes: 4 << 20,
            max_bytes: 256 << 20
        }
    );
}

#[test]
fn stressor_start_time_parsing_survives_odd_comm() {
    let tail = "S 1 2 3 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 123456 1000 200";
    assert_eq!(
        parse_start_time(&format!("42 (sleep) {tail}")),
        Some(123_456)
    );
    assert_eq!(
        parse_start_time(&format!("42 (a) b) (c d) {tail}\n")),
        Some(123_456)
    );
    assert_eq!(parse_start_time("42 (x) S 1 2"), None);
    assert_eq!(parse_start_time("no comm at all"), None);

    let me = std::process::id();
    let t = read_start_time(std::path::Path::new("/proc"), me).unwrap();
    assert!(t > 0);
    let dir = tempfile::tempdir().unwrap();
    let err = read_start_time(dir.path(), me).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "start time of process {me} from {}",
            dir.path().display()
        )),
        "{err}"
    );
}

#[test]
fn stressor_spawn_placed_writes_child_pid_before_exec() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| dir.path().join(n)).collect();
    for f in &files {
        std::fs::write(f, "").unwrap();
    }
    // The child reads the first file itself: the pid is there before its first instruction.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("test \"$(cat {})\" = \"$$\"", files[0].display()));
    let mut child = spawn_placed(&mut cmd, &files).unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for f in &files {
        assert_eq!(std::fs::read_to_string(f).unwrap(), pid.to_string());
    }
}

#[test]
fn stressor_spawn_placed_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "").unwrap();
    let missing = dir.path().join("missing").join("cgroup.procs");
    let err =
        spawn_placed(&mut Command::new("true"), &[good.clone(), missing.clone()]).unwrap_err();
    match &err {
        StressorError::Placement { file, source } => {
            assert_eq!(file, &missing);
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "placing the stressor into {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    let err = spawn_placed(&mut Command::new("/nonexistent/prog"), &[good]).unwrap_err();
    assert!(
        err.to_string().starts_with("spawning /nonexistent/prog: "),
        "{err}"
    );
    let err = spawn_placed(&mut Command::new("true"), &[PathBuf::from("/tmp/a\0b")]).unwrap_err();
    assert!(matches!(err, StressorError::NulInPath { .. }), "{err}");
}

#[test]
fn stressor_set_stop_kills_and_reaps_everything() {
    let mut set = StressorSet::new();
    for _ in 0..3 {
        let child = spawn_placed(Command::new("sleep").arg("100"), &[]).unwrap();
        set.adopt(child).unwrap();
    }
    let pids = set.pids_with_start_times();
    assert_eq!(pids.len(), 3);
    for &(pid, start) in &pids {
        assert_eq!(
            read_start_time(std::path::Path::new("/proc"), pid).unwrap(),
            start
        );
        // Its own process group.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        let pgrp: u32 = after.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, pid);
    }
    assert!(set.reap_exited().unwrap().is_empty());
    let statuses = set.stop().unwrap();
    assert_eq!(statuses.len(), 3);
    for (pid, status) in statuses {
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Reaped: no zombie left behind.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}

#[test]
fn stressor_set_drop_reaps_and_kill_orphan_checks_start_time() {
    let proc_root = std::path::Path::new("/proc");
    let pid;
    {
        let mut set = StressorSet::new();
        set.adopt(spawn_placed(Command::new("sleep").arg("100"), &[]).unwrap())
            .unwrap();
        pid = set.pids_with_start_times()[0].0;
    }
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    let mut orphan = Command::new("sleep").arg("100").spawn().unwrap();
    let id = orphan.id();
    let start = read_start_time(proc_root, id).unwrap();
    // Wrong start time: a recycled pid is left alone.
    assert!(!kill_orphan(proc_root, id, start + 1).unwrap());
    assert!(orphan.try_wait().unwrap().is_none());
    assert!(kill_orphan(proc_root, id, start).unwrap());
    assert_eq!(orphan.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(!kill_orphan(proc_root, id, start).unwrap());
}
