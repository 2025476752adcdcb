//! The status RPC: a tonic gRPC service on a unix socket (mode 0600), and its client.
//!
//! The server answers from the agent's event loop through a bounded request channel, so every
//! answer is the core's current view. `muster status` is the client.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use muster_proto::status_client::StatusClient;
use muster_proto::status_server::{Status as StatusService, StatusServer};
use muster_proto::{
    Event, EventsRequest, PlanActRequest, PlanActResponse, RemoveHostRequest, RemoveHostResponse,
    StatusRequest, StatusResponse, TransferRequest, TransferResponse,
};
use tokio::sync::{mpsc, oneshot};

/// A request from the RPC server to the agent loop.
pub enum Query {
    /// The local view.
    Status(oneshot::Sender<StatusResponse>),
    /// Start a planned leadership handover; the error is for the operator (e.g. "not the leader").
    Transfer {
        /// Target voter, `None` for the best one.
        to: Option<u64>,
        /// The answer.
        reply: oneshot::Sender<Result<TransferResponse, String>>,
    },
    /// Retry or skip a plan step (name or id); the error is for the operator.
    PlanAct {
        /// Name or id as the operator typed it.
        node: String,
        /// Retry or skip.
        kind: muster_proto::PlanActionKind,
        /// The answer.
        reply: oneshot::Sender<Result<PlanActResponse, String>>,
    },
    /// The event history after `after_seq` and, with `follow`, new events (`events.rs`).
    Events {
        /// Only events after this sequence number.
        after_seq: u64,
        /// Keep sending new events.
        follow: bool,
        /// The stream's receiving end, or why not (too many followers).
        reply: oneshot::Sender<Result<mpsc::Receiver<Event>, String>>,
    },
    /// Remove a member (name or id); the error is for the operator.
    Remove {
        /// Name or id as the operator typed it.
        node: String,
        /// The spare that takes its control-plane slot (name or id), if named.
        spare: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<RemoveHostResponse, String>>,
    },
}

#[derive(Clone)]
struct Service {
    queries: mpsc::Sender<Query>,
    /// Serving `[rpc] listen`: every call must come with an authenticated [`Caller`].
    remote: bool,
}

/// Who called over `[rpc] listen`: the operator key the TLS handshake authenticated (set on the
/// connection, so every request on it carries it).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The operator's name in the config.
    pub name: String,
    /// What it may do.
    pub access: crate::tls::Access,
}

impl Service {
    /// Local callers (root, or the agent's own user, on the socket) may do everything; remote
    /// ones what their key allows. The error names the call and the key.
    fn allow<T>(
        &self,
        request: &tonic::Request<T>,
        call: &str,
        need: crate::tls::Access,
    ) -> Result<(), tonic::Status> {
        if !self.remote {
            return Ok(());
        }
        match request.extensions().get::<Caller>() {
            Some(c)
                if c.access == crate::tls::Access::Admin
                    || need == crate::tls::Access::ReadOnly =>
            {
                tracing::debug!(operator = %c.name, call, "remote call");
                Ok(())
            }
            Some(c) => Err(tonic::Status::permission_denied(format!(
                "{call} is an admin call; operator key {:?} is read-only",
                c.name
            ))),
            None => Err(tonic::Status::unauthenticated("no operator key")),
        }
    }

    async fn ask(&self, q: Query) -> Result<(), tonic::Status> {
        self.queries
            .send(q)
            .await
            .map_err(|_| tonic::Status::unavailable("agent is shutting down"))
    }
}

