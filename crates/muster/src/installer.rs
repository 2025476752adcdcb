//! The installer actor: runs this host's install step of the join plan when the core says so
//! (`Output::RunInstall`), supervises the hook as a child process, then probes health, and tells
//! the event loop the result (`Input::InstallDone`). It never blocks the event loop: the loop
//! hands jobs over a bounded channel and receives results on another.
//!
//! The hook gets the install-hook contract's environment (`shared/DESIGN.md`, "Operator
//! contract"): `MUSTER_ROLE`, `MUSTER_DISTRIBUTION`, `MUSTER_NODE_NAME`, `MUSTER_NODE_ID`,
//! `MUSTER_NODE_IP`, `MUSTER_ENDPOINT`, `MUSTER_SERVER_URL` (empty for init), `MUSTER_INIT_IP`,
//! and the secrets files: `MUSTER_SECRETS` (the plan's `KEY=VALUE` secrets, mode 0600) and
//! `MUSTER_SECRETS_OUT` (an empty 0600 file the init hook may write `KEY=VALUE` lines to; they
//! are handed back with the result and shared, sealed, with later hosts). Both live in
//! `[node] data_dir`/`install` (mode 0700) only while the hook runs, beside `MUSTER_CONFIG`, the
//! distribution config the agent rendered (`muster_k8s::Distro`; 0600: it holds the token; unset for
//! `none`).
//! An attempt fails if the hook cannot start, exits non-zero (the error carries the tail of its
//! output, every secret value scrubbed first), writes a malformed `MUSTER_SECRETS_OUT`, or the
//! hook and the health gate together take longer than `install_timeout`. The health gate
//! (`health_url` or `health_command`; on workers `worker_health_url` or
//! `worker_health_command`: `probe.rs`) is probed every [`HEALTH_PROBE_INTERVAL`] until it
//! passes, and a step that times out says why the last probe failed; without a gate, the hook's
//! exit 0 is success. A new attempt (a resume after a crash, or a retry) replaces a running one:
//! its child is killed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muster_core::SecretValues;
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
    /// The contract's environment (without the secrets files, which the actor adds).
    pub env: Vec<(String, String)>,
    /// The plan's secrets, written to `MUSTER_SECRETS`.
    pub secrets: SecretValues,
    /// The rendered distribution config for `MUSTER_CONFIG`.
    pub config: RenderedConfig,
}

/// A rendered distribution config (file name, contents) for `MUSTER_CONFIG`; none for `none`;
/// an error fails the attempt without running the hook.
pub type RenderedConfig = Result<Option<(&'static str, String)>, String>;

/// The `MUSTER_ROLE` of a certificate upload (kubeadm: `kubeadm init phase upload-certs` on a
/// control-plane host, under the fresh `CERTIFICATE_KEY` in `MUSTER_SECRETS`).
pub const UPLOAD_ROLE: &str = "upload-certs";

/// A certificate upload's attempt (`Output::RunCertificateUpload`).
#[derive(Debug)]
pub struct UploadJob {
    /// The upload.
    pub generation: u32,
    /// Its attempt.
    pub attempt: u32,
    /// The contract's environment, `MUSTER_ROLE=upload-certs`.
    pub env: Vec<(String, String)>,
    /// The plan's secrets with the fresh certificate key.
    pub secrets: SecretValues,
    /// The init config rendered for this host with the fresh key.
    pub config: RenderedConfig,
}

/// The result of a certificate upload's attempt.
#[derive(Debug)]
pub struct UploadDone {
    /// The upload.
    pub generation: u32,
    /// Its attempt.
    pub attempt: u32,
    /// Ok, or why not (secrets scrubbed).
    pub result: Result<(), String>,
}

/// Runs the install hook for a certificate upload in a task of its own (secrets files in
/// `dir`/`upload`, so a step's own files are never touched), within `install_timeout`; no
/// health gate. The result arrives on `done`.
pub fn spawn_upload(
    cfg: &Kubernetes,
    dir: PathBuf,
    job: UploadJob,
    done: mpsc::Sender<UploadDone>,
) {
    let cfg = cfg.clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + cfg.install_timeout;
        tracing::info!(generation = job.generation, attempt = job.attempt, hook = %cfg.install_command.display(), "running the install hook to upload the certificates");
        let result = run_hook(
            &cfg,
            &dir.join("upload"),
            &job.env,
            &job.secrets,
            &job.config,
            deadline,
        )
        .await
        .map(|_| ());
        let _ = done
            .send(UploadDone {
                generation: job.generation,
                attempt: job.attempt,
                result,
            })
            .await;
    });
}

