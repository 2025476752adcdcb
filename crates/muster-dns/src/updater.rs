//! The DNS updater actor: one task per endpoint name, told `Hold { term, addrs }` / `Release`
//! by the agent through a bounded channel, publishing a [`DnsStatus`] on a watch.
//!
//! While holding it reads the server (A, AAAA, stamp TXT), applies the compare-and-swap rule
//! ([`crate::message::decide`]), sends the conditional UPDATE when needed, reads back, and then
//! re-checks every `check_interval_ms`, so a record changed by someone else or lost by a server
//! restarted with an old zone is put back within about one interval. Failures back off: a
//! timeout or socket error from `backoff_min_ms` doubling to `backoff_max_ms` with jitter; a
//! refusal (BADSIG, BADKEY, BADTIME, NOTAUTH, REFUSED, NOTZONE, ...) waits `rejected_retry_ms`.
//! A step in flight is dropped when the holding changes, and the agent's `try_send` never
//! waits, so a slow server never stalls the agent's event loop.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::config::{DnsConfig, MAX_ADDRS};
use crate::message::{self, Decision, Served, Want};
use crate::status::{DnsStatus, UpdateError};
use crate::transport::{rcode_name, DnsServer, ExchangeError, UdpServer};
use crate::tsig::TsigKeyError;

/// Capacity of the command channel, messages.
pub const COMMAND_QUEUE_LEN: usize = 16;

/// What the agent tells the updater: the same lease events that drive the VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsCommand {
    /// We lead in `term` and hold the lease: make the name point at `addrs`. Sending the same
    /// term and addresses again (a lease renewal) changes nothing.
    Hold {
        /// Our raft term.
        term: u64,
        /// Our addresses (IPv4 → A, IPv6 → AAAA); at most [`MAX_ADDRS`] are used.
        addrs: Vec<IpAddr>,
    },
    /// The lease is gone: stop updating. The record stays; the next leader's CAS replaces it.
    Release,
}

/// Why a command was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The queue is full (the actor is behind); the caller may send again on its next event.
    #[error("DNS updater queue full ({COMMAND_QUEUE_LEN} commands)")]
    Full,
    /// The actor has stopped.
    #[error("DNS updater stopped")]
    Closed,
}

/// Why the updater could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The key cannot sign.
    #[error(transparent)]
    Key(#[from] TsigKeyError),
}

/// The agent's side of the actor.
pub struct DnsHandle {
    tx: mpsc::Sender<DnsCommand>,
    status: watch::Receiver<DnsStatus>,
    task: JoinHandle<()>,
}

impl DnsHandle {
    /// Queues a command without waiting.
    pub fn send(&self, cmd: DnsCommand) -> Result<(), SendError> {
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// `Hold { term, addrs }`.
    pub fn hold(&self, term: u64, addrs: Vec<IpAddr>) -> Result<(), SendError> {
        self.send(DnsCommand::Hold { term, addrs })
    }

    /// `Release`.
    pub fn release(&self) -> Result<(), SendError> {
        self.send(DnsCommand::Release)
    }

    /// The status watch.
    pub fn status(&self) -> watch::Receiver<DnsStatus> {
        self.status.clone()
    }

    /// Stops the actor (a step in flight is dropped) and waits for it.
    pub async fn shutdown(self) {
        drop(self.tx);
        if let Err(e) = self.task.await {
            warn!(error = %e, "DNS updater task ended abnormally");
        }
    }
}

/// The updater.
pub struct DnsUpdater;

impl DnsUpdater {
    /// Spawns the actor over UDP to `cfg.server`; `seed` drives message ids and jitter (log it).
    pub fn spawn(cfg: DnsConfig, seed: u64) -> Result<DnsHandle, SpawnError> {
        let server = UdpServer::new(
            cfg.server,
            cfg.key.signer()?,
            Duration::from_millis(cfg.exchange_timeout_ms),
        );
        Ok(Self::spawn_with(cfg, server, seed))
    }

    /// Spawns the actor over any [`DnsServer`] (the in-memory zone in tests).
    pub fn spawn_with<S: DnsServer>(cfg: DnsConfig, server: S, seed: u64) -> DnsHandle {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE_LEN);
        let (status_tx, status) = watch::channel(DnsStatus::initial(cfg.name.to_ascii()));
        let span = tracing::info_span!("dns", name = %cfg.name, node = %cfg.node_id);
        let actor = Actor {
            names: Arc::new(Names::new(&cfg)),
            cfg,
            server: Arc::new(server),
            status: status_tx,
            want: None,
            next_at: Instant::now(),
            backoff_ms: 0,
            rng: StdRng::seed_from_u64(seed),
        };
        let task = tokio::spawn(actor.run(rx).instrument(span));
        DnsHandle { tx, status, task }
    }
}

