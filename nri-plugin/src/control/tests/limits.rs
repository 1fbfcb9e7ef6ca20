//! The control socket's bounds over a real socket: connections beyond the cap are closed at
//! once, a client that never sends is closed after the first-request deadline, one that
//! stops sending after the idle deadline, and a client within its deadlines is served.

use tokio::io::AsyncReadExt;

use super::*;

const LIMITS: Limits = Limits {
    connections: 2,
    first_request: Duration::from_millis(300),
    idle: Duration::from_millis(900),
};

async fn serve_small(dir: &Path) -> Control {
    let (engine, _) = engine(dir);
    let path = dir.join(SOCKET_NAME);
    let service = ControlService {
        engine,
        runtime: Arc::new(Mutex::new(RuntimeInfo {
            name: "containerd".into(),
            version: "2.1.0".into(),
            protocol: "v0.7".into(),
        })),
        started: Instant::now(),
        socket: path.display().to_string(),
        metrics_address: "off".into(),
    };
    serve_limited(&path, service, LIMITS).await.unwrap()
}

/// How long after `since` the server closes `stream` (reads end-of-stream or an error),
/// waiting at most `limit`.
async fn closed_after(
    stream: &mut UnixStream,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(limit, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => Some(since.elapsed()),
        Ok(Ok(_)) => panic!("the server sent a byte unasked"),
        Err(_) => None,
    }
}

#[tokio::test]
async fn beyond_the_cap_closed_at_once_and_silent_clients_after_their_deadline() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: the server answers only peers whose credentials are uid 0"
    );
    let dir = tempfile::tempdir().unwrap();
    let control = serve_small(dir.path()).await;
    let path = dir.path().join(SOCKET_NAME);
    let connected = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..LIMITS.connections {
        silent.push(UnixStream::connect(&path).await.unwrap());
    }
    // Both slots are held (the accept loop has taken them) before the third arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = UnixStream::connect(&path).await.unwrap();
    let refused = closed_after(&mut third, Instant::now(), Duration::from_millis(100)).await;
    assert!(
        refused.is_some(),
        "a connection beyond the cap of {} was not closed at once",
        LIMITS.connections
    );
    for stream in &mut silent {
        let closed = closed_after(stream, connected, Duration::from_secs(2))
            .await
            .expect("a client that never sent was not closed");
        assert!(
            closed >= LIMITS.first_request && closed < Duration::from_millis(800),
            "silent client closed after {closed:?} (first-request deadline {:?})",
            LIMITS.first_request
        );
    }
    // Slots given back: a client is served again.
    let client = client(&path).await;
    let status = client.status(ctx(), &StatusRequest::default()).await;
    assert!(status.is_ok(), "{status:?}");
    control.stop().await;
}

#[tokio::test]
async fn a_client_within_its_deadlines_is_served_and_an_idle_one_closed() {
    let dir = tempfile::tempdir().unwrap();
    let control = serve_small(dir.path()).await;
    let path = dir.path().join(SOCKET_NAME);
    let client = client(&path).await;
    // Requests spaced by more than the first-request deadline, less than the idle one.
    for _ in 0..3 {
        let list = client.list(ctx(), &ListRequest::default()).await;
        assert!(list.is_ok(), "{list:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Silent past the idle deadline: the connection is closed, its next call fails.
    tokio::time::sleep(LIMITS.idle).await;
    let late = client.list(ctx(), &ListRequest::default()).await;
    assert!(late.is_err(), "an idle connection was kept: {late:?}");
    control.stop().await;
}

/// A client that pipelines requests gets at most `MAX_IN_FLIGHT` of them served at once: with
/// 24 long polls of 600 ms sent together, the first answers come at ~0.6 s in a batch of
/// `MAX_IN_FLIGHT`, the rest in later batches (all at ~0.6 s without the cap), and every
/// request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_served_a_bounded_number_at_a_time() {
    use super::super::in_flight::MAX_IN_FLIGHT;
    const REQUESTS: usize = 24;
    const WAIT: Duration = Duration::from_millis(600);
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engine(dir.path());
    let path = dir.path().join(SOCKET_NAME);
    let service = ControlService {
        engine,
        runtime: Arc::new(Mutex::new(RuntimeInfo::default())),
        started: Instant::now(),
        socket: path.display().to_string(),
        metrics_address: "off".into(),
    };
    let limits = Limits {
        connections: 2,
        first_request: Duration::from_secs(2),
        idle: Duration::from_secs(5),
    };
    let control = serve_limited(&path, service, limits).await.unwrap();
    let client = client(&path).await;
    let request = EventsRequest {
        since_seq: u64::MAX - 1,
        wait_ms: WAIT.as_millis() as u32,
        ..Default::default()
    };
    let sent = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let (client, request) = (client.clone(), request.clone());
        calls.spawn(async move {
            let answer = client
                .events(ttrpc::context::with_timeout(20_000_000_000), &request)
                .await;
            (answer.map(|_| ()), sent.elapsed())
        });
    }
    let mut times = Vec::new();
    while let Some(call) = calls.join_next().await {
        let (answer, at) = call.unwrap();
        assert!(answer.is_ok(), "{answer:?}");
        times.push(at);
    }
    times.sort();
    let first_batch = times.iter().filter(|t| **t < WAIT + WAIT / 2).count();
    assert_eq!(
        first_batch, MAX_IN_FLIGHT,
        "answers within 1.5 waits of sending: {times:?}"
    );
    assert!(
        times[REQUESTS - 1] >= WAIT * (REQUESTS / MAX_IN_FLIGHT) as u32,
        "the last answer came at {:?}",
        times[REQUESTS - 1]
    );
    control.stop().await;
}
