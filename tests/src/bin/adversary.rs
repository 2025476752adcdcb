//! `muster-adversary`: a host that holds the site key but was never admitted, for end-to-end tests.
//!
//! It connects to the given agents over the real transport (TCP → pnet with the site key → noise
//! → yamux), learns from their hellos which cluster they are in and who leads it, and for
//! `--seconds` sends crafted messages every `--every-ms` to each connected agent: proposals
//! (the empty one that reaches a raft-rs `fatal!`, and one carrying an entry no member can
//! apply), appends/heartbeats/snapshots of higher terms (up to 2^62), TimeoutNow,
//! ReadIndexResp, vote requests, raft messages claiming the leader's id, undecodable and deeply
//! nested bytes, hellos that claim a bigger formed cluster, a squatter's hello with an invalid
//! name, and join requests whose member does not match its key. It never asks to join validly (it
//! would be admitted: holding the key, it may join). At the end it prints one JSON object:
//! what it sent, by kind, and what it saw.
//!
//! Usage: `muster-adversary --key SITE_KEY --listen IP:PORT --peer IP:PORT [--peer ..]
//!         [--seconds 10] [--every-ms 20]`

// raft-rs's rust-protobuf 2 types are built by assigning fields to a default value.
#![allow(clippy::field_reassign_with_default)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use muster_net::{Keypair, NetConfig, NetEvent, PeerId};
use muster_proto::envelope::Body;
use muster_proto::{Envelope, Hello, JoinRequest, Member, RaftMessage};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Entry, EntryType, Message, MessageType};
use rand::Rng;

struct Args {
    key: std::path::PathBuf,
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
    seconds: u64,
    every_ms: u64,
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let (mut key, mut listen, mut peers) = (None, None, Vec::new());
    let (mut seconds, mut every_ms) = (10, 20);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag}: missing value"));
        match flag.as_str() {
            "--key" => key = Some(value()?.into()),
            "--listen" => listen = Some(value()?.parse().context("--listen: ip:port")?),
            "--peer" => peers.push(value()?.parse().context("--peer: ip:port")?),
            "--seconds" => seconds = value()?.parse().context("--seconds")?,
            "--every-ms" => every_ms = value()?.parse().context("--every-ms")?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        key: key.context("--key is required")?,
        listen: listen.context("--listen is required")?,
        peers,
        seconds,
        every_ms: every_ms.max(1),
    })
}

/// What the adversary learnt of one agent.
#[derive(Default, Clone)]
struct Seen {
    node_id: u64,
    hello: Option<Hello>,
}

struct Adversary {
    id: u64,
    public_key: Vec<u8>,
    peers: HashMap<PeerId, Seen>,
    sent: BTreeMap<&'static str, u64>,
    rng: rand::rngs::StdRng,
}

impl Adversary {
    fn cluster(&self) -> u64 {
        self.peers
            .values()
            .filter_map(|s| s.hello.as_ref())
            .map(|h| h.cluster_id)
            .find(|c| *c != 0)
            .unwrap_or(0)
    }

    fn leader(&self) -> u64 {
        self.peers
            .values()
            .filter_map(|s| s.hello.as_ref())
            .map(|h| h.leader_id)
            .find(|l| *l != 0)
            .unwrap_or(0)
    }

    fn raft(&self, to: u64, t: MessageType, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.from = self.id;
        m.to = to;
        m.term = term;
        m
    }

