//! Real-kernel tests of `NetlinkVip` and the announcement frames, in network namespaces made by
//! `common::Lab` (needs root: `ip netns`, veth, CAP_NET_ADMIN/CAP_NET_RAW).
//!
//! What they show: the addresses really appear (IPv6 with `nodad`) and disappear, idempotently;
//! the watcher puts back an address that something else deleted; the lease fence removes the VIP
//! when its lease ends during a stalled event loop and nothing puts it back; `release_now` removes
//! it at once and for good; the addresses carry a kernel lifetime that the holder renews
//! (announcing nothing) and that removes them by itself once the holder is gone without a
//! release; and a second Linux kernel —
//! the client namespace — accepts our gratuitous ARP (both forms) and unsolicited NA into its
//! neighbour cache, including inside its ARP `locktime`, while near-miss variants are refused.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use muster_vip::frames::{self, Mac};
use muster_vip::{
    AnnounceSchedule, Fence, NetlinkVip, PacketSender, VipConfig, VipControl,
    VIP_ADDRESS_LIFETIME_S,
};
use tokio::io::AsyncWriteExt;

const VIP4: &str = "10.77.1.100";
const VIP6: &str = "fd77:1::100";
const SENTINEL4: &str = "10.77.1.101";
const SENTINEL6: &str = "fd77:1::101";
const HOLDER_MAC_BYTES: Mac = [0x02, 0x77, 0, 0, 0, 0x01];
const PORT: u16 = 7700;

fn config() -> VipConfig {
    VipConfig::parse(IFACE, &["10.77.1.100/24", "fd77:1::100/64"]).unwrap()
}

/// `config` announcing once per (re)acquisition and polling only every minute: a new round or a
/// quick restore can then only come from an event.
fn single_round(mut config: VipConfig) -> VipConfig {
    config.announce = AnnounceSchedule {
        burst: vec![Duration::ZERO],
        period: None,
    };
    config.watch_interval = Duration::from_secs(60);
    config
}

#[test]
fn acquire_and_release_are_idempotent() {
    let _serial = serial();
    let lab = Lab::new("idem");
    let ns = lab.holder.clone();
    in_netns(&lab.holder, move || async move {
        let mut vip = NetlinkVip::new(config()).unwrap();
        assert!(!vip.is_present().await.unwrap());

        vip.acquire().await.unwrap();
        vip.acquire().await.unwrap();
        assert!(vip.is_present().await.unwrap());
        assert!(vip.is_held());
        let v4 = ip_async(&ns, &["-4", "addr", "show", "dev", IFACE])
            .await
            .unwrap();
        assert_eq!(v4.matches("inet 10.77.1.100/24").count(), 1, "{v4}");
        assert!(v4.contains("eth0:vip"), "label: {v4}");
        let v6 = ip_async(&ns, &["-6", "addr", "show", "dev", IFACE])
            .await
            .unwrap();
        let line = v6
            .lines()
            .find(|l| l.contains("fd77:1::100/64"))
            .expect(&v6);
        assert!(line.contains("nodad"), "{line}");
        assert!(!line.contains("tentative"), "{line}");
        assert!(
            eventually(WAIT, async || vip.stats().rounds >= 1).await,
            "first round"
        );
        assert_eq!(vip.stats().send_errors, 0);

        vip.release().await.unwrap();
        vip.release().await.unwrap();
        assert!(!vip.is_present().await.unwrap());
        assert!(!vip.is_held());
        let v4 = ip_async(&ns, &["-4", "addr", "show", "dev", IFACE])
            .await
            .unwrap();
        assert!(!v4.contains(VIP4) && v4.contains("10.77.1.1/24"), "{v4}");
        let v6 = ip_async(&ns, &["-6", "addr", "show", "dev", IFACE])
            .await
            .unwrap();
        assert!(!v6.contains(VIP6) && v6.contains("fd77:1::1/64"), "{v6}");

        // The default schedule has a round at +1.1 s: released, none may go out.
        let rounds = vip.stats().rounds;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(vip.stats().rounds, rounds, "announcing after release");
    });
}

