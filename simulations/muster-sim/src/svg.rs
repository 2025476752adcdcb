//! The timeline picture: one row per host (the first [`crate::metrics::MAX_ROWS`]), virtual time
//! left to right. A row shows when the host was up (bar coloured by the cluster it was in, grey
//! when in none), when it was leader (dark band on top), when it held the VIP (orange band below)
//! and each change of its applied membership (ticks). Faults are dashed red lines, formation a
//! green line, violations red triangles. Written as plain SVG text.

use std::fmt::Write as _;

use crate::metrics::Mark;
use crate::sim::Sim;

const LEFT: f64 = 60.0;
const TOP: f64 = 46.0;
const ROW: f64 = 14.0;
const WIDTH: f64 = 1200.0;

fn cluster_color(c: u64) -> String {
    if c == 0 {
        return "#bbbbbb".into();
    }
    let hue = (c.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 360;
    format!("hsl({hue},55%,62%)")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders the timeline of a finished run, of the whole run or of the virtual-time `window`.
pub fn render(sim: &Sim, window: Option<(u64, u64)>) -> String {
    let (from, end) = window.unwrap_or((0, sim.now_ms));
    let end = end.max(from + 1);
    let span = (end - from) as f64;
    let x = move |t: u64| LEFT + (WIDTH - LEFT - 10.0) * (t.clamp(from, end) - from) as f64 / span;
    let rows = sim.metrics.rows.len();
    let faults = &sim.metrics.faults;
    let legend_lines = faults.len().min(30) + 4;
    let height = TOP + ROW * rows as f64 + 30.0 + 14.0 * legend_lines as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" font-size="10">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = format!(
        "{} — seed {} — {} hosts{} — trace {:016x}",
        sim.scenario.name,
        sim.seed,
        sim.hosts.len(),
        if sim.hosts.len() > rows {
            format!(" (first {rows} shown)")
        } else {
            String::new()
        },
        sim.trace.hash()
    );
    let _ = writeln!(
        s,
        r#"<text x="4" y="14" font-size="12">{}</text>"#,
        esc(&title)
    );
    axis(&mut s, from, end, &x, rows);
    for (r, marks) in sim.metrics.rows.iter().enumerate() {
        row(&mut s, r, &sim.hosts[r].name, marks, (from, end), &x);
    }
    overlays(&mut s, sim, (from, end), &x, rows);
    legend(&mut s, sim, rows);
    s.push_str("</svg>\n");
    s
}

fn axis(s: &mut String, from: u64, end: u64, x: &dyn Fn(u64) -> f64, rows: usize) {
    let step = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000,
    ]
    .into_iter()
    .find(|st| end / st <= 12)
    .unwrap_or(600_000);
    let bottom = TOP + ROW * rows as f64;
    let mut t = from.div_ceil(step) * step;
    while t <= end {
        let xx = x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{}" x2="{xx:.1}" y2="{bottom}" stroke="#eeeeee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}s</text>"##,
            TOP - 4.0,
            TOP - 8.0,
            t as f64 / 1000.0
        );
        t += step;
    }
}

