//! The DNS seam: [`DnsServer`] (send a signed UPDATE, send a plain query) and its real
//! implementation [`UdpServer`], one UDP datagram each way.
//!
//! The updater actor is generic over `DnsServer`; `mem.rs` has the in-memory zone with faults.
//! `UdpServer` signs UPDATEs with the TSIG key through hickory (`Message::finalize`), verifies
//! the reply's TSIG, and when the server rejected our signature (BIND answers NOTAUTH with an
//! unsigned TSIG carrying BADSIG / BADKEY / BADTIME) says which, instead of a bare
//! "verification failed". Each exchange has its own socket on a fresh random port and one
//! deadline; retries are the actor's, with backoff.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::TSigner;
use tokio::net::UdpSocket;

/// Largest datagram read, in bytes (our replies are a few hundred).
const MAX_REPLY_BYTES: usize = 4096;

/// Why an exchange gave no usable answer.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExchangeError {
    /// No reply before the deadline.
    #[error("no reply from {server} within {timeout_ms} ms")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// The deadline.
        timeout_ms: u64,
    },
    /// The socket failed (unreachable network, ICMP port unreachable, ...).
    #[error("{server}: {reason}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// The reply did not decode, or was truncated.
    #[error("malformed reply from {server}: {reason}")]
    Malformed {
        /// The server.
        server: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The server rejected our TSIG (wrong key name, wrong secret, clock skew).
    #[error("server rejected the TSIG signature: {rcode} / {tsig_error}")]
    TsigRejected {
        /// The message rcode (NOTAUTH).
        rcode: String,
        /// BADSIG, BADKEY, BADTIME, ...
        tsig_error: String,
    },
    /// The reply to a signed UPDATE was not signed (a server without our key, or a forger).
    #[error("unsigned reply to a signed update: {rcode}")]
    Unsigned {
        /// The reply's rcode.
        rcode: String,
    },
    /// The reply's TSIG did not verify with our key.
    #[error("the reply's TSIG does not verify: {reason}")]
    BadReplySignature {
        /// Why.
        reason: String,
    },
    /// The message could not be signed or encoded (a bug or a bad key).
    #[error("could not build the message: {reason}")]
    Build {
        /// Why.
        reason: String,
    },
}

/// The side effect: one authoritative DNS server.
pub trait DnsServer: Send + Sync + 'static {
    /// Sends an UPDATE (signed by the implementation) and returns the authenticated rcode.
    fn update(
        &self,
        msg: Message,
    ) -> impl Future<Output = Result<ResponseCode, ExchangeError>> + Send;
    /// Sends a plain query and returns the reply.
    fn query(&self, msg: Message) -> impl Future<Output = Result<Message, ExchangeError>> + Send;
}

/// The real server: UDP to `addr`, UPDATEs signed with `signer`.
#[derive(Clone)]
pub struct UdpServer {
    addr: SocketAddr,
    signer: TSigner,
    timeout: Duration,
}

impl UdpServer {
    /// A server at `addr`; every exchange gives up after `timeout`.
    pub fn new(addr: SocketAddr, signer: TSigner, timeout: Duration) -> Self {
        UdpServer {
            addr,
            signer,
            timeout,
        }
    }

    fn timeout_err(&self) -> ExchangeError {
        ExchangeError::Timeout {
            server: self.addr,
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn io_err(&self, e: std::io::Error) -> ExchangeError {
        ExchangeError::Io {
            server: self.addr,
            reason: e.to_string(),
        }
    }

    fn malformed(&self, reason: String) -> ExchangeError {
        ExchangeError::Malformed {
            server: self.addr,
            reason,
        }
    }

    /// Sends `bytes`, returns the first reply whose id is `id`, within the deadline.
    async fn exchange(&self, bytes: &[u8], id: u16) -> Result<Vec<u8>, ExchangeError> {
        tokio::time::timeout(self.timeout, self.exchange_inner(bytes, id))
            .await
            .map_err(|_| self.timeout_err())?
    }

    async fn exchange_inner(&self, bytes: &[u8], id: u16) -> Result<Vec<u8>, ExchangeError> {
        let local: IpAddr = match self.addr {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let sock = UdpSocket::bind((local, 0))
            .await
            .map_err(|e| self.io_err(e))?;
        // Connected: the kernel drops datagrams from anyone but the server.
        sock.connect(self.addr).await.map_err(|e| self.io_err(e))?;
        sock.send(bytes).await.map_err(|e| self.io_err(e))?;
        let mut buf = vec![0u8; MAX_REPLY_BYTES];
        // Bounded by the caller's deadline: replies with another id are stray or forged.
        loop {
            let len = sock.recv(&mut buf).await.map_err(|e| self.io_err(e))?;
            let reply = buf.get(..len).unwrap_or_default();
            match reply.first_chunk::<2>() {
                Some(got) if u16::from_be_bytes(*got) == id => return Ok(reply.to_vec()),
                _ => continue,
            }
        }
    }
}

/// Seconds since the epoch, for the TSIG time.
fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn tsig_error_name(e: &TsigError) -> String {
    match e {
        TsigError::BadSig => "BADSIG".into(),
        TsigError::BadKey => "BADKEY".into(),
        TsigError::BadTime => "BADTIME".into(),
        TsigError::BadTrunc => "BADTRUNC".into(),
        TsigError::Unknown(code) => format!("TSIG error {code}"),
    }
}

/// The rcode as BIND and RFC 2136 name it (NOTAUTH, REFUSED, ...).
pub fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

impl DnsServer for UdpServer {
    async fn update(&self, mut msg: Message) -> Result<ResponseCode, ExchangeError> {
        let build = |e: hickory_proto::ProtoError| ExchangeError::Build {
            reason: e.to_string(),
        };
        let verifier = msg.finalize(&self.signer, unix_s()).map_err(build)?;
        let bytes = msg.to_vec().map_err(build)?;
        let reply_bytes = self.exchange(&bytes, msg.metadata.id).await?;
        let reply = Message::from_vec(&reply_bytes).map_err(|e| self.malformed(e.to_string()))?;
        let rcode = reply.metadata.response_code;
        let Some(sig) = reply.signature() else {
            return Err(ExchangeError::Unsigned {
                rcode: rcode_name(rcode),
            });
        };
        if let Some(err) = &sig.data.error {
            return Err(ExchangeError::TsigRejected {
                rcode: rcode_name(rcode),
                tsig_error: tsig_error_name(err),
            });
        }
        let Some(mut verifier) = verifier else {
            return Err(ExchangeError::Build {
                reason: "signing gave no verifier".into(),
            });
        };
        let verified =
            verifier
                .verify(&reply_bytes)
                .map_err(|e| ExchangeError::BadReplySignature {
                    reason: e.to_string(),
                })?;
        Ok(verified.response_code)
    }

    async fn query(&self, msg: Message) -> Result<Message, ExchangeError> {
        let bytes = msg.to_vec().map_err(|e| ExchangeError::Build {
            reason: e.to_string(),
        })?;
        let reply_bytes = self.exchange(&bytes, msg.metadata.id).await?;
        let reply = Message::from_vec(&reply_bytes).map_err(|e| self.malformed(e.to_string()))?;
        if reply.metadata.truncation {
            return Err(self.malformed("truncated".into()));
        }
        if reply.queries != msg.queries {
            return Err(self.malformed("the reply answers another question".into()));
        }
        Ok(reply)
    }
}
