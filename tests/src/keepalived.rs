//! keepalived (the Debian package) as the comparison peer of the VIP benchmark: one keepalived
//! per host namespace of a [`Site`], each with its own config, pid files and log.
//!
//! `muster-vip-bench` stops the muster agents, then runs keepalived on the same hosts, bridge and
//! client. Two configurations: [`Timing::Default`] (VRRPv2, `advert_int 1`, everything else
//! keepalived's defaults) and [`Timing::Tuned`] (VRRPv3, `advert_int 0.1`). Every instance is
//! `state BACKUP` with keepalived's default priority 100, so a restarted host never preempts
//! the holder. keepalived runs in the foreground (`--dont-fork`) in its own process group with
//! SIGKILL as parent-death signal; [`Keepalived::kill`] SIGKILLs the group (the address stays
//! on the interface, as after a crash), `Drop` kills whatever still runs, and deleting the
//! site's namespaces kills any straggler.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::names::{HOST_IFACE, VIP_V4};
use crate::site::Site;

/// The keepalived binary.
pub const KEEPALIVED: &str = "keepalived";
/// VRRP router id shared by the instances.
const VIRTUAL_ROUTER_ID: u8 = 77;
/// How long [`Keepalived::stop_all`] waits after SIGTERM.
const TERM_WAIT_MS: u64 = 5_000;

/// The two configurations compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// VRRPv2, `advert_int 1`, keepalived's defaults otherwise.
    Default,
    /// VRRPv3, `advert_int 0.1`.
    Tuned,
}

impl Timing {
    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Timing::Default => "keepalived default (VRRPv2, advert 1 s)",
            Timing::Tuned => "keepalived tuned (VRRPv3, advert 0.1 s)",
        }
    }

    /// The advertisement interval.
    pub fn advert(self) -> Duration {
        match self {
            Timing::Default => Duration::from_secs(1),
            Timing::Tuned => Duration::from_millis(100),
        }
    }
}

/// keepalived.conf for host `name`.
pub fn render_config(name: &str, timing: Timing) -> String {
    let (version, advert) = match timing {
        Timing::Default => ("", "1"),
        Timing::Tuned => ("  vrrp_version 3\n", "0.1"),
    };
    format!(
        "global_defs {{\n  router_id {name}\n{version}}}\n\
         vrrp_instance VI_MUSTER {{\n  state BACKUP\n  interface {HOST_IFACE}\n  \
         virtual_router_id {VIRTUAL_ROUTER_ID}\n  priority 100\n  advert_int {advert}\n  \
         virtual_ipaddress {{\n    {VIP_V4} dev {HOST_IFACE}\n  }}\n}}\n"
    )
}

/// One host's keepalived.
#[derive(Debug)]
struct Instance {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// keepalived on every host of a site. See the module docs.
#[derive(Debug)]
pub struct Keepalived {
    instances: Vec<Instance>,
}

/// Fails clearly when keepalived is not installed.
pub fn preflight() -> Result<()> {
    match Command::new(KEEPALIVED)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("keepalived is missing: `apt-get install -y keepalived` (scripts/lib.sh does)"),
    }
}

impl Keepalived {
    /// Writes a config per host of `site` under `<site dir>/keepalived-<tag>/h<i>/`.
    pub fn new(site: &Site, timing: Timing) -> Result<Self> {
        let tag = match timing {
            Timing::Default => "default",
            Timing::Tuned => "tuned",
        };
        let mut instances = Vec::new();
        for i in 0..site.len() {
            let dir = site
                .dir()
                .join(format!("keepalived-{tag}"))
                .join(format!("h{i}"));
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            fs::write(
                dir.join("keepalived.conf"),
                render_config(&format!("h{i}"), timing),
            )?;
            instances.push(Instance {
                ns: site.namespace(i).to_owned(),
                dir,
                child: None,
            });
        }
        Ok(Self { instances })
    }

    /// Starts host `i`'s keepalived.
    pub fn start(&mut self, i: usize) -> Result<()> {
        let inst = &mut self.instances[i];
        if inst.child.is_some() {
            bail!("keepalived on host {i} already runs");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(inst.dir.join("keepalived.log"))?;
        let arg = |f: &str| inst.dir.join(f).to_string_lossy().into_owned();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &inst.ns, KEEPALIVED])
            .args([
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--no-syslog",
                "--vrrp",
            ])
            .args(["--use-file", &arg("keepalived.conf")])
            .args(["--pid", &arg("keepalived.pid")])
            .args(["--vrrp_pid", &arg("vrrp.pid")])
            .args(["--checkers_pid", &arg("checkers.pid")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2).
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        inst.child = Some(cmd.spawn().context("spawning keepalived")?);
        Ok(())
    }

    /// Starts every host's keepalived.
    pub fn start_all(&mut self) -> Result<()> {
        (0..self.instances.len()).try_for_each(|i| self.start(i))
    }

    /// Whether host `i`'s keepalived runs (reaps it if it exited).
    pub fn is_running(&mut self, i: usize) -> bool {
        let inst = &mut self.instances[i];
        match inst.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                inst.child = None;
                false
            }
            None => false,
        }
    }

    /// The pid of host `i`'s keepalived (also its process group, which its VRRP child shares),
    /// while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.instances[i].child.as_ref().map(Child::id)
    }

    /// SIGKILLs host `i`'s keepalived (its process group) and reaps it; its VIP stays put.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let Some(mut child) = self.instances[i].child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid")?);
        let _ = killpg(pid, Signal::SIGKILL);
        child.wait().context("reaping keepalived")?;
        Ok(())
    }

    /// SIGTERMs every keepalived (it removes its VIP) and waits; SIGKILLs stragglers.
    pub fn stop_all(&mut self) -> Result<()> {
        for inst in &self.instances {
            if let Some(child) = &inst.child {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(TERM_WAIT_MS);
        let mut stuck = Vec::new();
        for (i, inst) in self.instances.iter_mut().enumerate() {
            let Some(mut child) = inst.child.take() else {
                continue;
            };
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    let _ = child.wait();
                    stuck.push(i);
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        if !stuck.is_empty() {
            bail!("keepalived on hosts {stuck:?} ignored SIGTERM for {TERM_WAIT_MS} ms");
        }
        Ok(())
    }

    /// The last `lines` lines of host `i`'s keepalived log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = fs::read(self.instances[i].dir.join("keepalived.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        crate::host::tail(&text, lines)
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        for i in 0..self.instances.len() {
            let _ = self.kill(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_differ_only_in_timing() {
        let d = render_config("h0", Timing::Default);
        let t = render_config("h0", Timing::Tuned);
        assert!(d.contains("advert_int 1\n") && !d.contains("vrrp_version"));
        assert!(t.contains("advert_int 0.1\n") && t.contains("vrrp_version 3"));
        for c in [&d, &t] {
            assert!(c.contains("state BACKUP") && c.contains("priority 100"));
            assert!(c.contains("10.77.0.100/24 dev eth0"));
            assert_eq!(c.matches('{').count(), c.matches('}').count());
        }
    }
}
