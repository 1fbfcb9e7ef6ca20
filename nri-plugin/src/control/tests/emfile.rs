//! The control server out of file descriptors (EMFILE): it backs off instead of spinning, logs
//! the burst once, and serves the waiting client once descriptors are free again.
//!
//! The test lowers RLIMIT_NOFILE, which would starve the other tests of this binary, so it
//! runs itself again in a child process (this test alone, `CHILD_ENV` set) and checks the
//! child's result and log.

use std::fs::File;
use std::process::Command;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use rustix::time::{clock_gettime, ClockId};

use super::*;

const CHILD_ENV: &str = "NRI_CHAOS_TEST_EMFILE_CHILD";
/// How long the child keeps the server out of descriptors.
const STARVED: Duration = Duration::from_secs(1);
const FAILED: &str = "control socket: accept failed";
const RECOVERED: &str = "control socket: accepting again";

#[test]
fn accept_errors_back_off_and_are_logged_once_per_burst() {
    if std::env::var_os(CHILD_ENV).is_some() {
        starved_server();
        return;
    }
    // libtest names a test by its module path without the crate.
    let path = module_path!();
    let module = path.split_once("::").map_or(path, |(_, rest)| rest);
    let name = format!("{module}::accept_errors_back_off_and_are_logged_once_per_burst");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = || {
        format!(
            "--- child stdout\n{stdout}\n--- child stderr (first 4000 bytes)\n{}",
            &stderr[..stderr.len().min(4000)]
        )
    };
    assert!(
        out.status.success(),
        "the child failed ({}):\n{}",
        out.status,
        shown()
    );
    assert!(
        stdout.contains("1 passed"),
        "the child did not run the test:\n{}",
        shown()
    );
    let failed = stderr.matches(FAILED).count();
    let recovered = stderr.matches(RECOVERED).count();
    assert_eq!(
        (failed, recovered),
        (1, 1),
        "one burst of accept failures must be logged once when it starts and once when it \
         ends; seen {failed} '{FAILED}' and {recovered} '{RECOVERED}' lines:\n{}",
        shown()
    );
}

fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The child: a real control server, the process pinned at its descriptor limit while a
/// client waits in the backlog, then descriptors freed.
fn starved_server() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = engine(dir.path());
        engine.synchronize(vec![pod()], vec![container()]);
        let path = dir.path().join(SOCKET_NAME);
        let service = ControlService {
            engine: engine.clone(),
            runtime: Arc::new(Mutex::new(RuntimeInfo {
                name: "containerd".into(),
                version: "1.7.24".into(),
                protocol: "v0.6".into(),
            })),
            started: Instant::now(),
            socket: path.display().to_string(),
            metrics_address: "off".into(),
        };
        let control = serve(&path, service).await.unwrap();

        // Every descriptor below a lowered soft limit taken, then one given back for the
        // client's socket: the server's accept of that client fails with EMFILE.
        let limit = getrlimit(Resource::Nofile);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: limit.maximum,
            },
        )
        .unwrap();
        let mut filler = Vec::new();
        let err = loop {
            match File::open("/dev/null") {
                Ok(file) => filler.push(file),
                Err(err) => break err,
            }
        };
        assert_eq!(err.raw_os_error(), Some(24), "expected EMFILE, got {err}");
        filler.pop();
        let stream = UnixStream::connect(&path).await.unwrap();
        assert!(
            File::open("/dev/null").is_err(),
            "a descriptor is still free"
        );

        let cpu_before = cpu_time();
        tokio::time::sleep(STARVED).await;
        let cpu = cpu_time() - cpu_before;
        println!("CPU used while out of descriptors for {STARVED:?}: {cpu:?}");
        assert!(
            cpu < Duration::from_millis(50),
            "the server used {cpu:?} of CPU in {STARVED:?} of failing accepts: it spins"
        );

        drop(filler);
        let client = ControlClient::new(Client::new(Socket::new(stream)));
        let status = client
            .status(ctx(), &StatusRequest::default())
            .await
            .unwrap();
        assert_eq!(status.runtime_name, "containerd");
        setrlimit(Resource::Nofile, limit).unwrap();
        control.stop().await;
    });
}
