//! The runtime side of NRI, for load tests of the real `nri-chaos` binary over its real
//! socket: listens where containerd would, accepts the plugin, multiplexes the stream
//! (`[u32 conn][u32 len]` big-endian frames; conn 1 the Plugin service the plugin serves,
//! conn 2 the Runtime service it calls), answers RegisterPlugin, and calls Configure,
//! Synchronize, CreateContainer and StateChange with the messages containerd sends.
//!
//! Hand-written: no crate speaks NRI's multiplexer in Rust; the wire facts are those of
//! ../shared/docs/nri-protocol.md, the messages come from the repository's own proto crate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use nri_chaos_proto::nri::{
    ConfigureRequest, Container, ContainerState, CreateContainerRequest, Empty, Event, PodSandbox,
    RegisterPluginRequest, StateChangeEvent, SynchronizeRequest, UpdateContainersRequest,
    UpdateContainersResponse,
};
use nri_chaos_proto::nri_ttrpc::{create_runtime, PluginClient, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinSet;
use ttrpc::r#async::transport::{Listener, Socket};
use ttrpc::r#async::{Client, Server};

/// The Plugin service (the runtime is the client).
const PLUGIN_CONN: u32 = 1;
/// The Runtime service (the plugin is the client).
const RUNTIME_CONN: u32 = 2;
/// Largest frame payload the protocol allows.
const MAX_PAYLOAD: usize = 1 << 24;
/// containerd's timeout for every NRI request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A connected, registered plugin seen from the runtime.
pub struct NriDriver {
    client: PluginClient,
    _server: Server,
    _tasks: JoinSet<()>,
}

impl std::fmt::Debug for NriDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NriDriver").finish_non_exhaustive()
    }
}

struct Registrar(Mutex<Option<oneshot::Sender<String>>>);

#[async_trait]
impl Runtime for Registrar {
    async fn register_plugin(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        req: RegisterPluginRequest,
    ) -> ttrpc::Result<Empty> {
        if let Some(tx) = self.0.lock().await.take() {
            let _ = tx.send(format!("{}-{}", req.plugin_idx, req.plugin_name));
        }
        Ok(Empty::default())
    }

    async fn update_containers(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        _req: UpdateContainersRequest,
    ) -> ttrpc::Result<UpdateContainersResponse> {
        Ok(UpdateContainersResponse::default())
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(REQUEST_TIMEOUT.as_nanos() as i64)
}

/// Binds the NRI socket at `path` (the plugin is started against it afterwards).
pub fn listen(path: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
}

impl NriDriver {
    /// Accepts the plugin on `listener` (within `timeout`), takes its registration and
    /// configures it as containerd `version` would. Returns the driver and `NN-name`.
    pub async fn accept(
        listener: &UnixListener,
        version: &str,
        timeout: Duration,
    ) -> Result<(NriDriver, String)> {
        let (stream, _) = tokio::time::timeout(timeout, listener.accept())
            .await
            .context("the plugin did not connect to the NRI socket")??;
        let mut tasks = JoinSet::new();
        let mut conns = multiplex(stream, &mut tasks);
        let (Some(plugin_conn), Some(runtime_conn)) =
            (conns.remove(&PLUGIN_CONN), conns.remove(&RUNTIME_CONN))
        else {
            bail!("multiplexer did not open both connections");
        };
        let (tx, rx) = oneshot::channel();
        let mut server = Server::new()
            .register_service(create_runtime(Arc::new(Registrar(Mutex::new(Some(tx))))))
            .add_listener(Listener::new(futures_util_once(runtime_conn)));
        server.start().await?;
        let name = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .context("no RegisterPlugin within 5 s")??;
        let client = PluginClient::new(Client::new(Socket::new(plugin_conn)));
        client
            .configure(
                ctx(),
                &ConfigureRequest {
                    runtime_name: "containerd".into(),
                    runtime_version: version.into(),
                    ..Default::default()
                },
            )
            .await?;
        Ok((
            NriDriver {
                client,
                _server: server,
                _tasks: tasks,
            },
            name,
        ))
    }