/// The names one step touches.
struct Names {
    zone: Name,
    name: Name,
    stamp: Name,
    ttl_s: u32,
}

impl Names {
    fn new(cfg: &DnsConfig) -> Self {
        Names {
            zone: cfg.zone.clone(),
            stamp: message::stamp_name(&cfg.name).unwrap_or_else(|_| cfg.name.clone()),
            name: cfg.name.clone(),
            ttl_s: cfg.ttl_s,
        }
    }
}

/// How soon to try again after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Next periodic check.
    Check,
    /// Exponential backoff with jitter.
    Backoff,
    /// The slow retry after a refusal.
    Slow,
}

/// What one step found.
#[derive(Debug)]
struct Outcome {
    /// The last read of the server, if one succeeded.
    served: Option<Served>,
    /// Ok: the server serves our record (`true`: we wrote it in this step).
    result: Result<bool, UpdateError>,
    retry: Retry,
    updates_sent: u64,
    reads: u64,
}

type Step = Pin<Box<dyn Future<Output = Outcome> + Send>>;

struct Actor<S> {
    cfg: DnsConfig,
    names: Arc<Names>,
    server: Arc<S>,
    status: watch::Sender<DnsStatus>,
    want: Option<Want>,
    next_at: Instant,
    backoff_ms: u64,
    rng: StdRng,
}

