//! CPU time and resident memory of processes, read from `/proc`, for `muster-idle-bench`.
//!
//! [`cpu_ticks_of_group`] sums `utime + stime` (clock ticks, every thread of each process) over
//! every process whose process group is the given one: an agent is one process, keepalived is a
//! parent and its VRRP child, and both run in a process group of their own (see [`crate::host`],
//! [`crate::keepalived`]). [`rss_kib`] reads `VmRSS` from `/proc/PID/status`. The parsers are
//! pure and unit-tested.

use std::fs;
use std::process::Command;

use anyhow::{Context, Result};

/// CPU time and process group of one process, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Process group id (field 5).
    pub pgrp: i64,
    /// `utime + stime` (fields 14 and 15), in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        pgrp: fields.get(2)?.parse().ok()?,
        cpu_ticks: num(14)? + num(15)?,
    })
}

/// Parses `VmRSS:` (KiB) out of the text of `/proc/PID/status`.
pub fn parse_vm_rss_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `/proc/PID/stat` of one process.
pub fn stat(pid: u32) -> Result<Stat> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).with_context(|| format!("parsing {path}"))
}

/// Sum of `utime + stime` over every live process in process group `pgrp`, in clock ticks.
/// Processes that exit while the table is read are skipped.
pub fn cpu_ticks_of_group(pgrp: u32) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(s) = stat(pid) {
            if s.pgrp == i64::from(pgrp) {
                total += s.cpu_ticks;
            }
        }
    }
    Ok(total)
}

/// Sum of `VmRSS` over every live process in process group `pgrp`, in KiB.
pub fn rss_kib_of_group(pgrp: u32) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if stat(pid).is_ok_and(|s| s.pgrp == i64::from(pgrp)) {
            total += rss_kib(pid).unwrap_or(0);
        }
    }
    Ok(total)
}

/// `VmRSS` of one process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss_kib(&text).with_context(|| format!("no VmRSS in {path}"))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails, the Linux value).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_paren() {
        let line = "4242 (tokio (x) y) S 1 4240 4240 0 -1 4194560 900 0 0 0 \
                    123 45 0 0 20 0 9 0 5555 100000 2000 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                pgrp: 4240,
                cpu_ticks: 168
            })
        );
        assert_eq!(parse_stat("12 (a) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        let s = stat(me).unwrap();
        assert!(s.pgrp > 0);
        assert!(rss_kib(me).unwrap() > 0);
        assert!(clock_ticks_per_sec() > 0);
    }

    #[test]
    fn vm_rss() {
        let text = "Name:\tmuster\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t5\n";
        assert_eq!(parse_vm_rss_kib(text), Some(12345));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
    }
}
