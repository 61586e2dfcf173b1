//! The admin service's page (`/`, and `/status` for a browser): the live
//! numbers as tables with server-drawn SVG charts, then the
//! configuration tables. It reads without JavaScript (a `<noscript>`
//! refresh every 2 s); with it, [`SCRIPT`] swaps in a freshly rendered
//! copy every 2 s. Nothing comes from elsewhere: the script and the style
//! sheet are served by the binary, and the page's CSP allows only them.

use std::fmt::Write;

use serde_json::Value;

use super::report::WINDOWS;
use super::tables::{esc, render as config_tables};

/// `/dashboard.js`: replaces the page's `<main>` with a new rendering
/// every 2 s, keeping the old one when the gateway cannot be reached.
pub const SCRIPT: &str = r#"'use strict';
setInterval(async () => {
  try {
    const r = await fetch(location.pathname, { headers: { accept: 'text/html' }, cache: 'no-store' });
    if (!r.ok) return;
    const next = new DOMParser().parseFromString(await r.text(), 'text/html').getElementById('dashboard');
    const now = document.getElementById('dashboard');
    if (next && now) now.replaceWith(next);
  } catch (e) { /* the gateway is restarting: try again in 2 s */ }
}, 2000);
"#;

/// `/dashboard.css`.
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:middle}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.down,.open{color:#b00}.up{color:#070}.muted{color:#888}\
svg{display:block}";

/// `/favicon.svg`: the page's icon, so the browser asks the binary for
/// it rather than for a `/favicon.ico` that does not exist.
pub const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect x=\"1\" y=\"3\" width=\"3\" height=\"12\" fill=\"#2463c4\"/>\
<rect x=\"12\" y=\"3\" width=\"3\" height=\"12\" fill=\"#2463c4\"/>\
<path d=\"M1 4 Q8 -1 15 4\" stroke=\"#2463c4\" stroke-width=\"2\" fill=\"none\"/></svg>";

/// The Content-Security-Policy of the page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Chart size, in px.
const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 48.0;
/// Seconds a chart spans.
const CHART_SECONDS: f64 = 900.0;

/// The whole page: `live` is the `/status/live` document, `None` when the
/// dashboard is off; `status` the `/status` document.
pub fn render(live: Option<&Value>, status: &Value, generated_ms: u128) -> String {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>gatehouse</title>\
         <link rel=\"stylesheet\" href=\"/dashboard.css\">\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>\
         <script src=\"/dashboard.js\" defer></script></head><body>",
    );
    let _ = write!(
        html,
        "<main id=\"dashboard\" data-generated=\"{generated_ms}\"><h1>gatehouse</h1>"
    );
    match live {
        Some(live) => live_sections(&mut html, live),
        None => html.push_str(
            "<p class=\"muted\">Live numbers are off (<code>dashboard: {enabled: false}</code> in conf.yaml).</p>",
        ),
    }
    html.push_str(&config_tables(status));
    html.push_str("</main></body></html>");
    html
}