    /// One crafted message for the agent `to`, with the name of its kind.
    fn craft(&mut self, to: u64) -> (&'static str, Envelope) {
        let cluster = self.cluster();
        let leader = self.leader();
        let raft_env = |m: &Message| {
            Body::Raft(RaftMessage {
                cluster_id: cluster,
                message: m.write_to_bytes().unwrap_or_default(),
            })
        };
        let kind = self.rng.random_range(0..14);
        let r: u64 = self.rng.random();
        let (small, mid, big) = (1 + r % 20, 2 + r % 48, 2 + r % 998);
        let (name, body) = match kind {
            0 => (
                "empty proposal",
                raft_env(&self.raft(to, MessageType::MsgPropose, 0)),
            ),
            1 => {
                let mut m = self.raft(to, MessageType::MsgPropose, 0);
                let mut e = Entry::default();
                e.set_entry_type(EntryType::EntryConfChange);
                e.data = vec![0xff; 16].into();
                m.mut_entries().push(e);
                ("proposal of an unappliable entry", raft_env(&m))
            }
            2 => {
                let mut m = self.raft(to, MessageType::MsgAppend, mid);
                m.index = 1_000;
                m.log_term = m.term;
                m.commit = 1 << 40;
                let mut e = Entry::default();
                e.term = m.term;
                e.index = 1_001;
                e.data = vec![1, 2, 3].into();
                m.mut_entries().push(e);
                ("higher-term append", raft_env(&m))
            }
            3 => (
                "heartbeat near 2^62",
                raft_env(&self.raft(to, MessageType::MsgHeartbeat, (1 << 62) + 7)),
            ),
            4 => {
                let mut m = self.raft(to, MessageType::MsgSnapshot, 99);
                let s = m.mut_snapshot();
                s.data = vec![0xff; 32].into();
                s.mut_metadata().index = 5_000;
                s.mut_metadata().term = 99;
                s.mut_metadata().mut_conf_state().voters = vec![self.id];
                ("snapshot of a made-up state", raft_env(&m))
            }
            5 => (
                "timeout-now",
                raft_env(&self.raft(to, MessageType::MsgTimeoutNow, small)),
            ),
            6 => {
                let mut m = self.raft(to, MessageType::MsgReadIndexResp, small);
                m.index = 1 << 40;
                ("forged read-index response", raft_env(&m))
            }
            7 => {
                let mut m = self.raft(to, MessageType::MsgRequestVote, big);
                m.index = 1 << 40;
                m.log_term = m.term;
                ("vote request", raft_env(&m))
            }
            8 => {
                let mut m = self.raft(to, MessageType::MsgAppend, 50);
                m.from = leader;
                ("append claiming the leader's id", raft_env(&m))
            }
            9 => {
                let mut deep = [0xa3u8, 0x01].repeat(50_000);
                deep.extend([0xa4u8, 0x01].repeat(50_000));
                (
                    "deeply nested raft bytes",
                    Body::Raft(RaftMessage {
                        cluster_id: cluster,
                        message: deep,
                    }),
                )
            }
            10 => (
                "undecodable raft bytes",
                Body::Raft(RaftMessage {
                    cluster_id: cluster,
                    message: (0..64).map(|_| self.rng.random()).collect(),
                }),
            ),
            11 => (
                "hello claiming a bigger formed cluster",
                Body::Hello(Hello {
                    name: "bigger".into(),
                    address: "10.77.0.250:7946".into(),
                    cluster_id: self.rng.random(),
                    member_count: 1_000,
                    leader_id: self.id,
                    member_ids: (0..4_000).map(|_| self.rng.random()).collect(),
                    public_key: self.public_key.clone(),
                    locked: true,
                    vip_held: true,
                    formed: true,
                    api_health: muster_proto::ApiHealth::Healthy as i32,
                    agent_version: String::new(),
                    protocol: 2,
                    // Claims to stay reachable for weeks without a word (believed up to 120 s).
                    hello_interval_ms: u32::MAX,
                }),
            ),
            12 => (
                "hello with an invalid name",
                Body::Hello(Hello {
                    name: "x".repeat(10_000),
                    public_key: self.public_key.clone(),
                    ..Default::default()
                }),
            ),
            _ => {
                let mut wrong = self.public_key.clone();
                wrong[0] ^= 0x80;
                (
                    "join request with another key",
                    Body::JoinRequest(JoinRequest {
                        cluster_id: cluster,
                        member: Some(Member {
                            id: self.id,
                            name: "adversary".into(),
                            address: "10.77.0.250:7946".into(),
                            voter: true,
                            joined_unix_ms: 0,
                            public_key: wrong,
                            ..Default::default()
                        }),
                    }),
                )
            }
        };
        (name, Envelope { body: Some(body) })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let psk = muster_net::parse_site_key(&text).context("site key")?;
    let keypair = Keypair::generate_ed25519();
    let public_key = keypair
        .public()
        .try_into_ed25519()
        .context("ed25519 identity")?
        .to_bytes()
        .to_vec();
    let mut cfg = NetConfig::new(keypair, psk, args.listen);
    cfg.mdns = false;
    cfg.bootstrap = args.peers.clone();
    let (net, mut events) = muster_net::spawn(cfg).context("starting the transport")?;
    let id = muster_net::node_id_of(&net.local_peer_id()).context("own id")?;
    let mut adv = Adversary {
        id,
        public_key,
        peers: HashMap::new(),
        sent: BTreeMap::new(),
        rng: rand::SeedableRng::seed_from_u64(id),
    };
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(args.every_ms));
    let mut hellos = 0u64;
    while Instant::now() < end {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(NetEvent::Connected { peer, .. }) => {
                    let node_id = muster_net::node_id_of(&peer).unwrap_or(0);
                    adv.peers.entry(peer).or_default().node_id = node_id;
                }
                Some(NetEvent::Disconnected { peer }) => { adv.peers.remove(&peer); }
                Some(NetEvent::Message { from, bytes }) => {
                    if let Ok(Envelope { body: Some(Body::Hello(h)) }) = Envelope::decode(bytes.as_slice()) {
                        hellos += 1;
                        if let Some(s) = adv.peers.get_mut(&from) { s.hello = Some(h); }
                    }
                }
                Some(NetEvent::HandshakeRejected { .. }) => {}
                None => bail!("the transport stopped"),
            },
            _ = tick.tick() => {
                let targets: Vec<(PeerId, u64)> = adv.peers.iter().map(|(p, s)| (*p, s.node_id)).collect();
                for (peer, to) in targets {
                    let (kind, envelope) = adv.craft(to);
                    *adv.sent.entry(kind).or_default() += 1;
                    net.send(peer, envelope.encode_to_vec());
                }
            }
        }
    }
    let report = serde_json::json!({
        "adversary_id": format!("{id:016x}"),
        "cluster_id": format!("{:016x}", adv.cluster()),
        "leader_id": format!("{:016x}", adv.leader()),
        "hellos_received": hellos,
        "sent": adv.sent,
        "sent_total": adv.sent.values().sum::<u64>(),
    });
    println!("{report}");
    net.shutdown().await;
    Ok(())
}