#[test]
fn missing_interface_is_named() {
    let _serial = serial();
    let lab = Lab::new("noif");
    in_netns(&lab.holder, || async {
        let config = VipConfig::parse("nosuch0", &["10.77.1.100/24"]).unwrap();
        let mut vip = NetlinkVip::new(config).unwrap();
        let error = vip.acquire().await.unwrap_err();
        assert_eq!(error.to_string(), "interface nosuch0 not found");
        assert!(!vip.is_present().await.unwrap());
        vip.release().await.unwrap();
    });
}

#[test]
fn watcher_restores_an_externally_removed_address() {
    let _serial = serial();
    let lab = Lab::new("watch");
    let ns = lab.holder.clone();
    in_netns(&lab.holder, move || async move {
        // One round per (re)acquisition, so a new round can only come from a restore; a poll
        // interval far beyond the waits, so a quick restore can only come from the event path.
        let config = single_round(config());
        let mut vip = NetlinkVip::new(config).unwrap();
        vip.acquire().await.unwrap();
        assert!(eventually(WAIT, async || vip.stats().rounds == 1).await);

        for (n, (address, family)) in [("10.77.1.100/24", "-4"), ("fd77:1::100/64", "-6")]
            .into_iter()
            .enumerate()
        {
            let started = Instant::now();
            ip_async(&ns, &[family, "addr", "del", address, "dev", IFACE])
                .await
                .unwrap();
            let expected = n as u64 + 1;
            let restored = eventually(WAIT, async || {
                vip.restored_count() == expected && vip.is_present().await.unwrap()
            })
            .await;
            assert!(restored, "{address} not restored: {:?}", vip.stats());
            eprintln!("{address} restored after {:?}", started.elapsed());
            let round = expected + 1;
            assert!(
                eventually(WAIT, async || vip.stats().rounds == round).await,
                "no re-announcement after restoring {address}: {:?}",
                vip.stats()
            );
        }
        let v6 = ip_async(&ns, &["-6", "addr", "show", "dev", IFACE])
            .await
            .unwrap();
        let line = v6
            .lines()
            .find(|l| l.contains("fd77:1::100/64"))
            .expect(&v6);
        assert!(line.contains("nodad"), "restored with nodad: {line}");

        vip.release().await.unwrap();
        assert!(!vip.is_present().await.unwrap());
        assert_eq!(vip.restored_count(), 2, "release must not count as a loss");
    });
}

