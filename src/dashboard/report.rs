//! The `/status/live` document: what the dashboard's rings, the pools and
//! the process say now. Built on the admin thread when asked, never on
//! the request path.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::ring::{PERIOD, SLOTS};
use super::{latency, refusal_name, Dashboard, RouteSeries, ERRORS, REFUSALS, REQUESTS};
use crate::config::Runtime;
use crate::lifecycle::ReloadOutcome;

/// The windows every number is given over, by name.
pub const WINDOWS: [(&str, Duration); 3] = [
    ("1m", Duration::from_secs(60)),
    ("5m", Duration::from_secs(300)),
    ("15m", Duration::from_secs(900)),
];

/// Points of each route's chart: one per period of the last 15 minutes,
/// the period being filled left out.
const CHART_POINTS: u64 = SLOTS as u64 - 1;

/// The live document of `rt` at `now`.
pub fn live(dashboard: &Dashboard, rt: &Runtime, reload: &ReloadOutcome, now: Instant) -> Value {
    let (period, into) = dashboard.position(now);
    let at = Clock {
        period,
        into,
        since_epoch: now.saturating_duration_since(dashboard.epoch),
    };
    let routes: Vec<Value> = rt
        .routes
        .iter()
        .filter_map(|r| Some(route(&r.name, r.live.as_deref()?, &at)))
        .collect();
    let upstreams: Vec<Value> = rt
        .pools
        .iter()
        .map(|(name, (pool, _))| {
            let backends: Vec<Value> = pool
                .members()
                .backends
                .iter()
                .map(|b| {
                    let state = b.state();
                    let timeline: Vec<Value> = b
                        .timeline
                        .changes()
                        .iter()
                        .map(|(t, s)| {
                            json!({
                                "seconds_ago": now.saturating_duration_since(*t).as_secs(),
                                "state": s.as_str(),
                            })
                        })
                        .collect();
                    json!({
                        "addr": b.label,
                        "state": state.as_str(),
                        "circuit": b.breaker.as_ref().map(|br| br.circuit().as_str()),
                        "in_flight": b.in_flight(),
                        "recent_error_rate": b.recent_error_rate(),
                        "timeline": timeline,
                    })
                })
                .collect();
            json!({"name": name, "backends": backends})
        })
        .collect();
    let refusals: Vec<Value> = (0..REFUSALS)
        .filter_map(|i| {
            let counts: serde_json::Map<String, Value> = WINDOWS
                .iter()
                .map(|(w, d)| {
                    let n = dashboard.refusals.sum(period, at.periods(*d))[i];
                    (w.to_string(), n.into())
                })
                .collect();
            (counts["15m"] != 0).then(|| {
                let mut row = serde_json::Map::new();
                row.insert("reason".into(), refusal_name(i).into());
                row.extend(counts);
                Value::Object(row)
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "period_seconds": PERIOD.as_secs(),
        "config": {
            "version": rt.version,
            "last_reload": {"result": reload.result, "at": reload.at, "error": reload.error},
        },
        "process": {
            "cpu_percent": dashboard.cpu.percent(),
            "rss_bytes": super::process::rss_bytes(),
        },
        "routes": routes,
        "upstreams": upstreams,
        "refusals": refusals,
    })
}

/// Where in its periods the dashboard is.
struct Clock {
    period: u64,
    into: Duration,
    since_epoch: Duration,
}

impl Clock {
    /// How many periods (the one being filled included) cover `window`.
    fn periods(&self, window: Duration) -> u64 {
        window.as_secs() / PERIOD.as_secs()
    }

    /// How much time those periods have really counted: the whole
    /// periods before this one, and this one so far; less while the
    /// dashboard is younger than the window.
    fn covered(&self, window: Duration) -> Duration {
        let full = PERIOD * (self.periods(window) - 1) as u32 + self.into;
        full.min(self.since_epoch).max(Duration::from_millis(100))
    }
}

/// One route's windows and chart.
fn route(name: &str, series: &RouteSeries, at: &Clock) -> Value {
    let Some(ring) = series.ring() else {
        return json!({"name": name, "tracked": !series.untracked(), "windows": {}, "chart": null});
    };
    let windows: serde_json::Map<String, Value> = WINDOWS
        .iter()
        .map(|(w, d)| {
            let counts = ring.sum(at.period, at.periods(*d));
            let secs = at.covered(*d).as_secs_f64();
            (w.to_string(), stats(&counts, secs))
        })
        .collect();
    let mut rps = Vec::new();
    let mut errors = Vec::new();
    let mut p95 = Vec::new();
    for p in (at.period.saturating_sub(CHART_POINTS)..at.period).filter(|p| {
        // Periods before the dashboard started have no data: left out,
        // not drawn as zeros.
        PERIOD * (*p as u32 + 1) <= at.since_epoch
    }) {
        let counts = ring.read(p).map(u64::from);
        let s = stats(&counts, PERIOD.as_secs_f64());
        rps.push(s["requests_per_second"].clone());
        errors.push(s["error_ratio"].clone());
        p95.push(s["p95_ms"].clone());
    }
    json!({
        "name": name,
        "tracked": true,
        "windows": windows,
        "chart": {
            "first_seconds_ago": rps.len() as u64 * PERIOD.as_secs() + at.into.as_secs(),
            "requests_per_second": rps,
            "error_ratio": errors,
            "p95_ms": p95,
        },
    })
}

/// Requests, rate over `secs`, error ratio and percentiles of `counts`.
fn stats(counts: &[u64], secs: f64) -> Value {
    let requests = counts[REQUESTS];
    let buckets = &counts[2..];
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    json!({
        "requests": requests,
        "requests_per_second": round(requests as f64 / secs),
        "error_ratio": (requests > 0).then(|| round(counts[ERRORS] as f64 / requests as f64)),
        "p50_ms": latency::quantile_ms(buckets, 0.50).map(round),
        "p95_ms": latency::quantile_ms(buckets, 0.95).map(round),
        "p99_ms": latency::quantile_ms(buckets, 0.99).map(round),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_young_dashboard_divides_by_the_time_it_has_counted() {
        let at = Clock {
            period: 2,
            into: Duration::from_secs(1),
            since_epoch: Duration::from_secs(11),
        };
        assert_eq!(at.periods(Duration::from_secs(60)), 12);
        assert_eq!(at.covered(Duration::from_secs(60)), Duration::from_secs(11));
        let old = Clock {
            since_epoch: Duration::from_secs(4000),
            ..at
        };
        assert_eq!(
            old.covered(Duration::from_secs(60)),
            Duration::from_secs(56)
        );
    }

    #[test]
    fn stats_give_rates_ratios_and_percentiles() {
        let mut counts = vec![0u64; super::super::ROUTE_COUNTERS];
        counts[REQUESTS] = 10;
        counts[ERRORS] = 1;
        counts[2 + latency::bucket(2000)] = 10;
        let s = stats(&counts, 5.0);
        assert_eq!(s["requests_per_second"], 2.0);
        assert_eq!(s["error_ratio"], 0.1);
        let p99 = s["p99_ms"].as_f64().unwrap();
        assert!((1.75..2.25).contains(&p99), "{p99}");
    }
}
