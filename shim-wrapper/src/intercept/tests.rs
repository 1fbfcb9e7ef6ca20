//! Frame decoding and the answers of the exec fault, against recorded request frames.
use super::*;
use protobuf::well_known_types::any::Any;
use ttrpc::proto::MessageHeader;

const TASK: &str = "containerd.task.v3.Task";

fn frame(service: &str, method: &str, msg: &impl Message) -> Frame {
    let mut req = Request::new();
    req.service = service.into();
    req.method = method.into();
    req.payload = msg.write_to_bytes().unwrap();
    let payload = req.write_to_bytes().unwrap();
    let mut bytes: Vec<u8> = MessageHeader::new_request(1, payload.len() as u32).into();
    bytes.extend_from_slice(&payload);
    Frame(bytes)
}

fn bundle(plan_value: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let plan = serde_json::json!({"version": 1, "faults": [
        {"kind": "exec", "key": "exec.nri-chaos.io/container.app", "value": plan_value}
    ]})
    .to_string();
    let config = serde_json::json!({"annotations": {
        "io.kubernetes.cri.container-name": "app",
        "nri-chaos.io/plan": plan,
    }});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

async fn create(shared: &Arc<Shared>, id: &str, bundle: &std::path::Path) {
    let mut c = CreateTaskRequest::new();
    c.id = id.into();
    c.bundle = bundle.display().to_string();
    let Route::ForwardCreate(planned) = route(shared, &frame(TASK, "Create", &c)) else {
        panic!("Create is forwarded, then its plan read");
    };
    assert_eq!(*planned.create(), c);
    let mut s = StartRequest::new();
    s.id = id.into();
    let start = frame(TASK, "Start", &s);
    // The container's Start waits while its plan is read; an exec's does not.
    let Route::AfterPlan(plan) = route(shared, &start) else {
        panic!("a Start before the plan is recorded waits for it");
    };
    let mut exec_start = s.clone();
    exec_start.exec_id = "e0".into();
    assert!(matches!(
        route(shared, &frame(TASK, "Start", &exec_start)),
        Route::Forward
    ));
    planned.read();
    crate::planning::recorded(plan).await;
    assert!(shared.pending.of(id).is_none());
    assert!(matches!(route(shared, &start), Route::Forward));
}

fn exec_request(id: &str, exec_id: &str, args: &[&str]) -> ExecProcessRequest {
    let mut e = ExecProcessRequest::new();
    e.id = id.into();
    e.exec_id = exec_id.into();
    let mut any = Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    any.value = serde_json::to_vec(&serde_json::json!({"args": args, "cwd": "/"})).unwrap();
    e.spec = protobuf::MessageField::some(any);
    e
}

async fn answered<M: Message>(route: Route) -> M {
    let Route::Answer(fut) = route else {
        panic!("not answered here: {route:?}")
    };
    let resp = Response::parse_from_bytes(&fut.await).unwrap();
    assert_eq!(resp.status.code.value(), 0);
    M::parse_from_bytes(&resp.payload).unwrap()
}

fn exec_scoped<M: Message + Default>(
    id: &str,
    exec_id: &str,
    set: impl Fn(&mut M, &str, &str),
) -> M {
    let mut m = M::default();
    set(&mut m, id, exec_id);
    m
}

#[tokio::test]
async fn fail_is_answered_here_and_other_calls_pass() {
    let shared = Arc::new(Shared::default());
    let dir = bundle("{fail: {exit_code: 7}, match: healthz}");
    create(&shared, "c1", dir.path()).await;
    // Not matched: forwarded untouched.
    let hi = exec_request("c1", "e0", &["echo", "hi"]);
    assert!(matches!(
        route(&shared, &frame(TASK, "Exec", &hi)),
        Route::Forward
    ));
    // Matched: Exec, Wait, Start, Delete of it are answered here; Wait gives 7.
    let hz = exec_request("c1", "e1", &["sh", "-c", "echo healthz"]);
    let _: protobuf::well_known_types::empty::Empty =
        answered(route(&shared, &frame(TASK, "Exec", &hz))).await;
    let wait: WaitRequest = exec_scoped("c1", "e1", |m: &mut WaitRequest, i, e| {
        m.id = i.into();
        m.exec_id = e.into();
    });
    let waiting = route(&shared, &frame(TASK, "Wait", &wait));
    let start: StartRequest = exec_scoped("c1", "e1", |m: &mut StartRequest, i, e| {
        m.id = i.into();
        m.exec_id = e.into();
    });
    let started: StartResponse = answered(route(&shared, &frame(TASK, "Start", &start))).await;
    assert_eq!(started.pid, 0);
    let exited: WaitResponse = answered(waiting).await;
    assert_eq!(exited.exit_status, 7);
    let state: StateRequest = exec_scoped("c1", "e1", |m: &mut StateRequest, i, e| {
        m.id = i.into();
        m.exec_id = e.into();
    });
    let st: StateResponse = answered(route(&shared, &frame(TASK, "State", &state))).await;
    assert_eq!(
        (st.exit_status, st.status.enum_value()),
        (7, Ok(TaskStatus::STOPPED))
    );
    // Calls about other processes, other services and garbage pass.
    let other: WaitRequest = exec_scoped("c1", "e0", |m: &mut WaitRequest, i, e| {
        m.id = i.into();
        m.exec_id = e.into();
    });
    assert!(matches!(
        route(&shared, &frame(TASK, "Wait", &other)),
        Route::Forward
    ));
    let stats = containerd_shim_protos::api::StatsRequest::new();
    assert!(matches!(
        route(&shared, &frame(TASK, "Stats", &stats)),
        Route::Forward
    ));
    assert!(matches!(
        route(
            &shared,
            &frame("containerd.runtime.sandbox.v1.Sandbox", "Wait", &wait)
        ),
        Route::Forward
    ));
    let mut junk = frame(TASK, "Exec", &hz);
    junk.0.truncate(14);
    assert!(matches!(route(&shared, &junk), Route::Forward));
    let delete: DeleteRequest = exec_scoped("c1", "e1", |m: &mut DeleteRequest, i, e| {
        m.id = i.into();
        m.exec_id = e.into();
    });
    let deleted: DeleteResponse = answered(route(&shared, &frame(TASK, "Delete", &delete))).await;
    assert_eq!(deleted.exit_status, 7);
    assert!(!shared.execs().has_synthetic());
}

#[tokio::test]
async fn hang_waits_for_kill_and_delay_holds_start() {
    let shared = Arc::new(Shared::default());
    let hung = bundle("{hang: true}");
    create(&shared, "h", hung.path()).await;
    let e = exec_request("h", "x", &["true"]);
    let _: protobuf::well_known_types::empty::Empty =
        answered(route(&shared, &frame(TASK, "Exec", &e))).await;
    let wait: WaitRequest = exec_scoped("h", "x", |m: &mut WaitRequest, i, e| {
        m.id = i.into();
        m.exec_id = e.into();
    });
    let Route::Answer(waiting) = route(&shared, &frame(TASK, "Wait", &wait)) else {
        panic!()
    };
    let waiting = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "a hung exec must not exit by itself"
    );
    let mut kill = KillRequest::new();
    kill.id = "h".into();
    kill.exec_id = "x".into();
    kill.signal = 9;
    let _: protobuf::well_known_types::empty::Empty =
        answered(route(&shared, &frame(TASK, "Kill", &kill))).await;
    let resp = Response::parse_from_bytes(&waiting.await.unwrap()).unwrap();
    assert_eq!(
        WaitResponse::parse_from_bytes(&resp.payload)
            .unwrap()
            .exit_status,
        137
    );

    let slow = bundle("{delay: 1500ms}");
    create(&shared, "s", slow.path()).await;
    let e = exec_request("s", "y", &["true"]);
    assert!(matches!(
        route(&shared, &frame(TASK, "Exec", &e)),
        Route::Forward
    ));
    let start: StartRequest = exec_scoped("s", "y", |m: &mut StartRequest, i, e| {
        m.id = i.into();
        m.exec_id = e.into();
    });
    let held = route(&shared, &frame(TASK, "Start", &start));
    assert!(
        matches!(held, Route::ForwardAfter(d) if d == Duration::from_millis(1500)),
        "{held:?}"
    );
}
