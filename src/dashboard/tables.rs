//! The configuration half of the admin page: the `/status` document's
//! routes, upstreams, JWKS and authorization server as plain tables.

use serde_json::Value;

/// A JSON value as escaped HTML text (`—` for null).
pub fn esc(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The tables of the `/status` document.
pub fn render(status: &Value) -> String {
    let mut html = String::new();
    let cfg = &status["config"];
    html.push_str(&format!(
        "<p>version {} · config {} · last reload: {} {}</p>",
        esc(&status["version"]),
        esc(&cfg["version"]),
        esc(&cfg["last_reload"]["result"]),
        esc(&cfg["last_reload"]["error"]),
    ));
    html.push_str("<h2>Routes (match order)</h2><table id=\"routes\"><tr><th>route</th><th>host</th><th>prefix</th><th>methods</th><th>upstream</th><th>strip prefix</th><th>auth</th><th>rate limit</th></tr>");
    for r in status["routes"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r["name"]),
            esc(&r["host"]),
            esc(&r["prefix"]),
            esc(&r["methods"]),
            esc(&r["upstream"]),
            esc(&r["strip_prefix"]),
            esc(&r["auth"]),
            esc(&r["rate_limit"]),
        ));
    }
    html.push_str("</table><h2>Upstreams</h2><table id=\"upstreams\"><tr><th>upstream</th><th>balance</th><th>backend</th><th>weight</th><th>health</th><th>circuit</th><th>in flight</th><th>recent errors</th></tr>");
    for u in status["upstreams"].as_array().into_iter().flatten() {
        for b in u["backends"].as_array().into_iter().flatten() {
            let up = b["healthy"].as_bool().unwrap_or(false);
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{:.1}%</td></tr>",
                esc(&u["name"]),
                esc(&u["balance"]),
                esc(&b["addr"]),
                esc(&b["weight"]),
                if up { "up" } else { "down" },
                if up { "healthy" } else { "unhealthy" },
                match b["circuit"].as_str() {
                    Some("open") => "down",
                    _ => "up",
                },
                b["circuit"].as_str().unwrap_or("none"),
                esc(&b["in_flight"]),
                b["recent_error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            ));
        }
    }
    html.push_str("</table><h2>JWKS</h2><table id=\"jwks\"><tr><th>issuer</th><th>state</th><th>keys</th><th>last success</th><th>last error</th></tr>");
    for j in status["jwks"].as_array().into_iter().flatten() {
        let ok = j["state"] == "ok";
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&j["issuer"]),
            if ok { "up" } else { "down" },
            esc(&j["state"]),
            esc(&j["keys"]),
            match j["last_success_seconds_ago"].as_u64() {
                Some(s) => format!("{s} s ago"),
                None => "never".into(),
            },
            esc(&j["last_error"]),
        ));
    }
    html.push_str("</table>");
    if let Some(o) = status["oauth"].as_object() {
        let ok = o["discovery"] == "ok";
        html.push_str(&format!(
            "<h2>Authorization server</h2><table id=\"oauth\"><tr><th>issuer</th><th>discovery</th><th>last error</th></tr><tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr></table>",
            esc(&o["issuer"]),
            if ok { "up" } else { "down" },
            esc(&o["discovery"]),
            esc(&o["last_error"]),
        ));
    }
    html
}