/// The stream `Events` answers with.
type EventStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Event, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl StatusService for Service {
    type EventsStream = EventStream;

    async fn events(
        &self,
        request: tonic::Request<EventsRequest>,
    ) -> Result<tonic::Response<EventStream>, tonic::Status> {
        use tokio_stream::StreamExt as _;
        self.allow(&request, "Events", crate::tls::Access::ReadOnly)?;
        let r = request.into_inner();
        let (tx, rx) = oneshot::channel();
        self.ask(Query::Events {
            after_seq: r.after_seq,
            follow: r.follow,
            reply: tx,
        })
        .await?;
        let events = rx
            .await
            .map_err(|_| tonic::Status::unavailable("agent is shutting down"))?
            .map_err(tonic::Status::resource_exhausted)?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(Ok);
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn get_status(
        &self,
        request: tonic::Request<StatusRequest>,
    ) -> Result<tonic::Response<StatusResponse>, tonic::Status> {
        self.allow(&request, "GetStatus", crate::tls::Access::ReadOnly)?;
        let (tx, rx) = oneshot::channel();
        self.ask(Query::Status(tx)).await?;
        let status = rx
            .await
            .map_err(|_| tonic::Status::unavailable("agent is shutting down"))?;
        Ok(tonic::Response::new(status))
    }

    async fn transfer(
        &self,
        request: tonic::Request<TransferRequest>,
    ) -> Result<tonic::Response<TransferResponse>, tonic::Status> {
        self.allow(&request, "Transfer", crate::tls::Access::Admin)?;
        let to = Some(request.into_inner().to).filter(|t| *t != 0);
        let (tx, rx) = oneshot::channel();
        self.ask(Query::Transfer { to, reply: tx }).await?;
        match rx.await {
            Ok(Ok(answer)) => Ok(tonic::Response::new(answer)),
            Ok(Err(message)) => Err(tonic::Status::failed_precondition(message)),
            Err(_) => Err(tonic::Status::unavailable("agent is shutting down")),
        }
    }

    async fn plan_act(
        &self,
        request: tonic::Request<PlanActRequest>,
    ) -> Result<tonic::Response<PlanActResponse>, tonic::Status> {
        self.allow(&request, "PlanAct", crate::tls::Access::Admin)?;
        let r = request.into_inner();
        let kind = match muster_proto::PlanActionKind::try_from(r.kind) {
            Ok(k) if k != muster_proto::PlanActionKind::Unspecified => k,
            _ => {
                return Err(tonic::Status::invalid_argument(
                    "kind: expected retry, skip, start, reinit or promote",
                ))
            }
        };
        let start = kind == muster_proto::PlanActionKind::Start;
        if (r.node.is_empty() && !start) || r.node.len() > MAX_NODE_ARG_BYTES {
            return Err(tonic::Status::invalid_argument(
                "node: expected a host's name or 16-hex-digit id",
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.ask(Query::PlanAct {
            node: r.node,
            kind,
            reply: tx,
        })
        .await?;
        match rx.await {
            Ok(Ok(answer)) => Ok(tonic::Response::new(answer)),
            Ok(Err(message)) => Err(tonic::Status::failed_precondition(message)),
            Err(_) => Err(tonic::Status::unavailable("agent is shutting down")),
        }
    }

    async fn remove(
        &self,
        request: tonic::Request<RemoveHostRequest>,
    ) -> Result<tonic::Response<RemoveHostResponse>, tonic::Status> {
        self.allow(&request, "Remove", crate::tls::Access::Admin)?;
        let RemoveHostRequest { node, spare } = request.into_inner();
        if node.is_empty() || node.len() > MAX_NODE_ARG_BYTES {
            return Err(tonic::Status::invalid_argument(
                "node: expected a member's name or 16-hex-digit id",
            ));
        }
        if spare.len() > MAX_NODE_ARG_BYTES {
            return Err(tonic::Status::invalid_argument(
                "spare: expected a member's name or 16-hex-digit id",
            ));
        }
        let spare = (!spare.is_empty()).then_some(spare);
        let (tx, rx) = oneshot::channel();
        self.ask(Query::Remove {
            node,
            spare,
            reply: tx,
        })
        .await?;
        match rx.await {
            Ok(Ok(answer)) => Ok(tonic::Response::new(answer)),
            Ok(Err(message)) => Err(tonic::Status::failed_precondition(message)),
            Err(_) => Err(tonic::Status::unavailable("agent is shutting down")),
        }
    }
}

/// Longest node name or id an operator may pass to `Remove`.
const MAX_NODE_ARG_BYTES: usize = 64;

/// Binds the socket (replacing a stale one), restricts it to its owner and serves until
/// `shutdown` resolves. Returns an error naming the path if it cannot bind.
pub async fn serve(
    socket: PathBuf,
    queries: mpsc::Sender<Query>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context as _;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("rpc.socket: cannot create {}", dir.display()))?;
    }
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("rpc.socket: cannot replace {}", socket.display()))
        }
    }
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("rpc.socket: cannot bind {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("rpc.socket: cannot chmod {}", socket.display()))?;
    // The mode keeps others out of the socket; the peer's credentials are checked too (root or
    // the agent's own user), so a socket made accessible by mistake still answers nobody else.
    let me = nix::unistd::geteuid().as_raw();
    let incoming = tokio_stream::StreamExt::filter(
        tokio_stream::wrappers::UnixListenerStream::new(listener),
        move |conn| match conn {
            Ok(stream) => {
                match stream.peer_cred() {
                    Ok(c) if c.uid() == 0 || c.uid() == me => true,
                    Ok(c) => {
                        tracing::warn!(uid = c.uid(), "status socket: refused a caller that is neither root nor the agent's user");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "status socket: cannot read the caller's credentials; refused");
                        false
                    }
                }
            }
            Err(_) => true,
        },
    );
    let (health, reflection, reflection_alpha) = standard_services().await?;
    let server = bounded(tonic::transport::Server::builder())
        .add_service(
            StatusServer::new(Service {
                queries,
                remote: false,
            })
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(incoming, shutdown);
    Ok(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "status RPC server failed");
        }
        let _ = std::fs::remove_file(&socket);
    }))
}

