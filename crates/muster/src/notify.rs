//! systemd's notify protocol for `muster agent` (`Type=notify` in `deploy/muster.service`).
//!
//! The agent's event loop calls [`Notifier::tick`] on every tick. It sends, through `sd-notify`
//! (the datagram socket `NOTIFY_SOCKET` names): `READY=1` the first time this host is a member
//! of a cluster (so `systemctl start` and units ordered after muster wait for that), a
//! `STATUS=` line whenever the one-line summary changes (phase, cluster, leader, members, the
//! VIP, plan progress; never secrets: no step errors, no plan secrets), and `WATCHDOG=1` every
//! half `WATCHDOG_USEC`. The pings come from the loop itself, so a loop that stalls stops them
//! and systemd restarts the agent. Until `READY=1` each ping also carries
//! `EXTEND_TIMEOUT_USEC=` (one watchdog interval): a site may wait for its hosts far longer
//! than any start timeout, but a loop that stalls while waiting still times out and is
//! restarted.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd, tests, testbeds) everything here is a
//! no-op and the status is never even computed. A failed send is logged once, never fatal.

use std::time::{Duration, Instant};

use muster_core::format_id;
use muster_proto::{StatusResponse, StepState};
use sd_notify::NotifyState;

/// The status summary is recomputed at most this often (a status clones members and plan).
pub const STATUS_LOOK_INTERVAL: Duration = Duration::from_millis(250);

/// `READY=1`.
pub fn ready() -> std::io::Result<()> {
    sd_notify::notify(&[NotifyState::Ready])
}

/// `STATUS=<line>`: what `systemctl status muster` shows.
pub fn status(line: &str) -> std::io::Result<()> {
    sd_notify::notify(&[NotifyState::Status(line)])
}

/// `WATCHDOG=1`: the event loop is alive.
pub fn watchdog() -> std::io::Result<()> {
    sd_notify::notify(&[NotifyState::Watchdog])
}

/// `EXTEND_TIMEOUT_USEC=`: the start-up is alive and may take `by` longer.
pub fn extend_timeout(by: Duration) -> std::io::Result<()> {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    sd_notify::notify(&[NotifyState::ExtendTimeoutUsec(usec)])
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`, if `WATCHDOG_PID` is unset or this
/// process), or `None` if there is no watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// What the event loop keeps between ticks.
#[derive(Debug)]
pub struct Notifier {
    /// `NOTIFY_SOCKET` was set at start.
    enabled: bool,
    watchdog: Option<Duration>,
    ready_sent: bool,
    status_sent: String,
    last_ping: Option<Instant>,
    last_look: Option<Instant>,
    /// A send failed already (logged once, then quiet).
    failed: bool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` once, at start.
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let watchdog = if enabled { watchdog_interval() } else { None };
        if enabled {
            tracing::info!(watchdog = ?watchdog, "notifying systemd (READY once a member, STATUS, watchdog)");
        }
        Notifier {
            enabled,
            watchdog,
            ready_sent: false,
            status_sent: String::new(),
            last_ping: None,
            last_look: None,
            failed: false,
        }
    }

    /// Called on every event-loop tick: pings the watchdog when half its interval has passed,
    /// and, at most every [`STATUS_LOOK_INTERVAL`], sends `READY=1` / `STATUS=` if due.
    pub fn tick(&mut self, now: Instant, status: impl FnOnce() -> StatusResponse) {
        if !self.enabled {
            return;
        }
        if let Some(interval) = self.watchdog {
            if self
                .last_ping
                .is_none_or(|t| now.saturating_duration_since(t) >= interval / 2)
            {
                self.last_ping = Some(now);
                self.check(watchdog());
                if !self.ready_sent {
                    self.check(extend_timeout(interval));
                }
            }
        }
        if self
            .last_look
            .is_some_and(|t| now.saturating_duration_since(t) < STATUS_LOOK_INTERVAL)
        {
            return;
        }
        self.last_look = Some(now);
        let status_now = status();
        let line = summary(&status_now);
        if !self.ready_sent && status_now.phase == "member" && status_now.cluster_id != 0 {
            self.ready_sent = true;
            self.check(ready());
            tracing::info!("told systemd READY: this host is a member");
        }
        if line != self.status_sent {
            let result = self::status(&line);
            self.check(result);
            self.status_sent = line;
        }
    }

    /// Logs the first failed send; later ones stay quiet.
    fn check(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            if !self.failed {
                tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET); further failures are not logged");
            }
            self.failed = true;
        }
    }
}

