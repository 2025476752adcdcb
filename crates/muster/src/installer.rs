//! The installer actor: runs this host's install step of the join plan when the core says so
//! (`Output::RunInstall`), supervises the hook as a child process, then probes health, and tells
//! the event loop the result (`Input::InstallDone`). It never blocks the event loop: the loop
//! hands jobs over a bounded channel and receives results on another.
//!
//! The hook gets the install-hook contract's environment (`shared/DESIGN.md`, "Operator
//! contract"): `MUSTER_ROLE`, `MUSTER_DISTRIBUTION`, `MUSTER_NODE_NAME`, `MUSTER_NODE_ID`,
//! `MUSTER_NODE_IP`, `MUSTER_ENDPOINT`, `MUSTER_SERVER_URL` (empty for init), `MUSTER_INIT_IP`.
//! Not yet: `MUSTER_CONFIG` (rendering), `MUSTER_SECRETS` / `MUSTER_SECRETS_OUT` (secrets).
//! An attempt fails if the hook cannot start, exits non-zero (the error carries the tail of its
//! output), or the hook and the health gate together take longer than `install_timeout`. The
//! health gate (`health_url` or `health_command`; on workers `worker_health_url` or
//! `worker_health_command`: `probe.rs`) is probed every [`HEALTH_PROBE_INTERVAL`] until it
//! passes, and a step that times out says why the last probe failed; without a gate, the hook's
//! exit 0 is success. A new attempt (a resume after a crash, or a retry) replaces a running one:
//! its child is killed.

use std::time::{Duration, Instant};

use muster_proto::Role;
use tokio::sync::mpsc;

use crate::config::Kubernetes;
use crate::probe::HealthGate;

/// How often the health probe runs while a step waits to be healthy (from one probe's start to
/// the next's; a probe that takes longer is followed at once).
pub const HEALTH_PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Bytes of hook output kept in an error (the tail).
pub const OUTPUT_TAIL_BYTES: usize = 2048;
/// Jobs waiting for the actor (one step per host: more is a bug).
const JOB_QUEUE: usize = 4;

/// One attempt to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// This host's role.
    pub role: Role,
    /// The attempt number, echoed in the result.
    pub attempt: u32,
    /// The contract's environment.
    pub env: Vec<(String, String)>,
}

/// The result of an attempt.
#[derive(Debug)]
pub struct Done {
    /// The job's attempt.
    pub attempt: u32,
    /// Ok, or why not (for `muster status` and the logs).
    pub result: Result<(), String>,
}

/// The handle the event loop holds.
pub struct Installer {
    jobs: mpsc::Sender<Job>,
}

impl Installer {
    /// Starts the actor; results arrive on the returned receiver.
    pub fn spawn(cfg: Kubernetes) -> (Installer, mpsc::Receiver<Done>) {
        let (jobs, mut rx) = mpsc::channel::<Job>(JOB_QUEUE);
        let (done_tx, done_rx) = mpsc::channel(JOB_QUEUE);
        tokio::spawn(async move {
            let mut running: Option<tokio::task::JoinHandle<()>> = None;
            while let Some(job) = rx.recv().await {
                if let Some(old) = running.take() {
                    // Dropping the task drops its child: `kill_on_drop`.
                    old.abort();
                }
                let cfg = cfg.clone();
                let done_tx = done_tx.clone();
                running = Some(tokio::spawn(async move {
                    let attempt = job.attempt;
                    let result = run(&cfg, &job).await;
                    let _ = done_tx.send(Done { attempt, result }).await;
                }));
            }
        });
        (Installer { jobs }, done_rx)
    }

    /// Hands a job to the actor without blocking; false if the queue is full.
    pub fn start(&self, job: Job) -> bool {
        self.jobs.try_send(job).is_ok()
    }
}

/// The `MUSTER_ROLE` value of a role.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Init => "init",
        Role::ControlPlane => "control-plane",
        Role::Worker => "worker",
        Role::Unspecified => "unknown",
    }
}

async fn run(cfg: &Kubernetes, job: &Job) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + cfg.install_timeout;
    tracing::info!(role = role_name(job.role), attempt = job.attempt, hook = %cfg.install_command.display(), "running the install hook");
    let child = tokio::process::Command::new(&cfg.install_command)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cfg.install_command.display()))?;
    let output = tokio::time::timeout_at(deadline.into(), child.wait_with_output())
        .await
        .map_err(|_| format!("hook did not finish within {:?}", cfg.install_timeout))?
        .map_err(|e| format!("waiting for the hook: {e}"))?;
    if !output.status.success() {
        let mut text = output.stdout;
        text.extend_from_slice(&output.stderr);
        return Err(format!("hook {}: {}", output.status, tail(&text)));
    }
    let check = match job.role {
        Role::Worker => &cfg.worker_health,
        _ => &cfg.health,
    };
    if let Some(gate) = HealthGate::new(check) {
        wait_healthy(gate, deadline, cfg.install_timeout).await?;
    }
    tracing::info!(
        role = role_name(job.role),
        attempt = job.attempt,
        took_ms = started.elapsed().as_millis() as u64,
        "install step healthy"
    );
    Ok(())
}

