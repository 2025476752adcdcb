//! A picture of a site's history from `muster events --json`: who led, where the VIP was, and
//! each host's install step, on one time axis (SVG, drawn by hand: rectangles and text).
//!
//! Rows, top to bottom: `leader` (a bar per leadership, coloured by host), `VIP` (a bar per
//! holder), then one row per host with its step (from `started` to `succeeded`, or to the end
//! when it failed or still runs) labelled with its role. Events are read as the host that saw
//! them reported them; times are relative to the first event.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One event as `muster events --json` prints it.
#[derive(Debug, Clone)]
pub struct Event {
    /// Wall clock, ms.
    pub unix_ms: u64,
    /// "leader", "endpoint", "step", ...
    pub kind: String,
    /// What happened.
    pub text: String,
}

impl Event {
    /// From one `--json` line; `None` if it is not one.
    pub fn from_json(v: &serde_json::Value) -> Option<Event> {
        Some(Event {
            unix_ms: v["unix_ms"].as_u64()?,
            kind: v["kind"].as_str()?.to_owned(),
            text: v["text"].as_str()?.to_owned(),
        })
    }
}

/// A bar on a row: [from, to) in ms since the first event, its label and colour key.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Start.
    pub from: u64,
    /// End.
    pub to: u64,
    /// Text inside or beside it.
    pub label: String,
    /// The host it belongs to (for its colour).
    pub host: String,
}

