//! muster-testbed: runs real `muster` agents as a site in Linux network namespaces.
//!
//! The end-to-end tests (`tests/formation.rs`), the demo (`muster-demo`) and the formation
//! benchmark (`muster-formation-bench`) build a [`Site`]: a bridge namespace `<prefix>-br` with
//! bridge `br0`, and per host a namespace `<prefix>-h<i>` whose `eth0` (10.77.0.<10+i>/24) is
//! wired to the bridge. Each host runs `muster agent` from its own temp directory; tests read
//! `muster status --json` through the host's Unix socket from the root namespace.
//!
//! Needs root and iproute2; the muster binary comes from `$MUSTER_BIN` or the workspace's
//! `target/{debug,release}/muster` ([`cli::Muster::locate`]).
//!
//! Module map: [`names`] (naming rules), [`netns`] (`ip` commands), [`config`] (muster.toml),
//! [`cli`] (keygen/status, preflight), [`status`] (typed status), [`formed`] (agreement rule),
//! [`host`] (files + agent process), [`site`] (the whole site), [`interrupt`] (Ctrl-C).
//! VIP: [`vipsite`] (the site's VIP, client and partitions), [`addrs`] (who carries the VIP),
//! [`holders`] (the two-holder checker), [`prober`] (the client's 5 ms ICMP prober),
//! [`partition`] (nftables bridge rules), [`keepalived`] (the comparison peer for the benchmark),
//! [`bench`] (statistics, RNG and CPU burners of `muster-vip-bench`).
//! Idle cost: [`procstat`] (CPU time and RSS from `/proc`, for `muster-idle-bench`).
//! Dynamic DNS: [`bind`] (a real `named` on the site's bridge, the `[ddns]` section pointing at
//! it, `dig` / `nsupdate` and a fast UDP poller).
//! Install: [`etcd`] (hooks that form a real etcd cluster in the join order, and etcdctl checks).

use std::sync::{Mutex, MutexGuard};

pub mod addrs;
pub mod bench;
pub mod bind;
pub mod cli;
pub mod config;
pub mod etcd;
pub mod formed;
pub mod formlog;
pub mod holders;
pub mod host;
pub mod interrupt;
pub mod keepalived;
pub mod names;
pub mod netns;
pub mod partition;
pub mod prober;
pub mod procstat;
pub mod site;
pub mod status;
pub mod timeline;
pub mod vipsite;

pub use config::{overrides, Override};
pub use formed::Formed;
pub use site::{Discovery, Site, SiteOptions, VipAddresses};
pub use status::{Member, Status, VipStatus};

/// Serializes namespace sites within one process: on a 2-core machine, sites of real agents
/// must not run side by side (their timing would interfere and tests would turn flaky).
static SITE_LOCK: Mutex<()> = Mutex::new(());

/// Takes the process-wide site lock; a test that panicked while holding it does not poison it.
pub fn exclusive() -> MutexGuard<'static, ()> {
    SITE_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one namespace scenario: takes [`exclusive`], builds the site, runs `body`, tears the
/// site down. On an error from `body` it prints every host's log tail and panics with the
/// error; a panic inside `body` prints the tails from `Site`'s `Drop`. Either way every
/// namespace and agent is removed.
pub fn scenario(
    prefix: &str,
    hosts: usize,
    opts: SiteOptions,
    body: impl FnOnce(&mut Site) -> anyhow::Result<()>,
) {
    let _guard = exclusive();
    let mut site = match Site::new(prefix, hosts, opts) {
        Ok(site) => site,
        Err(e) => panic!("setting up site {prefix}: {e:#}"),
    };
    if let Err(e) = body(&mut site) {
        site.dump_logs();
        panic!("scenario {prefix} failed: {e:#}");
    }
    if let Err(e) = site.teardown() {
        panic!("tearing down site {prefix}: {e:#}");
    }
}
