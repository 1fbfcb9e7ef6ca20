use std::fs;
use std::path::Path;

use super::*;

const CID: &str = "0123abcd";

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A v1 tree as Debian/systemd mount it: combined `cpu,cpuacct` with `cpu` and `cpuacct`
/// symlinks, separate memory/freezer/pids, and the named `systemd` hierarchy.
fn v1_tree(root: &Path) {
    for d in ["cpu,cpuacct", "memory", "freezer", "pids", "systemd"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpuacct")).unwrap();
}

fn hybrid_tree(root: &Path) {
    v1_tree(root);
    write(&root.join("unified/cgroup.controllers"), "");
}

fn v2_tree(root: &Path) {
    write(
        &root.join("cgroup.controllers"),
        "cpuset cpu io memory pids",
    );
}

#[test]
fn detects_layouts() {
    let t = tempfile::tempdir().unwrap();
    assert!(matches!(
        CgroupFs::new(t.path()).layout(),
        Err(CgroupError::NotMounted { .. })
    ));
    let v1 = tempfile::tempdir().unwrap();
    v1_tree(v1.path());
    assert_eq!(CgroupFs::new(v1.path()).layout().unwrap(), CgroupLayout::V1);
    let hy = tempfile::tempdir().unwrap();
    hybrid_tree(hy.path());
    assert_eq!(
        CgroupFs::new(hy.path()).layout().unwrap(),
        CgroupLayout::Hybrid
    );
    let v2 = tempfile::tempdir().unwrap();
    v2_tree(v2.path());
    assert_eq!(CgroupFs::new(v2.path()).layout().unwrap(), CgroupLayout::V2);
}

#[test]
fn v1_hierarchies_resolve_combined_and_symlinked_controllers() {
    let t = tempfile::tempdir().unwrap();
    v1_tree(t.path());
    let h = CgroupFs::new(t.path()).v1_hierarchies().unwrap();
    let keys: Vec<&str> = h.keys().map(String::as_str).collect();
    assert_eq!(keys, ["cpu", "cpuacct", "freezer", "memory", "pids"]);
    assert_eq!(h["cpu"], t.path().join("cpu,cpuacct"));
    assert_eq!(h["cpuacct"], t.path().join("cpu,cpuacct"));

    // Separate cpu and cpuacct directories (this machine's layout).
    let s = tempfile::tempdir().unwrap();
    for d in ["cpu", "cpuacct", "memory"] {
        fs::create_dir_all(s.path().join(d)).unwrap();
    }
    let h = CgroupFs::new(s.path()).v1_hierarchies().unwrap();
    assert_eq!(h["cpu"], s.path().join("cpu"));
    assert_eq!(h["cpuacct"], s.path().join("cpuacct"));
}

#[test]
fn systemd_slices_expand_like_systemd() {
    assert_eq!(systemd_slice_path("-.slice").unwrap(), "/");
    assert_eq!(
        systemd_slice_path("kubepods.slice").unwrap(),
        "/kubepods.slice"
    );
    assert_eq!(
        systemd_slice_path("kubepods-burstable-pod1_2.slice").unwrap(),
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice"
    );
    for bad in [
        "kubepods",
        "a--b.slice",
        "-a.slice",
        "a-.slice",
        ".slice",
        "a/b.slice",
    ] {
        let err = systemd_slice_path(bad).unwrap_err();
        assert!(err.to_string().contains(bad), "{bad}: {err}");
    }
}

#[test]
fn nri_cgroupfs_path_on_v1() {
    let t = tempfile::tempdir().unwrap();
    v1_tree(t.path());
    let fs = CgroupFs::new(t.path());
    let path = format!("/kubepods/burstable/pod1/{CID}");
    let cg = resolve_from_nri(&fs, &path).unwrap();
    assert_eq!(cg.layout, CgroupLayout::V1);
    assert_eq!(cg.unified, None);
    let rel = format!("kubepods/burstable/pod1/{CID}");
    assert_eq!(cg.v1["memory"], t.path().join("memory").join(&rel));
    assert_eq!(cg.v1["cpuacct"], t.path().join("cpu,cpuacct").join(&rel));
    assert_eq!(
        cg.freezer().unwrap(),
        FreezerLocation::V1 {
            state_file: t.path().join("freezer").join(&rel).join("freezer.state")
        }
    );
    assert_eq!(
        cg.procs_files(),
        vec![
            t.path().join("cpu,cpuacct").join(&rel).join("cgroup.procs"),
            t.path().join("freezer").join(&rel).join("cgroup.procs"),
            t.path().join("memory").join(&rel).join("cgroup.procs"),
            t.path().join("pids").join(&rel).join("cgroup.procs"),
        ]
    );
}

#[test]
fn nri_systemd_path_on_hybrid_and_v2() {
    let systemd = format!("kubepods-burstable-pod1_2.slice:cri-containerd:{CID}");
    let rel = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice/cri-containerd-{CID}.scope"
    );

    let hy = tempfile::tempdir().unwrap();
    hybrid_tree(hy.path());
    let cg = resolve_from_nri(&CgroupFs::new(hy.path()), &systemd).unwrap();
    assert_eq!(cg.layout, CgroupLayout::Hybrid);
    assert_eq!(cg.unified, Some(hy.path().join("unified").join(&rel)));
    assert_eq!(cg.v1["memory"], hy.path().join("memory").join(&rel));
    // Hybrid: the v1 freezer is preferred; memory is v1 (unified has no controllers).
    assert!(matches!(cg.freezer().unwrap(), FreezerLocation::V1 { .. }));
    assert_eq!(
        cg.memory_dir().unwrap(),
        hy.path().join("memory").join(&rel)
    );
    assert_eq!(cg.procs_files().len(), 5);
    assert!(cg
        .procs_files()
        .contains(&hy.path().join("unified").join(&rel).join("cgroup.procs")));

    let v2 = tempfile::tempdir().unwrap();
    v2_tree(v2.path());
    let cg = resolve_from_nri(&CgroupFs::new(v2.path()), &systemd).unwrap();
    assert_eq!(cg.layout, CgroupLayout::V2);
    assert!(cg.v1.is_empty());
    let dir = v2.path().join(&rel);
    assert_eq!(cg.unified, Some(dir.clone()));
    assert_eq!(
        cg.freezer().unwrap(),
        FreezerLocation::V2 { dir: dir.clone() }
    );
    assert_eq!(cg.memory_dir().unwrap(), dir);
    assert_eq!(cg.procs_files(), vec![dir.join("cgroup.procs")]);

    // cgroupfs form on v2.
    let cg = resolve_from_nri(&CgroupFs::new(v2.path()), "/kubepods/pod1/abc").unwrap();
    assert_eq!(cg.unified, Some(v2.path().join("kubepods/pod1/abc")));
}