/// The gRPC health service (`muster.v1.Status` serving while the agent answers) and server
/// reflection over muster's protos (so `grpcurl list` and `grpcurl describe` work).
async fn standard_services() -> anyhow::Result<(
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<StatusServer<Service>>().await;
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(muster_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Both versions: grpcurl and most clients ask v1, older ones (grpcio's) v1alpha.
    Ok((health, builder().build_v1()?, builder().build_v1alpha()?))
}

/// Largest request a caller may send (requests are small: a name, a kind).
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Remote connections at once; more wait at accept.
const MAX_REMOTE_CONNECTIONS: usize = 32;
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bounds every call: a deadline for the answer (a stream's events are not cut by it), few
/// calls at once per connection.
fn bounded(builder: tonic::transport::Server) -> tonic::transport::Server {
    let mut builder = builder
        .timeout(std::time::Duration::from_secs(30))
        .concurrency_limit_per_connection(8)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)));
    builder = builder.max_concurrent_streams(Some(16));
    builder
}

/// A remote connection after its TLS handshake, with the operator it authenticated.
struct RemoteConn {
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    caller: Caller,
    /// One of `MAX_REMOTE_CONNECTIONS`, given back when the connection is dropped.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for RemoteConn {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

impl tokio::io::AsyncRead for RemoteConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for RemoteConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

/// Serves the status RPC on `addr` over TLS 1.3 with mutual authentication (`tls.rs`): only
/// the listed operator keys complete the handshake; each call is allowed by its key's access.
/// Returns an error naming `rpc.listen` if it cannot bind.
pub async fn serve_remote(
    addr: std::net::SocketAddr,
    key: &crate::tls::KeyPair,
    operators: Vec<crate::tls::Operator>,
    queries: mpsc::Sender<Query>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context as _;
    let config = crate::tls::server_config(key, &operators)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("rpc.listen: cannot bind {addr}"))?;
    let (conns, incoming) = mpsc::channel::<std::io::Result<RemoteConn>>(MAX_REMOTE_CONNECTIONS);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_REMOTE_CONNECTIONS));
    let accept = tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "rpc.listen: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let operators = operators.clone();
            let conns = conns.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "rpc.listen: refused a connection (no valid operator key)");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "rpc.listen: TLS handshake timed out");
                        return;
                    }
                };
                let key = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| crate::tls::key_of_spki(c.as_ref()));
                let Some(op) = key.and_then(|k| operators.iter().find(|o| o.public_key == k))
                else {
                    return;
                };
                tracing::info!(%peer, operator = %op.name, "rpc.listen: operator connected");
                let caller = Caller {
                    name: op.name.clone(),
                    access: op.access,
                };
                let conn = RemoteConn {
                    tls,
                    caller,
                    _slot: slot,
                };
                let _ = conns.send(Ok(conn)).await;
            });
        }
    });
    let (health, reflection, reflection_alpha) = standard_services().await?;
    let server = bounded(tonic::transport::Server::builder())
        .add_service(
            StatusServer::new(Service {
                queries,
                remote: true,
            })
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(incoming),
            shutdown,
        );
    Ok(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "remote status RPC server failed");
        }
        accept.abort();
    }))
}