async fn wait_healthy(
    mut gate: HealthGate,
    deadline: Instant,
    budget: Duration,
) -> Result<(), String> {
    let mut last = String::from("no probe finished");
    loop {
        let started = Instant::now();
        match tokio::time::timeout_at(deadline.into(), gate.probe()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => last = reason,
            Err(_) => {}
        }
        let next = started + HEALTH_PROBE_INTERVAL;
        if next > deadline {
            return Err(format!(
                "health probe {} did not pass within {budget:?}; last: {last}",
                gate.name()
            ));
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

/// The last [`OUTPUT_TAIL_BYTES`] of `text`, as lossy UTF-8 on one line.
fn tail(text: &[u8]) -> String {
    let start = text.len().saturating_sub(OUTPUT_TAIL_BYTES);
    String::from_utf8_lossy(&text[start..])
        .trim()
        .replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HealthCheck, HealthUrl};

    fn cfg(hook: &str, health: Option<&str>) -> Kubernetes {
        Kubernetes {
            distribution: "none".into(),
            install_command: hook.into(),
            health: health.map_or(HealthCheck::Hook, |c| HealthCheck::Command(c.into())),
            worker_health: HealthCheck::Hook,
            install_timeout: Duration::from_secs(3),
            worker_parallelism: 3,
            retry_backoff: Duration::from_secs(1),
            max_attempts: 3,
        }
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    fn job(role: Role) -> Job {
        Job {
            role,
            attempt: 1,
            env: vec![("MUSTER_ROLE".into(), role_name(role).into())],
        }
    }

    #[tokio::test]
    async fn a_hook_that_succeeds_and_a_health_probe_that_passes_later() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("healthy");
        let hook = script(
            dir.path(),
            "hook",
            &format!("test \"$MUSTER_ROLE\" = init && touch {}", mark.display()),
        );
        let probe = script(dir.path(), "probe", &format!("test -e {}", mark.display()));
        assert_eq!(
            run(&cfg(&hook, Some(&probe)), &job(Role::Init)).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_hook_that_succeeds_and_a_health_url_that_passes_later() {
        // 503 for the first three probes, then 200: the gate keeps probing every 250 ms.
        let server = crate::probe::tests::Server::plain(|n| if n < 3 { 503 } else { 200 }).await;
        let dir = tempfile::tempdir().unwrap();
        let hook = script(dir.path(), "hook", "true");
        let mut k = cfg(&hook, None);
        k.worker_health = HealthCheck::Url(HealthUrl {
            url: format!("http://{}/healthz", server.addr),
            ca_file: None,
            client: None,
            server_name: None,
        });
        let started = Instant::now();
        assert_eq!(run(&k, &job(Role::Worker)).await, Ok(()));
        assert_eq!(server.requests(), 4);
        assert!(started.elapsed() >= 3 * HEALTH_PROBE_INTERVAL);
        // Never healthy: the step fails within install_timeout and says why the last probe failed.
        let sick = crate::probe::tests::Server::plain(|_| 503).await;
        k.worker_health = HealthCheck::Url(HealthUrl {
            url: format!("http://{}/healthz", sick.addr),
            ca_file: None,
            client: None,
            server_name: None,
        });
        k.install_timeout = Duration::from_secs(1);
        let e = run(&k, &job(Role::Worker)).await.unwrap_err();
        assert!(
            e.contains("did not pass within 1s") && e.contains("HTTP 503 Service Unavailable"),
            "{e}"
        );
        let probes = sick.requests();
        assert!((3..=5).contains(&probes), "every 250 ms for 1s: {probes}");
    }

    #[tokio::test]
    async fn failures_say_why_with_the_output_tail() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "hook",
            "echo 'etcd: member add refused' >&2; exit 3",
        );
        let e = run(&cfg(&hook, None), &job(Role::ControlPlane))
            .await
            .unwrap_err();
        assert!(
            e.contains("exit status: 3") && e.contains("member add refused"),
            "{e}"
        );
        let slow = script(dir.path(), "slow", "sleep 30");
        let e = run(&cfg(&slow, None), &job(Role::Worker))
            .await
            .unwrap_err();
        assert!(e.contains("did not finish within"), "{e}");
        let ok = script(dir.path(), "ok", "true");
        let never = script(dir.path(), "never", "false");
        let e = run(&cfg(&ok, Some(&never)), &job(Role::Init))
            .await
            .unwrap_err();
        assert!(
            e.contains("health probe") && e.contains("did not pass"),
            "{e}"
        );
        let e = run(&cfg("/nonexistent/hook", None), &job(Role::Init))
            .await
            .unwrap_err();
        assert!(e.contains("cannot start /nonexistent/hook"), "{e}");
    }
}