#[test]
fn nri_paths_refused_with_the_value() {
    let t = tempfile::tempdir().unwrap();
    v2_tree(t.path());
    let fs = CgroupFs::new(t.path());
    for bad in [
        "kubepods/pod1/abc",
        "a:b",
        "a.slice:p:",
        "/kubepods/../etc",
        "kube--pods.slice:cri-containerd:abc",
    ] {
        let err = resolve_from_nri(&fs, bad).unwrap_err();
        assert!(matches!(err, CgroupError::Malformed { .. }), "{bad}: {err}");
    }
    let err = resolve_from_nri(&fs, "a:b").unwrap_err().to_string();
    assert!(err.starts_with("cgroups path \"a:b\": is neither"), "{err}");
}

fn fake_proc(root: &Path, pid: u32, text: &str) {
    write(&root.join(pid.to_string()).join("cgroup"), text);
}

#[test]
fn proc_cgroup_on_hybrid() {
    let cgroot = tempfile::tempdir().unwrap();
    hybrid_tree(cgroot.path());
    let proc = tempfile::tempdir().unwrap();
    fake_proc(
        proc.path(),
        42,
        "12:pids:/kubepods/pod1/c1\n\
         9:name=systemd:/kubepods/pod1/c1\n\
         6:freezer:/kubepods/pod1/c1\n\
         4:memory:/kubepods/pod1/c1\n\
         3:cpu,cpuacct:/kubepods/pod1/c1\n\
         2:net_cls:/\n\
         0::/kubepods/pod1/c1\n",
    );
    let cg = resolve_from_proc(&CgroupFs::new(cgroot.path()), proc.path(), 42).unwrap();
    let r = cgroot.path();
    assert_eq!(cg.layout, CgroupLayout::Hybrid);
    let keys: Vec<&str> = cg.v1.keys().map(String::as_str).collect();
    // net_cls is not mounted in the tree: ignored; name=systemd ignored.
    assert_eq!(keys, ["cpu", "cpuacct", "freezer", "memory", "pids"]);
    assert_eq!(cg.v1["cpu"], r.join("cpu,cpuacct/kubepods/pod1/c1"));
    assert_eq!(cg.unified, Some(r.join("unified/kubepods/pod1/c1")));
    assert_eq!(cg.procs_files().len(), 5);
}

