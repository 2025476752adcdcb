//! The connection handler of the message protocol: runs inside libp2p's task for one
//! connection and owns that connection's message streams.
//!
//! Outbound, it keeps one long-lived [`PROTOCOL`] stream and writes the frames that the
//! behaviour (`messages.rs`) queued in the connection's [`Outbox`], back to back, flushing once
//! per batch. The stream is opened on the first frame and, if it breaks (the peer reset it, a
//! write failed), reopened on the next frame; the frame being written when it broke is lost and
//! counted. If opening fails, frames are dropped (and counted) for [`OPEN_RETRY`] before the
//! next attempt, so a peer that does not answer is not asked again for every message.
//!
//! Inbound, it reads frames from the peer's streams and hands each body to the behaviour.
//! At most [`MAX_INBOUND_STREAMS`] streams are kept; a newer one replaces the one that
//! delivered least recently. A frame over `max_message_bytes` closes its stream, from the
//! length prefix, with a logged error.
//!
//! Older agents speak [`LEGACY_PROTOCOL`]: one frame per stream, answered with an ack byte.
//! Streams from them are accepted (at most [`MAX_LEGACY_STREAMS`] at once); if our first
//! outbound negotiation settles on it, this connection sends the same way from then on.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
    ListenUpgradeError,
};
use libp2p::swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamUpgradeError, SubstreamProtocol,
};
use libp2p::{PeerId, StreamProtocol};
use tracing::{debug, warn};

use crate::framing::{self, FrameError, FrameReader, FrameWriter, LEGACY_PROTOCOL, PROTOCOL};
use crate::outbox::Outbox;
use crate::Counters;

/// Inbound [`PROTOCOL`] streams kept per connection (a well-behaved peer opens one at a time).
pub(crate) const MAX_INBOUND_STREAMS: usize = 4;
/// Concurrent [`LEGACY_PROTOCOL`] exchanges per connection, each direction.
pub(crate) const MAX_LEGACY_STREAMS: usize = 32;
/// After a failed stream open, frames are dropped this long before the next attempt.
pub(crate) const OPEN_RETRY: Duration = Duration::from_secs(1);

/// Both protocols, newest first: what we accept, and what we propose on the first open.
const BOTH: &[StreamProtocol] = &[PROTOCOL, LEGACY_PROTOCOL];
const LEGACY_ONLY: &[StreamProtocol] = &[LEGACY_PROTOCOL];

/// Settings shared by every connection's handler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandlerConfig {
    /// Largest frame body accepted.
    pub(crate) max_message_bytes: usize,
    /// How long opening (negotiating) a stream may take.
    pub(crate) open_timeout: Duration,
}

/// Negotiates one of a fixed list of protocols and hands over the raw stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Protocols(&'static [StreamProtocol]);

impl UpgradeInfo for Protocols {
    type Info = StreamProtocol;
    type InfoIter = std::iter::Cloned<std::slice::Iter<'static, StreamProtocol>>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.iter().cloned()
    }
}

impl InboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl OutboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

/// Our long-lived outbound stream.
enum Outbound {
    /// None open; `opening` says whether one is being negotiated.
    Idle { opening: bool },
    Open {
        stream: Stream,
        /// The frame being written.
        writing: Option<FrameWriter>,
        /// Frames were written since the last flush.
        unflushed: bool,
    },
}

/// One inbound [`PROTOCOL`] stream.
struct Inbound {
    stream: Stream,
    reader: FrameReader,
}

/// One [`LEGACY_PROTOCOL`] exchange: inbound Read → Ack → Flush → Close, outbound
/// Write → Flush → Close → AwaitAck.
struct Legacy {
    stream: Stream,
    outbound: bool,
    step: Step,
}

/// Where a [`Legacy`] exchange stands.
enum Step {
    /// Reading the request frame.
    Read(FrameReader),
    /// Writing the request frame.
    Write(FrameWriter),
    /// Writing the ack byte.
    Ack,
    Flush,
    Close,
    /// Waiting for the ack byte.
    AwaitAck,
}