/// A link flap while holding: the IPv4 address stays through it, and when the link carries
/// traffic again the holder re-announces at once (the schedule here has a single round, so a
/// second round can only come from the link-up event).
#[test]
fn link_flap_is_reannounced() {
    let _serial = serial();
    let lab = Lab::new("flap");
    let ns = lab.holder.clone();
    in_netns(&lab.holder, move || async move {
        let config = single_round(VipConfig::parse(IFACE, &["10.77.1.100/24"]).unwrap());
        let mut vip = NetlinkVip::new(config).unwrap();
        vip.acquire().await.unwrap();
        assert!(eventually(WAIT, async || vip.stats().rounds == 1).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(vip.stats().rounds, 1, "a single-round schedule");

        ip_async(&ns, &["link", "set", IFACE, "down"])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(vip.stats().rounds, 1, "nothing announced while down");
        let up = Instant::now();
        ip_async(&ns, &["link", "set", IFACE, "up"]).await.unwrap();
        assert!(
            eventually(WAIT, async || vip.stats().rounds == 2).await,
            "no re-announcement after the link came back: {:?}",
            vip.stats()
        );
        eprintln!("re-announced {:?} after link up", up.elapsed());
        assert!(vip.is_present().await.unwrap());
        assert_eq!(
            vip.restored_count(),
            0,
            "the IPv4 address stays through a flap"
        );
        vip.release().await.unwrap();
    });
}

/// The lease fence: the event loop stalls (a blocking call on this current-thread runtime, so the
/// holder task cannot run either) past the lease end it armed; the fence thread removes the VIP
/// at the lease end, not before, and the holder task does not put it back afterwards.
#[test]
fn fence_removes_the_vip_when_the_lease_ends_during_a_stall() {
    let _serial = serial();
    let lab = Lab::new("fence");
    let ns = lab.holder.clone();
    in_netns(&lab.holder, move || async move {
        let mut config = config();
        config.watch_interval = Duration::from_millis(200);
        let fence = Fence::spawn(config.clone()).unwrap();
        let mut vip = NetlinkVip::new(config).unwrap();
        vip.use_fence(&fence);
        let v4_present = || {
            ip_in(&ns, &["-4", "addr", "show", "dev", IFACE])
                .unwrap()
                .contains(VIP4)
        };

        // Renewed leases keep it; a disarmed fence never fires.
        fence.arm(Instant::now() + Duration::from_millis(300));
        vip.acquire().await.unwrap();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            fence.arm(Instant::now() + Duration::from_millis(300));
        }
        assert!(vip.is_present().await.unwrap(), "renewed lease");
        fence.disarm();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(vip.is_present().await.unwrap(), "disarmed fence fired");
        assert_eq!(fence.fired(), 0);

        // Stall: armed for 400 ms, then this thread blocks polling the kernel with `ip`. The
        // fence first sleeps towards a deadline a minute away, so the 400 ms must wake it (a
        // later deadline does not; a sooner one must).
        fence.arm(Instant::now() + Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50));
        let armed = Instant::now();
        fence.arm(armed + Duration::from_millis(400));
        let mut gone_after = None;
        while armed.elapsed() < Duration::from_secs(5) {
            if !v4_present() {
                gone_after = Some(armed.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let gone_after = gone_after.expect("the fence did not remove the VIP during the stall");
        eprintln!("fence removed the VIP {gone_after:?} after arming for 400 ms");
        assert!(
            gone_after >= Duration::from_millis(400),
            "removed before the lease end"
        );
        assert_eq!(fence.fired(), 1);
        assert!(!fence.may_hold());
        let v6 = ip_in(&ns, &["-6", "addr", "show", "dev", IFACE]).unwrap();
        assert!(!v6.contains(VIP6), "{v6}");

        // The loop resumes: its holder task sees the address gone and must not re-add it.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            !vip.is_present().await.unwrap(),
            "re-added after the fence fired"
        );
        assert_eq!(vip.restored_count(), 0);
        // An acquire after the lease ended is refused and leaves nothing behind.
        assert!(vip.acquire().await.is_err());
        assert!(!vip.is_present().await.unwrap());
        vip.release().await.unwrap();
    });
}

/// The poll path: no netlink event reports a MAC change of the holder's interface, so only the
/// periodic check can notice it and re-announce the VIP at the new address.
#[test]
fn mac_change_is_reannounced() {
    const NEW_MAC: &str = "02:77:00:00:00:03";
    let _serial = serial();
    let lab = Lab::new("mac");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = spawn_in_netns(&lab.holder, move || async move {
        let mut config = config();
        config.announce = AnnounceSchedule {
            burst: vec![Duration::ZERO],
            period: None,
        };
        config.watch_interval = Duration::from_millis(200);
        let mut vip = NetlinkVip::new(config).unwrap();
        vip.acquire().await.unwrap();
        assert!(eventually(WAIT, async || vip.stats().rounds == 1).await);
        ready_tx.send(()).unwrap();
        let _ = done_rx.await;
        vip.release().await.unwrap();
        vip.stats()
    });
    ready_rx.recv_timeout(WAIT).expect("holder ready");

    lab.poison_client(VIP4, "stale");
    lab.poison_client(VIP6, "reachable");
    ip_in(&lab.holder, &["link", "set", IFACE, "address", NEW_MAC]).unwrap();
    for vip in [VIP4, VIP6] {
        let repointed = wait_until(WAIT, || {
            lab.client_neighbour(vip).as_deref() == Some(NEW_MAC)
        });
        assert!(
            repointed,
            "client still has {:?} for {vip}",
            lab.client_neighbour(vip)
        );
    }

    done_tx.send(()).unwrap();
    let stats = holder
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!((stats.rounds, stats.restored), (2, 0), "{stats:?}");
}

/// Full path: the client's cache points the VIP at a wrong MAC; acquiring on the holder fixes
/// it for IPv4 and IPv6, and the client then reaches a TCP service on the VIP.
#[test]
fn announcements_repoint_the_clients_cache() {
    let _serial = serial();
    let lab = Lab::new("ann");
    lab.poison_client(VIP4, "stale");
    lab.poison_client(VIP6, "reachable");

    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = spawn_in_netns(&lab.holder, move || async move {
        let mut vip = NetlinkVip::new(config()).unwrap();
        vip.acquire().await.unwrap();
        for address in [format!("{VIP4}:{PORT}"), format!("[{VIP6}]:{PORT}")] {
            let listener = tokio::net::TcpListener::bind(&address).await.unwrap();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let _ = stream.write_all(b"vip\n").await;
                }
            });
        }
        ready_tx.send(()).unwrap();
        let _ = done_rx.await;
        vip.release().await.unwrap();
        vip.stats()
    });
    ready_rx.recv_timeout(WAIT).expect("holder ready");

    for vip in [VIP4, VIP6] {
        let repointed = wait_until(WAIT, || {
            lab.client_neighbour(vip).as_deref() == Some(HOLDER_MAC)
        });
        assert!(
            repointed,
            "client still has {:?} for {vip}",
            lab.client_neighbour(vip)
        );
    }
    let greetings = in_netns(&lab.client, || async {
        let mut greetings = Vec::new();
        for address in [format!("{VIP4}:{PORT}"), format!("[{VIP6}]:{PORT}")] {
            let address: SocketAddr = address.parse().unwrap();
            let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("client cannot reach {address}: {e}"));
            let mut text = String::new();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.read_to_string(&mut text).unwrap();
            greetings.push(text);
        }
        greetings
    });
    assert_eq!(greetings, ["vip\n", "vip\n"]);

    done_tx.send(()).unwrap();
    let stats = holder
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!(stats.send_errors, 0);
    assert!(stats.rounds >= 1);
}

