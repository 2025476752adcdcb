//! Seed inputs for every target, made from real encoded messages, real store files and real
//! key, identity and config files; `fuzz-seeds` writes them to `corpus/<target>/`.

use std::path::Path;

use muster_core::RaftStore as _;
use muster_proto::envelope::Body;
use muster_proto::{
    command, Command, ConfChangeContext, Envelope, Hello, JoinRequest, LockSite, Member, Noop,
    RemoveMember, RemoveRequest, SiteFormed,
};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType,
};

use crate::frames::frame;
use crate::{Site, StoreFiles};

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn framed(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        frame(&mut out, r);
    }
    out
}

fn raft(site: &Site, t: MessageType, f: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut m = Message::default();
    m.set_msg_type(t);
    m.from = site.leader;
    m.to = site.id();
    m.term = site.term;
    f(&mut m);
    site.raft_envelope(&m).encode_to_vec()
}

fn cmd(kind: command::Kind) -> Vec<u8> {
    Command { kind: Some(kind) }.encode_to_vec()
}

fn entry(t: EntryType, index: u64, term: u64, data: Vec<u8>) -> Entry {
    let mut e = Entry::default();
    e.set_entry_type(t);
    e.index = index;
    e.term = term;
    e.data = data.into();
    e
}

fn conf_change(id: u64, t: ConfChangeType, name: &str) -> Vec<u8> {
    let mut cc = ConfChangeV2::default();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(t);
    single.node_id = id;
    cc.changes.push(single);
    let ctx = ConfChangeContext {
        member: Some(Member {
            id,
            name: name.into(),
            address: format!("{name}:7946"),
            voter: false,
            joined_unix_ms: 5,
            public_key: vec![7; 32],
            ..Default::default()
        }),
        members: Vec::new(),
    };
    cc.context = ctx.encode_to_vec().into();
    cc.write_to_bytes()
        .expect("raft-rs encodes its own conf change")
}

/// Real envelopes as members and outsiders send them to the follower.
fn envelopes(site: &Site) -> Vec<(String, Vec<u8>)> {
    let state = site.disk.cache().applied.get_data().to_vec();
    let hello = Envelope {
        body: Some(Body::Hello(Hello {
            name: "h9".into(),
            address: "h9:7946".into(),
            cluster_id: site.cluster_id,
            member_count: 3,
            leader_id: site.leader,
            member_ids: site.members.clone(),
            public_key: vec![9; 32],
            locked: true,
            vip_held: true,
            formed: true,
            api_health: muster_proto::ApiHealth::Healthy as i32,
            agent_version: String::new(),
            protocol: muster_core::PROTOCOL,
            hello_interval_ms: 500,
        })),
    }
    .encode_to_vec();
    let join = Envelope {
        body: Some(Body::JoinRequest(JoinRequest {
            cluster_id: site.cluster_id,
            member: Some(Member {
                id: site.outsider,
                name: "h9".into(),
                address: "h9:7946".into(),
                ..Default::default()
            }),
        })),
    }
    .encode_to_vec();
    let remove = Envelope {
        body: Some(Body::RemoveRequest(RemoveRequest {
            cluster_id: site.cluster_id,
            node_id: site.id(),
            spare_id: 0,
        })),
    }
    .encode_to_vec();
    let last = site.disk.cache().last_index();
    let next = last + 1;
    let append_with = |first: Vec<u8>| {
        raft(site, MessageType::MsgAppend, |m| {
            m.index = last;
            m.log_term = site.term;
            m.commit = next + 1;
            m.entries = vec![
                entry(EntryType::EntryNormal, next, site.term, first),
                entry(
                    EntryType::EntryConfChangeV2,
                    next + 1,
                    site.term,
                    conf_change(99, ConfChangeType::AddLearnerNode, "h9"),
                ),
            ]
            .into();
        })
    };
    let append = append_with(cmd(command::Kind::Noop(Noop {})));
    let remove_self = append_with(cmd(command::Kind::RemoveMember(RemoveMember {
        id: site.id(),
        unix_ms: 9,
        spare_id: 0,
    })));
    let heartbeat = raft(site, MessageType::MsgHeartbeat, |m| m.commit = site.commit);
    let vote = raft(site, MessageType::MsgRequestPreVote, |m| {
        m.term = site.term + 1;
        m.index = last + 5;
        m.log_term = site.term;
    });
    let snapshot = raft(site, MessageType::MsgSnapshot, |m| {
        let mut s = site.disk.cache().applied.clone();
        s.mut_metadata().index = last + 10;
        s.mut_metadata().term = site.term;
        s.data = state.clone().into();
        m.set_snapshot(s);
    });
    let timeout = raft(site, MessageType::MsgTimeoutNow, |_| {});
    let read = raft(site, MessageType::MsgReadIndexResp, |m| {
        m.index = next + 3;
        m.entries = vec![entry(EntryType::EntryNormal, 0, 0, b"lease".to_vec())].into();
    });
    let propose = raft(site, MessageType::MsgPropose, |m| {
        m.entries = vec![entry(
            EntryType::EntryNormal,
            0,
            0,
            cmd(command::Kind::LockSite(LockSite { member_count: 3 })),
        )]
        .into();
    });
    vec![
        ("hello".into(), framed(std::slice::from_ref(&hello))),
        ("join".into(), framed(&[join, hello])),
        ("remove".into(), framed(&[remove])),
        ("append".into(), framed(&[heartbeat.clone(), append])),
        ("append-remove-self".into(), framed(&[remove_self])),
        ("heartbeat-vote".into(), framed(&[heartbeat, vote])),
        ("snapshot".into(), framed(&[snapshot])),
        (
            "timeout-read-propose".into(),
            framed(&[timeout, read, propose]),
        ),
    ]
}

