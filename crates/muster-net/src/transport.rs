//! The authenticated transport stack of a muster node: TCP (nodelay) → private-network handshake
//! with the site key → noise (ed25519 host identity) → yamux.
//!
//! Built once by [`crate::spawn`] and handed to `SwarmBuilder::with_other_transport`; the swarm
//! actor (`actor.rs`) calls [`link_failure`] on connection errors to tell a peer that holds
//! another site key (a [`LinkFailure::KeyMismatch`] to report and back off from) from a peer
//! that is merely down.
//!
//! pnet alone cannot fail on a wrong key: it only exchanges nonces and then XORs a keystream,
//! so a wrong key shows up later as undecodable multistream-select garbage, often as a hang
//! until the connection timeout. So right after the pnet nonces both sides send a fixed 16-byte
//! check value through the encrypted stream and compare what they receive: with different keys
//! it decrypts to noise and both sides reject the connection at once. (This makes the handshake
//! muster-specific; it is not meant to interoperate with other pnet implementations.)
//!
//! Each TCP connection also gets keepalive probes and `TCP_USER_TIMEOUT`, so a peer that
//! vanishes without closing its sockets (power loss, cable pulled) is dropped after about 20 s
//! (measured by the `silent_peer_is_disconnected_within_seconds` test) rather than after the
//! ~15 min of default TCP retransmissions.

use std::error::Error;
use std::io;
use std::time::Duration;

use either::Either;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PnetOutput, PreSharedKey};
use libp2p::{noise, tcp, yamux, PeerId};

/// Sent through the pnet-encrypted stream by both sides; a peer with the same site key decrypts
/// exactly these bytes.
const KEY_CHECK: [u8; 16] = *b"/muster/psk/v1\0\0";
/// Idle time before the first keepalive probe.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Time between unanswered keepalive probes.
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes after which the kernel drops the connection.
const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// Longest time sent data may stay unacknowledged before the kernel drops the connection.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a connection failed below the libp2p connection layer, as classified by this stack.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkFailure {
    /// The TCP connect or accept itself failed: the peer is down or unreachable.
    #[error("tcp: {0}")]
    Tcp(#[source] io::Error),
    /// The peer completed the pnet exchange but does not hold this site's key.
    #[error("site key mismatch: the peer uses a different site key")]
    KeyMismatch,
    /// The noise handshake failed (bad identity or signature).
    #[error("noise handshake failed: {0}")]
    Noise(String),
    /// Any other failure during connection setup (peer closed mid-handshake, protocol
    /// negotiation failed, ...).
    #[error("connection setup failed: {0}")]
    Setup(String),
}

impl LinkFailure {
    /// True if the remote end failed authentication: it holds another site key or an invalid
    /// identity. These are reported as `NetEvent::HandshakeRejected`.
    pub(crate) fn is_rejection(&self) -> bool {
        matches!(self, LinkFailure::KeyMismatch | LinkFailure::Noise(_))
    }
}

/// The error type of the transport stack. Its `source()` is the [`LinkFailure`] itself: libp2p
/// wraps transport errors in `either::Either` and `io::Error`, whose `source()` skip a level, so
/// a [`LinkFailure`] one level down stays reachable to [`link_failure`].
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub(crate) struct LinkError {
    #[source]
    failure: LinkFailure,
}

impl From<LinkFailure> for LinkError {
    fn from(failure: LinkFailure) -> Self {
        LinkError { failure }
    }
}

/// Builds the transport. Dial and listen use plain TCP; the PSK handshake runs on every
/// connection before noise.
pub(crate) fn build(
    keypair: &Keypair,
    psk: PreSharedKey,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(keypair)?;
    let transport = tcp::tokio::Transport::new(tcp::Config::new().nodelay(true))
        .map_err(|error| LinkError::from(LinkFailure::Tcp(error)))
        .and_then(move |socket: tcp::tokio::TcpStream, _| {
            set_liveness(&socket.0);
            site_handshake(socket, psk)
        })
        .map_err(Either::into_inner)
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .map_err(classify_upgrade)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed();
    Ok(transport)
}

/// Turns on keepalive probes and `TCP_USER_TIMEOUT` (see the module doc). Best effort: a
/// failure only costs slower detection of dead peers.
fn set_liveness(stream: &tokio::net::TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    if let Err(error) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "cannot enable TCP keepalive");
    }
    #[cfg(target_os = "linux")]
    if let Err(error) = socket.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT)) {
        tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
    }
}

