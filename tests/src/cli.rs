//! Finding and running the `muster` CLI: `keygen`, `status`, and the root/iproute2 preflight.
//!
//! [`crate::site::Site`] uses [`Muster`] for every CLI call except `agent` (which it spawns
//! itself inside a namespace). Calls are bounded by a timeout so a hung agent fails a test with
//! a message instead of hanging it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Environment variable that names the muster binary to use.
pub const MUSTER_BIN_ENV: &str = "MUSTER_BIN";
/// How long one `muster status` or `muster keygen` may take.
pub const CLI_TIMEOUT_MS: u64 = 5_000;
/// How often a running CLI child is checked for exit.
const CLI_POLL_MS: u64 = 2;

/// The cargo workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where to look for the binary, in order: `$MUSTER_BIN`, then `debug/muster` and
/// `release/muster` under `$CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn candidates(env_bin: Option<PathBuf>, target_dir: Option<PathBuf>) -> Vec<PathBuf> {
    if let Some(bin) = env_bin {
        return vec![bin];
    }
    let target = target_dir.unwrap_or_else(|| workspace_root().join("target"));
    vec![
        target.join("debug").join("muster"),
        target.join("release").join("muster"),
    ]
}

/// A located `muster` binary.
#[derive(Debug, Clone)]
pub struct Muster {
    path: PathBuf,
}

impl Muster {
    /// Finds the binary (see [`candidates`]); a clear error says how to build it.
    pub fn locate() -> Result<Self> {
        let env_bin = std::env::var_os(MUSTER_BIN_ENV).map(PathBuf::from);
        let from_env = env_bin.is_some();
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
        let tried = candidates(env_bin, target);
        if let Some(found) = tried.iter().find(|p| p.is_file()) {
            return Ok(Self {
                path: found.clone(),
            });
        }
        let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        if from_env {
            bail!(
                "{MUSTER_BIN_ENV}={} does not exist or is not a file",
                list.join("")
            );
        }
        bail!(
            "the muster binary is missing (looked at {}); build it with `cargo build --bin muster` \
             or point {MUSTER_BIN_ENV} at it",
            list.join(", ")
        )
    }

    /// The binary at `path`, which must exist.
    pub fn at(path: &Path) -> Result<Self> {
        if !path.is_file() {
            bail!("{} does not exist or is not a file", path.display());
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `muster keygen --out <out>`.
    pub fn keygen(&self, out: &Path) -> Result<()> {
        let out_str = out.to_string_lossy();
        self.run(&["keygen", "--out", &out_str])
            .with_context(|| format!("generating a site key at {}", out.display()))?;
        if !out.is_file() {
            bail!(
                "`muster keygen --out {}` succeeded but wrote no file",
                out.display()
            );
        }
        Ok(())
    }

    /// `muster status --socket <socket> --json`, parsed as one JSON value.
    pub fn status_json(&self, socket: &Path) -> Result<serde_json::Value> {
        let socket = socket.to_string_lossy();
        let out = self.run(&["status", "--socket", &socket, "--json"])?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("`muster status --json` printed no JSON object: {out:?}"))
    }

    /// `muster status --socket <socket>`: the human-readable view.
    pub fn status_human(&self, socket: &Path) -> Result<String> {
        let socket = socket.to_string_lossy();
        self.run(&["status", "--socket", &socket])
    }

    /// Runs `muster <args>` with [`CLI_TIMEOUT_MS`]; returns stdout, or an error with stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.path);
        cmd.args(args);
        let (status, stdout, stderr) = run_with_timeout(cmd, Duration::from_millis(CLI_TIMEOUT_MS))
            .with_context(|| format!("running `muster {}`", args.join(" ")))?;
        if !status.success() {
            bail!(
                "`muster {}` failed ({status}): {}",
                args.join(" "),
                stderr.trim()
            );
        }
        Ok(stdout)
    }
}

/// Runs `cmd` with piped output, killing it after `timeout`. Returns (status, stdout, stderr).
pub fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> Result<(ExitStatus, String, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot spawn")?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {} ms", timeout.as_millis());
        }
        thread::sleep(Duration::from_millis(CLI_POLL_MS));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    Ok((status, out, err))
}

/// Reads a child's pipe to the end on a thread, so a large output never blocks the child.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Fails clearly unless this process is root and `ip` (iproute2) runs: netns tests need both
/// and must never pass silently without them.
pub fn preflight() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "network-namespace tests must run as root (they create namespaces, veths and a \
             bridge); run them as root, e.g. `sudo -E cargo test -p muster-testbed`"
        );
    }
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match ip {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("`ip` (iproute2) is missing: install it with `apt-get install -y iproute2`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_bin_wins() {
        let c = candidates(Some("/x/muster".into()), Some("/t".into()));
        assert_eq!(c, [PathBuf::from("/x/muster")]);
    }

    #[test]
    fn debug_before_release() {
        let c = candidates(None, Some("/t".into()));
        assert_eq!(
            c,
            [
                PathBuf::from("/t/debug/muster"),
                PathBuf::from("/t/release/muster")
            ]
        );
        let c = candidates(None, None);
        assert_eq!(c[0], workspace_root().join("target/debug/muster"));
    }

    #[test]
    fn timeout_kills_a_hung_child() {
        let mut cmd = Command::new("sleep");
        cmd.arg("10");
        let started = Instant::now();
        let err = run_with_timeout(cmd, Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn output_is_captured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let (status, out, err) = run_with_timeout(cmd, Duration::from_secs(5)).unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(out, "out\n");
        assert_eq!(err, "err\n");
    }
}
