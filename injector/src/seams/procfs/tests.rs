use std::fs;
use std::process::Command;

use super::*;

fn stat_line(pid: u32, comm: &str, state: char, utime: u64, start: u64) -> String {
    // Fields 1..=22 and a few more, as the kernel writes them.
    format!(
        "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} 7 0 0 20 0 1 0 {start} 1000 50 18446744073709551615\n"
    )
}

fn fake(root: &Path, pid: u32, comm: &str, state: char, start: u64, score: &str) {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("stat"), stat_line(pid, comm, state, 33, start)).unwrap();
    fs::write(dir.join("oom_score_adj"), score).unwrap();
}

#[test]
fn parses_stat_past_a_hostile_command_name() {
    let p = Path::new("/proc/9/stat");
    for comm in ["sh", "a b", "x) (y", ") 1 2 3 (", "(("] {
        let s = parse_stat(p, &stat_line(9, comm, 'S', 12, 98765)).unwrap();
        assert_eq!(
            s,
            ProcStat {
                state: 'S',
                utime: 12,
                stime: 7,
                start_time: 98765
            },
            "{comm}"
        );
    }
    let err = parse_stat(p, "9 (sh S 1 2").unwrap_err().to_string();
    assert!(err.starts_with("/proc/9/stat: no ')'"), "{err}");
    let err = parse_stat(p, "9 (sh) S 1 2 3\n").unwrap_err().to_string();
    assert!(err.contains("field 14 is missing"), "{err}");
}

#[test]
fn fake_proc_tree() {
    let t = tempfile::tempdir().unwrap();
    let procfs = Procfs::new(t.path());
    fake(t.path(), 10, "app (main)", 'R', 5000, "-998\n");
    fake(t.path(), 11, "zombie", 'Z', 6000, "0\n");
    fake(t.path(), 12, "bad", 'S', 7000, "high\n");
    assert_eq!(procfs.start_time(10).unwrap(), 5000);
    assert_eq!(procfs.oom_score_adj(10).unwrap(), -998);
    assert!(procfs.is_alive(10, 5000));
    assert!(!procfs.is_alive(10, 5001), "start time differs: PID reused");
    assert!(!procfs.is_alive(11, 6000), "zombies have exited");
    assert!(!procfs.is_alive(99, 1));
    assert!(matches!(
        procfs.start_time(99),
        Err(ProcfsError::Gone { pid: 99 })
    ));
    assert!(matches!(
        procfs.oom_score_adj(99),
        Err(ProcfsError::Gone { pid: 99 })
    ));
    assert!(matches!(
        procfs.set_oom_score_adj(99, 5),
        Err(ProcfsError::Gone { pid: 99 })
    ));
    procfs.set_oom_score_adj(10, 1000).unwrap();
    assert_eq!(procfs.oom_score_adj(10).unwrap(), 1000);
    let err = procfs.oom_score_adj(12).unwrap_err().to_string();
    assert!(
        err.ends_with("12/oom_score_adj: not an integer in \"high\""),
        "{err}"
    );
    let err = procfs.set_oom_score_adj(10, 1001).unwrap_err().to_string();
    assert_eq!(
        err,
        "process 10: oom_score_adj 1001 is outside -1000..=1000"
    );
}

#[test]
fn real_proc_identity_of_this_process() {
    let procfs = Procfs::host();
    let me = std::process::id();
    let start = procfs.start_time(me).unwrap();
    assert!(start > 0);
    assert_eq!(procfs.start_time(me).unwrap(), start);
    assert!(procfs.is_alive(me, start));
    assert!(!procfs.is_alive(me, start + 1));
    assert!(OOM_SCORE_ADJ_RANGE.contains(&procfs.oom_score_adj(me).unwrap()));
}

/// CAP_SYS_RESOURCE (bit 24) in this process's effective set.
fn has_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
}

#[test]
fn real_oom_score_raise_restore_and_refused_lowering() {
    let procfs = Procfs::host();
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let start = procfs.start_time(pid).unwrap();
    let initial = procfs.oom_score_adj(pid).unwrap();
    procfs.set_oom_score_adj(pid, 900).unwrap();
    assert_eq!(procfs.oom_score_adj(pid).unwrap(), 900);
    // Back to where it started: allowed without CAP_SYS_RESOURCE.
    procfs.set_oom_score_adj(pid, initial).unwrap();
    assert_eq!(procfs.oom_score_adj(pid).unwrap(), initial);
    let has_cap = has_cap_sys_resource();
    if initial > -1000 && !has_cap {
        let err = procfs.set_oom_score_adj(pid, initial - 1).unwrap_err();
        assert!(
            matches!(err, ProcfsError::NeedsCapSysResource { pid: p, .. } if p == pid),
            "{err}"
        );
        assert!(err.to_string().contains("needs CAP_SYS_RESOURCE"));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!procfs.is_alive(pid, start));
}

#[test]
fn fake_processes_apply_the_kernel_rule() {
    let fake = FakeProcesses::new();
    fake.add(1, 100, 0);
    fake.set_oom_score_adj(1, 500).unwrap();
    fake.set_oom_score_adj(1, 0).unwrap();
    assert!(matches!(
        fake.set_oom_score_adj(1, -1),
        Err(ProcfsError::NeedsCapSysResource { pid: 1, value: -1 })
    ));
    assert_eq!(fake.writes(), vec![(1, 500), (1, 0)]);
    assert!(fake.is_alive(1, 100));
    fake.add(1, 200, 0);
    assert!(!fake.is_alive(1, 100));
    fake.exit(1);
    assert!(matches!(
        fake.start_time(1),
        Err(ProcfsError::Gone { pid: 1 })
    ));
}