/// Each frame alone, with the client's ARP locktime at 1000 s so that only a frame the kernel
/// classifies as gratuitous can change an entry; near-miss variants are shown to be refused.
#[test]
fn each_form_is_accepted_inside_locktime() {
    let _serial = serial();
    let lab = Lab::new("form");
    ip_in(
        &lab.client,
        &[
            "ntable",
            "change",
            "name",
            "arp_cache",
            "dev",
            IFACE,
            "locktime",
            "1000000",
        ],
    )
    .unwrap();
    let ifindex = lab.holder_ifindex();
    let send = |frames: Vec<Vec<u8>>| {
        in_netns(&lab.holder, move || async move {
            let sender = PacketSender::open().unwrap();
            for frame in frames {
                sender.send(ifindex, &frame).unwrap();
            }
        })
    };
    let accepted = |ip: &str| {
        wait_until(WAIT, || {
            lab.client_neighbour(ip).as_deref() == Some(HOLDER_MAC)
        })
    };
    let (vip4, sentinel4) = (VIP4.parse().unwrap(), SENTINEL4.parse().unwrap());
    let (vip6, sentinel6) = (VIP6.parse().unwrap(), SENTINEL6.parse().unwrap());

    // ARP request with sender IP = target IP.
    lab.poison_client(VIP4, "stale");
    send(vec![frames::garp_request(HOLDER_MAC_BYTES, vip4).to_vec()]);
    assert!(accepted(VIP4), "gratuitous ARP request refused");

    // ARP reply with sender IP = target IP and target MAC = sender MAC.
    lab.poison_client(VIP4, "stale");
    send(vec![frames::garp_reply(HOLDER_MAC_BYTES, vip4).to_vec()]);
    assert!(accepted(VIP4), "gratuitous ARP reply refused");

    // Control: a reply whose target MAC is zero is not gratuitous and must wait out locktime.
    // The sentinel (a proper frame sent after it) shows the client has processed it.
    lab.poison_client(VIP4, "stale");
    lab.poison_client(SENTINEL4, "stale");
    let mut not_garp = frames::garp_reply(HOLDER_MAC_BYTES, vip4);
    not_garp[32..38].fill(0);
    send(vec![
        not_garp.to_vec(),
        frames::garp_request(HOLDER_MAC_BYTES, sentinel4).to_vec(),
    ]);
    assert!(accepted(SENTINEL4));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        lab.client_neighbour(VIP4).as_deref(),
        Some(WRONG_MAC),
        "locktime not in force"
    );

    // Unsolicited NA with the override flag replaces even a REACHABLE entry.
    lab.poison_client(VIP6, "reachable");
    send(vec![frames::unsolicited_na(HOLDER_MAC_BYTES, vip6).to_vec()]);
    assert!(accepted(VIP6), "unsolicited NA refused");

    // Control: the same NA without the override flag must not replace it.
    lab.poison_client(VIP6, "reachable");
    lab.poison_client(SENTINEL6, "reachable");
    let mut no_override = frames::unsolicited_na(HOLDER_MAC_BYTES, vip6);
    no_override[58] = 0;
    no_override[56..58].fill(0);
    let checksum = frames::icmpv6_checksum(vip6, frames::ALL_NODES, &no_override[54..]);
    no_override[56..58].copy_from_slice(&checksum.to_be_bytes());
    send(vec![
        no_override.to_vec(),
        frames::unsolicited_na(HOLDER_MAC_BYTES, sentinel6).to_vec(),
    ]);
    assert!(accepted(SENTINEL6));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        lab.client_neighbour(VIP6).as_deref(),
        Some(WRONG_MAC),
        "override ignored"
    );
}