/// The result of an attempt.
#[derive(Debug)]
pub struct Done {
    /// The job's attempt.
    pub attempt: u32,
    /// Ok, or why not (for `muster status` and the logs; secrets scrubbed).
    pub result: Result<(), String>,
    /// What the hook wrote to `MUSTER_SECRETS_OUT`.
    pub secrets_out: SecretValues,
}

/// The secrets files of a running hook (and its rendered config, which holds the token), in a
/// 0700 directory; removed when dropped.
struct SecretsFiles {
    secrets: PathBuf,
    out: PathBuf,
    config: Option<PathBuf>,
}

impl SecretsFiles {
    fn create(
        dir: &Path,
        secrets: &SecretValues,
        config: Option<&(&'static str, String)>,
    ) -> Result<SecretsFiles, String> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("cannot create", e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("cannot restrict", e))?;
        let files = SecretsFiles {
            secrets: dir.join("secrets.env"),
            out: dir.join("secrets-out.env"),
            config: config.map(|(name, _)| dir.join(name)),
        };
        if let (Some(path), Some((_, contents))) = (&files.config, config) {
            write_private(path, contents.as_bytes())
                .map_err(|e| fail("cannot write the rendered config in", e))?;
        }
        write_private(&files.secrets, secrets.to_env_file().as_bytes())
            .map_err(|e| fail("cannot write the secrets file in", e))?;
        write_private(&files.out, b"")
            .map_err(|e| fail("cannot create the secrets-out file in", e))?;
        Ok(files)
    }

    /// Parses what the hook wrote to `MUSTER_SECRETS_OUT`.
    fn read_out(&self) -> Result<SecretValues, String> {
        let text = std::fs::read_to_string(&self.out)
            .map_err(|e| format!("cannot read MUSTER_SECRETS_OUT: {e}"))?;
        SecretValues::parse_env_file(&text).map_err(|e| format!("MUSTER_SECRETS_OUT {e}"))
    }
}

impl Drop for SecretsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.secrets);
        let _ = std::fs::remove_file(&self.out);
        if let Some(c) = &self.config {
            let _ = std::fs::remove_file(c);
        }
    }
}

/// Writes `bytes` to a new file only its owner can read (replacing any old one).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The handle the event loop holds.
pub struct Installer {
    jobs: mpsc::Sender<Job>,
}

