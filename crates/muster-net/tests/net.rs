//! End-to-end tests of `muster-net` over 127.0.0.1: real sockets, real handshakes. mDNS skips
//! loopback, so peers find each other through bootstrap addresses and `add_address`.
//! Every wait is bounded by a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use libp2p::identity::Keypair;
use muster_net::{spawn, NetConfig, NetError, NetEvent, NetHandle, PeerId};
use tokio::time::{timeout, Instant};

const SITE_KEY: [u8; 32] = [0x5a; 32];
const OTHER_SITE_KEY: [u8; 32] = [0xa5; 32];
const WAIT: Duration = Duration::from_secs(10);

/// A free loopback port: bind port 0, read it, release it.
fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
    probe.local_addr().expect("probe address")
}

struct Node {
    handle: NetHandle,
    events: muster_net::NetEvents,
    addr: SocketAddr,
    keypair: Keypair,
}

impl Node {
    fn peer(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// Waits for the first event matching `want`, skipping others.
    async fn expect(&mut self, what: &str, want: impl Fn(&NetEvent) -> bool) -> NetEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if want(&event) => return event,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("event channel closed while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Every event that arrives within `window`.
    async fn collect(&mut self, window: Duration) -> Vec<NetEvent> {
        let deadline = Instant::now() + window;
        let mut seen = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            seen.push(event);
        }
        seen
    }

    async fn connected_to(&mut self, peer: PeerId) {
        let what = format!("Connected {{ {peer} }}");
        self.expect(
            &what,
            |e| matches!(e, NetEvent::Connected { peer: p, .. } if *p == peer),
        )
        .await;
    }

    async fn message_from(&mut self, peer: PeerId) -> Vec<u8> {
        let what = format!("Message from {peer}");
        match self
            .expect(
                &what,
                |e| matches!(e, NetEvent::Message { from, .. } if *from == peer),
            )
            .await
        {
            NetEvent::Message { bytes, .. } => bytes,
            _ => unreachable!(),
        }
    }
}

fn config(key: [u8; 32], addr: SocketAddr, bootstrap: Vec<SocketAddr>) -> NetConfig {
    let mut cfg = NetConfig::new(Keypair::generate_ed25519(), key, addr);
    cfg.mdns = false;
    cfg.bootstrap = bootstrap;
    cfg
}

fn start(cfg: NetConfig) -> Node {
    let addr = cfg.listen;
    let keypair = cfg.keypair.clone();
    let (handle, events) = spawn(cfg).expect("spawn");
    Node {
        handle,
        events,
        addr,
        keypair,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_nodes_connect_and_exchange_messages_both_ways() {
    let (addr_a, addr_b) = (free_addr(), free_addr());
    // Each bootstraps to the other, so both dial at once.
    let mut a = start(config(SITE_KEY, addr_a, vec![addr_b, addr_a]));
    let mut b = start(config(SITE_KEY, addr_b, vec![addr_a]));
    let (peer_a, peer_b) = (a.peer(), b.peer());

    let connected = a
        .expect("Connected at a", |e| {
            matches!(e, NetEvent::Connected { .. })
        })
        .await;
    let NetEvent::Connected { peer, remote } = connected else {
        unreachable!()
    };
    assert_eq!(peer, peer_b);
    assert!(
        remote.to_string().starts_with("/ip4/127.0.0.1/tcp/"),
        "{remote}"
    );
    b.connected_to(peer_a).await;

    a.handle.send(peer_b, b"ping".to_vec());
    assert_eq!(b.message_from(peer_a).await, b"ping");
    b.handle.send(peer_a, b"pong".to_vec());
    assert_eq!(a.message_from(peer_b).await, b"pong");

    // A burst in each direction arrives complete (order is not guaranteed).
    for i in 0..50u32 {
        a.handle.send(peer_b, i.to_be_bytes().to_vec());
        b.handle.send(peer_a, (1000 + i).to_be_bytes().to_vec());
    }
    let mut at_b = Vec::new();
    let mut at_a = Vec::new();
    for _ in 0..50 {
        at_b.push(b.message_from(peer_a).await);
        at_a.push(a.message_from(peer_b).await);
    }
    at_b.sort();
    at_a.sort();
    assert_eq!(
        at_b,
        (0..50u32)
            .map(|i| i.to_be_bytes().to_vec())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        at_a,
        (1000..1050u32)
            .map(|i| i.to_be_bytes().to_vec())
            .collect::<Vec<_>>()
    );

    // Crossing dials may leave two connections, but Connected fired once per side.
    let later = a.collect(Duration::from_millis(1500)).await;
    assert!(
        !later
            .iter()
            .any(|e| matches!(e, NetEvent::Connected { .. })),
        "{later:?}"
    );
    assert_eq!(a.handle.stats().connected_peers, 1);
    assert_eq!(b.handle.stats().connected_peers, 1);
    assert_eq!(a.handle.stats().messages_dropped, 0);

    // Shutting b down disconnects it from a.
    timeout(WAIT, b.handle.shutdown())
        .await
        .expect("shutdown finishes");
    a.expect(
        "Disconnected",
        |e| matches!(e, NetEvent::Disconnected { peer } if *peer == peer_b),
    )
    .await;
    assert_eq!(a.handle.stats().connected_peers, 0);

    // b restarts with the same identity on the same port: a's bootstrap re-dials it.
    let mut cfg = config(SITE_KEY, addr_b, Vec::new());
    cfg.keypair = b.keypair.clone();
    let mut b = start(cfg);
    a.connected_to(peer_b).await;
    b.connected_to(peer_a).await;
    a.handle.send(peer_b, b"again".to_vec());
    assert_eq!(b.message_from(peer_a).await, b"again");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_another_site_key_is_rejected_and_not_hammered() {
    let (addr_a, addr_b, addr_c) = (free_addr(), free_addr(), free_addr());
    let mut a = start(config(SITE_KEY, addr_a, vec![addr_b]));
    let mut b = start(config(SITE_KEY, addr_b, vec![]));
    // c holds another key and keeps dialling a (bootstrap).
    let mut c = start(config(OTHER_SITE_KEY, addr_c, vec![addr_a]));
    let peer_c = c.peer();

    b.connected_to(a.peer()).await;
    a.connected_to(b.peer()).await;
    // a learns c's address elsewhere and tries to send to it: a's own dial is rejected too.
    a.handle.add_address(peer_c, addr_c);
    a.handle.send(peer_c, b"secret".to_vec());

    let window = Duration::from_millis(4500);
    let (at_a, at_b, at_c) = tokio::join!(a.collect(window), b.collect(window), c.collect(window));

    let connected = |events: &[NetEvent]| {
        events
            .iter()
            .filter_map(|e| match e {
                NetEvent::Connected { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(!connected(&at_a).contains(&peer_c), "{at_a:?}");
    assert!(!connected(&at_b).contains(&peer_c), "{at_b:?}");
    assert!(connected(&at_c).is_empty(), "{at_c:?}");
    assert!(
        !at_c.iter().any(|e| matches!(e, NetEvent::Message { .. })),
        "{at_c:?}"
    );

    let rejections = |events: &[NetEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, NetEvent::HandshakeRejected { .. }))
            .count()
    };
    assert!(
        rejections(&at_c) >= 1,
        "c sees its dials rejected: {at_c:?}"
    );
    assert!(rejections(&at_a) >= 1, "a sees c rejected: {at_a:?}");
    // c's own dials to a are reported with a's address and name the cause.
    let addr_a_text = addr_a.to_string();
    assert!(
        at_c.iter().any(
            |e| matches!(e, NetEvent::HandshakeRejected { remote, error }
            if *remote == addr_a_text && error.contains("site key"))
        ),
        "{at_c:?}"
    );

    // Backoff 1 s, 2 s, 4 s: within ~4.5 s c dials a at most 3 times (plus a's dials to c).
    let stats = c.handle.stats();
    assert!(stats.handshakes_rejected >= 1);
    assert!(stats.handshakes_rejected <= 6, "c hammers a: {stats:?}");
    assert_eq!(stats.connected_peers, 0);
    assert_eq!(a.handle.stats().connected_peers, 1);

    for node in [&a, &b, &c] {
        node.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_without_breaking_the_link() {
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let mut cfg_a = config(SITE_KEY, addr_a, vec![addr_b]);
    cfg_a.max_message_bytes = 1024 * 1024;
    let mut cfg_b = config(SITE_KEY, addr_b, vec![]);
    cfg_b.max_message_bytes = 1024;
    let mut a = start(cfg_a);
    let mut b = start(cfg_b);
    let (peer_a, peer_b) = (a.peer(), b.peer());
    a.connected_to(peer_b).await;
    b.connected_to(peer_a).await;

    // Too big for b: b refuses it from the length prefix and closes that stream, which may
    // lose what a wrote behind it; a's next sends reopen the stream on the same connection.
    a.handle.send(peer_b, vec![0xee; 64 * 1024]);
    let deadline = Instant::now() + WAIT;
    let arrived = loop {
        assert!(
            Instant::now() < deadline,
            "no message after the refused one"
        );
        a.handle.send(peer_b, b"small".to_vec());
        let seen = b.collect(Duration::from_millis(100)).await;
        assert!(
            !seen
                .iter()
                .any(|e| matches!(e, NetEvent::Disconnected { .. })),
            "{seen:?}"
        );
        let mut messages = seen.into_iter().filter_map(|e| match e {
            NetEvent::Message { bytes, .. } => Some(bytes),
            _ => None,
        });
        if let Some(bytes) = messages.next() {
            break bytes;
        }
    };
    assert_eq!(arrived, b"small");
    let later = b.collect(Duration::from_millis(500)).await;
    assert!(
        !later
            .iter()
            .any(|e| matches!(e, NetEvent::Message { bytes, .. } if bytes.len() > 1024)),
        "{later:?}"
    );
    assert!(
        !later
            .iter()
            .any(|e| matches!(e, NetEvent::Disconnected { .. })),
        "{later:?}"
    );
    assert_eq!(b.handle.stats().connected_peers, 1);

    // Too big for b's own limit: dropped locally and counted.
    b.handle.send(peer_a, vec![0; 2048]);
    b.handle.send(peer_a, b"fits".to_vec());
    assert_eq!(a.message_from(peer_b).await, b"fits");
    assert_eq!(b.handle.stats().messages_dropped, 1);

    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_address_lets_send_dial_and_unknown_peers_are_dropped() {
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let mut a = start(config(SITE_KEY, addr_a, vec![]));
    let mut b = start(config(SITE_KEY, addr_b, vec![]));
    let (peer_a, peer_b) = (a.peer(), b.peer());

    // No address known: dropped and counted, nothing dialled.
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    a.handle.send(stranger, b"hello?".to_vec());
    let deadline = Instant::now() + WAIT;
    while a.handle.stats().messages_dropped < 1 {
        assert!(Instant::now() < deadline, "drop not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    a.handle.add_address(peer_b, b.addr);
    a.handle.send(peer_b, b"via membership".to_vec());
    assert_eq!(b.message_from(peer_a).await, b"via membership");
    a.connected_to(peer_b).await;
    // b learned a's listen address through identify and can answer after reconnecting.
    b.handle.send(peer_a, b"reply".to_vec());
    assert_eq!(a.message_from(peer_b).await, b"reply");
    let _ = a.addr;

    a.handle.shutdown().await;
    b.handle.shutdown().await;
    // Shutdown twice is harmless; sending afterwards is a counted drop.
    a.handle.shutdown().await;
    a.handle.send(peer_b, b"late".to_vec());
    assert_eq!(a.handle.stats().messages_dropped, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_reports_bad_configuration_clearly() {
    let addr = free_addr();
    let node = start(config(SITE_KEY, addr, vec![]));
    match spawn(config(SITE_KEY, addr, vec![])) {
        Err(error @ NetError::AddressInUse { .. }) => {
            assert!(error.to_string().contains(&addr.to_string()), "{error}");
            assert!(
                error.to_string().contains("address already in use"),
                "{error}"
            );
        }
        other => panic!("expected AddressInUse, got {:?}", other.map(|_| ())),
    }
    node.handle.shutdown().await;

    let any: SocketAddr = "0.0.0.0:7946".parse().expect("addr");
    let error = spawn(config(SITE_KEY, any, vec![]))
        .map(|_| ())
        .expect_err("unspecified");
    assert!(
        matches!(
            error,
            NetError::InvalidConfig {
                field: "listen",
                ..
            }
        ),
        "{error}"
    );

    let mut cfg = config(SITE_KEY, free_addr(), vec![]);
    cfg.max_message_bytes = 0;
    let error = spawn(cfg).map(|_| ()).expect_err("zero limit");
    assert!(error.to_string().contains("max_message_bytes"), "{error}");
}

#[test]
fn spawn_outside_a_runtime_is_an_error() {
    let error = spawn(config(SITE_KEY, free_addr(), vec![]))
        .map(|_| ())
        .expect_err("no runtime");
    assert!(matches!(error, NetError::NoRuntime), "{error}");
}

#[test]
fn node_ids_round_trip_through_peer_ids() {
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let key = muster_net::public_key_of(&peer).expect("ed25519");
    assert_eq!(muster_net::peer_id_of(&key), Some(peer));
    let id = muster_net::node_id_of(&muster_net::peer_id_of(&key).expect("peer"));
    assert_eq!(
        id,
        Some(u64::from_be_bytes(key[..8].try_into().expect("8")).max(1))
    );
}

#[test]
fn config_debug_does_not_print_the_site_key() {
    let cfg = config([0xab; 32], free_addr(), vec![]);
    let text = format!("{cfg:?}");
    assert!(text.contains("<redacted>"), "{text}");
    assert!(!text.contains("171, 171"), "{text}"); // 0xab bytes
    assert!(!text.contains("abab"), "{text}");
}

/// mDNS needs a non-loopback interface: run with
/// `MUSTER_NET_MDNS_IP=<address of a multicast-capable interface> cargo test -p muster-net -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a multicast-capable interface; set MUSTER_NET_MDNS_IP"]
async fn mdns_discovers_and_connects_peers() {
    let ip: std::net::IpAddr = std::env::var("MUSTER_NET_MDNS_IP")
        .expect("MUSTER_NET_MDNS_IP")
        .parse()
        .expect("an IP address");
    let addr = |port| SocketAddr::new(ip, port);
    let mut cfg_a = config(SITE_KEY, addr(free_addr().port()), vec![]);
    let mut cfg_b = config(SITE_KEY, addr(free_addr().port()), vec![]);
    cfg_a.mdns = true;
    cfg_b.mdns = true;
    let mut a = start(cfg_a);
    let mut b = start(cfg_b);
    let (peer_a, peer_b) = (a.peer(), b.peer());
    a.connected_to(peer_b).await;
    b.connected_to(peer_a).await;
    a.handle.send(peer_b, b"found you".to_vec());
    assert_eq!(b.message_from(peer_a).await, b"found you");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// Silently loses every loopback packet to or from `port`, as a cut cable would: an ingress
/// filter on `lo` redirects them into a veth whose peer is down. (Dropping on egress instead
/// would be seen by the sender as local congestion, which TCP's timeouts treat differently;
/// this kernel has neither netem nor the drop action.)
fn blackhole_port(port: u16) {
    let run = |program: &str, args: &str| {
        let status = std::process::Command::new(program)
            .args(args.split_whitespace())
            .status()
            .unwrap_or_else(|error| panic!("run {program}: {error}"));
        assert!(status.success(), "{program} {args}");
    };
    run("ip", "link add void0 type veth peer name void1");
    run("ip", "link set void0 up");
    run("tc", "qdisc add dev lo ingress");
    for field in ["dport", "sport"] {
        run(
            "tc",
            &format!(
                "filter add dev lo parent ffff: protocol ip u32 match ip {field} {port} 0xffff \
                 action mirred egress redirect dev void0"
            ),
        );
    }
}

fn restore_loopback() {
    for args in ["tc qdisc del dev lo ingress", "ip link del void0"] {
        let mut words = args.split_whitespace();
        let program = words.next().expect("program");
        let status = std::process::Command::new(program)
            .args(words)
            .status()
            .expect("run");
        assert!(status.success(), "{args}");
    }
}

/// A peer that goes silent without closing its sockets (power loss) is disconnected by TCP
/// keepalive / `TCP_USER_TIMEOUT` within about 20 s. Needs root and a throwaway network
/// namespace, because it rewires `lo`:
/// `unshare -n sh -c 'ip link set lo up && MUSTER_NET_PRIVATE_NETNS=1 <test binary> --ignored silent'`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root in a private network namespace; set MUSTER_NET_PRIVATE_NETNS=1"]
async fn silent_peer_is_disconnected_within_seconds() {
    assert_eq!(
        std::env::var("MUSTER_NET_PRIVATE_NETNS").as_deref(),
        Ok("1")
    );
    for idle in [true, false] {
        let (addr_a, addr_b) = (free_addr(), free_addr());
        let mut a = start(config(SITE_KEY, addr_a, vec![addr_b]));
        let mut b = start(config(SITE_KEY, addr_b, vec![]));
        let peer_b = b.peer();
        a.connected_to(peer_b).await;
        b.connected_to(a.peer()).await;

        blackhole_port(addr_b.port());
        let cut = Instant::now();
        if !idle {
            a.handle.send(peer_b, b"into the void".to_vec());
        }
        let gone = |e: &NetEvent| matches!(e, NetEvent::Disconnected { peer } if *peer == peer_b);
        let waited = timeout(Duration::from_secs(30), async {
            while let Some(event) = a.events.recv().await {
                if gone(&event) {
                    return;
                }
            }
        })
        .await;
        assert!(waited.is_ok(), "idle={idle}: no Disconnected within 30 s");
        eprintln!("idle={idle}: disconnected after {:?}", cut.elapsed());
        a.handle.shutdown().await;
        b.handle.shutdown().await;
        restore_loopback();
    }
}
