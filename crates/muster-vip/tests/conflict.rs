//! Real-kernel test of `ConflictWatch` in network namespaces made by `common::Lab` (needs root:
//! `ip netns`, veth, CAP_NET_RAW; `ping` from iputils).
//!
//! What it shows: while this host holds the VIP through `NetlinkVip` and a client talks to it,
//! the watcher sees this host's own announcements and ARP replies and reports none of them;
//! once a second host (the client namespace) also takes the address and announces it —
//! gratuitous ARP in both forms and an unsolicited NA, from its own MAC — the watcher reports
//! that MAC for both addresses within seconds, and goes on seeing it after this host released.

mod common;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use muster_vip::frames::{self, Mac};
use muster_vip::{format_mac, ConflictWatch, NetlinkVip, PacketSender, VipConfig, VipControl};

const VIP4: &str = "10.77.1.100";
const VIP6: &str = "fd77:1::100";
const CLIENT_MAC_BYTES: Mac = [0x02, 0x77, 0, 0, 0, 0x02];
const HOLDER_MAC_BYTES: Mac = [0x02, 0x77, 0, 0, 0, 0x01];
/// How long the quiet phase listens: past the +1.1 s and +2 s rounds of the default schedule.
const QUIET: Duration = Duration::from_millis(3000);

fn config() -> VipConfig {
    VipConfig::parse(IFACE, &["10.77.1.100/24", "fd77:1::100/64"]).unwrap()
}

/// The index of `eth0` in namespace `ns`.
fn ifindex(ns: &str) -> u32 {
    let out = ip_in(ns, &["-o", "link", "show", IFACE]).expect("ip link show");
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in {out:?}"))
}

/// Sends `frames` out of `eth0` in namespace `ns`, off the async thread.
async fn send_from(ns: &str, frames: Vec<Vec<u8>>) {
    let ns = ns.to_string();
    tokio::task::spawn_blocking(move || {
        let index = ifindex(&ns);
        in_netns(&ns, move || async move {
            let sender = PacketSender::open().unwrap();
            for frame in frames {
                sender.send(index, &frame).unwrap();
            }
        })
    })
    .await
    .unwrap();
}

/// `ping` from namespace `ns` to `address` (a few packets; the client resolves the VIP first).
async fn ping_from(ns: &str, address: &str) {
    let args = [
        "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", address,
    ]
    .map(String::from);
    let status = tokio::task::spawn_blocking(move || {
        Command::new("ip")
            .args(&args)
            .stdout(Stdio::null())
            .status()
    })
    .await
    .unwrap()
    .expect("running ping");
    assert!(status.success(), "ping {address}: {status}");
}

#[test]
fn another_mac_answering_for_the_vip_is_seen_and_our_own_is_not() {
    let _serial = serial();
    let lab = Lab::new("conflict");
    let client = lab.client.clone();
    in_netns(&lab.holder, move || async move {
        let watch = ConflictWatch::spawn(&config()).unwrap();
        let mut vip = NetlinkVip::new(config()).unwrap();
        let started = Instant::now();
        vip.acquire().await.unwrap();

        // Only this host answers: its announcement rounds, and its replies to the client.
        ping_from(&client, VIP4).await;
        ping_from(&client, VIP6).await;
        tokio::time::sleep(QUIET.saturating_sub(started.elapsed())).await;
        let stats = watch.stats();
        assert!(
            stats.own_frames >= 6,
            "the watcher saw too few of our own frames to show it listens: {stats:?}"
        );
        assert!(vip.stats().rounds >= 3, "{:?}", vip.stats());
        assert_eq!(watch.current(), vec![], "our own frames counted: {stats:?}");
        assert_eq!(stats.other_frames, 0);

        // A second host takes the address too and announces it from its own MAC.
        ip_async(&client, &["addr", "add", "10.77.1.100/24", "dev", IFACE])
            .await
            .unwrap();
        ip_async(
            &client,
            &["addr", "add", "fd77:1::100/64", "dev", IFACE, "nodad"],
        )
        .await
        .unwrap();
        let stolen = Instant::now();
        let (v4, v6) = (VIP4.parse().unwrap(), VIP6.parse().unwrap());
        send_from(&client, frames::round(CLIENT_MAC_BYTES, Some(v4), Some(v6))).await;
        let seen = eventually(WAIT, async || {
            let current = watch.current();
            [IpAddr::V4(v4), IpAddr::V6(v6)].iter().all(|address| {
                current
                    .iter()
                    .any(|s| s.mac == CLIENT_MAC_BYTES && s.address == *address)
            })
        })
        .await;
        let current = watch.current();
        assert!(
            seen,
            "the other MAC not reported: {current:?} {:?}",
            watch.stats()
        );
        eprintln!(
            "other MAC {} seen {:?} after it announced",
            format_mac(&CLIENT_MAC_BYTES),
            stolen.elapsed()
        );
        assert!(
            current.iter().all(|s| s.mac != HOLDER_MAC_BYTES),
            "{current:?}"
        );
        let v4_frames = |w: &ConflictWatch| {
            w.current()
                .iter()
                .find(|s| s.address == IpAddr::V4(v4))
                .map_or(0, |s| s.frames)
        };
        assert_eq!(v4_frames(&watch), 2, "request and reply: {current:?}");

        // Not holding any more: the watcher still reports who answers.
        vip.release().await.unwrap();
        send_from(
            &client,
            vec![frames::garp_reply(CLIENT_MAC_BYTES, v4).to_vec()],
        )
        .await;
        assert!(
            eventually(WAIT, async || v4_frames(&watch) == 3).await,
            "{:?}",
            watch.current()
        );
        assert_eq!(watch.stats().binds, 1);
        watch.stop();
    });
}
