//! Tests of the message streams against peers that are not muster-net nodes, over the real
//! transport on 127.0.0.1: a raw-stream peer (`libp2p-stream`) that resets streams, opens too
//! many and writes garbage, and an agent of the previous release (request-response on
//! `/muster/msg/1.0.0`). They live inside the crate because the raw peers need the private
//! transport stack to pass the site-key handshake.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{request_response, Swarm};
use tokio::time::{timeout, Instant};

use crate::dialer::multiaddr_of;
use crate::framing::{self, LEGACY_PROTOCOL, PROTOCOL};
use crate::handler::MAX_INBOUND_STREAMS;
use crate::{spawn, Keypair, NetConfig, NetEvent, NetEvents, NetHandle, PeerId};

const KEY: [u8; 32] = [0x42; 32];
const WAIT: Duration = Duration::from_secs(10);

fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
    probe.local_addr().expect("probe address")
}

struct Node {
    handle: NetHandle,
    events: NetEvents,
    addr: SocketAddr,
}

fn node(max_message_bytes: usize) -> Node {
    let addr = free_addr();
    let mut cfg = NetConfig::new(Keypair::generate_ed25519(), KEY, addr);
    cfg.mdns = false;
    cfg.max_message_bytes = max_message_bytes;
    let (handle, events) = spawn(cfg).expect("spawn");
    Node {
        handle,
        events,
        addr,
    }
}

impl Node {
    /// The next event matching `want` within `within`, skipping others.
    async fn expect(&mut self, within: Duration, want: impl Fn(&NetEvent) -> bool) -> NetEvent {
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if want(&event) => return event,
                Ok(Some(NetEvent::Disconnected { peer })) => panic!("{peer} disconnected"),
                Ok(Some(_)) => continue,
                Ok(None) => panic!("event channel closed"),
                Err(_) => panic!("timed out"),
            }
        }
    }

    async fn connected(&mut self, peer: PeerId) {
        self.expect(
            WAIT,
            |e| matches!(e, NetEvent::Connected { peer: p, .. } if *p == peer),
        )
        .await;
    }

    /// Every message that arrives within `window`; panics on a disconnection.
    async fn messages(&mut self, window: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + window;
        let mut seen = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match event {
                NetEvent::Message { bytes, .. } => seen.push(bytes),
                NetEvent::Disconnected { peer } => panic!("{peer} disconnected"),
                _ => {}
            }
        }
        seen
    }
}

/// A swarm with `behaviour` over muster's transport and site key, dialling `to`.
fn raw_peer<B: NetworkBehaviour + Send>(behaviour: B, to: SocketAddr) -> Swarm<B> {
    let psk = libp2p::pnet::PreSharedKey::new(KEY);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_ed25519())
        .with_tokio()
        .with_other_transport(|keypair| {
            crate::transport::build(keypair, psk).map_err(|e| Box::new(e) as crate::BoxError)
        })
        .expect("transport")
        .with_behaviour(|_| behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.dial(multiaddr_of(to)).expect("dial");
    swarm
}

/// A raw-stream peer connected to `node`, its swarm driven by a background task.
async fn stream_peer(node: &mut Node) -> (PeerId, libp2p_stream::Control) {
    let mut swarm = raw_peer(libp2p_stream::Behaviour::new(), node.addr);
    let peer = *swarm.local_peer_id();
    let control = swarm.behaviour().new_control();
    // Our side must know the connection before `open_stream` can use it.
    let established = async {
        while !matches!(
            swarm.select_next_some().await,
            SwarmEvent::ConnectionEstablished { .. }
        ) {}
    };
    timeout(WAIT, established).await.expect("raw peer connects");
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    node.connected(peer).await;
    (peer, control)
}

