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

struct Service {
    queries: mpsc::Sender<Query>,
}

impl Service {
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
        _request: tonic::Request<StatusRequest>,
    ) -> Result<tonic::Response<StatusResponse>, tonic::Status> {
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
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .add_service(StatusServer::new(Service { queries }))
        .serve_with_incoming_shutdown(incoming, shutdown);
    Ok(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "status RPC server failed");
        }
        let _ = std::fs::remove_file(&socket);
    }))
}

/// Connects to the agent behind `socket`.
async fn client(socket: &Path) -> anyhow::Result<StatusClient<tonic::transport::Channel>> {
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
        Err(status) => anyhow::bail!("{}", status.message()),
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
    use anyhow::Context as _;
    let response = client(socket)
        .await?
        .get_status(StatusRequest {})
        .await
        .with_context(|| format!("status request to {} failed", socket.display()))?;
    Ok(response.into_inner())
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
        Err(status) => Err(anyhow::anyhow!("{}", status.message())),
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
        Err(status) => Err(anyhow::anyhow!("{}", status.message())),
    }
}

/// Asks the agent behind `socket` (the leader) to hand leadership over.
pub async fn transfer(socket: &Path, to: u64) -> anyhow::Result<TransferResponse> {
    let response = client(socket).await?.transfer(TransferRequest { to }).await;
    match response {
        Ok(r) => Ok(r.into_inner()),
        Err(status) => Err(anyhow::anyhow!("{}", status.message())),
    }
}