/// The rows drawn: (row name, bars).
pub fn rows(events: &[Event]) -> Vec<(String, Vec<Bar>)> {
    let Some(t0) = events.iter().map(|e| e.unix_ms).min() else {
        return Vec::new();
    };
    let end = events.iter().map(|e| e.unix_ms).max().unwrap_or(t0) - t0 + 200;
    let at = |e: &Event| e.unix_ms - t0;
    // leader: "<host> leads (term N)" / "no leader (term N)"
    let mut leader: Vec<Bar> = Vec::new();
    let mut vip: Vec<Bar> = Vec::new();
    let mut steps: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
    let close = |bars: &mut Vec<Bar>, t: u64| {
        if let Some(last) = bars.last_mut() {
            if last.to == u64::MAX {
                last.to = t;
            }
        }
    };
    for e in events {
        let t = at(e);
        match e.kind.as_str() {
            "leader" => {
                close(&mut leader, t);
                if let Some((host, term)) = e.text.split_once(" leads (term ") {
                    leader.push(Bar {
                        from: t,
                        to: u64::MAX,
                        label: format!("{host} (term {}", term),
                        host: host.to_owned(),
                    });
                }
            }
            "endpoint" => {
                close(&mut vip, t);
                if let Some((_, host)) = e.text.split_once(" is on ") {
                    vip.push(Bar {
                        from: t,
                        to: u64::MAX,
                        label: host.to_owned(),
                        host: host.to_owned(),
                    });
                }
            }
            "step" => {
                // "<host>'s <role> step started (attempt N)" / "... succeeded ..." / "FAILED"
                let Some((host, rest)) = e.text.split_once("'s ") else {
                    continue;
                };
                let Some((role, what)) = rest.split_once(" step ") else {
                    continue;
                };
                let bars = steps.entry(host.to_owned()).or_default();
                if what.starts_with("started") {
                    close(bars, t);
                    bars.push(Bar {
                        from: t,
                        to: u64::MAX,
                        label: role.to_owned(),
                        host: host.to_owned(),
                    });
                } else if what.starts_with("succeeded") || what.starts_with("FAILED") {
                    close(bars, t);
                    if what.starts_with("FAILED") {
                        if let Some(b) = bars.last_mut() {
                            b.label.push_str(" FAILED");
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = vec![("leader".to_owned(), leader), ("VIP".to_owned(), vip)];
    out.extend(steps.into_iter().map(|(h, b)| (format!("{h} step"), b)));
    for (_, bars) in &mut out {
        for b in bars.iter_mut() {
            if b.to == u64::MAX {
                b.to = end;
            }
        }
    }
    out
}

const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG of `events` (`title` on top).
pub fn svg(events: &[Event], title: &str) -> String {
    let rows = rows(events);
    let hosts: Vec<String> = {
        let mut h: Vec<String> = rows
            .iter()
            .flat_map(|(_, bars)| bars.iter().map(|b| b.host.clone()))
            .collect();
        h.sort();
        h.dedup();
        h
    };
    let colour = |host: &str| {
        let i = hosts.iter().position(|h| h == host).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let end = rows
        .iter()
        .flat_map(|(_, b)| b.iter().map(|b| b.to))
        .max()
        .unwrap_or(1)
        .max(1);
    let (left, width, row_h, top) = (110.0, 760.0, 28.0, 40.0);
    let x = |t: u64| left + width * t as f64 / end as f64;
    let height = top + row_h * rows.len() as f64 + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#,
        w = left + width + 20.0
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (r, (name, bars)) in rows.iter().enumerate() {
        let y = top + row_h * r as f64;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}">{}</text>"#,
            y + 17.0,
            escape(name)
        );
        for b in bars {
            let (x0, x1) = (x(b.from), x(b.to));
            let _ = writeln!(
                out,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" opacity="0.85"><title>{}</title></rect>"#,
                y + 4.0,
                (x1 - x0).max(1.5),
                row_h - 8.0,
                colour(&b.host),
                escape(&b.label)
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" fill="black">{}</text>"#,
                x0 + 3.0,
                y + 17.0,
                escape(&b.label)
            );
        }
    }
    // The time axis, in seconds.
    let axis_y = top + row_h * rows.len() as f64 + 10.0;
    let _ = writeln!(
        out,
        r##"<line x1="{left}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333"/>"##,
        left + width
    );
    let step_ms = [100u64, 200, 500, 1000, 2000, 5000, 10_000]
        .into_iter()
        .find(|s| end / s <= 12)
        .unwrap_or(10_000);
    let mut t = 0;
    while t <= end {
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{axis_y}" x2="{0:.1}" y2="{1}" stroke="#333"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3:.1} s</text>"##,
            x(t),
            axis_y + 4.0,
            axis_y + 18.0,
            t as f64 / 1000.0
        );
        t += step_ms;
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: u64, kind: &str, text: &str) -> Event {
        Event {
            unix_ms: t,
            kind: kind.into(),
            text: text.into(),
        }
    }

    #[test]
    fn bars_follow_leaders_holders_and_steps() {
        let events = vec![
            ev(1000, "leader", "h0 leads (term 2)"),
            ev(1100, "endpoint", "the VIP 10.77.0.100/24 is on h0"),
            ev(1200, "step", "h0's init step started (attempt 1)"),
            ev(1700, "step", "h0's init step succeeded (attempt 1)"),
            ev(1800, "step", "h1's control-plane step started (attempt 1)"),
            ev(2000, "leader", "h1 leads (term 3)"),
            ev(2100, "endpoint", "the VIP 10.77.0.100/24 is on h1"),
            ev(
                2300,
                "step",
                "h1's control-plane step FAILED (attempt 1): boom",
            ),
        ];
        let rows = rows(&events);
        assert_eq!(rows[0].1.len(), 2);
        assert_eq!((rows[0].1[0].from, rows[0].1[0].to), (0, 1000));
        assert_eq!(rows[1].1[1].host, "h1");
        let h1 = rows.iter().find(|(n, _)| n == "h1 step").unwrap();
        assert_eq!(h1.1[0].label, "control-plane FAILED");
        assert_eq!((h1.1[0].from, h1.1[0].to), (800, 1300));
        let svg = svg(&events, "demo <site>");
        assert!(svg.starts_with("<svg") && svg.contains("demo &lt;site&gt;"));
        assert_eq!(svg.matches("<rect x=").count(), 2 + 2 + 1 + 1);
    }
}