#[test]
fn proc_cgroup_on_v1_and_v2() {
    let proc = tempfile::tempdir().unwrap();
    fake_proc(
        proc.path(),
        7,
        "4:memory:/a/b\n6:freezer:/a/b\n1:name=systemd:/x\n0::/a/b\n",
    );
    let v1 = tempfile::tempdir().unwrap();
    v1_tree(v1.path());
    let cg = resolve_from_proc(&CgroupFs::new(v1.path()), proc.path(), 7).unwrap();
    assert_eq!(cg.layout, CgroupLayout::V1);
    assert_eq!(
        cg.unified, None,
        "v1: the 0:: line has no mounted hierarchy"
    );
    assert_eq!(cg.v1.len(), 2);

    fake_proc(proc.path(), 8, "0::/kubepods.slice/x.scope\n");
    let v2 = tempfile::tempdir().unwrap();
    v2_tree(v2.path());
    let cg = resolve_from_proc(&CgroupFs::new(v2.path()), proc.path(), 8).unwrap();
    assert_eq!(cg.unified, Some(v2.path().join("kubepods.slice/x.scope")));
    assert!(cg.v1.is_empty());

    let err = resolve_from_proc(&CgroupFs::new(v2.path()), proc.path(), 9).unwrap_err();
    assert!(
        matches!(err, CgroupError::ProcessGone { pid: 9, .. }),
        "{err}"
    );
    fake_proc(proc.path(), 10, "garbage\n");
    let err = resolve_from_proc(&CgroupFs::new(v2.path()), proc.path(), 10).unwrap_err();
    assert!(err.to_string().contains("\"garbage\""), "{err}");
    fake_proc(proc.path(), 11, "1:name=systemd:/x\n");
    let err = resolve_from_proc(&CgroupFs::new(v2.path()), proc.path(), 11).unwrap_err();
    assert!(err.to_string().contains("names no hierarchy"), "{err}");
}

#[test]
fn v1_accounting() {
    let t = tempfile::tempdir().unwrap();
    v1_tree(t.path());
    let cg = resolve_from_nri(&CgroupFs::new(t.path()), "/pod/c").unwrap();
    let mem = t.path().join("memory/pod/c");
    write(&mem.join("memory.limit_in_bytes"), "9223372036854771712\n");
    write(&mem.join("memory.usage_in_bytes"), "1048576\n");
    write(&mem.join("cgroup.procs"), "10\n11\n");
    write(
        &t.path().join("cpu,cpuacct/pod/c/cpuacct.usage"),
        "1500000000\n",
    );
    assert_eq!(cg.memory_limit_bytes().unwrap(), None);
    write(&mem.join("memory.limit_in_bytes"), "268435456\n");
    assert_eq!(cg.memory_limit_bytes().unwrap(), Some(268_435_456));
    assert_eq!(cg.memory_usage_bytes().unwrap(), 1_048_576);
    assert_eq!(cg.cpu_usage().unwrap(), Duration::from_millis(1500));
    assert_eq!(cg.pids().unwrap(), vec![10, 11]);
    write(&mem.join("memory.usage_in_bytes"), "lots\n");
    let err = cg.memory_usage_bytes().unwrap_err().to_string();
    assert!(err.contains("memory.usage_in_bytes \"lots\""), "{err}");
    fs::remove_dir_all(&mem).unwrap();
    assert!(cg.memory_limit_bytes().unwrap_err().is_vanished());
}