fn live_sections(html: &mut String, live: &Value) {
    let p = &live["process"];
    let _ = write!(
        html,
        "<p id=\"process\">CPU {} · RSS {} · numbers over 5-second periods</p>",
        p["cpu_percent"]
            .as_f64()
            .map_or("—".into(), |c| format!("{c:.1} %")),
        p["rss_bytes"]
            .as_u64()
            .map_or("—".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
    );
    html.push_str("<h2>Traffic</h2><table id=\"live-routes\"><tr><th rowspan=\"2\">route</th>\
         <th colspan=\"3\">requests/s</th><th colspan=\"3\">errors (5xx)</th>\
         <th colspan=\"3\">p50 / p95 / p99 ms</th><th rowspan=\"2\">last 15 minutes: requests/s (blue), p95 (orange), errors (red)</th></tr><tr>");
    for _ in 0..3 {
        for (w, _) in WINDOWS {
            let _ = write!(html, "<th>{w}</th>");
        }
    }
    html.push_str("</tr>");
    for r in live["routes"].as_array().into_iter().flatten() {
        route_row(html, r);
    }
    html.push_str("</table>");

    html.push_str("<h2>Backends</h2><table id=\"live-backends\"><tr><th>upstream</th><th>backend</th>\
         <th>state</th><th>circuit</th><th>in flight</th><th>error rate</th><th>last 15 minutes</th></tr>");
    for u in live["upstreams"].as_array().into_iter().flatten() {
        for b in u["backends"].as_array().into_iter().flatten() {
            let state = b["state"].as_str().unwrap_or("down");
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{:.1} %</td><td>{}</td></tr>",
                esc(&u["name"]),
                esc(&b["addr"]),
                esc(&b["circuit"]),
                esc(&b["in_flight"]),
                b["recent_error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                timeline_svg(&b["timeline"]),
            );
        }
    }
    html.push_str("</table>");

    html.push_str("<h2>Refusals</h2><table id=\"refusals\"><tr><th>reason</th>");
    for (w, _) in WINDOWS {
        let _ = write!(html, "<th>{w}</th>");
    }
    html.push_str("</tr>");
    let refusals = live["refusals"]
        .as_array()
        .map_or(&[][..], |r| r.as_slice());
    if refusals.is_empty() {
        html.push_str("<tr><td colspan=\"4\" class=\"muted\">none in 15 minutes</td></tr>");
    }
    for r in refusals {
        let _ = write!(html, "<tr><td>{}</td>", esc(&r["reason"]));
        for (w, _) in WINDOWS {
            let _ = write!(html, "<td class=\"n\">{}</td>", esc(&r[w]));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
}

fn route_row(html: &mut String, r: &Value) {
    let _ = write!(html, "<tr><td>{}</td>", esc(&r["name"]));
    if r["tracked"] == false {
        html.push_str(
            "<td colspan=\"10\" class=\"muted\">not counted: over dashboard.max_routes</td></tr>",
        );
        return;
    }
    let w = &r["windows"];
    for (name, _) in WINDOWS {
        let _ = write!(
            html,
            "<td class=\"n\">{}</td>",
            number(&w[name]["requests_per_second"], 1)
        );
    }
    for (name, _) in WINDOWS {
        let cell = w[name]["error_ratio"]
            .as_f64()
            .map_or("—".into(), |e| format!("{:.2} %", e * 100.0));
        let _ = write!(html, "<td class=\"n\">{cell}</td>");
    }
    for (name, _) in WINDOWS {
        let s = &w[name];
        let _ = write!(
            html,
            "<td class=\"n\">{} / {} / {}</td>",
            number(&s["p50_ms"], 2),
            number(&s["p95_ms"], 2),
            number(&s["p99_ms"], 2)
        );
    }
    let _ = write!(html, "<td>{}</td></tr>", chart_svg(&r["chart"]));
}

/// A number with `decimals`, or `—`.
fn number(v: &Value, decimals: usize) -> String {
    v.as_f64().map_or("—".into(), |n| format!("{n:.decimals$}"))
}

/// A route's 15-minute chart: requests/s and p95 as lines (each scaled
/// to its own maximum), errors as red bars from the bottom.
fn chart_svg(chart: &Value) -> String {
    let values = |key: &str| -> Vec<Option<f64>> {
        chart[key]
            .as_array()
            .map(|a| a.iter().map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (rps, p95, errors) = (
        values("requests_per_second"),
        values("p95_ms"),
        values("error_ratio"),
    );
    let step = WIDTH / (CHART_SECONDS / 5.0);
    let x0 = WIDTH - rps.len() as f64 * step;
    let max_rps = rps.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let max_p95 = p95.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let mut svg = format!(
        "<svg class=\"chart\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">\
         <title>max {max_rps:.1} requests/s, max p95 {max_p95:.2} ms</title>\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#f7f7f7\"/>"
    );
    for (i, e) in errors.iter().enumerate() {
        if let Some(e) = e.filter(|e| *e > 0.0) {
            let h = (e * HEIGHT).max(1.0);
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{step:.1}\" height=\"{h:.1}\" fill=\"#d33\"/>",
                x0 + i as f64 * step,
                HEIGHT - h
            );
        }
    }
    for (series, max, color) in [(&rps, max_rps, "#2463c4"), (&p95, max_p95, "#e08a00")] {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let y = HEIGHT - 2.0 - (*v)? / max.max(f64::MIN_POSITIVE) * (HEIGHT - 4.0);
                Some(format!("{:.1},{y:.1}", x0 + (i as f64 + 0.5) * step))
            })
            .collect();
        if !points.is_empty() {
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                points.join(" ")
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"3\" y=\"11\" font-size=\"10\" fill=\"#444\">{max_rps:.1}/s · {max_p95:.1} ms</text></svg>"
    );
    svg
}

/// A backend's 15-minute state timeline: one coloured band per state,
/// grey before the first state known.
fn timeline_svg(changes: &Value) -> String {
    let mut svg = format!(
        "<svg class=\"timeline\" width=\"{WIDTH}\" height=\"12\" viewBox=\"0 0 {WIDTH} 12\" role=\"img\">\
         <rect width=\"{WIDTH}\" height=\"12\" fill=\"#ddd\"/>"
    );
    let changes = changes.as_array().map_or(&[][..], |c| c.as_slice());
    let x = |ago: f64| WIDTH - ago.min(CHART_SECONDS) / CHART_SECONDS * WIDTH;
    for (i, c) in changes.iter().enumerate() {
        let start = c["seconds_ago"].as_f64().unwrap_or(0.0);
        let end = changes
            .get(i + 1)
            .and_then(|n| n["seconds_ago"].as_f64())
            .unwrap_or(0.0);
        let color = match c["state"].as_str() {
            Some("up") => "#3a3",
            Some("open") => "#e08a00",
            _ => "#d33",
        };
        let (from, to) = (x(start), x(end));
        if to > from {
            let _ = write!(
                svg,
                "<rect x=\"{from:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{color}\"><title>{}</title></rect>",
                to - from,
                esc(&c["state"])
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_escaped_and_the_page_needs_nothing_from_elsewhere() {
        let live = json!({
            "process": {"cpu_percent": 1.5, "rss_bytes": 20_000_000},
            "routes": [{"name": "<b>x</b>", "tracked": true, "windows": {
                "1m": {"requests_per_second": 2.0, "error_ratio": 0.5, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0}},
                "chart": {"requests_per_second": [1.0, 2.0], "p95_ms": [1.0, null], "error_ratio": [0.0, 0.5]}}],
            "upstreams": [{"name": "app", "backends": [{"addr": "127.0.0.1:1", "state": "up",
                "timeline": [{"seconds_ago": 100, "state": "down"}, {"seconds_ago": 40, "state": "up"}]}]}],
            "refusals": [{"reason": "expired", "1m": 1, "5m": 2, "15m": 3}],
        });
        let html = render(Some(&live), &json!({}), 7);
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;") && !html.contains("<b>x"));
        assert!(html.contains("50.00 %") && html.contains("1.00 / 2.00 / 3.00"));
        assert!(html.contains("<polyline") && html.contains("fill=\"#d33\""));
        assert!(html.contains("<td class=\"up\">up</td>") && html.contains("expired"));
        for tag in ["http://", "https://", "//cdn"] {
            assert!(!html.contains(tag), "{tag} in the page");
        }
        let off = render(None, &json!({}), 7);
        assert!(off.contains("dashboard: {enabled: false}"));
    }
}