/// The one-line summary for `STATUS=`, e.g. `member of cluster 1f…, leader edge-1
/// (0a…), 3 members, holding the VIP, plan 3 of 5 done`. Only names, ids and counts: never a
/// step's error text (it may quote a hook's output) or anything secret.
pub fn summary(s: &StatusResponse) -> String {
    match s.phase.as_str() {
        "member" if s.cluster_id != 0 => member_summary(s),
        "discovering" => format!(
            "discovering the site: {} peers connected",
            s.peers_connected
        ),
        "removed" => "removed from the cluster: takes part in nothing until `muster reset`".into(),
        _ if s.cluster_id != 0 => format!("joining cluster {}", format_id(s.cluster_id)),
        _ => "joining a cluster".into(),
    }
}

fn member_summary(s: &StatusResponse) -> String {
    let mut line = format!("member of cluster {}, ", format_id(s.cluster_id));
    if s.leader_id == 0 {
        line.push_str("no leader");
    } else {
        let name = s.members.iter().find(|m| m.id == s.leader_id);
        match name {
            Some(m) => line.push_str(&format!("leader {} ({})", m.name, format_id(m.id))),
            None => line.push_str(&format!("leader {}", format_id(s.leader_id))),
        }
    }
    line.push_str(&format!(", {} members", s.members.len()));
    if s.vip.as_ref().is_some_and(|v| v.held_here) {
        line.push_str(", holding the VIP");
    }
    if let Some(plan) = &s.plan {
        let state = |st: StepState| plan.steps.iter().filter(|x| x.state == st as i32).count();
        line.push_str(&format!(
            ", plan {} of {} done",
            state(StepState::Succeeded),
            plan.steps.len()
        ));
        let failed = state(StepState::Failed);
        if failed > 0 {
            line.push_str(&format!(", {failed} failed"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_proto::{MemberStatus, Plan, PlanStep, VipStatus};
    use std::os::unix::net::UnixDatagram;

    /// Set in the child process the socket test starts: which script it runs.
    const CHILD_ENV: &str = "MUSTER_NOTIFY_TEST_CHILD";
    const CLUSTER: u64 = 0x1f00_0000_0000_00aa;
    const LEADER: u64 = 0x0a00_0000_0000_0001;

    fn member_status(done: usize, failed: usize) -> StatusResponse {
        let step = |i: usize, state: StepState| PlanStep {
            node_id: i as u64 + 1,
            state: state as i32,
            last_error: "hook failed: TOKEN=K10secret".into(),
            ..Default::default()
        };
        let mut steps: Vec<_> = (0..done).map(|i| step(i, StepState::Succeeded)).collect();
        steps.extend((done..done + failed).map(|i| step(i, StepState::Failed)));
        steps.extend((steps.len()..3).map(|i| step(i, StepState::Pending)));
        StatusResponse {
            phase: "member".into(),
            cluster_id: CLUSTER,
            leader_id: LEADER,
            members: ["edge-1", "edge-2", "edge-3"]
                .iter()
                .enumerate()
                .map(|(i, name)| MemberStatus {
                    id: if i == 0 { LEADER } else { i as u64 + 7 },
                    name: (*name).into(),
                    ..Default::default()
                })
                .collect(),
            vip: Some(VipStatus {
                held_here: true,
                ..Default::default()
            }),
            plan: Some(Plan {
                steps,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn summaries_say_phase_leader_and_plan_but_no_step_errors() {
        let line = summary(&member_status(1, 1));
        assert_eq!(
            line,
            "member of cluster 1f000000000000aa, leader edge-1 (0a00000000000001), 3 members, \
             holding the VIP, plan 1 of 3 done, 1 failed"
        );
        assert!(
            !line.contains("secret") && !line.contains("TOKEN"),
            "{line}"
        );
        let discovering = StatusResponse {
            phase: "discovering".into(),
            peers_connected: 2,
            ..Default::default()
        };
        assert_eq!(
            summary(&discovering),
            "discovering the site: 2 peers connected"
        );
        let joining = StatusResponse {
            phase: "joining".into(),
            cluster_id: CLUSTER,
            ..Default::default()
        };
        assert_eq!(summary(&joining), "joining cluster 1f000000000000aa");
        let leaderless = StatusResponse {
            leader_id: 0,
            plan: None,
            vip: None,
            ..member_status(0, 0)
        };
        assert_eq!(
            summary(&leaderless),
            "member of cluster 1f000000000000aa, no leader, 3 members"
        );
    }

    /// The child's script: the event loop's ticks as the agent would make them, on a made-up
    /// clock, with the environment the parent gave it.
    fn child_script(mode: &str) {
        let mut n = Notifier::from_env();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        if mode == "unset" {
            assert!(!n.enabled && n.watchdog.is_none());
            n.tick(at(0), || {
                panic!("no status is computed without NOTIFY_SOCKET")
            });
            return;
        }
        let expected = (mode == "active").then(|| Duration::from_secs(10));
        assert_eq!(n.watchdog, expected, "the watchdog interval ({mode})");
        let discovering = || StatusResponse {
            phase: "discovering".into(),
            ..Default::default()
        };
        n.tick(at(0), discovering);
        n.tick(at(1), || panic!("looked again within STATUS_LOOK_INTERVAL"));
        n.tick(at(300), discovering);
        n.tick(at(600), || StatusResponse {
            phase: "joining".into(),
            cluster_id: CLUSTER,
            ..Default::default()
        });
        n.tick(at(5_000), || member_status(0, 0));
        n.tick(at(5_300), || member_status(0, 0));
        n.tick(at(10_000), || member_status(0, 0));
        n.tick(at(10_300), || member_status(1, 0));
    }

    /// Runs this test binary again as the child, with `env`, while the parent listens on a real
    /// datagram socket; returns every datagram the child sent, in order.
    fn run_child(mode: &str, env: &[(&str, &str)]) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--exact",
            "notify::tests::messages_reach_the_notify_socket",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .env("NOTIFY_SOCKET", &path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(std::process::Stdio::null());
        if mode == "unset" {
            cmd.env_remove("NOTIFY_SOCKET");
        }
        cmd.envs(env.iter().copied());
        let status = cmd.status().expect("run the child");
        assert!(status.success(), "the child's script failed: {status}");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got
    }

    #[test]
    fn messages_reach_the_notify_socket() {
        if let Some(mode) = std::env::var_os(CHILD_ENV) {
            child_script(&mode.to_string_lossy());
            return;
        }
        let got = run_child("active", &[("WATCHDOG_USEC", "10000000")]);
        let member =
            "member of cluster 1f000000000000aa, leader edge-1 (0a00000000000001), 3 members, \
             holding the VIP, plan";
        assert_eq!(
            got,
            [
                "WATCHDOG=1\n".to_string(),
                "EXTEND_TIMEOUT_USEC=10000000\n".into(),
                "STATUS=discovering the site: 0 peers connected\n".into(),
                "STATUS=joining cluster 1f000000000000aa\n".into(),
                "WATCHDOG=1\n".into(),
                "EXTEND_TIMEOUT_USEC=10000000\n".into(),
                "READY=1\n".into(),
                format!("STATUS={member} 0 of 3 done\n"),
                "WATCHDOG=1\n".into(),
                format!("STATUS={member} 1 of 3 done\n"),
            ]
        );
        // WATCHDOG_PID naming another process: the watchdog is not ours (as sd_watchdog_enabled).
        let got = run_child(
            "active-foreign-watchdog",
            &[("WATCHDOG_USEC", "10000000"), ("WATCHDOG_PID", "1")],
        );
        assert!(got.iter().all(|m| !m.contains("WATCHDOG")), "{got:?}");
        assert_eq!(
            got.first().map(String::as_str),
            Some("STATUS=discovering the site: 0 peers connected\n")
        );
        assert!(run_child("unset", &[("WATCHDOG_USEC", "10000000")]).is_empty());
    }
}