impl Legacy {
    /// Drives the exchange: `Ok(Some)` a received message (the caller moves on to the ack),
    /// `Ok(None)` the exchange is over.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<u8>>, FrameError>> {
        let mut io = Pin::new(&mut self.stream);
        loop {
            match &mut self.step {
                Step::Read(reader) => return reader.poll_frame(cx, io.as_mut()),
                Step::Write(writer) => {
                    futures::ready!(writer.poll_write(cx, io.as_mut()))?;
                    self.step = Step::Flush;
                }
                Step::Ack => {
                    if futures::ready!(io.as_mut().poll_write(cx, &[framing::ACK]))? == 1 {
                        self.step = Step::Flush;
                    }
                }
                Step::Flush => {
                    futures::ready!(io.as_mut().poll_flush(cx))?;
                    self.step = Step::Close;
                }
                Step::Close => {
                    futures::ready!(io.as_mut().poll_close(cx))?;
                    if !self.outbound {
                        return Poll::Ready(Ok(None));
                    }
                    self.step = Step::AwaitAck;
                }
                Step::AwaitAck => {
                    futures::ready!(framing::poll_ack(cx, io.as_mut()))?;
                    return Poll::Ready(Ok(None));
                }
            }
        }
    }

    /// True while our frame may not have reached the peer.
    fn unsent(&self) -> bool {
        self.outbound && matches!(self.step, Step::Write(_) | Step::Flush | Step::Close)
    }
}

/// See the module doc.
pub(crate) struct Handler {
    peer: PeerId,
    config: HandlerConfig,
    outbox: Arc<Outbox>,
    counters: Arc<Counters>,
    outbound: Outbound,
    /// A frame taken from the outbox to go first on the stream being opened.
    stash: Option<Vec<u8>>,
    /// Frames are dropped until then (a stream open failed).
    retry_at: Option<Instant>,
    /// The peer negotiated [`LEGACY_PROTOCOL`]: send one frame per stream.
    legacy_peer: bool,
    /// Legacy outbound streams being negotiated.
    legacy_opening: usize,
    /// Inbound streams, least recently delivering first.
    inbound: VecDeque<Inbound>,
    legacy: Vec<Legacy>,
    /// The outbox was closed (connection closing, peer refused): nothing more is read or sent.
    stopped: bool,
}

type Event = ConnectionHandlerEvent<Protocols, Option<Vec<u8>>, Vec<u8>>;

