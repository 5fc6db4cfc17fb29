//! `--plot`: the round-trip distributions as an SVG.

use super::*;

/// The round-trip distributions as an SVG line plot: latency (log scale)
/// against the quantile, in nines (p50, p90, p99, ...).
pub(super) fn plot_svg(r: &Report) -> String {
    use std::fmt::Write as _;
    let (w, h, left, right, top, bottom) = (960.0, 560.0, 80.0, 250.0, 30.0, 60.0);
    let curves: Vec<(&String, &Vec<(f64, f64)>)> = r
        .rtt_ns
        .iter()
        .filter(|(_, p)| !p.curve.is_empty())
        .map(|(k, p)| (k, &p.curve))
        .collect();
    let points = || curves.iter().flat_map(|(_, c)| c.iter());
    let max_x = points().map(|p| p.0).fold(1.0, f64::max).ceil();
    let lo = points()
        .map(|p| p.1.max(1.0).log10())
        .fold(f64::INFINITY, f64::min)
        .floor()
        .min(2.0);
    let hi = points()
        .map(|p| p.1.max(1.0).log10())
        .fold(lo + 1.0, f64::max)
        .ceil();
    let x = |nines: f64| left + (w - left - right) * nines / max_x;
    let y = |ns: f64| top + (h - top - bottom) * (1.0 - (ns.max(1.0).log10() - lo) / (hi - lo));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="14">shmring bench: round-trip latency by quantile ({}, {} cores)</text>"#,
        xml(&r.cpu),
        r.cores
    );
    let mut decade = lo;
    while decade <= hi {
        let ns = 10f64.powf(decade);
        let yy = y(ns);
        let label = if ns >= 1e6 {
            format!("{} ms", ns / 1e6)
        } else if ns >= 1e3 {
            format!("{} µs", ns / 1e3)
        } else {
            format!("{ns} ns")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0
        );
        decade += 1.0;
    }
    for nines in 0..=(max_x as u32) {
        let xx = x(f64::from(nines));
        let label = match nines {
            0 => "p0".to_string(),
            1 => "p90".to_string(),
            n => format!("p99.{}", "9".repeat(n as usize - 2))
                .trim_end_matches('.')
                .to_string(),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    let p50 = x(2f64.log10());
    let _ = writeln!(
        s,
        r##"<line x1="{p50:.1}" y1="{top}" x2="{p50:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="4 3"/><text x="{p50:.1}" y="{:.1}" text-anchor="middle">p50</text>"##,
        h - bottom,
        h - bottom + 32.0
    );
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    for (i, (name, curve)) in curves.iter().enumerate() {
        let color = colors[i % colors.len()];
        let pts: Vec<String> = curve
            .iter()
            .map(|&(n, ns)| format!("{:.1},{:.1}", x(n), y(ns)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = top + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            w - right + 15.0,
            w - right + 40.0,
            w - right + 46.0,
            ly + 4.0,
            xml(name)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">quantile (log scale of 1 / (1 - q))</text>"#,
        (left + w - right) / 2.0,
        h - 8.0
    );
    s.push_str("</svg>\n");
    s
}

pub(super) fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
