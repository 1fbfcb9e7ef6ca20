//! Unit tests.

use std::cell::RefCell;
use std::collections::HashMap;

use injector::faults::netem::NetemFault;
use injector::faults::FakeKernel;
use injector::seams::netlink::{NetlinkCall, NRI_CHAOS_HANDLE};

use super::*;
use crate::resolve::resolve;

struct Fake {
    slept: RefCell<Vec<Duration>>,
    draw: f64,
    fakes: FakeKernel,
}

impl Fake {
    fn new() -> Fake {
        let fakes = FakeKernel::new();
        fakes.procs.add(4242, 1000, 0);
        let netns = std::path::Path::new("/proc/4242/ns/net");
        fakes.netlink.add_namespace(netns, &["eth0"]);
        Fake {
            slept: RefCell::new(Vec::new()),
            draw: 0.5,
            fakes,
        }
    }

    fn netem_installs(&self) -> Vec<NetlinkCall> {
        self.fakes.netlink.changes()
    }
}

impl HookEnv for Fake {
    fn sleep(&self, d: Duration) {
        self.slept.borrow_mut().push(d);
    }
    fn kernel(&self) -> Kernel<'_> {
        self.fakes.kernel()
    }
    fn draw(&self) -> f64 {
        self.draw
    }
}

fn standalone(pairs: &[(&str, &str)]) -> Resolved {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    resolve(&map, false).unwrap()
}