impl Installer {
    /// Starts the actor; results arrive on the returned receiver.
    /// `dir` holds the secrets files while a hook runs (`[node] data_dir`/`install`).
    pub fn spawn(cfg: Kubernetes, dir: PathBuf) -> (Installer, mpsc::Receiver<Done>) {
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
                let dir = dir.clone();
                let done_tx = done_tx.clone();
                running = Some(tokio::spawn(async move {
                    let attempt = job.attempt;
                    let (result, secrets_out) = match run(&cfg, &dir, &job).await {
                        Ok(out) => (Ok(()), out),
                        Err(e) => (Err(e), SecretValues::default()),
                    };
                    let _ = done_tx
                        .send(Done {
                            attempt,
                            result,
                            secrets_out,
                        })
                        .await;
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

/// The result of a removal duty's attempt (`Output::RunRemoval`).
#[derive(Debug)]
pub struct RemovalDone {
    /// The removed host.
    pub node_id: u64,
    /// The attempt.
    pub attempt: u32,
    /// Ok, or why not.
    pub result: Result<(), String>,
}

/// Runs `[kubernetes] remove_command` for a removed host with `env` (`MUSTER_REMOVED_*` and the
/// contract's own), in a task of its own; the result arrives on `done`. Without a command the
/// duty succeeds at once.
pub fn spawn_removal(
    cfg: &Kubernetes,
    node_id: u64,
    attempt: u32,
    env: Vec<(String, String)>,
    done: mpsc::Sender<RemovalDone>,
) {
    let command = cfg.remove_command.clone();
    let timeout = cfg.install_timeout;
    tokio::spawn(async move {
        let result = match command {
            None => Ok(()),
            Some(c) => run_remove_command(&c, &env, timeout).await,
        };
        let _ = done
            .send(RemovalDone {
                node_id,
                attempt,
                result,
            })
            .await;
    });
}

async fn run_remove_command(
    command: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let child = tokio::process::Command::new(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", command.display()))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("remove command did not finish within {timeout:?}"))?
        .map_err(|e| format!("waiting for the remove command: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = output.stdout;
    text.extend_from_slice(&output.stderr);
    Err(format!("remove command {}: {}", output.status, tail(&text)))
}

/// The plan's role as the renderer names it (a plan never holds an unspecified role).
pub fn k8s_role(role: Role) -> muster_k8s::Role {
    match role {
        Role::Init => muster_k8s::Role::Init,
        Role::ControlPlane => muster_k8s::Role::ControlPlane,
        _ => muster_k8s::Role::Worker,
    }
}

/// Runs one attempt: the hook, then the health probe. Ok carries what the hook wrote to
/// `MUSTER_SECRETS_OUT`.
async fn run(cfg: &Kubernetes, dir: &Path, job: &Job) -> Result<SecretValues, String> {
    let started = Instant::now();
    let deadline = started + cfg.install_timeout;
    tracing::info!(role = role_name(job.role), attempt = job.attempt, hook = %cfg.install_command.display(), "running the install hook");
    let secrets_out = run_hook(cfg, dir, &job.env, &job.secrets, &job.config, deadline).await?;
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
    Ok(secrets_out)
}

/// Runs the install hook once with `env`, the secrets files and the rendered config (in `dir`
/// while it runs), until `deadline`. Ok carries what it wrote to `MUSTER_SECRETS_OUT`; an error
/// the tail of its output with every secret scrubbed.
async fn run_hook(
    cfg: &Kubernetes,
    dir: &Path,
    env: &[(String, String)],
    secrets: &SecretValues,
    config: &RenderedConfig,
    deadline: Instant,
) -> Result<SecretValues, String> {
    let config = config.as_ref().map_err(Clone::clone)?;
    let files = SecretsFiles::create(dir, secrets, config.as_ref())?;
    let mut command = tokio::process::Command::new(&cfg.install_command);
    if let Some(c) = &files.config {
        command.env("MUSTER_CONFIG", c);
    }
    let child = command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("MUSTER_SECRETS", &files.secrets)
        .env("MUSTER_SECRETS_OUT", &files.out)
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
        // Scrub what the hook was given and what it wrote before cutting the tail, so no part
        // of a secret survives at the cut.
        let mut known = secrets.clone();
        if let Ok(out) = files.read_out() {
            known.overlay(&out);
        }
        let text = known.scrub(&String::from_utf8_lossy(&text));
        return Err(format!("hook {}: {}", output.status, tail(text.as_bytes())));
    }
    let secrets_out = files.read_out()?;
    drop(files);
    Ok(secrets_out)
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
            distro: muster_k8s::Distro::from_section(&muster_k8s::Section {
                distribution: "none",
                version: None,
                cluster_cidr: None,
                service_cidr: None,
                proxy: None,
                ca_files: &[],
                config: None,
            })
            .unwrap(),
            install_command: hook.into(),
            remove_command: None,
            certificate_key_refresh: None,
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
            secrets: SecretValues::default(),
            config: Ok(None),
        }
    }

    async fn run(cfg: &Kubernetes, job: &Job) -> Result<SecretValues, String> {
        let dir = tempfile::tempdir().unwrap();
        super::run(cfg, &dir.path().join("install"), job).await
    }

    #[tokio::test]
    async fn remove_commands_get_the_removed_host_and_say_why_they_failed() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let remove = script(
            dir.path(),
            "remove",
            &format!(
                "echo \"$MUSTER_REMOVED_NAME $MUSTER_REMOVED_IP\" > {}; test \"$MUSTER_REMOVED_NAME\" = h3 || {{ echo 'no such member' >&2; exit 4; }}",
                seen.display()
            ),
        );
        let mut k = cfg("/bin/true", None);
        k.remove_command = Some(remove.into());
        let env = |name: &str| {
            vec![
                ("MUSTER_REMOVED_NAME".to_string(), name.to_string()),
                ("MUSTER_REMOVED_IP".to_string(), "10.77.0.13".to_string()),
            ]
        };
        let (tx, mut rx) = mpsc::channel(4);
        spawn_removal(&k, 7, 1, env("h3"), tx.clone());
        let done = rx.recv().await.unwrap();
        assert_eq!((done.node_id, done.attempt, done.result), (7, 1, Ok(())));
        assert_eq!(std::fs::read_to_string(&seen).unwrap(), "h3 10.77.0.13\n");
        spawn_removal(&k, 8, 2, env("h9"), tx.clone());
        let e = rx.recv().await.unwrap().result.unwrap_err();
        assert!(
            e.contains("exit status: 4") && e.contains("no such member"),
            "{e}"
        );
        // Without a remove command the duty is done at once.
        k.remove_command = None;
        spawn_removal(&k, 9, 1, env("h4"), tx);
        assert_eq!(rx.recv().await.unwrap().result, Ok(()));
    }

    #[tokio::test]
    async fn hooks_get_their_secrets_in_a_private_file_and_can_share_more() {
        let dir = tempfile::tempdir().unwrap();
        let install = dir.path().join("install");
        let seen = dir.path().join("seen");
        let hook = script(
            dir.path(),
            "hook",
            &format!(
                "stat -c %a \"$MUSTER_SECRETS\" \"$MUSTER_SECRETS_OUT\" > {seen}\n\
                 cat \"$MUSTER_SECRETS\" >> {seen}\n\
                 echo CA_CERT_HASH=sha256:feedbeef >> \"$MUSTER_SECRETS_OUT\"",
                seen = seen.display()
            ),
        );
        let mut j = job(Role::Init);
        j.secrets.insert("TOKEN", "0123456789abcdef").unwrap();
        let out = super::run(&cfg(&hook, None), &install, &j).await.unwrap();
        assert_eq!(out.get("CA_CERT_HASH"), Some("sha256:feedbeef"));
        let seen = std::fs::read_to_string(&seen).unwrap();
        assert_eq!(seen, "600\n600\nTOKEN=0123456789abcdef\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&install).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            std::fs::read_dir(&install).unwrap().count(),
            0,
            "the secrets files are gone once the hook ends"
        );
    }

    #[tokio::test]
    async fn the_rendered_config_is_a_private_file_while_the_hook_runs() {
        let dir = tempfile::tempdir().unwrap();
        let install = dir.path().join("install");
        let seen = dir.path().join("seen");
        let hook = script(
            dir.path(),
            "hook",
            &format!(
                "stat -c %a \"$MUSTER_CONFIG\" > {seen}; cat \"$MUSTER_CONFIG\" >> {seen}",
                seen = seen.display()
            ),
        );
        let mut j = job(Role::Init);
        j.config = Ok(Some(("config.yaml", "cluster-init: true\n".into())));
        super::run(&cfg(&hook, None), &install, &j).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "600\ncluster-init: true\n"
        );
        assert!(
            !install.join("config.yaml").exists(),
            "removed after the hook"
        );
        // A config that cannot be rendered fails the attempt; the hook never runs.
        j.config = Err("cannot render the k3s config: secret TOKEN missing".into());
        std::fs::remove_file(&seen).unwrap();
        let e = super::run(&cfg(&hook, None), &install, &j)
            .await
            .unwrap_err();
        assert_eq!(e, "cannot render the k3s config: secret TOKEN missing");
        assert!(!seen.exists());
    }

    #[tokio::test]
    async fn secrets_never_reach_the_output_tail_and_bad_output_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "hook",
            "echo \"token is $(cut -d= -f2 \"$MUSTER_SECRETS\")\"; echo KEY=shared-secret-value >> \"$MUSTER_SECRETS_OUT\"; echo shared-secret-value; exit 1",
        );
        let mut j = job(Role::Init);
        j.secrets.insert("TOKEN", "0123456789abcdef").unwrap();
        let e = run(&cfg(&hook, None), &j).await.unwrap_err();
        assert!(
            e.contains("token is [redacted]") && !e.contains("0123456789abcdef"),
            "{e}"
        );
        assert!(!e.contains("shared-secret-value"), "{e}");
        let bad = script(
            dir.path(),
            "bad",
            "echo 'no equals sign' > \"$MUSTER_SECRETS_OUT\"",
        );
        let e = run(&cfg(&bad, None), &j).await.unwrap_err();
        assert_eq!(e, "MUSTER_SECRETS_OUT line 1: expected KEY=VALUE");
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
            Ok(SecretValues::default())
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
        assert_eq!(
            run(&k, &job(Role::Worker)).await,
            Ok(SecretValues::default())
        );
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