/// pnet nonce exchange followed by the key check described in the module doc.
async fn site_handshake<S>(socket: S, psk: PreSharedKey) -> Result<PnetOutput<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let setup = |error: &dyn std::fmt::Display| LinkFailure::Setup(format!("pnet: {error}"));
    let mut stream = PnetConfig::new(psk)
        .handshake(socket)
        .await
        .map_err(|error| setup(&error))?;
    stream
        .write_all(&KEY_CHECK)
        .await
        .map_err(|error| setup(&error))?;
    stream.flush().await.map_err(|error| setup(&error))?;
    let mut received = [0u8; KEY_CHECK.len()];
    stream
        .read_exact(&mut received)
        .await
        .map_err(|error| setup(&error))?;
    if received != KEY_CHECK {
        return Err(LinkFailure::KeyMismatch.into());
    }
    Ok(stream)
}

/// Flattens the error of the upgraded stack into a [`LinkError`].
fn classify_upgrade<N, M>(error: Either<Either<LinkError, N>, M>) -> LinkError
where
    N: Error + 'static,
    M: Error + 'static,
{
    match error {
        Either::Left(Either::Left(link)) => link,
        Either::Left(Either::Right(security)) => {
            let noise = security
                .source()
                .and_then(|s| s.downcast_ref::<noise::Error>());
            match noise {
                Some(noise) => LinkFailure::Noise(noise.to_string()).into(),
                None => LinkFailure::Setup(format!("security negotiation: {security}")).into(),
            }
        }
        Either::Right(muxer) => LinkFailure::Setup(format!("muxer negotiation: {muxer}")).into(),
    }
}

/// Finds the [`LinkFailure`] inside an error reported by the swarm, if the failure came from
/// this transport stack (a timeout of the whole setup, for one, carries none).
pub(crate) fn link_failure<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a LinkFailure> {
    let mut current = Some(error);
    // Bounded walk: error chains are short, but never loop on a cyclic `source()`.
    for _ in 0..32 {
        let error = current?;
        if let Some(failure) = error.downcast_ref::<LinkFailure>() {
            return Some(failure);
        }
        if let Some(link) = error.downcast_ref::<LinkError>() {
            return Some(&link.failure);
        }
        if let Some(inner) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            current = Some(inner);
            continue;
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(failure: LinkFailure) -> io::Error {
        // The shape libp2p produces: the builder's `Either` around the boxed `io::Error`
        // around our `LinkError`, all boxed again into an `io::Error`.
        let inner = io::Error::other(LinkError::from(failure));
        let either: Either<io::Error, io::Error> = Either::Right(inner);
        io::Error::other(either)
    }

    #[test]
    fn finds_failure_through_libp2p_wrappers() {
        let error = wrapped(LinkFailure::KeyMismatch);
        let failure = link_failure(&error).expect("found");
        assert!(matches!(failure, LinkFailure::KeyMismatch));
        assert!(failure.is_rejection());

        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let error = wrapped(LinkFailure::Tcp(refused));
        let failure = link_failure(&error).expect("found");
        assert!(matches!(failure, LinkFailure::Tcp(_)));
        assert!(!failure.is_rejection());
    }

    #[test]
    fn foreign_errors_have_no_failure() {
        let error = io::Error::other("timeout");
        assert!(link_failure(&error).is_none());
    }

    #[tokio::test]
    async fn connections_get_liveness_options() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        set_liveness(&stream);
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            socket.tcp_keepalive_time().expect("idle"),
            TCP_KEEPALIVE_IDLE
        );
        assert_eq!(
            socket.tcp_keepalive_interval().expect("interval"),
            TCP_KEEPALIVE_INTERVAL
        );
        assert_eq!(
            socket.tcp_keepalive_retries().expect("retries"),
            TCP_KEEPALIVE_RETRIES
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket.tcp_user_timeout().expect("user timeout"),
            Some(TCP_USER_TIMEOUT)
        );
    }

    #[tokio::test]
    async fn key_check_accepts_same_key_and_rejects_other_key() {
        async fn pair(a: [u8; 32], b: [u8; 32]) -> (bool, bool) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let (dialed, accepted) =
                tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
            let dialed = tcp::tokio::TcpStream(dialed.expect("connect"));
            let accepted = tcp::tokio::TcpStream(accepted.expect("accept").0);
            let handshakes = async {
                tokio::join!(
                    site_handshake(dialed, PreSharedKey::new(a)),
                    site_handshake(accepted, PreSharedKey::new(b)),
                )
            };
            let (l, r) = tokio::time::timeout(std::time::Duration::from_secs(5), handshakes)
                .await
                .expect("handshake must not hang");
            for result in [&l, &r] {
                if let Err(error) = result {
                    assert!(matches!(error.failure, LinkFailure::KeyMismatch), "{error}");
                }
            }
            (l.is_ok(), r.is_ok())
        }
        assert_eq!(pair([1; 32], [1; 32]).await, (true, true));
        assert_eq!(pair([1; 32], [2; 32]).await, (false, false));
    }
}