#[test]
fn v2_accounting() {
    let t = tempfile::tempdir().unwrap();
    v2_tree(t.path());
    let cg = resolve_from_nri(&CgroupFs::new(t.path()), "/pod/c").unwrap();
    let dir = t.path().join("pod/c");
    write(&dir.join("memory.max"), "max\n");
    write(&dir.join("memory.current"), "4096\n");
    write(
        &dir.join("cpu.stat"),
        "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
    );
    write(&dir.join("cgroup.procs"), "5\n");
    assert_eq!(cg.memory_limit_bytes().unwrap(), None);
    write(&dir.join("memory.max"), "536870912\n");
    assert_eq!(cg.memory_limit_bytes().unwrap(), Some(536_870_912));
    assert_eq!(cg.memory_usage_bytes().unwrap(), 4096);
    assert_eq!(cg.cpu_usage().unwrap(), Duration::from_micros(2500));
    assert_eq!(cg.pids().unwrap(), vec![5]);
}

#[test]
fn hybrid_cpu_falls_back_to_unified_cpu_stat_and_missing_controllers_are_named() {
    let t = tempfile::tempdir().unwrap();
    hybrid_tree(t.path());
    let cg = ContainerCgroup {
        layout: CgroupLayout::Hybrid,
        v1: BTreeMap::new(),
        unified: Some(t.path().join("unified/x")),
    };
    write(&t.path().join("unified/x/cpu.stat"), "usage_usec 7\n");
    assert_eq!(cg.cpu_usage().unwrap(), Duration::from_micros(7));
    // The hybrid unified hierarchy has no memory controller.
    let err = cg.memory_dir().unwrap_err().to_string();
    assert!(err.contains("memory controller"), "{err}");
    let none = ContainerCgroup {
        layout: CgroupLayout::V1,
        v1: BTreeMap::new(),
        unified: None,
    };
    assert!(matches!(
        none.freezer(),
        Err(CgroupError::NoController {
            controller: "freezer",
            ..
        })
    ));
}

#[test]
fn freezer_location_round_trips_and_rebuilds_a_cgroup() {
    let v1 = FreezerLocation::V1 {
        state_file: "/sys/fs/cgroup/freezer/k/c/freezer.state".into(),
    };
    let json = serde_json::to_string(&v1).unwrap();
    assert_eq!(
        json,
        r#"{"version":"v1","state_file":"/sys/fs/cgroup/freezer/k/c/freezer.state"}"#
    );
    assert_eq!(serde_json::from_str::<FreezerLocation>(&json).unwrap(), v1);
    assert_eq!(ContainerCgroup::from_freezer(&v1).freezer().unwrap(), v1);
    let v2 = FreezerLocation::V2 {
        dir: "/sys/fs/cgroup/k/c".into(),
    };
    assert_eq!(ContainerCgroup::from_freezer(&v2).freezer().unwrap(), v2);
    assert_eq!(v1.dir(), Path::new("/sys/fs/cgroup/freezer/k/c"));
}

/// The real host: this machine is hybrid (environment.md); the test process resolves.
#[test]
fn real_host_resolves_this_process() {
    let fs = CgroupFs::host();
    let layout = fs.layout().unwrap();
    let cg = resolve_from_proc(&fs, Path::new("/proc"), std::process::id()).unwrap();
    assert_eq!(cg.layout, layout);
    assert!(cg.pids().unwrap().contains(&std::process::id()));
    for file in cg.procs_files() {
        assert!(file.is_file(), "{}", file.display());
    }
    assert!(cg.cpu_usage().unwrap() > Duration::ZERO);
}