/// A remote agent to talk to instead of the local socket (`--endpoint`, `--key`): set once by
/// the CLI before any call, so every command (status, events, plan, remove, transfer, health)
/// goes there.
#[derive(Debug, Clone)]
pub struct Remote {
    /// "host:port" of the agent's `[rpc] listen`.
    pub endpoint: String,
    /// The operator's key file (`muster operator keygen`).
    pub key: PathBuf,
    /// The agent's key, if given (`--server-key`); else the known-hosts file decides.
    pub server_key: Option<[u8; 32]>,
    /// The known-hosts file (`host:port hex` lines).
    pub known_hosts: PathBuf,
}

static REMOTE: std::sync::OnceLock<Remote> = std::sync::OnceLock::new();

/// Sends this process's calls to `remote` instead of the local socket.
pub fn use_remote(remote: Remote) {
    let _ = REMOTE.set(remote);
}

/// Connects to the agent: the remote one if the CLI named one, else the one behind `socket`.
async fn client(socket: &Path) -> anyhow::Result<StatusClient<tonic::transport::Channel>> {
    if let Some(remote) = REMOTE.get() {
        return remote_client(remote).await;
    }
    use anyhow::Context as _;
    let path = socket.to_owned();
    let channel = tonic::transport::Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .with_context(|| {
            format!(
                "cannot reach the agent at {} (is `muster agent` running?)",
                socket.display()
            )
        })?;
    Ok(StatusClient::new(channel))
}

/// Connects to a remote agent over TLS 1.3 with the operator's key, checking the agent's key
/// against the pin (`--server-key`, else the known-hosts file; an endpoint seen for the first
/// time is pinned, and the pin written, once the connection works).
async fn remote_client(remote: &Remote) -> anyhow::Result<StatusClient<tonic::transport::Channel>> {
    use anyhow::Context as _;
    let key = crate::tls::KeyPair::load(&remote.key)?;
    let known = match remote.server_key {
        Some(k) => Some(k),
        None => crate::tls::known_host(&remote.known_hosts, &remote.endpoint)?,
    };
    let (config, seen) = crate::tls::client_config(&key, known)?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let endpoint = remote.endpoint.clone();
    let host = endpoint
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_owned())
        .context("--endpoint: expected host:port")?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .with_context(|| format!("--endpoint: {host:?} is not a host name or address"))?;
    let target = endpoint.clone();
    let connected = tonic::transport::Endpoint::try_from("http://muster")?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let (connector, name, target) = (connector.clone(), name.clone(), target.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&target).await?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await;
    let presented = seen.lock().ok().and_then(|s| *s);
    let channel = match connected {
        Ok(c) => c,
        Err(e) => {
            if let (Some(pinned), Some(got)) = (known, presented) {
                if pinned != got {
                    anyhow::bail!(
                        "the agent at {endpoint} presented key {}, not the pinned {} ({}): refusing to talk to it; if that host was reinstalled, remove its line from the known-hosts file",
                        crate::tls::hex(&got),
                        crate::tls::hex(&pinned),
                        if remote.server_key.is_some() { "--server-key".to_string() } else { remote.known_hosts.display().to_string() }
                    );
                }
            }
            return Err(anyhow::Error::new(e)).with_context(|| {
                format!("cannot reach the agent at {endpoint} over TLS (is [rpc] listen set there, and is this operator key listed in its [[rpc.operators]]?)")
            });
        }
    };
    if known.is_none() {
        if let Some(got) = presented {
            crate::tls::remember_host(&remote.known_hosts, &endpoint, &got)?;
            eprintln!(
                "muster: pinned the key of {endpoint} ({}) in {}",
                crate::tls::hex(&got),
                remote.known_hosts.display()
            );
        }
    }
    Ok(StatusClient::new(channel))
}