impl<S: DnsServer> Actor<S> {
    async fn run(mut self, mut rx: mpsc::Receiver<DnsCommand>) {
        let mut inflight: Option<Step> = None;
        loop {
            let idle = self.want.is_some() && inflight.is_none();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(cmd) => {
                        if self.on_command(cmd) {
                            inflight = None;
                        }
                    }
                },
                out = async {
                    match inflight.as_mut() {
                        Some(step) => step.await,
                        None => std::future::pending().await,
                    }
                } => {
                    inflight = None;
                    self.on_outcome(out);
                }
                _ = tokio::time::sleep_until(self.next_at), if idle => {
                    inflight = self.start_step();
                }
            }
        }
        debug!("DNS updater stopped");
    }

    /// Applies a command; true when a step in flight must be dropped.
    fn on_command(&mut self, cmd: DnsCommand) -> bool {
        match cmd {
            DnsCommand::Hold { term, mut addrs } => {
                addrs.sort();
                addrs.dedup();
                if addrs.len() > MAX_ADDRS {
                    warn!(
                        count = addrs.len(),
                        max = MAX_ADDRS,
                        "too many addresses; using the first"
                    );
                    addrs.truncate(MAX_ADDRS);
                }
                let want = Want {
                    term,
                    id: self.cfg.node_id.clone(),
                    addrs,
                };
                if self.want.as_ref() == Some(&want) {
                    return false;
                }
                info!(term, addrs = ?want.addrs, "holding the endpoint");
                self.want = Some(want);
                self.next_at = Instant::now();
                self.backoff_ms = 0;
                self.status.send_modify(|s| {
                    s.holding_term = Some(term);
                    s.stale = true;
                });
                true
            }
            DnsCommand::Release => {
                if self.want.take().is_some() {
                    info!("released the endpoint; the record stays for the next leader");
                }
                self.status.send_modify(|s| {
                    s.holding_term = None;
                    s.stale = false;
                    s.last_result = Err(UpdateError::NotHolding);
                });
                true
            }
        }
    }

    fn start_step(&mut self) -> Option<Step> {
        let want = self.want.clone()?;
        let seed = self.rng.random();
        let step = sync_once(self.server.clone(), self.names.clone(), want, seed);
        Some(Box::pin(step))
    }

    fn on_outcome(&mut self, out: Outcome) {
        let delay_ms = match out.retry {
            Retry::Check => {
                self.backoff_ms = 0;
                self.cfg.check_interval_ms
            }
            Retry::Backoff => {
                self.backoff_ms = if self.backoff_ms == 0 {
                    self.cfg.backoff_min_ms
                } else {
                    (self.backoff_ms * 2).min(self.cfg.backoff_max_ms)
                };
                // Half jitter: in [b/2, b].
                let half = self.backoff_ms / 2;
                half + self.rng.random_range(0..=half)
            }
            Retry::Slow => {
                let r = self.cfg.rejected_retry_ms;
                r + self.rng.random_range(0..=r / 4)
            }
        };
        self.next_at = Instant::now() + Duration::from_millis(delay_ms);
        match &out.result {
            Ok(true) => {
                info!(term = ?self.want.as_ref().map(|w| w.term), "server serves our record")
            }
            Ok(false) => debug!("record in sync"),
            Err(e) => warn!(error = %e, retry_ms = delay_ms, "DNS update not in effect"),
        }
        let term = self.want.as_ref().map(|w| w.term);
        self.status.send_modify(|s| {
            if let Some(served) = &out.served {
                s.target = served.addrs.clone();
                let stamp = served.stamp();
                s.served_term = stamp.as_ref().map(|st| st.term);
                s.served_by = stamp.map(|st| st.id);
            }
            if out.result.is_ok() {
                s.updated_term = term;
            }
            s.stale = out.result.is_err();
            s.last_result = out.result.map(|_| ());
            s.last_unix_ms = unix_ms();
            s.updates_sent += out.updates_sent;
            s.reads += out.reads;
        });
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn exchange_failure(e: ExchangeError) -> (UpdateError, Retry) {
    match e {
        ExchangeError::Timeout { .. }
        | ExchangeError::Io { .. }
        | ExchangeError::Malformed { .. } => (UpdateError::Unreachable(e), Retry::Backoff),
        ExchangeError::TsigRejected { .. }
        | ExchangeError::Unsigned { .. }
        | ExchangeError::BadReplySignature { .. }
        | ExchangeError::Build { .. } => (UpdateError::Tsig(e), Retry::Slow),
    }
}

/// Reads A, AAAA and the stamp TXT.
async fn read<S: DnsServer>(
    server: &S,
    names: &Names,
    rng: &mut StdRng,
) -> Result<Served, (UpdateError, Retry)> {
    let mut sets = Vec::with_capacity(3);
    for (owner, rtype) in [
        (&names.name, RecordType::A),
        (&names.name, RecordType::AAAA),
        (&names.stamp, RecordType::TXT),
    ] {
        let reply = server
            .query(message::build_query(rng.random(), owner, rtype))
            .await
            .map_err(exchange_failure)?;
        let set = message::answers(&reply, owner, rtype).map_err(|rcode| {
            (
                UpdateError::QueryFailed {
                    what: format!("{owner} {rtype}"),
                    rcode: rcode_name(rcode),
                },
                Retry::Backoff,
            )
        })?;
        sets.push(set);
    }
    Ok(message::served_from(&sets[0], &sets[1], &sets[2]))
}

/// One step: read, decide, maybe update and read back.
async fn sync_once<S: DnsServer>(
    server: Arc<S>,
    names: Arc<Names>,
    want: Want,
    seed: u64,
) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Outcome {
        served: None,
        result: Ok(false),
        retry: Retry::Check,
        updates_sent: 0,
        reads: 1,
    };
    let fail = |mut out: Outcome, (err, retry): (UpdateError, Retry)| {
        out.result = Err(err);
        out.retry = retry;
        out
    };
    let served = match read(&*server, &names, &mut rng).await {
        Ok(s) => s,
        Err(e) => return fail(out, e),
    };
    out.served = Some(served.clone());
    match message::decide(&served, &want) {
        Decision::InSync => return out,
        Decision::Refuse(s) => {
            let err = UpdateError::NewerHolder {
                term: s.term,
                id: s.id,
            };
            return fail(out, (err, Retry::Check));
        }
        Decision::Update => {}
    }
    let msg = message::build_update(
        rng.random(),
        &names.zone,
        &names.name,
        &served,
        &want,
        names.ttl_s,
    );
    out.updates_sent = 1;
    match server.update(msg).await {
        Ok(ResponseCode::NoError) => {}
        Ok(rcode @ (ResponseCode::YXRRSet | ResponseCode::NXRRSet)) => {
            let err = UpdateError::Raced {
                rcode: rcode_name(rcode),
            };
            return fail(out, (err, Retry::Backoff));
        }
        Ok(rcode) => {
            let err = UpdateError::Rejected {
                rcode: rcode_name(rcode),
            };
            return fail(out, (err, Retry::Slow));
        }
        Err(e) => return fail(out, exchange_failure(e)),
    }
    out.reads = 2;
    let after = match read(&*server, &names, &mut rng).await {
        Ok(s) => s,
        Err(e) => return fail(out, e),
    };
    out.served = Some(after.clone());
    if message::decide(&after, &want) == Decision::InSync {
        out.result = Ok(true);
        return out;
    }
    let err = UpdateError::NotApplied {
        served: after.addrs.clone(),
        served_term: after.term(),
    };
    fail(out, (err, Retry::Backoff))
}