/// The lifetime the kernel shows for `addr` in namespace `ns` (`valid_lft` seconds), `None` for
/// `forever` or when the address is not there.
fn valid_lft(ns: &str, addr: &str) -> Option<u32> {
    let out = ip_in(ns, &["-d", "addr", "show", "dev", IFACE]).ok()?;
    let mut lines = out
        .lines()
        .skip_while(|l| !l.contains(&format!(" {addr}/")));
    lines.next()?;
    let detail = lines.next()?;
    let value = detail
        .split_whitespace()
        .skip_while(|w| *w != "valid_lft")
        .nth(1)?;
    value.strip_suffix("sec")?.parse().ok()
}

/// Address lifetimes, as a SIGKILLed holder meets them: an acquired address (both families)
/// carries a finite `valid_lft`; the holder's renewals keep it through three lifetimes without a
/// single extra announcement (a single-round schedule, and a client counting ARP/NA frames from
/// the holder); once the holder is dropped without a release — its tasks stop, as after SIGKILL
/// — the kernel deletes both addresses by itself within the lifetime + 1.5 s.
#[test]
fn address_lifetime_is_renewed_while_held_and_runs_out_after() {
    let _serial = serial();
    let lab = Lab::new("lft");
    let ns = lab.holder.clone();
    let client = lab.client.clone();
    in_netns(&lab.holder, move || async move {
        let lifetime = Duration::from_secs(u64::from(VIP_ADDRESS_LIFETIME_S));
        let mut vip = NetlinkVip::new(single_round(config())).unwrap();
        // The counter sees the one round of the acquire (ARP request, reply and NA)...
        let first = count_announcements(&client, HOLDER_MAC_BYTES, Duration::from_millis(800));
        tokio::time::sleep(Duration::from_millis(200)).await;
        vip.acquire().await.unwrap();
        assert!(eventually(WAIT, async || vip.stats().rounds == 1).await);
        let first = first.join().unwrap().unwrap();
        assert_eq!(first, 3, "frames of the acquire's round");
        for addr in [VIP4, VIP6] {
            let lft = valid_lft(&ns, addr);
            assert!(
                lft.is_some_and(|s| s <= VIP_ADDRESS_LIFETIME_S),
                "{addr}: valid_lft {lft:?}, expected a finite lifetime of at most \
                 {VIP_ADDRESS_LIFETIME_S} s"
            );
        }

        // ...and none of the renewals.
        let frames = count_announcements(&client, HOLDER_MAC_BYTES, 3 * lifetime);
        let held = Instant::now();
        while held.elapsed() < 3 * lifetime {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                vip.is_present().await.unwrap(),
                "the VIP expired while held, after {:?}",
                held.elapsed()
            );
        }
        let frames = frames.join().unwrap().unwrap();
        assert_eq!(frames, 0, "renewals sent announcement frames");
        assert_eq!(vip.stats().rounds, 1, "renewals restarted the schedule");
        assert_eq!(vip.restored_count(), 0, "renewals counted as restores");
        let lft = valid_lft(&ns, VIP4);
        assert!(
            lft.is_some_and(|s| s >= 1),
            "valid_lft {lft:?} after renewals"
        );

        drop(vip);
        let dropped = Instant::now();
        assert!(
            ip_in(&ns, &["addr", "show", "dev", IFACE])
                .unwrap()
                .contains(VIP4),
            "dropping the holder removed the address"
        );
        let gone = eventually(lifetime + Duration::from_millis(1500), async || {
            let out = ip_async(&ns, &["addr", "show", "dev", IFACE])
                .await
                .unwrap();
            !out.contains(VIP4) && !out.contains(VIP6)
        })
        .await;
        let after = dropped.elapsed();
        assert!(
            gone,
            "the addresses outlived their lifetime: {after:?} after the holder went"
        );
        eprintln!("holder gone without release: both addresses expired after {after:?}");
        let own = ip_in(&ns, &["addr", "show", "dev", IFACE]).unwrap();
        assert!(
            own.contains("10.77.1.1/24"),
            "the host's own address went too: {own}"
        );
    });
}

