use std::time::Duration;

use super::*;

#[test]
fn defaults() {
    let p = Policy::default();
    assert!(!p.strict);
    assert_eq!(p.domain, "nri-chaos.io");
    assert_eq!(p.namespaces.allow, vec!["*"]);
    assert_eq!(p.namespaces.deny, vec!["kube-system"]);
    assert_eq!(p.allowed_faults, FaultKind::ALL.to_vec());
    assert_eq!(p.max_duration, None);
    assert_eq!(p.stress.max_cpu_workers, 4);
    assert_eq!(p.stress.max_memory, None);
    assert!(!p.allow_netem_host_network);
    assert!(!p.allow_oom_kill_without_limit);
    assert_eq!(p.state_dir, None);
    assert_eq!(Policy::from_toml_str("").unwrap(), p);
    assert_eq!(Policy::from_toml_str("# only a comment\n").unwrap(), p);
    assert_eq!(
        Policy::from_toml_str("[namespaces]\n[stress]\n").unwrap(),
        p
    );
}

#[test]
fn every_field() {
    let text = r#"
strict = true
domain = "chaos.example.org"
allowed_faults = ["kill", "netem"]
max_duration = "10m"
allow_netem_host_network = true
allow_oom_kill_without_limit = true
state_dir = "/run/nri-chaos"
control_socket = "/run/nri-chaos/control.sock"
metrics_address = "127.0.0.1:9464"
hook_path = "/usr/local/bin/nri-chaos-hook"

[namespaces]
allow = ["team-*", "qa"]
deny = ["team-prod*"]

[stress]
max_cpu_workers = 16
max_memory = "2Gi"
"#;
    let p = Policy::from_toml_str(text).unwrap();
    assert!(p.strict);
    assert_eq!(p.domain, "chaos.example.org");
    assert_eq!(p.allowed_faults, vec![FaultKind::Kill, FaultKind::Netem]);
    assert_eq!(p.max_duration, Some(Duration::from_secs(600)));
    assert!(p.allow_netem_host_network);
    assert!(p.allow_oom_kill_without_limit);
    assert_eq!(p.state_dir.as_deref(), Some("/run/nri-chaos"));
    assert_eq!(
        p.control_socket.as_deref(),
        Some("/run/nri-chaos/control.sock")
    );
    assert_eq!(p.metrics_address.as_deref(), Some("127.0.0.1:9464"));
    assert_eq!(
        p.hook_path.as_deref(),
        Some("/usr/local/bin/nri-chaos-hook")
    );
    assert_eq!(p.namespaces.allow, vec!["team-*", "qa"]);
    assert_eq!(p.namespaces.deny, vec!["team-prod*"]);
    assert_eq!(p.stress.max_cpu_workers, 16);
    assert_eq!(p.stress.max_memory, Some(Size::Bytes(2 << 30)));
    // Only allow given: deny keeps its default.
    let p = Policy::from_toml_str("[namespaces]\nallow = [\"a\"]").unwrap();
    assert_eq!(p.namespaces.deny, vec!["kube-system"]);
    // An empty deny list removes the default.
    let p = Policy::from_toml_str("[namespaces]\ndeny = []").unwrap();
    assert!(p.check_namespace("kube-system").is_ok());
    let p = Policy::from_toml_str("[stress]\nmax_memory = \"50%\"").unwrap();
    assert_eq!(p.stress.max_memory, Some(Size::PercentOfLimit(50.0)));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    for (text, key) in [
        ("strikt = true", "strikt"),
        ("[namespaces]\nallowed = [\"*\"]", "allowed"),
        ("[stress]\nmax_cpu = 3", "max_cpu"),
        ("[extra]\na = 1", "extra"),
    ] {
        let err = Policy::from_toml_str(text).unwrap_err();
        assert!(matches!(err, PolicyError::Toml(_)));
        assert!(err.to_string().contains(key), "{text}: {err}");
        assert!(err.to_string().starts_with("admin policy: "), "{err}");
    }
}