fn row(
    s: &mut String,
    r: usize,
    name: &str,
    marks: &[(u64, Mark)],
    (from, end): (u64, u64),
    x: &dyn Fn(u64) -> f64,
) {
    let y = TOP + ROW * r as f64;
    let _ = writeln!(s, r#"<text x="4" y="{:.1}">{}</text>"#, y + 10.0, esc(name));
    let mut up: Option<u64> = None;
    let mut cluster: (u64, u64) = (0, 0);
    let mut leader: Option<u64> = None;
    let mut vip: Option<u64> = None;
    // Ticks go on top of the bars, which are only written when their period ends.
    let mut ticks = String::new();
    let bar = |s: &mut String, a: u64, b: u64, dy: f64, h: f64, fill: &str| {
        if b < from || a > end {
            return;
        }
        let w = (x(b) - x(a)).max(0.8);
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{h}" fill="{fill}"/>"#,
            x(a),
            y + dy
        );
    };
    let last = marks.last().map_or(0, |(t, _)| *t).max(end);
    for &(t, m) in marks.iter().chain(std::iter::once(&(last, Mark::Down))) {
        match m {
            Mark::Up => {
                up = Some(t);
                cluster.1 = t;
            }
            Mark::Down => {
                if up.take().is_some() {
                    bar(s, cluster.1, t, 3.0, 8.0, &cluster_color(cluster.0));
                }
                if let Some(a) = leader.take() {
                    bar(s, a, t, 1.0, 3.0, "#222222");
                }
                if let Some(a) = vip.take() {
                    bar(s, a, t, 11.0, 3.0, "#ff8800");
                }
            }
            Mark::Cluster(c) => {
                if up.is_some() {
                    bar(s, cluster.1, t, 3.0, 8.0, &cluster_color(cluster.0));
                }
                cluster = (c, t);
            }
            Mark::Leader(true) => leader = leader.or(Some(t)),
            Mark::Leader(false) => {
                if let Some(a) = leader.take() {
                    bar(s, a, t, 1.0, 3.0, "#222222");
                }
            }
            Mark::Vip(true) => vip = vip.or(Some(t)),
            Mark::Vip(false) => {
                if let Some(a) = vip.take() {
                    bar(s, a, t, 11.0, 3.0, "#ff8800");
                }
            }
            Mark::Members(_) if (from..=end).contains(&t) => {
                let _ = writeln!(
                    ticks,
                    r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="white" stroke-width="0.7"/>"##,
                    x(t),
                    y + 4.0,
                    x(t),
                    y + 10.0
                );
            }
            Mark::Members(_) => {}
        }
    }
    s.push_str(&ticks);
}

fn overlays(
    s: &mut String,
    sim: &Sim,
    (from, end): (u64, u64),
    x: &dyn Fn(u64) -> f64,
    rows: usize,
) {
    let bottom = TOP + ROW * rows as f64;
    let inside = |t: u64| (from..=end).contains(&t);
    for (k, (t, _)) in sim.metrics.faults.iter().enumerate() {
        if !inside(*t) {
            continue;
        }
        let xx = x(*t);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{bottom}" stroke="#dd0000" stroke-dasharray="3,3" stroke-width="0.8"/><text x="{xx:.1}" y="{:.1}" fill="#dd0000" text-anchor="middle">{}</text>"##,
            TOP - 18.0,
            k + 1
        );
    }
    if let Some(f) = sim.metrics.formed_at_ms.filter(|f| inside(*f)) {
        let xx = x(f);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{bottom}" stroke="#00aa00" stroke-width="1"/>"##
        );
    }
    for v in sim.checker.violations.iter().filter(|v| inside(v.at_ms)) {
        let xx = x(v.at_ms);
        let _ = writeln!(
            s,
            r##"<path d="M{:.1},{:.1} l4,-8 l-8,0 z" fill="#dd0000"><title>{} {}</title></path>"##,
            xx,
            TOP - 1.0,
            v.invariant,
            esc(&v.detail)
        );
    }
}

fn legend(s: &mut String, sim: &Sim, rows: usize) {
    let mut y = TOP + ROW * rows as f64 + 20.0;
    let mut line = |s: &mut String, text: &str, color: &str| {
        let _ = writeln!(
            s,
            r#"<text x="4" y="{y:.1}" fill="{color}">{}</text>"#,
            esc(text)
        );
        y += 14.0;
    };
    line(
        s,
        "bar: host up, coloured by cluster (grey: none) | dark band: leader | orange band: VIP held | white ticks: membership changes (first 400 per row) | green line: formed",
        "#333333",
    );
    if sim.hosts.len() > rows {
        line(
            s,
            &format!("{} of {} hosts drawn", rows, sim.hosts.len()),
            "#333333",
        );
    }
    for (k, (t, what)) in sim.metrics.faults.iter().enumerate().take(30) {
        line(s, &format!("{:>3}  {:>8} ms  {what}", k + 1, t), "#dd0000");
    }
    if sim.metrics.faults.len() > 30 {
        line(
            s,
            &format!("... {} faults in all", sim.metrics.faults.len()),
            "#dd0000",
        );
    }
    for v in sim.checker.violations.iter().take(2) {
        line(
            s,
            &format!("VIOLATION {} at {} ms: {}", v.invariant, v.at_ms, v.detail),
            "#dd0000",
        );
    }
}
