//! One NRI session: multiplex a connected stream, serve the Plugin service on connection 1,
//! register through the Runtime service on connection 2, then run until the stream goes away.

use std::sync::Arc;
use std::time::Duration;

use nri_chaos_proto::nri::RegisterPluginRequest;
use nri_chaos_proto::nri_ttrpc::{create_plugin, Plugin, RuntimeClient};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use ttrpc::r#async::transport::{Listener, Socket};
use ttrpc::r#async::{Client, Server};

use super::frame::{PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN};
use super::mux::{AfterWrite, Mux};

/// The runtime waits this long for registration; we give up a little earlier.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(4);

/// Who we are to the runtime.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Plugin name shown in containerd's logs.
    pub name: String,
    /// Two-digit invocation index.
    pub index: String,
}

/// Errors of setting a session up.
#[derive(Debug, Error)]
pub enum SessionError {
    /// A virtual connection could not be opened (internal invariant).
    #[error("multiplexer did not open connection {0}")]
    MissingConn(u32),
    /// The ttrpc server could not start.
    #[error("starting the Plugin service: {0}")]
    Serve(String),
    /// The runtime refused or did not answer RegisterPlugin.
    #[error("RegisterPlugin as {name}/{index}: {reason}")]
    Register {
        /// Our name.
        name: String,
        /// Our index.
        index: String,
        /// The runtime's answer.
        reason: String,
    },
}

/// A registered session; [`Session::closed`] resolves when the runtime goes away.
pub struct Session {
    mux: Mux,
    server: Server,
    /// Held for the session's life: the runtime's end of connection 2 stays open with it.
    /// (UpdateContainers goes through it, never from inside an event handler.)
    _runtime: RuntimeClient,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("mux", &self.mux)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Multiplexes `stream`, serves `plugin` on it and registers with the runtime;
    /// `after_write` runs after each frame written (the plugin's replies among them).
    pub async fn establish<S>(
        stream: S,
        plugin: Arc<dyn Plugin + Send + Sync>,
        registration: &Registration,
        after_write: AfterWrite,
    ) -> Result<Session, SessionError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mux, mut conns) = Mux::start(
            stream,
            &[PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN],
            after_write,
        );
        let plugin_conn = conns
            .remove(&PLUGIN_SERVICE_CONN)
            .ok_or(SessionError::MissingConn(PLUGIN_SERVICE_CONN))?;
        let runtime_conn = conns
            .remove(&RUNTIME_SERVICE_CONN)
            .ok_or(SessionError::MissingConn(RUNTIME_SERVICE_CONN))?;

        let listener = Listener::new(futures_once(plugin_conn));
        let mut server = Server::new()
            .register_service(create_plugin(plugin))
            .add_listener(listener);
        server
            .start()
            .await
            .map_err(|err| SessionError::Serve(err.to_string()))?;

        let runtime = RuntimeClient::new(Client::new(Socket::new(runtime_conn)));
        let request = RegisterPluginRequest {
            plugin_name: registration.name.clone(),
            plugin_idx: registration.index.clone(),
            ..Default::default()
        };
        let register_error = |reason: String| SessionError::Register {
            name: registration.name.clone(),
            index: registration.index.clone(),
            reason,
        };
        let ctx = ttrpc::context::with_timeout(REGISTRATION_TIMEOUT.as_nanos() as i64);
        match tokio::time::timeout(REGISTRATION_TIMEOUT, runtime.register_plugin(ctx, &request))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(register_error(err.to_string())),
            Err(_) => return Err(register_error("no answer within 4s".to_string())),
        }
        Ok(Session {
            mux,
            server,
            _runtime: runtime,
        })
    }

    /// Resolves when the runtime closed the connection, with the reason.
    pub async fn closed(&mut self) -> String {
        self.mux.closed().await
    }

    /// Tears the session down: the runtime sees the connection close.
    pub async fn close(mut self) {
        self.mux.shutdown();
        let _ = tokio::time::timeout(Duration::from_millis(500), self.server.shutdown()).await;
    }
}

/// A listener stream that yields one already connected virtual connection, then nothing.
fn futures_once(
    conn: tokio::io::DuplexStream,
) -> impl futures_core::Stream<Item = std::io::Result<tokio::io::DuplexStream>> + Send + 'static {
    OnceStream(Some(conn))
}

struct OnceStream(Option<tokio::io::DuplexStream>);

