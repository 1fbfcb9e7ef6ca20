//! The control server over a real unix socket: mode 0600, root-only peers, and the four calls
//! against an engine with recording seams.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use injector::seams::cgroup::{CgroupFs, RecordingFreezer};
use injector::seams::procfs::FakeProcesses;
use injector::seams::signal::RecordingSignaller;
use injector::Policy;
use nri_chaos_proto::control::{
    EventsRequest, InjectRequest, ListRequest, RecoverRequest, StatusRequest,
};
use nri_chaos_proto::control_ttrpc::ControlClient;
use ttrpc::r#async::transport::Socket;
use ttrpc::r#async::Client;

use super::accept::peer_allowed;
use super::*;
use crate::engine::{ContainerInfo, Engine, PodInfo, Seams};
use crate::service::RuntimeInfo;

mod emfile;
mod limits;

fn engine(dir: &Path) -> (Engine, Arc<RecordingSignaller>) {
    let signaller = Arc::new(RecordingSignaller::new());
    let seams = Seams {
        signaller: signaller.clone(),
        freezer: Arc::new(RecordingFreezer::new()),
        procs: Arc::new(FakeProcesses::default()),
        cgroups: CgroupFs::new(dir.join("cgroup")),
        proc_root: dir.join("proc"),
        netlink: Arc::new(injector::seams::netlink::RecordingNetlink::new()),
        stressors: Arc::new(injector::seams::stressors::RecordingSpawner::new()),
    };
    let engine = Engine::new(Policy::default(), seams, dir, &dir.join("exec")).unwrap();
    (engine, signaller)
}

fn pod() -> PodInfo {
    PodInfo {
        id: "sandbox-1".into(),
        name: "web".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
        annotations: HashMap::new(),
        host_network: false,
        netns: None,
        pid: 0,
        ..PodInfo::default()
    }
}

fn container() -> ContainerInfo {
    ContainerInfo {
        id: "c-1".into(),
        pod_sandbox_id: "sandbox-1".into(),
        name: "app".into(),
        pid: std::process::id(),
        memory_limit: None,
        running: true,
    }
}

async fn client(path: &Path) -> ControlClient {
    let stream = UnixStream::connect(path).await.unwrap();
    ControlClient::new(Client::new(Socket::new(stream)))
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(5_000_000_000)
}

#[test]
fn only_root_is_served() {
    assert!(peer_allowed(0));
    assert!(!peer_allowed(65534));
    assert!(!peer_allowed(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_0600_and_serves_list_inject_recover_status() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: the server answers only peers whose credentials are uid 0"
    );
    let dir = tempfile::tempdir().unwrap();
    let (engine, signaller) = engine(dir.path());
    engine.synchronize(vec![pod()], vec![container()]);
    let path = dir.path().join(SOCKET_NAME);
    let runtime = Arc::new(Mutex::new(RuntimeInfo {
        name: "containerd".into(),
        version: "1.7.24".into(),
        protocol: "v0.6".into(),
    }));
    let control = serve(
        &path,
        ControlService {
            engine: engine.clone(),
            runtime,
            started: Instant::now(),
            socket: path.display().to_string(),
            metrics_address: "off".into(),
        },
    )
    .await
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let client = client(&path).await;
    let status = client
        .status(ctx(), &StatusRequest::default())
        .await
        .unwrap();
    assert_eq!(status.runtime_name, "containerd");
    assert!(
        status.policy.contains("deny = [\"kube-system\"]"),
        "{}",
        status.policy
    );

    // A kill now: applied, with planned and applied times.
    let inject = |value: &str| InjectRequest {
        target: "default/web/app".into(),
        kind: "kill".into(),
        value: value.into(),
        ..Default::default()
    };
    let armed = client.inject(ctx(), &inject("{}")).await.unwrap();
    assert_eq!(armed.armed.len(), 1);
    let id = armed.armed[0].id;
    assert_eq!(armed.armed[0].source, "ctl");
    let mut applied = false;
    for _ in 0..100 {
        let list = client.list(ctx(), &ListRequest::default()).await.unwrap();
        let fault = list.faults.iter().find(|f| f.id == id).unwrap();
        if fault.state == "applied" {
            assert!(fault.planned_unix_ms > 0 && fault.applied_unix_ms >= fault.planned_unix_ms);
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(applied, "the injected kill was never applied");
    assert_eq!(signaller.sent().len(), 1);
    // The event feed saw it armed, then applied, in that order.
    let feed = client
        .events(ctx(), &EventsRequest::default())
        .await
        .unwrap();
    let seen: Vec<&str> = feed
        .events
        .iter()
        .filter(|e| e.fault.as_ref().is_some_and(|f| f.id == id))
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(seen, vec!["armed", "applied"]);
    assert_eq!(feed.last_seq, feed.events.last().map_or(0, |e| e.seq));

    // A kill in an hour, recovered (stopped) now.
    let later = client.inject(ctx(), &inject("{after: 1h}")).await.unwrap();
    let recovered = client
        .recover(
            ctx(),
            &RecoverRequest {
                all: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(recovered.recovered.len(), 1);
    assert_eq!(recovered.recovered[0].id, later.armed[0].id);
    assert_eq!(recovered.recovered[0].state, "stopped");
    assert_eq!(signaller.sent().len(), 1);

    // Errors name the problem.
    let err = client
        .inject(
            ctx(),
            &InjectRequest {
                target: "default/nope".into(),
                kind: "kill".into(),
                value: "{}".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no running container matches 'default/nope'"),
        "{err}"
    );
    let err = client
        .inject(
            ctx(),
            &InjectRequest {
                target: "default/web/app".into(),
                kind: "kill".into(),
                value: "{after: 2x}".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a duration"), "{err}");
    let err = client
        .recover(
            ctx(),
            &RecoverRequest {
                id: 999,
                ..Default::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no fault with id 999"), "{err}");
    control.stop().await;
    assert!(!path.exists());
}
