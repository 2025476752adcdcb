//! Partitions between hosts, made with nftables `bridge` rules in the site's bridge namespace.
//!
//! [`crate::site::Site::partition`] cuts one group of hosts' bridge ports from another group's,
//! in both directions, with one `forward` chain in table `bridge muster_partition`; ports not
//! named (the client's, other hosts') keep forwarding to everyone. Flooded frames (ARP, mDNS,
//! VRRP multicast) pass the bridge `forward` hook once per egress port, so they are cut too.
//! [`heal`] deletes the table; deleting the bridge namespace removes it as well.
//!
//! Every change replaces the whole table in one atomic `nft -f` transaction.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The nftables table (family `bridge`) holding the partition rules.
pub const TABLE: &str = "muster_partition";

/// The `nft -f` script that replaces [`TABLE`] with rules dropping every frame between a port of
/// `a` and a port of `b`, both directions. Empty groups give an empty (accepting) chain.
pub fn render(a: &[String], b: &[String]) -> String {
    let mut script = format!(
        "add table bridge {TABLE}\ndelete table bridge {TABLE}\ntable bridge {TABLE} {{\n  \
         chain forward {{\n    type filter hook forward priority 0; policy accept;\n"
    );
    if !a.is_empty() && !b.is_empty() {
        let (a, b) = (set(a), set(b));
        script.push_str(&format!("    iifname {a} oifname {b} drop\n"));
        script.push_str(&format!("    iifname {b} oifname {a} drop\n"));
    }
    script.push_str("  }\n}\n");
    script
}

fn set(ports: &[String]) -> String {
    let quoted: Vec<String> = ports.iter().map(|p| format!("\"{p}\"")).collect();
    format!("{{ {} }}", quoted.join(", "))
}

/// Cuts ports `a` from ports `b` in `bridge_ns` (replacing any earlier partition).
pub fn apply(bridge_ns: &str, a: &[String], b: &[String]) -> Result<()> {
    nft_script(bridge_ns, &render(a, b))
}

/// Removes every partition rule from `bridge_ns`.
pub fn heal(bridge_ns: &str) -> Result<()> {
    nft_script(
        bridge_ns,
        &format!("add table bridge {TABLE}\ndelete table bridge {TABLE}\n"),
    )
}

/// Fails clearly when `nft` is missing.
pub fn preflight() -> Result<()> {
    match Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "`nft` (nftables) is missing: partitions need it; install it with \
             `apt-get install -y nftables` (scripts/lib.sh does)"
        ),
    }
}

/// Runs `ip netns exec <ns> nft -f -` with `script` on stdin.
fn nft_script(ns: &str, script: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ip netns exec .. nft` (is nftables installed?)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`nft -f -` in {ns} failed ({}): {}\nscript:\n{script}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cut_both_directions() {
        let s = render(&["p-v0".into()], &["p-v1".into(), "p-v2".into()]);
        assert!(s.starts_with("add table bridge muster_partition\ndelete table"));
        assert!(s.contains(r#"iifname { "p-v0" } oifname { "p-v1", "p-v2" } drop"#));
        assert!(s.contains(r#"iifname { "p-v1", "p-v2" } oifname { "p-v0" } drop"#));
        assert!(s.contains("hook forward"));
    }

    #[test]
    fn empty_group_drops_nothing() {
        assert!(!render(&[], &["x".into()]).contains("drop"));
    }
}