/// A real store: the follower's kept image written by a `DiskStore`, and one compacted.
fn stores(site: &Site) -> Vec<(String, Vec<u8>)> {
    let cache = site.disk.cache();
    let dir = crate::scratch::fresh_dir("seed");
    let mut out = Vec::new();
    for (name, compact) in [("formed", false), ("compacted", true)] {
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut store = muster_store::DiskStore::open(&dir).expect("a new store opens");
            let applied = &cache.applied;
            let after: Vec<Entry> = cache
                .entries
                .iter()
                .filter(|e| e.index > applied.get_metadata().index)
                .cloned()
                .collect();
            let mut hs = cache.hard_state.clone();
            hs.commit = hs.commit.max(applied.get_metadata().index);
            store
                .persist(Some(applied), &after, Some(&hs))
                .expect("the follower's image persists");
            if compact {
                store
                    .compact(applied.get_metadata().index)
                    .expect("compacts");
            }
        }
        let files = StoreFiles::read(&dir).expect("store files read back");
        out.push((name.into(), files.encode()));
        let torn = StoreFiles {
            log: files.log.map(|mut l| {
                let n = l.len().saturating_sub(3);
                l.truncate(n);
                l
            }),
            ..StoreFiles::read(&dir).expect("store files read back")
        };
        out.push((format!("{name}-torn"), torn.encode()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    out.push(("empty".into(), StoreFiles::default().encode()));
    out
}

fn states(site: &Site) -> Vec<(String, Vec<u8>)> {
    let state = site.disk.cache().applied.get_data().to_vec();
    let fresh = muster_core::state::encode_state(&Default::default());
    let lock = [
        vec![1],
        cmd(command::Kind::LockSite(LockSite { member_count: 3 })),
    ]
    .concat();
    let formed = [
        vec![1],
        cmd(command::Kind::SiteFormed(SiteFormed {
            members: site.members.clone(),
            unix_ms: 5,
        })),
    ]
    .concat();
    let remove = [
        vec![1],
        cmd(command::Kind::RemoveMember(RemoveMember {
            id: site.leader,
            unix_ms: 6,
            spare_id: 0,
        })),
    ]
    .concat();
    let add = [
        vec![0],
        conf_change(99, ConfChangeType::AddLearnerNode, "h9"),
    ]
    .concat();
    let promote = [vec![0], conf_change(99, ConfChangeType::AddNode, "h9")].concat();
    let drop = [
        vec![0],
        conf_change(site.leader, ConfChangeType::RemoveNode, "h0"),
    ]
    .concat();
    vec![
        ("formed-site".into(), framed(&[state, remove.clone(), drop])),
        (
            "fresh".into(),
            framed(&[fresh, add, promote, lock, formed, remove]),
        ),
    ]
}

fn keys() -> Vec<(String, Vec<u8>)> {
    let key: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(5));
    let text = muster_net::format_site_key(&key);
    vec![
        ("site.key".into(), text.clone().into_bytes()),
        (
            "site-crlf.key".into(),
            text.replace('\n', "\r\n").into_bytes(),
        ),
    ]
}

fn identities() -> Vec<(String, Vec<u8>)> {
    let secret: [u8; 32] = core::array::from_fn(|i| i as u8 + 1);
    let key = libp2p::identity::Keypair::ed25519_from_bytes(secret).expect("a 32-byte secret");
    let bytes = key.to_protobuf_encoding().expect("ed25519 encodes");
    vec![("identity.key".into(), bytes)]
}

fn configs() -> Vec<(String, Vec<u8>)> {
    let example = include_str!("../../../deploy/muster.toml");
    let full = r#"[node]
name = "edge-1"
data_dir = "/var/lib/muster"
[site]
key_file = "/etc/muster/site.key"
expected_nodes = 3
control_plane_count = 3
[network]
interface = "eth0"
listen_port = 7946
bootstrap = ["10.0.0.2:7946", "[fd00::2]:7946"]
mdns = true
[rpc]
socket = "/run/muster/muster.sock"
[formation]
settle = "10s"
[timing]
tick = "20ms"
election_ticks = 10
heartbeat_ticks = 2
[vip]
address = "10.0.0.100/24"
address6 = "fd00::100/64"
[ddns]
server = "10.0.0.53:53"
zone = "site.example."
name = "api.site.example."
tsig_key_file = "/etc/muster/tsig.key"
"#;
    vec![
        ("deploy-muster.toml".into(), example.as_bytes().to_vec()),
        ("full.toml".into(), full.as_bytes().to_vec()),
    ]
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let site = Site::get();
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |target: &'static str, seeds: Vec<(String, Vec<u8>)>| {
        out.extend(seeds.into_iter().map(|(n, b)| (target, n, b)));
    };
    let env = envelopes(site);
    add("envelope_outsider", env.clone());
    add(
        "envelope_member",
        env.into_iter()
            .flat_map(|(n, b)| {
                [0u8, 1].map(|pick| (format!("{n}-from{pick}"), [vec![pick], b.clone()].concat()))
            })
            .collect(),
    );
    add("disk_store", stores(site));
    add("cluster_state", states(site));
    add("site_key", keys());
    add("identity", identities());
    add("config", configs());
    out
}

/// Writes every seed under `root/<target>/`.
pub fn write(root: &Path) -> std::io::Result<usize> {
    let seeds = all();
    for (target, name, bytes) in &seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(seeds.len())
}