/// Streams the events of the agent behind `socket` after `after_seq` (and new ones with
/// `follow`) to `each`, until the stream ends.
pub async fn events(
    socket: &Path,
    follow: bool,
    mut each: impl FnMut(Event),
) -> anyhow::Result<()> {
    let request = EventsRequest {
        follow,
        after_seq: 0,
    };
    let mut stream = match client(socket).await?.events(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err(call_error(socket, "events", status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(e)) => each(e),
            Ok(None) => return Ok(()),
            Err(status) => anyhow::bail!("the event stream ended: {}", status.message()),
        }
    }
}

/// Asks the agent behind `socket` for its status.
pub async fn query(socket: &Path) -> anyhow::Result<StatusResponse> {
    match client(socket).await?.get_status(StatusRequest {}).await {
        Ok(r) => Ok(r.into_inner()),
        Err(status) => Err(call_error(socket, "status", status)),
    }
}

/// Asks the agent behind `socket` to retry or skip `node`'s plan step.
pub async fn plan_act(
    socket: &Path,
    node: &str,
    kind: muster_proto::PlanActionKind,
) -> anyhow::Result<PlanActResponse> {
    let request = PlanActRequest {
        node: node.into(),
        kind: kind as i32,
    };
    match client(socket).await?.plan_act(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(status) => Err(call_error(socket, "plan", status)),
    }
}

/// Asks the agent behind `socket` to remove `node` (name or id).
pub async fn remove(
    socket: &Path,
    node: &str,
    spare: Option<&str>,
) -> anyhow::Result<RemoveHostResponse> {
    let request = RemoveHostRequest {
        node: node.into(),
        spare: spare.unwrap_or_default().into(),
    };
    match client(socket).await?.remove(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(status) => Err(call_error(socket, "remove", status)),
    }
}

/// Asks the agent behind `socket` (the leader) to hand leadership over.
pub async fn transfer(socket: &Path, to: u64) -> anyhow::Result<TransferResponse> {
    let response = client(socket).await?.transfer(TransferRequest { to }).await;
    match response {
        Ok(r) => Ok(r.into_inner()),
        Err(status) => Err(call_error(socket, "transfer", status)),
    }
}

/// The operator's error for a failed call: the agent's own message, or, when the connection
/// itself failed, where and the likely reason (a remote agent ends the TLS session of a key it
/// does not list right after the handshake, so that shows up here).
fn call_error(socket: &Path, call: &str, status: tonic::Status) -> anyhow::Error {
    use std::error::Error as _;
    let transport = status.source().is_some()
        && matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
        );
    if !transport {
        return anyhow::anyhow!("{}", status.message());
    }
    match REMOTE.get() {
        Some(r) => anyhow::anyhow!(
            "{call} request to {} failed: the agent closed the connection (is this operator key listed in its [[rpc.operators]]?): {}",
            r.endpoint,
            status.message()
        ),
        None => anyhow::anyhow!(
            "{call} request to {} failed: {}",
            socket.display(),
            status.message()
        ),
    }
}