    /// Synchronize with `pods` and `containers` in one request; the round trip.
    pub async fn synchronize(
        &self,
        pods: Vec<PodSandbox>,
        containers: Vec<Container>,
    ) -> Result<Duration> {
        let request = SynchronizeRequest {
            pods,
            containers,
            ..Default::default()
        };
        timed(self.client.synchronize(ctx(), &request)).await
    }

    /// CreateContainer of `container` in `pod`; the round trip.
    pub async fn create_container(
        &self,
        pod: &PodSandbox,
        container: &Container,
    ) -> Result<Duration> {
        let request = CreateContainerRequest {
            pod: Some(pod.clone()).into(),
            container: Some(container.clone()).into(),
            ..Default::default()
        };
        timed(self.client.create_container(ctx(), &request)).await
    }

    /// A lifecycle event (`StateChange`) of `container` in `pod`; the round trip.
    pub async fn event(
        &self,
        event: Event,
        pod: &PodSandbox,
        container: &Container,
    ) -> Result<Duration> {
        let request = StateChangeEvent {
            event: event.into(),
            pod: Some(pod.clone()).into(),
            container: Some(container.clone()).into(),
            ..Default::default()
        };
        timed(self.client.state_change(ctx(), &request)).await
    }
}

/// How long `call` took to be answered.
async fn timed<T>(call: impl std::future::Future<Output = ttrpc::Result<T>>) -> Result<Duration> {
    let started = std::time::Instant::now();
    call.await?;
    Ok(started.elapsed())
}

/// A pod sandbox message: `ns/name` with `annotations`.
pub fn pod(id: &str, annotations: &[(&str, &str)]) -> PodSandbox {
    PodSandbox {
        id: id.into(),
        name: id.into(),
        uid: format!("uid-{id}"),
        namespace: "load".into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// A running container message `name` of `pod` whose init process is `pid`.
pub fn container(id: &str, pod: &PodSandbox, name: &str, pid: u32) -> Container {
    Container {
        id: id.into(),
        pod_sandbox_id: pod.id.clone(),
        name: name.into(),
        state: ContainerState::CONTAINER_RUNNING.into(),
        pid,
        ..Default::default()
    }
}

/// A stream that yields `item` once, then stays pending (a ttrpc listener of one connection
/// that does not end the server's accept loop).
fn futures_util_once(
    item: DuplexStream,
) -> impl futures_core::Stream<Item = std::io::Result<DuplexStream>> + Send {
    struct Once(Option<DuplexStream>);
    impl futures_core::Stream for Once {
        type Item = std::io::Result<DuplexStream>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            match self.0.take() {
                Some(item) => std::task::Poll::Ready(Some(Ok(item))),
                None => std::task::Poll::Pending,
            }
        }
    }
    Once(Some(item))
}

/// Runs the multiplexer on `stream`: one duplex per virtual connection (1 and 2).
fn multiplex(stream: UnixStream, tasks: &mut JoinSet<()>) -> HashMap<u32, DuplexStream> {
    let (mut read, mut write) = stream.into_split();
    let (frames_tx, mut frames_rx) = mpsc::channel::<(u32, Vec<u8>)>(64);
    let mut handed = HashMap::new();
    let mut inbound = HashMap::new();
    for conn in [PLUGIN_CONN, RUNTIME_CONN] {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (mut ours_read, ours_write) = tokio::io::split(ours);
        inbound.insert(conn, ours_write);
        handed.insert(conn, theirs);
        let frames_tx = frames_tx.clone();
        tasks.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = ours_read.read(&mut buf).await {
                if n == 0 || frames_tx.send((conn, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }
    tasks.spawn(async move {
        while let Some((conn, payload)) = frames_rx.recv().await {
            let mut frame = Vec::with_capacity(8 + payload.len());
            frame.extend_from_slice(&conn.to_be_bytes());
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frame.extend_from_slice(&payload);
            if write.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    tasks.spawn(async move {
        let mut header = [0u8; 8];
        loop {
            if read.read_exact(&mut header).await.is_err() {
                break;
            }
            let conn = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if len > MAX_PAYLOAD {
                break;
            }
            let mut payload = vec![0u8; len];
            if read.read_exact(&mut payload).await.is_err() {
                break;
            }
            if let Some(out) = inbound.get_mut(&conn) {
                if out.write_all(&payload).await.is_err() {
                    break;
                }
            }
        }
    });
    handed
}