async fn read_frame(stream: &mut libp2p::Stream) -> std::io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let mut body = vec![0; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_raw(stream: &mut libp2p::Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// A frame written on `stream` reaches `receiver` as a message from `peer`, the link to it is
/// still up; then `receiver` shuts down.
async fn delivers_and_stays_up(
    receiver: &mut Node,
    stream: &mut libp2p::Stream,
    peer: PeerId,
    bytes: &[u8],
) {
    write_raw(stream, &framing::encode(bytes))
        .await
        .expect("write");
    let event = receiver
        .expect(WAIT, |e| matches!(e, NetEvent::Message { .. }))
        .await;
    assert_eq!(
        event,
        NetEvent::Message {
            from: peer,
            bytes: bytes.to_vec()
        }
    );
    assert_eq!(receiver.handle.stats().connected_peers, 1);
    receiver.handle.shutdown().await;
}

/// True if the remote has closed or reset `stream` within `within`.
async fn ended(stream: &mut libp2p::Stream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// The receiver resets our stream mid-run, three times: each time the next messages go out on
/// a new stream of the same connection, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_stream_is_reopened_and_messages_flow_again() {
    let mut sender = node(1024);
    let (peer, mut control) = stream_peer(&mut sender).await;
    let mut incoming = control.accept(PROTOCOL).expect("accept");
    let mut sent = 0u32;
    for round in 0..3 {
        let deadline = Instant::now() + WAIT;
        let (from, mut stream) = loop {
            sender.handle.send(peer, sent.to_be_bytes().to_vec());
            sent += 1;
            assert!(Instant::now() < deadline, "round {round}: no stream");
            if let Ok(Some(next)) = timeout(Duration::from_millis(50), incoming.next()).await {
                break next;
            }
        };
        assert_eq!(from, sender.handle.local_peer_id());
        let mut frames = Vec::new();
        for _ in 0..2 {
            let frame = timeout(WAIT, read_frame(&mut stream))
                .await
                .expect("in time");
            let frame: [u8; 4] = frame.expect("frame")[..].try_into().expect("4 bytes");
            frames.push(u32::from_be_bytes(frame));
            sender.handle.send(peer, sent.to_be_bytes().to_vec());
            sent += 1;
        }
        assert!(frames[0] < frames[1], "round {round}: in order {frames:?}");
        drop(stream); // a reset
    }
    assert_eq!(sender.handle.stats().connected_peers, 1);
    assert!(sender.messages(Duration::from_millis(200)).await.is_empty());
    sender.handle.shutdown().await;
}

/// A peer that opens many streams keeps at most `MAX_INBOUND_STREAMS` of them: the others are
/// reset, the newest still delivers, the connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_opening_many_streams_is_bounded() {
    let mut receiver = node(1024);
    let (peer, mut control) = stream_peer(&mut receiver).await;
    let target = receiver.handle.local_peer_id();
    let mut streams = Vec::new();
    for i in 0..40u8 {
        let mut stream = control.open_stream(target, PROTOCOL).await.expect("open");
        write_raw(&mut stream, &framing::encode(&[i]))
            .await
            .expect("write");
        streams.push(stream);
    }
    let delivered = receiver.messages(Duration::from_millis(500)).await;
    assert!(delivered.len() <= 40, "{}", delivered.len());
    assert!(delivered.contains(&vec![39]), "the newest stream delivers");
    let mut alive = 0;
    for stream in &mut streams {
        if !ended(stream, Duration::from_millis(50)).await {
            alive += 1;
        }
    }
    assert!(
        (1..=MAX_INBOUND_STREAMS).contains(&alive),
        "{alive} streams kept"
    );
    let newest = streams.last_mut().expect("streams");
    delivers_and_stays_up(&mut receiver, newest, peer, b"still here").await;
}

/// Garbage on message streams (a 4 GiB prefix, a frame just over the limit, truncations,
/// random bytes) closes those streams and nothing else; a 4 GiB prefix is refused at once,
/// without waiting for its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_close_only_their_stream() {
    let mut receiver = node(1024);
    let (peer, mut control) = stream_peer(&mut receiver).await;
    let target = receiver.handle.local_peer_id();

    let mut huge = control.open_stream(target, PROTOCOL).await.expect("open");
    write_raw(&mut huge, &u32::MAX.to_be_bytes())
        .await
        .expect("write");
    assert!(
        ended(&mut huge, Duration::from_secs(2)).await,
        "4 GiB prefix refused at once"
    );
    let mut over = control.open_stream(target, PROTOCOL).await.expect("open");
    write_raw(&mut over, &framing::encode(&[0; 1025]))
        .await
        .expect("write");
    assert!(
        ended(&mut over, Duration::from_secs(2)).await,
        "1025 bytes refused"
    );

    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut patterns: Vec<Vec<u8>> = vec![vec![0, 0], [&10u32.to_be_bytes()[..], b"abc"].concat()];
    for _ in 0..20 {
        let len = (next() % 40) as usize;
        patterns.push((0..len).map(|_| next() as u8).collect());
    }
    for pattern in &patterns {
        let mut stream = control.open_stream(target, PROTOCOL).await.expect("open");
        // The receiver may already have reset the stream: a failed write is fine.
        let _ = write_raw(&mut stream, pattern).await;
        let _ = stream.close().await;
    }
    // Random bytes may happen to form small frames: those are delivered, nothing else.
    let delivered = receiver.messages(Duration::from_millis(500)).await;
    assert!(delivered.iter().all(|m| m.len() <= 1024));

    let mut good = control.open_stream(target, PROTOCOL).await.expect("open");
    delivers_and_stays_up(&mut receiver, &mut good, peer, b"fine").await;
}