impl futures_core::Stream for OnceStream {
    type Item = std::io::Result<tokio::io::DuplexStream>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        // After the one connection, stay pending rather than ending: an ended listener stops
        // the server's accept loop, and ttrpc's `Server::shutdown` expects that loop alive.
        match self.get_mut().0.take() {
            Some(conn) => std::task::Poll::Ready(Some(Ok(conn))),
            None => std::task::Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The session against a fake containerd: our multiplexer on the other end of a socket
    //! pair, serving the Runtime service and calling the Plugin service, byte for byte as the
    //! real runtime frames it.
    use super::*;
    use async_trait::async_trait;
    use nri_chaos_proto::nri::{
        ConfigureRequest, ConfigureResponse, Empty, SynchronizeRequest, SynchronizeResponse,
    };
    use nri_chaos_proto::nri_ttrpc::{create_runtime, PluginClient, Runtime};
    use tokio::net::UnixStream;
    use tokio::sync::mpsc;
    use ttrpc::r#async::TtrpcContext;

    struct FakeRuntime {
        registered: mpsc::UnboundedSender<(String, String)>,
    }

    #[async_trait]
    impl Runtime for FakeRuntime {
        async fn register_plugin(
            &self,
            _ctx: &TtrpcContext,
            req: RegisterPluginRequest,
        ) -> ttrpc::Result<Empty> {
            let _ = self.registered.send((req.plugin_name, req.plugin_idx));
            Ok(Empty::default())
        }
    }

    #[derive(Default)]
    struct RecordingPlugin {
        calls: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Plugin for RecordingPlugin {
        async fn configure(
            &self,
            _ctx: &TtrpcContext,
            req: ConfigureRequest,
        ) -> ttrpc::Result<ConfigureResponse> {
            self.calls.lock().unwrap().push(format!(
                "configure {} {}",
                req.runtime_name, req.runtime_version
            ));
            Ok(ConfigureResponse {
                events: 0x4d,
                ..Default::default()
            })
        }

        async fn synchronize(
            &self,
            _ctx: &TtrpcContext,
            req: SynchronizeRequest,
        ) -> ttrpc::Result<SynchronizeResponse> {
            self.calls.lock().unwrap().push(format!(
                "synchronize pods={} more={}",
                req.pods.len(),
                req.more
            ));
            Ok(SynchronizeResponse {
                more: req.more,
                ..Default::default()
            })
        }
    }

    async fn fake_runtime(
        stream: UnixStream,
    ) -> (
        Mux,
        Server,
        PluginClient,
        mpsc::UnboundedReceiver<(String, String)>,
    ) {
        let (mux, mut conns) = Mux::start(
            stream,
            &[PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN],
            Arc::new(|| {}),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime_conn = conns.remove(&RUNTIME_SERVICE_CONN).unwrap();
        let mut server = Server::new()
            .register_service(create_runtime(Arc::new(FakeRuntime { registered: tx })))
            .add_listener(Listener::new(futures_once(runtime_conn)));
        server.start().await.unwrap();
        let plugin_conn = conns.remove(&PLUGIN_SERVICE_CONN).unwrap();
        let client = PluginClient::new(Client::new(Socket::new(plugin_conn)));
        (mux, server, client, rx)
    }

    #[tokio::test]
    async fn registers_serves_and_notices_the_runtime_leaving() {
        let (plugin_end, runtime_end) = UnixStream::pair().unwrap();
        let (runtime_mux, _server, client, mut registered) = fake_runtime(runtime_end).await;
        let plugin = Arc::new(RecordingPlugin::default());
        let registration = Registration {
            name: "nri-chaos".into(),
            index: "50".into(),
        };
        let mut session =
            Session::establish(plugin_end, plugin.clone(), &registration, Arc::new(|| {}))
                .await
                .unwrap();
        assert_eq!(
            registered.recv().await.unwrap(),
            ("nri-chaos".to_string(), "50".to_string())
        );

        let ctx = || ttrpc::context::with_timeout(2_000_000_000);
        let configured = client
            .configure(
                ctx(),
                &ConfigureRequest {
                    runtime_name: "containerd".into(),
                    runtime_version: "1.7.24".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(configured.events, 0x4d);
        // A split synchronization: the plugin must echo `more`.
        let first = client
            .synchronize(
                ctx(),
                &SynchronizeRequest {
                    more: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(first.more);
        let last = client
            .synchronize(ctx(), &SynchronizeRequest::default())
            .await
            .unwrap();
        assert!(!last.more);
        // A method this plugin does not implement answers an error, it does not hang.
        let err = client.shutdown(ctx(), &Empty::default()).await.unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");

        assert_eq!(
            *plugin.calls.lock().unwrap(),
            vec![
                "configure containerd 1.7.24".to_string(),
                "synchronize pods=0 more=true".to_string(),
                "synchronize pods=0 more=false".to_string(),
            ]
        );

        drop(client);
        drop(runtime_mux);
        let reason = tokio::time::timeout(Duration::from_secs(2), session.closed())
            .await
            .expect("session noticed the runtime leaving");
        assert!(!reason.is_empty());
        session.close().await;
    }

    #[tokio::test]
    async fn registration_without_an_answer_times_out() {
        let (plugin_end, runtime_end) = UnixStream::pair().unwrap();
        // A peer that never answers: keep the stream open, read nothing.
        let _silent = runtime_end;
        let registration = Registration {
            name: "nri-chaos".into(),
            index: "50".into(),
        };
        let started = std::time::Instant::now();
        let err = Session::establish(
            plugin_end,
            Arc::new(RecordingPlugin::default()),
            &registration,
            Arc::new(|| {}),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("RegisterPlugin as nri-chaos/50"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(6));
    }
}
