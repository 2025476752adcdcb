//! The `muster-sim` command line: `run` one seed of a scenario (with an optional JSON report,
//! SVG timeline and text trace), `search` many seeds for failures, and `bench` the 1000-host
//! formation plus leader kills. Thin: everything it does is in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;

#[derive(Parser)]
#[command(
    name = "muster-sim",
    about = "Seeded many-node simulator over muster-core"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one seed of a scenario.
    Run {
        /// Scenario file (TOML).
        #[arg(long)]
        scenario: String,
        /// Seed.
        #[arg(long)]
        seed: u64,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<String>,
        /// Write the SVG timeline here.
        #[arg(long)]
        svg: Option<String>,
        /// Draw only this virtual-time window of the timeline, in ms: FROM-TO.
        #[arg(long, value_parser = parse_window)]
        svg_window: Option<(u64, u64)>,
        /// Write the text trace of notable events here.
        #[arg(long)]
        trace: Option<String>,
        /// At the end, describe every host that is not a member of the main cluster.
        #[arg(long)]
        dump: bool,
        /// Print the cores' log to stderr, each line with its host and virtual ms; the value is
        /// a tracing filter such as `info` or `muster_core=debug`.
        #[arg(long)]
        log: Option<String>,
    },
    /// Run many seeds; report every failing seed with its replay command.
    Search {
        /// Scenario file (TOML).
        #[arg(long)]
        scenario: String,
        /// Number of seeds.
        #[arg(long)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Parallel runs.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// Wall time of N hosts forming plus K leader kills, and the virtual-time figures.
    Bench(bench::BenchArgs),
}

fn parse_window(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').ok_or("expected FROM-TO in ms")?;
    let (a, b) = (a.trim().parse::<u64>(), b.trim().parse::<u64>());
    match (a, b) {
        (Ok(a), Ok(b)) if a < b => Ok((a, b)),
        _ => Err("expected FROM-TO in ms with FROM < TO".into()),
    }
}

fn write(path: &Option<String>, what: &str, text: &str) -> Result<(), String> {
    if let Some(p) = path {
        std::fs::write(p, text).map_err(|e| format!("{p}: {e}"))?;
        eprintln!("{what} written to {p}");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run(
    log: Option<String>,
    dump: bool,
    svg_window: Option<(u64, u64)>,
    scenario: &str,
    seed: u64,
    report: Option<String>,
    svg: Option<String>,
    trace: Option<String>,
) -> Result<bool, String> {
    let sc = muster_sim::Scenario::load(std::path::Path::new(scenario))?;
    if let Some(filter) = &log {
        let filter = tracing_subscriber::EnvFilter::try_new(filter)
            .map_err(|e| format!("--log {filter:?}: {e}"))?;
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .init();
    }
    let opts = muster_sim::SimOptions {
        trace_text: trace.is_some(),
        log_spans: log.is_some(),
        ..Default::default()
    };
    let (sim, rep) = muster_sim::run(&sc, scenario, seed, &opts)?;
    print!("{}", rep.summary());
    if dump {
        for line in sim.describe_stragglers() {
            println!("  straggler {line}");
        }
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let json = serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?;
    write(&report, "report", &json)?;
    if svg.is_some() {
        write(&svg, "timeline", &muster_sim::svg::render(&sim, svg_window))?;
    }
    if let Some(text) = sim.trace.text() {
        write(&trace, "trace", text)?;
    }
    // The process ends here: freeing a site of 1000 hosts piece by piece would take a second.
    std::mem::forget(sim);
    Ok(rep.passed)
}

fn search(scenario: &str, seeds: u64, start: u64, jobs: usize) -> Result<bool, String> {
    let sc = muster_sim::Scenario::load(std::path::Path::new(scenario))?;
    let jobs = jobs.clamp(1, 64);
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicU64::new(start);
    let end = start + seeds;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if seed >= end {
                    break;
                }
                let opts = muster_sim::SimOptions::default();
                match muster_sim::run(&sc, scenario, seed, &opts) {
                    Ok((_, rep)) if rep.passed => {
                        println!(
                            "seed {seed}: pass ({} wall ms, formation {:?} ms)",
                            rep.wall_ms, rep.formation_ms
                        )
                    }
                    Ok((_, rep)) => {
                        let first = rep
                            .violations
                            .first()
                            .map(|v| format!("{} at {} ms: {}", v.invariant, v.at_ms, v.detail));
                        println!(
                            "seed {seed}: FAIL {}\n  replay: {}",
                            first.unwrap_or_default(),
                            rep.replay
                        );
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(seed);
                    }
                    Err(e) => {
                        println!("seed {seed}: error {e}");
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(seed);
                    }
                }
            });
        }
    });
    let mut failed = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_unstable();
    println!("{} of {seeds} seeds failed", failed.len());
    for s in &failed {
        println!("  {}", muster_sim::replay_command(scenario, *s));
    }
    Ok(failed.is_empty())
}

fn main() -> ExitCode {
    // Core panics are caught per host and reported as violations; one line each is enough.
    std::panic::set_hook(Box::new(|info| eprintln!("muster-sim: panic: {info}")));
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run {
            scenario,
            seed,
            report,
            svg,
            trace,
            dump,
            svg_window,
            log,
        } => run(log, dump, svg_window, &scenario, seed, report, svg, trace),
        Cmd::Search {
            scenario,
            seeds,
            start,
            jobs,
        } => search(&scenario, seeds, start, jobs),
        Cmd::Bench(args) => bench::bench(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("muster-sim: {e}");
            ExitCode::from(2)
        }
    }
}