fn plugin(faults: &[(&str, &str, &str)]) -> Resolved {
    let list: Vec<String> = faults
        .iter()
        .map(|(kind, key, value)| format!(r#"{{"kind":"{kind}","key":"{key}","value":"{value}"}}"#))
        .collect();
    let plan = format!(r#"{{"version":1,"faults":[{}]}}"#, list.join(","));
    standalone(&[(injector::hookplan::PLAN_ANNOTATION, plan.as_str())])
}

#[test]
fn create_runtime_delays_the_start() {
    let env = Fake::new();
    let r = plugin(&[("start", "start.nri-chaos.io/container.app", "{delay: 3s}")]);
    let out = act(HookPoint::CreateRuntime, Some(4242), &r, None, &env);
    assert_eq!(out, Outcome::default());
    assert_eq!(*env.slept.borrow(), vec![Duration::from_secs(3)]);
}

#[test]
fn create_runtime_fails_the_start_naming_the_annotation() {
    let env = Fake::new();
    let r = plugin(&[(
        "start",
        "start.nri-chaos.io/container.app",
        "{fail: {exit_code: 3}}",
    )]);
    let out = act(HookPoint::CreateRuntime, Some(4242), &r, None, &env);
    assert_eq!(out.exit_code, 3);
    assert_eq!(
        out.messages,
        vec![
            "nri-chaos: start fault from annotation start.nri-chaos.io/container.app: \"{fail: {exit_code: 3}}\": failing the container start with exit code 3"
        ]
    );
    assert!(env.slept.borrow().is_empty());
}

#[test]
fn delay_then_fail() {
    let env = Fake::new();
    let r = standalone(&[("start.nri-chaos.io", "{delay: 250ms, fail: {}}")]);
    let out = act(HookPoint::CreateRuntime, Some(4242), &r, None, &env);
    assert_eq!(out.exit_code, 1);
    assert_eq!(*env.slept.borrow(), vec![Duration::from_millis(250)]);
}

#[test]
fn delay_is_clamped_to_the_hook_timeout() {
    let env = Fake::new();
    let r = standalone(&[("start.nri-chaos.io", "{delay: 1m}")]);
    let out = act(
        HookPoint::CreateRuntime,
        Some(4242),
        &r,
        Some(Duration::from_secs(10)),
        &env,
    );
    assert_eq!(out.exit_code, 0);
    assert_eq!(*env.slept.borrow(), vec![Duration::from_secs(9)]);
    assert!(
        out.messages[0].contains("delay 1m shortened to 9s"),
        "{out:?}"
    );
}

#[test]
fn oom_score_is_raised_before_the_app_runs() {
    let env = Fake::new();
    let r = plugin(&[("oom", "oom.nri-chaos.io/pod", "{score: 700}")]);
    let out = act(HookPoint::CreateRuntime, Some(4242), &r, None, &env);
    assert_eq!(out, Outcome::default());
    assert_eq!(env.fakes.procs.score(4242), Some(700));
}

#[test]
fn oom_score_problems_warn_but_never_fail_the_start() {
    let env = Fake::new();
    env.fakes.procs.add(4243, 1000, 900);
    let r = plugin(&[("oom", "oom.nri-chaos.io/pod", "{score: 700}")]);
    let out = act(HookPoint::CreateRuntime, Some(4243), &r, None, &env);
    assert_eq!(out.exit_code, 0);
    assert!(out.messages[0].contains("refusing to set 700"), "{out:?}");
    assert_eq!(env.fakes.procs.score(4243), Some(900));
    let out = act(HookPoint::CreateRuntime, None, &r, None, &env);
    assert_eq!(out.exit_code, 0);
    assert!(out.messages[0].contains("no pid"), "{out:?}");
}

#[test]
fn other_hook_points_do_nothing() {
    let r = plugin(&[
        ("start", "start.nri-chaos.io", "{delay: 1s, fail: {}}"),
        ("oom", "oom.nri-chaos.io", "{score: 500}"),
    ]);
    for point in [
        HookPoint::CreateContainer,
        HookPoint::StartContainer,
        HookPoint::Poststart,
        HookPoint::Poststop,
    ] {
        let env = Fake::new();
        let out = act(point, Some(4242), &r, None, &env);
        assert_eq!(out, Outcome::default(), "{point}");
        assert!(env.slept.borrow().is_empty());
        assert!(env.fakes.procs.writes().is_empty());
    }
}

#[test]
fn standalone_draws_probability_the_plugin_does_not() {
    let mut env = Fake::new();
    env.draw = 0.9;
    let r = standalone(&[("start.nri-chaos.io", "{fail: {}, probability: 50%}")]);
    let out = act(HookPoint::CreateRuntime, Some(4242), &r, None, &env);
    assert_eq!(out.exit_code, 0);
    assert!(out.messages[0].contains("not this time"), "{out:?}");
    env.draw = 0.1;
    assert_eq!(
        act(HookPoint::CreateRuntime, Some(4242), &r, None, &env).exit_code,
        1
    );
    // The plugin already drew: its plan acts whatever the hook would draw.
    env.draw = 0.9;
    let r = plugin(&[(
        "start",
        "start.nri-chaos.io",
        "{fail: {}, probability: 50%}",
    )]);
    assert_eq!(
        act(HookPoint::CreateRuntime, Some(4242), &r, None, &env).exit_code,
        1
    );
}

#[test]
fn standalone_warnings_are_printed_and_the_start_proceeds() {
    let env = Fake::new();
    let r = standalone(&[("start.nri-chaos.io", "{fail: {exit_code: 300}}")]);
    let out = act(HookPoint::CreateRuntime, Some(4242), &r, None, &env);
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.messages.len(), 1);
    assert!(out.messages[0].starts_with("nri-chaos: warning: annotation start.nri-chaos.io:"));
}

#[test]
fn netem_after_zero_is_installed_at_create_runtime() {
    let env = Fake::new();
    let resolved = standalone(&[("netem.nri-chaos.io/pod", "{delay: 100ms}")]);
    let out = act(HookPoint::CreateRuntime, Some(4242), &resolved, None, &env);
    assert_eq!(out.exit_code, 0, "{out:?}");
    let install = NetlinkCall::Replace(2, "netem".into(), NRI_CHAOS_HANDLE);
    assert_eq!(env.netem_installs(), vec![install.clone()]);
    let delay = NetemFault {
        delay: Some(Duration::from_millis(100)),
        ..NetemFault::default()
    };
    let root = env
        .fakes
        .netlink
        .root(std::path::Path::new("/proc/4242/ns/net"), 2);
    assert_eq!(
        root.map(|q| q.options),
        Some(injector::seams::netlink::netem_options::netem_options(
            &delay
        ))
    );
    // Not at other points, not when it starts later, and not over its own qdisc.
    let later = standalone(&[("netem.nri-chaos.io/pod", "{delay: 100ms, after: 5s}")]);
    act(HookPoint::CreateRuntime, Some(4242), &later, None, &env);
    act(HookPoint::Poststop, Some(4242), &resolved, None, &env);
    act(HookPoint::CreateRuntime, Some(4242), &resolved, None, &env);
    assert_eq!(env.netem_installs(), vec![install]);
}

#[test]
fn standalone_netem_on_the_host_network_is_refused_and_never_installed() {
    let env = Fake::new();
    let map: HashMap<String, String> = [(
        "netem.nri-chaos.io/pod".to_string(),
        "{delay: 100ms}".to_string(),
    )]
    .into();
    let resolved = resolve(&map, true).unwrap();
    let out = act(HookPoint::CreateRuntime, Some(4242), &resolved, None, &env);
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        out.messages,
        vec!["nri-chaos: warning: annotation netem.nri-chaos.io/pod: \"{delay: 100ms}\": netem on a hostNetwork pod would shape the node's own network; refused by policy (allow_netem_host_network = false); the container starts unharmed"]
    );
    assert!(env.fakes.netlink.calls().is_empty());
}