/// The request-response codec of the previous release, as its agents speak it.
#[derive(Debug, Clone, Default)]
struct OldCodec;

impl request_response::Codec for OldCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut prefix = [0u8; 4];
        io.read_exact(&mut prefix).await?;
        let mut bytes = vec![0; u32::from_be_bytes(prefix) as usize];
        io.read_exact(&mut bytes).await?;
        Ok(bytes)
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut ack = [0u8; 1];
        io.read_exact(&mut ack).await?;
        assert_eq!(ack[0], framing::ACK);
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&framing::encode(&bytes)).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        _: (),
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&[framing::ACK]).await?;
        io.flush().await
    }
}

/// An agent of the previous release and a new one exchange messages both ways: the new one
/// accepts `/muster/msg/1.0.0` streams and acks them, and falls back to sending that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_release_and_new_agent_talk_both_ways() {
    use request_response::{Event, Message, ProtocolSupport};
    let mut new = node(1024);
    let old_behaviour = request_response::Behaviour::<OldCodec>::new(
        [(LEGACY_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default(),
    );
    let mut old = raw_peer(old_behaviour, new.addr);
    let old_peer = *old.local_peer_id();
    let new_peer = new.handle.local_peer_id();

    let deadline = Instant::now() + WAIT;
    let (mut old_connected, mut new_connected) = (false, false);
    while !(old_connected && new_connected) {
        tokio::select! {
            event = old.select_next_some() => {
                old_connected |= matches!(event, SwarmEvent::ConnectionEstablished { .. });
            }
            event = new.events.recv() => {
                new_connected |= matches!(event, Some(NetEvent::Connected { peer, .. }) if peer == old_peer);
            }
            _ = tokio::time::sleep_until(deadline) => panic!("not connected"),
        }
    }
    for i in 0..10u8 {
        old.behaviour_mut().send_request(&new_peer, vec![i]);
        new.handle.send(old_peer, vec![100 + i]);
    }
    let mut acked = 0;
    let mut received = Vec::new();
    let mut delivered = Vec::new();
    while acked < 10 || received.len() < 10 || delivered.len() < 10 {
        tokio::select! {
            event = old.select_next_some() => match event {
                SwarmEvent::Behaviour(Event::Message { message: Message::Response { .. }, .. }) => acked += 1,
                SwarmEvent::Behaviour(Event::Message { message: Message::Request { request, channel, .. }, .. }) => {
                    received.push(request);
                    old.behaviour_mut().send_response(channel, ()).expect("respond");
                }
                SwarmEvent::Behaviour(Event::OutboundFailure { error, .. }) => panic!("old agent's send failed: {error}"),
                _ => {}
            },
            event = new.events.recv() => match event {
                Some(NetEvent::Message { from, bytes }) => {
                    assert_eq!(from, old_peer);
                    delivered.push(bytes);
                }
                Some(NetEvent::Disconnected { .. }) | None => panic!("link lost"),
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(deadline) => {
                panic!("acked {acked}, received {received:?}, delivered {delivered:?}");
            }
        }
    }
    delivered.sort();
    received.sort();
    assert_eq!(delivered, (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!(received, (100..110u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!(new.handle.stats().messages_dropped, 0);
    new.handle.shutdown().await;
}

#[test]
fn a_settled_mdns_pace_faster_than_the_looking_one_is_refused_by_name() {
    let mut cfg = NetConfig::new(Keypair::generate_ed25519(), KEY, free_addr());
    cfg.mdns_settled_interval = cfg.mdns_query_interval / 2;
    let error = cfg.validate().unwrap_err().to_string();
    assert!(error.contains("mdns_settled_interval"), "{error}");
    cfg.mdns = false;
    assert!(cfg.validate().is_ok(), "without mDNS the pace is not used");
}
