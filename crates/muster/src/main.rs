//! The `muster` binary: `muster agent` runs the agent; `keygen`, `status`, `health`, `transfer`,
//! `reset` and `check-config` are the operator CLI; `completions` and `man` print its shell completions and
//! man page (`docs.rs`).
//!
//! Exit codes: 0 success, 1 runtime failure (`health`: a check failed), 2 bad usage or configuration (also: the agent
//! refuses a data dir whose store and identity do not go together; `reset` without `--yes`),
//! 101 a panic (after
//! the agent's panic hook removed the VIP, see `vip.rs`).

mod agent;
mod config;
mod deadline;
mod dns;
mod docs;
mod events;
mod health_cmd;
mod identity;
mod installer;
mod metrics;
mod notify;
mod probe;
mod remove;
mod render;
mod reset;
mod rpc;
mod tls;
mod vip;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

/// muster: forms a site's hosts into one Raft group and floats the Kubernetes API endpoint.
#[derive(Parser)]
#[command(name = "muster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Talk to a remote agent's `[rpc] listen` (host:port) over mutual TLS instead of the local
    /// socket.
    #[arg(long, global = true, requires = "key")]
    endpoint: Option<String>,
    /// The operator key for --endpoint (`muster operator keygen`).
    #[arg(long, global = true, requires = "endpoint")]
    key: Option<PathBuf>,
    /// The remote agent's key (64 hex digits; its log prints it at start); without it the
    /// known-hosts file is used, and a first contact pins the key presented.
    #[arg(long, global = true, requires = "endpoint")]
    server_key: Option<String>,
    /// The known-hosts file of pinned agent keys [default: ~/.config/muster/known_hosts].
    #[arg(long, global = true, requires = "endpoint")]
    known_hosts: Option<PathBuf>,
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Make an operator key (a new file, mode 0600) and print its public key, for an agent's
    /// `[[rpc.operators]]`.
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Try a failed step again (its attempt limit counts anew).
    Retry {
        /// The host: its name or id.
        node: String,
    },
    /// Mark a pending or failed step done without running it (you installed that host).
    Skip {
        /// The host: its name or id.
        node: String,
    },
    /// Go ahead with the members there are, fewer than `expected_nodes`: the site is formed
    /// with them and the plan follows. You vouch that no other cluster forms on this site.
    Start,
    /// Re-initialise: make NODE (a control-plane host) the init host and run the init there —
    /// the only way a second init runs; refused once any control-plane join succeeded.
    Reinit {
        /// The new init host: its name or id.
        #[arg(long)]
        to: String,
    },
    /// Give a control-plane slot that a removed control-plane host left open to NODE: a member
    /// whose step has not started (a pending worker) or that has none (a spare).
    Promote {
        /// The host: its name or id.
        node: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground (logs to stderr; RUST_LOG sets the level).
    Agent {
        /// Path of the TOML configuration.
        #[arg(long, default_value = "/etc/muster/muster.toml")]
        config: PathBuf,
    },
    /// Operator keys for remote access (`--endpoint`, `--key`).
    Operator {
        #[command(subcommand)]
        action: OperatorCommand,
    },
    /// Write a new random site key (mode 0600).
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the local agent's view of the site.
    Status {
        /// The agent's status socket.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// One JSON object instead of the readable view.
        #[arg(long)]
        json: bool,
    },
    /// Print what happened, as the local agent saw it (leader changes, endpoint moves, DNS
    /// updates, members, install steps, refused connections), oldest first.
    Events {
        /// Keep printing new events as they happen (until interrupted).
        #[arg(long)]
        follow: bool,
        /// The agent's status socket.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// One JSON object per line instead of the readable lines.
        #[arg(long)]
        json: bool,
    },
    /// Run named health checks in order (agent, member, formed, quorum, leader, endpoint,
    /// site-conflict, plan, api) and print each; exit 1 at the first failure (the rest are
    /// skipped). For scripts and boot health gates.
    Health {
        /// The agent's status socket.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Look again until every check passes or this long has passed (e.g. "2m"); default:
        /// one look.
        #[arg(long, value_parser = config::parse_duration)]
        wait: Option<std::time::Duration>,
        /// `{"healthy", "checks": [{"name", "result", "message"}]}` instead of lines.
        #[arg(long)]
        json: bool,
        /// Also connect to the VIP on this TCP port (e.g. 6443, the API server).
        #[arg(long)]
        endpoint_port: Option<u16>,
    },
    /// Hand leadership (and the VIP) over to another voter; asked of any member's agent (a
    /// follower forwards it to the leader).
    Transfer {
        /// The agent's status socket.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Target voter id (16 hex digits, as `muster status` shows); default: the most
        /// caught-up reachable voter.
        #[arg(long)]
        to: Option<String>,
    },
    /// Show the join plan: each host's step (role, order, state, attempts, time, last error);
    /// `retry NODE` / `skip NODE` act on a step (asked of any member, done by the leader).
    Plan {
        /// `retry NODE` or `skip NODE`; without one, show the plan.
        #[command(subcommand)]
        action: Option<PlanCommand>,
        /// The agent's status socket.
        #[arg(long, default_value = config::DEFAULT_SOCKET, global = true)]
        socket: PathBuf,
        /// The operator contract's `plan` object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a host from the cluster (asked of any member's agent, carried out by the leader):
    /// every member refuses its identity from then on. Waits until this host no longer lists it.
    Remove {
        /// The host: its name or its id (16 hex digits, as `muster status` shows).
        node: String,
        /// A member (name or id) that takes the removed host's control-plane slot in the join
        /// plan — a spare without a step, or a worker whose step has not started — instead of
        /// the next host that joins.
        #[arg(long)]
        spare: Option<String>,
        /// The agent's status socket.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Give up waiting after this many seconds (the removal may still complete).
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Delete this host's raft store and identity so that it joins its site as a new host.
    Reset {
        /// Path of the TOML configuration (names the data_dir and the status socket).
        #[arg(long, default_value = "/etc/muster/muster.toml")]
        config: PathBuf,
        /// Really delete; without it, only list what would be deleted (and exit 2).
        #[arg(long)]
        yes: bool,
    },
    /// Check a configuration file and exit.
    CheckConfig {
        /// Path of the TOML configuration.
        #[arg(long, default_value = "/etc/muster/muster.toml")]
        config: PathBuf,
    },
    /// Print the shell completion script for SHELL (e.g. `muster completions bash >
    /// /usr/share/bash-completion/completions/muster`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page muster(1) (roff); with --out-dir, write it and one page per
    /// subcommand (muster-agent.1, ...) there instead.
    Man {
        /// Directory to write muster.1 and muster-SUBCOMMAND.1 into.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// The log filter without `RUST_LOG`.
const DEFAULT_LOG_FILTER: &str = "info";
/// netlink-packet-route warns on every link dump that the kernel sends more IPv6 settings than it
/// knows (`IFLA_INET6_CONF`), and a VIP holder reads the link twice a second: not actionable, and
/// it buried the journal. Added to any filter that does not name the crate itself.
const NETLINK_PARSE_QUIET: &str = "netlink_packet_route=error";

/// `RUST_LOG` (else [`DEFAULT_LOG_FILTER`]) with [`NETLINK_PARSE_QUIET`] unless it names
/// netlink_packet_route. An invalid `RUST_LOG` falls back to the default.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let wanted = std::env::var("RUST_LOG").unwrap_or_default();
    let base = if wanted.trim().is_empty() {
        DEFAULT_LOG_FILTER.to_string()
    } else {
        wanted
    };
    let text = if base.contains("netlink_packet_route") {
        base
    } else {
        format!("{base},{NETLINK_PARSE_QUIET}")
    };
    tracing_subscriber::EnvFilter::try_new(&text).unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{DEFAULT_LOG_FILTER},{NETLINK_PARSE_QUIET}"))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(endpoint) = cli.endpoint.clone() {
        let server_key = match cli.server_key.as_deref().map(tls::parse_public_key) {
            None => None,
            Some(Ok(k)) => Some(k),
            Some(Err(e)) => return usage_error(anyhow::anyhow!("--server-key: {e}")),
        };
        let known_hosts = cli.known_hosts.clone().unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .unwrap_or_else(|| PathBuf::from("."));
            base.join("muster/known_hosts")
        });
        rpc::use_remote(rpc::Remote {
            endpoint,
            key: cli.key.clone().unwrap_or_default(),
            server_key,
            known_hosts,
        });
    }
    match cli.command {
        Command::Operator {
            action: OperatorCommand::Keygen { out },
        } => {
            let made = tls::KeyPair::generate().and_then(|k| {
                k.write(&out)?;
                Ok(k)
            });
            match made {
                Ok(k) => {
                    println!("{}", tls::hex(&k.public_key));
                    eprintln!(
                        "wrote the operator key {}; list the public key above in an agent's [[rpc.operators]]",
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => report(Err(e), 1),
            }
        }
        Command::Completions { shell } => report(docs::completions(Cli::command(), shell), 1),
        Command::Man { out_dir } => report(docs::man(Cli::command(), out_dir.as_deref()), 1),
        Command::Keygen { out } => report(identity::keygen(&out), 1),
        Command::CheckConfig { config } => match config::Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::Agent { config } => {
            let cfg = match config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            // One thread: the event loop, the swarm and the actors hand messages to each other
            // all the time, and across threads every hand-off is a futex wake-up — at idle, most
            // of what the agent cost (README, "Idle cost"). Nothing in the agent blocks a worker
            // for long: the lease fence and the conflict watch are OS threads of their own.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return report(Err(e.into()), 1),
            };
            // The event loop runs as a task, not as `block_on`'s own future: a task woken by
            // another task (the network actor handing it a message) is queued in the
            // scheduler, whereas waking `block_on`'s future writes the driver's eventfd and
            // costs one more trip through epoll for every message received.
            let agent = runtime.spawn(async move { agent::run(cfg, &config).await });
            let result = match runtime.block_on(agent) {
                Ok(result) => result,
                // The panic hook printed the message (and, with a VIP, released it and exited);
                // exit as a panic unwinding out of `main` does.
                Err(e) if e.is_panic() => return ExitCode::from(101),
                Err(e) => Err(anyhow::anyhow!("the agent's event loop stopped: {e}")),
            };
            match result {
                Err(e) if e.downcast_ref::<identity::StartRefused>().is_some() => usage_error(e),
                result => report(result, 1),
            }
        }
        Command::Reset { config, yes } => {
            let cfg = match config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let runtime = match cli_runtime() {
                Ok(r) => r,
                Err(e) => return report(Err(e), 1),
            };
            match runtime.block_on(reset::run(&cfg, &config, yes)) {
                Ok(reset::Outcome::Done) => ExitCode::SUCCESS,
                Ok(reset::Outcome::NotConfirmed) => ExitCode::from(2),
                Err(e) => report(Err(e), 1),
            }
        }
        Command::Health {
            socket,
            wait,
            json,
            endpoint_port,
        } => {
            let runtime = match cli_runtime() {
                Ok(r) => r,
                Err(e) => return report(Err(e), 1),
            };
            let opts = health_cmd::Options {
                socket,
                wait: wait.unwrap_or_default(),
                json,
                endpoint_port,
            };
            if runtime.block_on(health_cmd::run(&opts)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Transfer { socket, to } => {
            let to = match to.as_deref().map(muster_core::parse_id) {
                None => 0,
                Some(Some(id)) => id,
                Some(None) => return usage_error("--to: expected a node id of 1-16 hex digits"),
            };
            let runtime = match cli_runtime() {
                Ok(r) => r,
                Err(e) => return report(Err(e), 1),
            };
            report(runtime.block_on(transfer(&socket, to)), 1)
        }
        Command::Remove {
            node,
            spare,
            socket,
            wait_secs,
        } => {
            let runtime = match cli_runtime() {
                Ok(r) => r,
                Err(e) => return report(Err(e), 1),
            };
            let wait = std::time::Duration::from_secs(wait_secs);
            report(
                runtime.block_on(remove::run(&socket, &node, spare.as_deref(), wait)),
                1,
            )
        }
        Command::Plan {
            action,
            socket,
            json,
        } => {
            let runtime = match cli_runtime() {
                Ok(r) => r,
                Err(e) => return report(Err(e), 1),
            };
            if let Some(action) = action {
                let (node, kind, verb) = match action {
                    PlanCommand::Retry { node } => {
                        (node, muster_proto::PlanActionKind::Retry, "retrying")
                    }
                    PlanCommand::Skip { node } => {
                        (node, muster_proto::PlanActionKind::Skip, "skipping")
                    }
                    PlanCommand::Start => (String::new(), muster_proto::PlanActionKind::Start, ""),
                    PlanCommand::Reinit { to } => (
                        to,
                        muster_proto::PlanActionKind::Reinit,
                        "re-initialising with",
                    ),
                    PlanCommand::Promote { node } => (
                        node,
                        muster_proto::PlanActionKind::Promote,
                        "giving a control-plane slot to",
                    ),
                };
                return match runtime.block_on(rpc::plan_act(&socket, &node, kind)) {
                    Ok(r) if kind == muster_proto::PlanActionKind::Start => {
                        println!(
                            "asked leader {} to go ahead with the members there are: the site \
                             forms with them and the plan follows",
                            muster_core::format_id(r.leader_id)
                        );
                        ExitCode::SUCCESS
                    }
                    Ok(r) if kind == muster_proto::PlanActionKind::Promote => {
                        println!(
                            "{verb} {} ({}) through leader {}: it joins the control plane when its turn comes",
                            r.name,
                            muster_core::format_id(r.id),
                            muster_core::format_id(r.leader_id)
                        );
                        ExitCode::SUCCESS
                    }
                    Ok(r) => {
                        println!(
                            "{verb} the step of {} ({}) through leader {}",
                            r.name,
                            muster_core::format_id(r.id),
                            muster_core::format_id(r.leader_id)
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => report(Err(e), 1),
                };
            }
            let status = match runtime.block_on(rpc::query(&socket)) {
                Ok(s) => s,
                Err(e) => return report(Err(e), 1),
            };
            match (&status.plan, json) {
                (Some(plan), true) => println!("{}", render::plan_json(plan)),
                (Some(plan), false) => print!("{}", render::plan_table(plan)),
                (None, true) => println!("null"),
                (None, false) => println!(
                    "no join plan yet: it is made once the site is formed, with [kubernetes] configured"
                ),
            }
            ExitCode::SUCCESS
        }
        Command::Events {
            follow,
            socket,
            json,
        } => {
            let runtime = match cli_runtime() {
                Ok(r) => r,
                Err(e) => return report(Err(e), 1),
            };
            let print = |e: muster_proto::Event| {
                use std::io::Write as _;
                let line = if json {
                    render::event_json(&e).to_string()
                } else {
                    render::event_line(&e)
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            };
            report(runtime.block_on(rpc::events(&socket, follow, print)), 1)
        }
        Command::Status { socket, json } => {
            let runtime = match cli_runtime() {
                Ok(r) => r,
                Err(e) => return report(Err(e), 1),
            };
            let status = match runtime.block_on(rpc::query(&socket)) {
                Ok(s) => s,
                Err(e) => return report(Err(e), 1),
            };
            if json {
                println!("{}", render::json(&status));
            } else {
                // Colour only on a terminal, and not when NO_COLOR is set (no-color.org).
                let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
                print!("{}", render::human_coloured(&status, colour));
            }
            ExitCode::SUCCESS
        }
    }
}

/// Starts a handover and waits until the local agent sees the target lead.
async fn transfer(socket: &std::path::Path, to: u64) -> anyhow::Result<()> {
    use muster_core::format_id;
    let started = std::time::Instant::now();
    let answer = rpc::transfer(socket, to).await?;
    let deadline = started + std::time::Duration::from_secs(5);
    loop {
        let status = rpc::query(socket).await?;
        // A forwarded "best voter" transfer names no target: any new leader will do.
        let moved = match answer.target {
            0 => status.leader_id != 0 && status.leader_id != answer.from,
            t => status.leader_id == t,
        };
        if moved {
            let answer = muster_proto::TransferResponse {
                target: status.leader_id,
                ..answer
            };
            let name = |id: u64| {
                status
                    .members
                    .iter()
                    .find(|m| m.id == id)
                    .map_or_else(String::new, |m| format!(" ({})", m.name))
            };
            println!(
                "leadership moved from {}{} to {}{} in {} ms",
                format_id(answer.from),
                name(answer.from),
                format_id(answer.target),
                name(answer.target),
                started.elapsed().as_millis()
            );
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "leadership did not move to {} within 5 s (leader is now {}); the old leader keeps it",
                if answer.target == 0 { "another voter".to_string() } else { format_id(answer.target) },
                format_id(status.leader_id)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The single-threaded runtime a CLI command talks to the agent with.
fn cli_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn usage_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("muster: {e}");
    ExitCode::from(2)
}

fn report(result: anyhow::Result<()>, code: u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("muster: {e:#}");
            ExitCode::from(code)
        }
    }
}
