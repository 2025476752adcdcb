//! `muster remove NODE`: asks the local agent to remove a host (the agent proposes it if it
//! leads, else forwards it to the leader), then waits until the local agent no longer lists the
//! host as a member, and says what happened.

use std::path::Path;
use std::time::{Duration, Instant};

use muster_core::format_id;

use crate::rpc;

/// How often the local status is read while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Asks for the removal of `node` (name or id) and waits up to `wait` for it to take effect.
/// With `spare`, that member takes the removed host's control-plane slot.
pub async fn run(
    socket: &Path,
    node: &str,
    spare: Option<&str>,
    wait: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let answer = rpc::remove(socket, node, spare).await?;
    println!(
        "removing {} ({}) through leader {}",
        answer.name,
        format_id(answer.id),
        format_id(answer.leader_id)
    );
    if let Some(spare) = spare {
        println!("{spare} takes its control-plane slot in the join plan");
    }
    loop {
        let status = rpc::query(socket).await?;
        let listed = status.members.iter().any(|m| m.id == answer.id);
        let denied = status.removed.iter().any(|r| r.id == answer.id);
        if (denied && !listed) || status.phase == "removed" {
            let voters = status.members.iter().filter(|m| m.voter).count();
            println!(
                "{} removed in {} ms: refused by every member from now on; {} members, {} voters",
                answer.name,
                started.elapsed().as_millis(),
                status.members.len(),
                voters
            );
            return Ok(());
        }
        if started.elapsed() > wait {
            anyhow::bail!(
                "{} is still {} after {} s; the removal may still complete (check `muster status`), or ask again once the cluster has a leader",
                answer.name,
                if denied { "in raft (being taken out)" } else { "a member" },
                wait.as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