/// `release_now` (the agent's panic hook), called from a blocking thread while the event loop
/// holds the VIP: the addresses go at once; afterwards the fence refuses to arm, the holder task
/// neither renews nor re-adds, and a new acquire leaves nothing behind.
#[test]
fn release_now_removes_the_vip_for_good() {
    let _serial = serial();
    let lab = Lab::new("relnow");
    let ns = lab.holder.clone();
    in_netns(&lab.holder, move || async move {
        let mut config = config();
        config.watch_interval = Duration::from_millis(200);
        let fence = Fence::spawn(config.clone()).unwrap();
        let mut vip = NetlinkVip::new(config).unwrap();
        vip.use_fence(&fence);
        fence.arm(Instant::now() + Duration::from_secs(60));
        vip.acquire().await.unwrap();
        assert!(vip.is_present().await.unwrap());

        let releaser = fence.releaser();
        let called = Instant::now();
        let took = std::thread::spawn(move || {
            releaser
                .release_now(Duration::from_secs(1))
                .map(|()| called.elapsed())
        })
        .join()
        .unwrap()
        .unwrap();
        eprintln!("release_now took {took:?}");
        let out = ip_in(&ns, &["addr", "show", "dev", IFACE]).unwrap();
        assert!(!out.contains(VIP4) && !out.contains(VIP6), "{out}");
        assert!(!fence.may_hold());

        fence.arm(Instant::now() + Duration::from_secs(60));
        assert!(!fence.may_hold(), "armed again after release_now");
        // Past a renewal interval and several watch polls: nothing comes back.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !vip.is_present().await.unwrap(),
            "put back after release_now"
        );
        assert_eq!(vip.restored_count(), 0);
        assert!(vip.acquire().await.is_err(), "acquire after release_now");
        assert!(!vip.is_present().await.unwrap());
    });
}