#[test]
fn invalid_values() {
    let err = |t: &str| Policy::from_toml_str(t).unwrap_err().to_string();
    assert!(err("strict = \"yes\"").contains("strict"));
    assert!(err("[stress]\nmax_cpu_workers = -1").contains("max_cpu_workers"));
    assert!(err("allowed_faults = \"kill\"").contains("allowed_faults"));
    assert_eq!(
        err("allowed_faults = [\"kill\", \"nuke\"]"),
        "admin policy: allowed_faults = \"nuke\": unknown fault kind \"nuke\" (known: kill, freeze, netem, stress, oom, start, exec, partition, bandwidth)"
    );
    assert_eq!(
        err("max_duration = \"10 minutes\""),
        "admin policy: max_duration = \"10 minutes\": is not a duration (examples: 250ms, 30s, 1h30m)"
    );
    assert!(err("max_duration = \"0s\"").contains("is zero"));
    assert!(err("max_duration = \"-1m\"").contains("is negative"));
    assert!(err("[stress]\nmax_memory = \"lots\"")
        .contains("stress.max_memory = \"lots\": is not a size"));
    for bad in ["", "Nri-Chaos.io", "a/b", "a..b", ".a", "a.", "a b"] {
        let e = err(&format!("domain = \"{bad}\""));
        assert!(e.contains("is not a DNS domain"), "{bad}: {e}");
    }
    assert!(err("this is not toml").starts_with("admin policy: "));
}

#[test]
fn load_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "strict = true\n").unwrap();
    assert!(Policy::load(&path).unwrap().strict);
    let missing = dir.path().join("missing.toml");
    let err = Policy::load(&missing).unwrap_err();
    assert!(matches!(err, PolicyError::Io { .. }));
    assert!(err.to_string().contains("missing.toml"));
}

#[test]
fn globs() {
    assert!(glob_match("*", ""));
    assert!(glob_match("*", "anything"));
    assert!(glob_match("kube-system", "kube-system"));
    assert!(!glob_match("kube-system", "kube-systems"));
    assert!(glob_match("kube-*", "kube-public"));
    assert!(glob_match("kube-*", "kube-"));
    assert!(!glob_match("kube-*", "kube"));
    assert!(glob_match("team-?", "team-a"));
    assert!(!glob_match("team-?", "team-ab"));
    assert!(!glob_match("team-?", "team-"));
    assert!(glob_match("*-prod", "shop-prod"));
    assert!(glob_match("*-prod-*", "a-prod-b-prod-c"));
    assert!(!glob_match("*-prod-*", "a-prod"));
    assert!(glob_match("a*b*c", "aXXbYYc"));
    assert!(!glob_match("a*b*c", "aXXbYY"));
    assert!(glob_match("**", "x"));
    assert!(!glob_match("", "x"));
    assert!(glob_match("", ""));
    assert!(glob_match("ü?", "üß"));
}

#[test]
fn namespace_checks() {
    let p = Policy::from_toml_str(
        "[namespaces]\nallow = [\"team-*\", \"qa\"]\ndeny = [\"team-prod*\"]",
    )
    .unwrap();
    assert!(p.check_namespace("team-a").is_ok());
    assert!(p.check_namespace("qa").is_ok());
    assert_eq!(
        p.check_namespace("team-prod-eu").unwrap_err(),
        "namespace \"team-prod-eu\" is denied by policy (deny = [\"team-prod*\"])"
    );
    assert_eq!(
        p.check_namespace("default").unwrap_err(),
        "namespace \"default\" is not allowed by policy (allow = [\"team-*\", \"qa\"])"
    );
    // Deny wins over allow.
    let p = Policy::from_toml_str("[namespaces]\nallow = [\"*\"]\ndeny = [\"*\"]").unwrap();
    assert!(p.check_namespace("x").is_err());
}

#[test]
fn kind_checks() {
    let p = Policy::from_toml_str("allowed_faults = []").unwrap();
    for kind in FaultKind::ALL {
        assert!(p.check_kind(kind).is_err());
    }
    assert!(Policy::default().check_kind(FaultKind::Oom).is_ok());
}
