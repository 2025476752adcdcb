//! The status RPC: a tonic gRPC service on a unix socket (mode 0600), and its client.
//!
//! The server answers from the agent's event loop through a bounded request channel, so every
//! answer is the core's current view. `muster status` is the client.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use muster_proto::status_client::StatusClient;
use muster_proto::status_server::{Status as StatusService, StatusServer};
use muster_proto::{StatusRequest, StatusResponse};
use tokio::sync::{mpsc, oneshot};

/// A request from the RPC server to the agent loop.
pub type StatusQuery = oneshot::Sender<StatusResponse>;

struct Service {
    queries: mpsc::Sender<StatusQuery>,
}

#[tonic::async_trait]
impl StatusService for Service {
    async fn get_status(
        &self,
        _request: tonic::Request<StatusRequest>,
    ) -> Result<tonic::Response<StatusResponse>, tonic::Status> {
        let (tx, rx) = oneshot::channel();
        self.queries
            .send(tx)
            .await
            .map_err(|_| tonic::Status::unavailable("agent is shutting down"))?;
        let status = rx
            .await
            .map_err(|_| tonic::Status::unavailable("agent is shutting down"))?;
        Ok(tonic::Response::new(status))
    }
}

/// Binds the socket (replacing a stale one), restricts it to its owner and serves until
/// `shutdown` resolves. Returns an error naming the path if it cannot bind.
pub async fn serve(
    socket: PathBuf,
    queries: mpsc::Sender<StatusQuery>,
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

/// Asks the agent behind `socket` for its status.
pub async fn query(socket: &Path) -> anyhow::Result<StatusResponse> {
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
    let mut client = StatusClient::new(channel);
    let response = client
        .get_status(StatusRequest {})
        .await
        .with_context(|| format!("status request to {} failed", socket.display()))?;
    Ok(response.into_inner())
}