impl Handler {
    pub(crate) fn new(
        peer: PeerId,
        config: HandlerConfig,
        outbox: Arc<Outbox>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            peer,
            config,
            outbox,
            counters,
            outbound: Outbound::Idle { opening: false },
            stash: None,
            retry_at: None,
            legacy_peer: false,
            legacy_opening: 0,
            inbound: VecDeque::new(),
            legacy: Vec::new(),
            stopped: false,
        }
    }

    fn dropped(&self, count: usize) {
        if count > 0 {
            self.counters
                .messages_dropped
                .fetch_add(count as u64, Ordering::Relaxed);
        }
    }

    fn request(&self, protocols: &'static [StreamProtocol], frame: Option<Vec<u8>>) -> Event {
        let protocol = SubstreamProtocol::new(Protocols(protocols), frame)
            .with_timeout(self.config.open_timeout);
        ConnectionHandlerEvent::OutboundSubstreamRequest { protocol }
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.outbound = Outbound::Idle { opening: false };
        let lost = usize::from(self.stash.take().is_some());
        self.dropped(lost);
        self.inbound.clear();
        self.legacy.clear();
    }

    /// The next frame from any inbound stream; closes streams that ended or misbehaved.
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Option<Vec<u8>> {
        let mut index = 0;
        while index < self.inbound.len() {
            let Inbound { stream, reader } = &mut self.inbound[index];
            match reader.poll_frame(cx, Pin::new(stream)) {
                Poll::Pending => index += 1,
                Poll::Ready(Ok(Some(bytes))) => {
                    // Most recently delivering last: the one replaced first is an idle one.
                    if let Some(active) = self.inbound.remove(index) {
                        self.inbound.push_back(active);
                    }
                    return Some(bytes);
                }
                Poll::Ready(Ok(None)) => {
                    debug!(peer = %self.peer, "inbound message stream closed by the peer");
                    self.inbound.remove(index);
                }
                Poll::Ready(Err(error)) => {
                    self.inbound_failed(&error);
                    self.inbound.remove(index);
                }
            }
        }
        None
    }

    fn inbound_failed(&self, error: &FrameError) {
        match error {
            FrameError::Io(error) => {
                debug!(peer = %self.peer, %error, "inbound message stream failed");
            }
            error => warn!(peer = %self.peer, %error, "inbound message stream closed"),
        }
    }

    fn on_inbound(&mut self, stream: Stream, protocol: StreamProtocol) {
        if self.stopped {
            return;
        }
        let limit = self.config.max_message_bytes;
        if protocol == LEGACY_PROTOCOL {
            if self.legacy.len() >= MAX_LEGACY_STREAMS {
                debug!(peer = %self.peer, "too many legacy message streams; one refused");
                return;
            }
            self.legacy.push(Legacy {
                stream,
                outbound: false,
                step: Step::Read(FrameReader::new(limit)),
            });
            return;
        }
        if self.inbound.len() >= MAX_INBOUND_STREAMS {
            debug!(peer = %self.peer, "too many inbound message streams; the idlest is closed");
            self.inbound.pop_front();
        }
        let reader = FrameReader::new(limit);
        self.inbound.push_back(Inbound { stream, reader });
    }

    /// Writes queued frames to the open stream; notices a stream the peer closed.
    fn poll_open_stream(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Outbound::Open {
            stream,
            writing,
            unflushed,
        } = &mut self.outbound
        else {
            return Poll::Ready(());
        };
        // The peer never writes on this stream: any read result means it is gone.
        let mut probe = [0u8; 8];
        if let Poll::Ready(result) = Pin::new(&mut *stream).poll_read(cx, &mut probe) {
            debug!(peer = %self.peer, ?result, "outbound message stream ended; reopened on the next message");
            let lost = usize::from(writing.is_some());
            self.outbound = Outbound::Idle { opening: false };
            self.dropped(lost);
            return Poll::Ready(());
        }
        let mut failed = None;
        loop {
            if writing.is_none() {
                *writing = self.outbox.pop(cx.waker()).map(FrameWriter::new);
            }
            let Some(frame) = writing else { break };
            match frame.poll_write(cx, Pin::new(&mut *stream)) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) => {
                    *writing = None;
                    *unflushed = true;
                }
                Poll::Ready(Err(error)) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        if failed.is_none() && *unflushed {
            match Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => *unflushed = false,
                Poll::Ready(Err(error)) => failed = Some(error),
                Poll::Pending => {}
            }
        }
        let Some(error) = failed else {
            return Poll::Pending;
        };
        debug!(peer = %self.peer, %error, "outbound message stream failed; reopened on the next message");
        self.outbound = Outbound::Idle { opening: false };
        self.dropped(1);
        Poll::Ready(())
    }

    /// Drives the outbound stream; returns a request to open one when a frame waits for it.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        while let Outbound::Open { .. } = self.outbound {
            if self.poll_open_stream(cx).is_pending() {
                return None;
            }
        }
        if self.legacy_peer {
            return self.poll_legacy_open(cx);
        }
        if let Outbound::Idle { opening: true } = self.outbound {
            return None;
        }
        let frame = self.stash.take().or_else(|| self.outbox.pop(cx.waker()))?;
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            self.dropped(1 + self.outbox.clear());
            return None;
        }
        self.retry_at = None;
        self.stash = Some(frame);
        self.outbound = Outbound::Idle { opening: true };
        Some(self.request(BOTH, None))
    }

    /// Legacy peers: one stream per frame, a bounded number at once.
    fn poll_legacy_open(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        let exchanges = self.legacy.len() + self.legacy_opening;
        if exchanges >= MAX_LEGACY_STREAMS {
            return None;
        }
        let frame = self.stash.take().or_else(|| self.outbox.pop(cx.waker()))?;
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            self.dropped(1 + self.outbox.clear());
            return None;
        }
        self.legacy_opening += 1;
        Some(self.request(LEGACY_ONLY, Some(frame)))
    }

    /// Drives the legacy exchanges; returns a message read from one.
    fn poll_legacy(&mut self, cx: &mut Context<'_>) -> Option<Vec<u8>> {
        let mut index = 0;
        while index < self.legacy.len() {
            let exchange = &mut self.legacy[index];
            match exchange.poll(cx) {
                Poll::Pending => index += 1,
                Poll::Ready(Ok(Some(bytes))) => {
                    exchange.step = Step::Ack;
                    return Some(bytes);
                }
                Poll::Ready(Ok(None)) => {
                    self.legacy.swap_remove(index);
                }
                Poll::Ready(Err(error)) => {
                    let unsent = exchange.unsent();
                    debug!(peer = %self.peer, %error, unsent, "legacy message exchange failed");
                    self.dropped(usize::from(unsent));
                    self.legacy.swap_remove(index);
                }
            }
        }
        None
    }

    fn on_outbound(&mut self, stream: Stream, protocol: StreamProtocol, frame: Option<Vec<u8>>) {
        if frame.is_some() {
            self.legacy_opening = self.legacy_opening.saturating_sub(1);
        } else {
            self.outbound = Outbound::Idle { opening: false };
        }
        if self.stopped {
            return self.dropped(usize::from(frame.is_some()));
        }
        if protocol == PROTOCOL {
            let writing = self.stash.take().map(FrameWriter::new);
            self.outbound = Outbound::Open {
                stream,
                writing,
                unflushed: false,
            };
            return;
        }
        if !self.legacy_peer {
            debug!(peer = %self.peer, "peer speaks the legacy message protocol only");
            self.legacy_peer = true;
        }
        if let Some(frame) = frame.or_else(|| self.stash.take()) {
            self.legacy.push(Legacy {
                stream,
                outbound: true,
                step: Step::Write(FrameWriter::new(frame)),
            });
        }
    }

    fn on_open_failed(&mut self, frame: Option<Vec<u8>>, error: StreamUpgradeError<Infallible>) {
        let lost = if frame.is_some() {
            self.legacy_opening = self.legacy_opening.saturating_sub(1);
            1
        } else {
            self.outbound = Outbound::Idle { opening: false };
            usize::from(self.stash.take().is_some())
        };
        self.dropped(lost);
        self.retry_at = Some(Instant::now() + OPEN_RETRY);
        match error {
            StreamUpgradeError::NegotiationFailed => {
                warn!(peer = %self.peer, "peer speaks no muster message protocol; messages dropped");
            }
            error => debug!(peer = %self.peer, %error, "cannot open a message stream"),
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Vec<u8>;
    type InboundProtocol = Protocols;
    type OutboundProtocol = Protocols;
    type InboundOpenInfo = ();
    /// A legacy stream's frame travels with its open request; `None` for [`PROTOCOL`] opens.
    type OutboundOpenInfo = Option<Vec<u8>>;

    fn listen_protocol(&self) -> SubstreamProtocol<Protocols> {
        SubstreamProtocol::new(Protocols(BOTH), ()).with_timeout(self.config.open_timeout)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if self.stopped {
            return Poll::Pending;
        }
        if self.outbox.is_closed() {
            self.stop();
            return Poll::Pending;
        }
        // Writes first: they never return an event unless a stream must be opened.
        if let Some(request) = self.poll_outbound(cx) {
            return Poll::Ready(request);
        }
        if let Some(bytes) = self.poll_inbound(cx).or_else(|| self.poll_legacy(cx)) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(bytes));
        }
        // Finished legacy exchanges free room for the frames waiting behind them.
        match self.legacy_peer.then(|| self.poll_outbound(cx)).flatten() {
            Some(request) => Poll::Ready(request),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Protocols, Protocols, (), Option<Vec<u8>>>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => self.on_inbound(stream, protocol),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, protocol),
                info,
            }) => self.on_outbound(stream, protocol, info),
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info, error }) => {
                self.on_open_failed(info, error);
            }
            ConnectionEvent::ListenUpgradeError(ListenUpgradeError { error, .. }) => {
                debug!(peer = %self.peer, %error, "inbound stream negotiation failed");
            }
            _ => {}
        }
    }
}
