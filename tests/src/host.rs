//! One host of a site: its files (data dir, config, socket, log) and its agent process.
//!
//! [`crate::site::Site`] owns a `Host` per namespace and forwards `start`/`kill`/`terminate`
//! here. The agent runs as `ip netns exec <ns> muster agent --config <cfg>` (`ip` execs the
//! agent, so the child *is* the agent) in its own process group, with stdout and stderr
//! appended to the host's log file, and with SIGKILL as its parent-death signal so agents do not
//! outlive a crashed test process.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::config::Override;

/// How long `terminate` waits for the agent to exit after SIGTERM.
pub const TERM_WAIT_MS: u64 = 10_000;

/// Files and process of one host.
#[derive(Debug)]
pub struct Host {
    /// Index in the site (0-based).
    pub index: usize,
    /// Network namespace name.
    pub ns: String,
    /// Bridge-side veth name (in the bridge namespace).
    pub port: String,
    /// The host's temp directory.
    pub dir: PathBuf,
    /// `[node] data_dir`.
    pub data_dir: PathBuf,
    /// The rendered config file.
    pub config_path: PathBuf,
    /// `[rpc] socket`.
    pub socket: PathBuf,
    /// Agent stdout + stderr, appended across restarts.
    pub log_path: PathBuf,
    /// `[site] key_file` (the shared site key unless the host got its own).
    pub key_file: PathBuf,
    /// Config overrides from the last `write_config`, kept for re-renders.
    pub overrides: Vec<Override>,
    /// Extra environment of the agent process (test faults), from the next start on.
    pub env: Vec<(String, String)>,
    starts: u32,
    child: Mutex<Option<Child>>,
    last_exit: Mutex<Option<ExitStatus>>,
    node_id: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Host {
    /// Lays out the host's directory under `root` (nothing runs yet).
    pub fn new(
        index: usize,
        ns: String,
        port: String,
        root: &Path,
        key_file: PathBuf,
    ) -> Result<Self> {
        let dir = root.join(crate::names::node_name(index));
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        Ok(Self {
            index,
            ns,
            port,
            config_path: dir.join("muster.toml"),
            socket: dir.join("muster.sock"),
            log_path: dir.join("agent.log"),
            data_dir,
            dir,
            key_file,
            overrides: Vec::new(),
            env: Vec::new(),
            starts: 0,
            child: Mutex::new(None),
            last_exit: Mutex::new(None),
            node_id: Mutex::new(None),
        })
    }

    /// Spawns the agent in the host's namespace. Fails if it is already running.
    pub fn start(&mut self, muster: &Path) -> Result<()> {
        if self.is_running() {
            bail!("host {} is already running", self.index);
        }
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(
            log,
            "--- muster-testbed: start #{} of host {} ({}) ---",
            self.starts, self.index, self.ns
        )?;
        let stderr: File = log.try_clone()?;
        let mut cmd = Command::new("ip");
        cmd.arg("netns")
            .arg("exec")
            .arg(&self.ns)
            .arg(muster)
            .arg("agent")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning the agent of host {} in {}", self.index, self.ns))?;
        *lock(&self.child) = Some(child);
        *lock(&self.last_exit) = None;
        Ok(())
    }

    /// Whether the agent process is alive (reaps it and records its exit status if not).
    pub fn is_running(&self) -> bool {
        let mut child = lock(&self.child);
        let Some(c) = child.as_mut() else {
            return false;
        };
        match c.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                *lock(&self.last_exit) = Some(status);
                *child = None;
                false
            }
            Err(_) => false,
        }
    }

    /// The agent's pid (also its process group), while it runs.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    /// The exit status of the last agent process, once it has exited and been reaped.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        *lock(&self.last_exit)
    }

    /// SIGKILLs the agent's process group and reaps it. A stopped host is left as it is.
    pub fn kill(&self) -> Result<()> {
        let mut guard = lock(&self.child);
        let Some(mut child) = guard.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        // ESRCH means it is already gone; the wait below reaps it either way.
        let _ = killpg(pid, Signal::SIGKILL);
        let status = child
            .wait()
            .with_context(|| format!("reaping the agent of host {}", self.index))?;
        *lock(&self.last_exit) = Some(status);
        Ok(())
    }

    /// Sends SIGTERM to the agent and waits up to [`TERM_WAIT_MS`] for it to exit; if it does
    /// not, SIGKILLs it and fails.
    pub fn terminate(&self) -> Result<ExitStatus> {
        let pid = {
            let guard = lock(&self.child);
            let Some(child) = guard.as_ref() else {
                bail!("host {} is not running", self.index);
            };
            Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?)
        };
        kill(pid, Signal::SIGTERM).with_context(|| format!("SIGTERM to host {}", self.index))?;
        let deadline = Instant::now() + Duration::from_millis(TERM_WAIT_MS);
        while Instant::now() < deadline {
            if !self.is_running() {
                return self.last_exit().context("agent exited without a status");
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill()?;
        bail!(
            "host {} did not exit within {TERM_WAIT_MS} ms of SIGTERM",
            self.index
        )
    }

    /// The node id this host last reported.
    pub fn node_id(&self) -> Option<String> {
        lock(&self.node_id).clone()
    }

    /// Remembers the node id the host reported.
    pub fn set_node_id(&self, id: &str) {
        *lock(&self.node_id) = Some(id.to_owned());
    }

    /// The whole log file (lossy UTF-8); empty if none was written yet.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_takes_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn layout_is_under_the_root() {
        let root = tempfile::tempdir().unwrap();
        let h = Host::new(
            2,
            "p-h2".into(),
            "p-v2".into(),
            root.path(),
            root.path().join("k"),
        )
        .unwrap();
        assert!(h.data_dir.is_dir());
        assert!(h.socket.starts_with(root.path()));
        assert!(
            h.socket.as_os_str().len() < 100,
            "unix socket paths must stay short"
        );
        assert!(!h.is_running());
        h.kill().unwrap();
        assert!(h.terminate().is_err());
        assert_eq!(h.log(), "");
    }
}
