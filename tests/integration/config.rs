//! Config loading: every error names file, line and key; `check` exits 1.

use std::path::Path;
use std::process::Command;

use gatehouse::config::compile::load_with_env;
use gatehouse::metrics::Metrics;

use crate::common::{bin, write_config};

const MAIN: &str = "listeners:\n  - addr: 127.0.0.1:6188\nadmin: 127.0.0.1:9091\n";

const GOOD_ROUTES: &str = "\
upstreams:
  web:
    backends: [127.0.0.1:3002, {addr: 127.0.0.1:3003, weight: 3}]
    balance: weighted
routes:
  - name: web
    prefix: /web
    upstream: web
";

fn env(name: &str) -> Option<String> {
    (name == "PORT").then(|| "6190".to_string())
}

/// Loads a config dir and returns the error lines with the dir stripped.
fn errors(main: &str, routes: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_config(dir.path(), main, routes);
    match load_with_env(&conf, &Metrics::new(), &env) {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|e| {
                    e.to_string()
                        .replace(&format!("{}/", dir.path().display()), "")
                })
                .collect()
        }
    }
}

/// Asserts that each of `wants` is part of some error line in `got`.
fn assert_errors_include(got: &[String], wants: &[&str]) {
    for want in wants {
        assert!(
            got.iter().any(|e| e.contains(want)),
            "no `{want}` in {got:#?}"
        );
    }
}

#[test]
fn valid_config_loads_with_env_substitution() {
    let main = "listeners:\n  - addr: 127.0.0.1:${PORT}\n";
    assert_eq!(
        errors(main, &[("web.yaml", GOOD_ROUTES)]),
        Vec::<String>::new()
    );
}

#[test]
fn errors_name_file_line_and_key() {
    let table: &[(&str, &str, &[&str])] = &[
        (
            "unknown key",
            "upstreams:\n  web:\n    backends: [127.0.0.1:1]\nroutes:\n  - name: a\n    prefix: /a\n    upstream: web\n    prefixx: /b\n",
            &["routes/r.yaml:8:5: `routes[0].prefixx`: unknown field `prefixx`, expected one of `name`, `prefix`, `host`, `methods`, `upstream`, `strip_prefix`, `timeout_ms`, `ip_allow`, `ip_deny`, `headers`, `auth`, `session`, `scopes`, `roles`, `on_unauthenticated`, `rate_limit`, `fallback`, `fallback_upstream`, `cors`, `rewrite`, `validate`, `aggregate`"],
        ),
        (
            "missing upstream",
            "upstreams:\n  web:\n    backends: [127.0.0.1:1]\nroutes:\n  - name: a\n    prefix: /a\n    upstream: nope\n",
            &["routes/r.yaml:7:5: `routes[0].upstream`: no upstream named `nope`"],
        ),
        (
            "bad CIDR and bad duration",
            "upstreams:\n  web:\n    backends: [127.0.0.1:1]\n    connect_timeout_ms: 0\nroutes:\n  - name: a\n    prefix: /a\n    upstream: web\n    ip_allow: [10.0.0.0/33]\n",
            &[
                "routes/r.yaml:4:5: `upstreams.web.connect_timeout_ms`: 0 ms is outside 1..=600000 ms",
                "routes/r.yaml:9:16: `routes[0].ip_allow[0]`: `10.0.0.0/33` is not a valid IP or CIDR",
            ],
        ),
        (
            "wrong type",
            "upstreams:\n  web:\n    backends: [127.0.0.1:1]\n    read_timeout_ms: 2s\n",
            &["routes/r.yaml:4:5: `upstreams.web.read_timeout_ms`: invalid type: string \"2s\", expected u64"],
        ),
        (
            "bad backend and hash without key",
            "upstreams:\n  web:\n    backends: [not-an-addr]\n    balance: hash\n",
            &[
                "routes/r.yaml:3:16: `upstreams.web.backends[0]`: `not-an-addr` is not a valid ip:port or host:port",
                "routes/r.yaml:4:5: `upstreams.web.balance`: `hash` needs `hash_key`",
            ],
        ),
        (
            "prefix not normal, duplicate route names",
            "upstreams:\n  web:\n    backends: [127.0.0.1:1]\nroutes:\n  - name: a\n    prefix: /a//b\n    upstream: web\n  - name: a\n    prefix: /c\n    upstream: web\n",
            &[
                "routes/r.yaml:6:5: `routes[0].prefix`: `/a//b` is not in normal form; write `/a/b`",
                "routes/r.yaml:8:5: `routes[1].name`: route `a` is already defined in ROUTES/r.yaml",
            ],
        ),
        (
            "same host, prefix and methods twice",
            "upstreams:\n  web:\n    backends: [127.0.0.1:1]\nroutes:\n  - name: a\n    prefix: /a\n    upstream: web\n    methods: [GET, POST]\n  - name: b\n    prefix: /a/\n    upstream: web\n    methods: [post]\n",
            &["routes/r.yaml:10:5: `routes[1].prefix`: route `b` has the same host, prefix and methods as route `a`"],
        ),
        (
            "unset environment variable",
            "upstreams:\n  web:\n    backends: [\"127.0.0.1:${NOPE}\"]\n",
            &["routes/r.yaml:3:16: environment variable `NOPE` is not set"],
        ),
        (
            "YAML syntax",
            "upstreams:\n  web:\n    backends: [127.0.0.1:1\n",
            &["routes/r.yaml:4:1: YAML syntax: while parsing a flow sequence, expected ',' or ']'"],
        ),
    ];
    for (what, routes, want) in table {
        let got = errors(MAIN, &[("r.yaml", routes)]);
        let got: Vec<String> = got
            .iter()
            .map(|e| {
                let routes_dir = e
                    .find("already defined in ")
                    .map(|i| i + "already defined in ".len());
                match routes_dir {
                    Some(i) => format!("{}ROUTES/{}", &e[..i], e[i..].rsplit('/').next().unwrap()),
                    None => e.clone(),
                }
            })
            .collect();
        assert_eq!(got, *want, "case: {what}");
    }
}

#[test]
fn main_file_errors_are_all_reported() {
    let main = "listeners:\n  - addr: nowhere\nadmin: 127.0.0.1:x\ntrusted_proxies: [10.0.0.0/8, bogus]\nthreads: 0\n";
    assert_eq!(
        errors(main, &[]),
        [
            "conf.yaml:5:1: `threads`: must be at least 1",
            "conf.yaml:2:5: `listeners[0].addr`: `nowhere` is not a valid ip:port",
            "conf.yaml:3:1: `admin`: `127.0.0.1:x` is not a valid ip:port",
            "conf.yaml:4:31: `trusted_proxies[1]`: `bogus` is not a valid IP or CIDR",
        ]
    );
    assert_eq!(
        errors("listeners: []\nroutes_dir: missing\ncolour: blue\n", &[]),
        ["conf.yaml:3:1: `colour`: unknown field `colour`, expected one of `version`, `daemon`, `error_log`, `pid_file`, `upgrade_sock`, `user`, `group`, `threads`, `work_stealing`, `grace_period_seconds`, `graceful_shutdown_timeout_seconds`, `upstream_keepalive_pool_size`, `ca_file`, `listeners`, `admin`, `routes_dir`, `allow_empty_routes`, `trusted_proxies`, `forwarded_header`, `client_ip_header`, `security_headers`, `max_request_body_bytes`, `h2c`, `max_uri_bytes`, `path_params`, `max_header_bytes`, `client_body_timeout_ms`, `client_header_timeout_ms`, `keepalive_timeout_seconds`, `jwt`, `tokenginx`, `dns`, `api_keys`, `tracing`, `dashboard`, `acme`, `oauth`, `rate_limit`, `access_log`, `forward_identity`"]
    );
}

/// Redis and TokenginX URLs carry passwords: an error names the key and
/// shows the URL with the password masked; TLS files are read at load time.
#[test]
fn redis_errors_never_show_passwords() {
    let main = "listeners: []
tokenginx:
  url: redis://:hunter2-secret@127.0.0.1:notaport
rate_limit:
  store: redis
  redis_cluster:
    - redis://:cluster-secret@h:1
    - rediss://u:other-secret@h:nope
";
    let got = errors(main, &[]).join("\n");
    for secret in ["hunter2-secret", "cluster-secret", "other-secret"] {
        assert!(!got.contains(secret), "{secret} shown in:\n{got}");
    }
    assert!(
        got.contains("conf.yaml:3:3: `tokenginx.url`: `redis://:***@127.0.0.1:notaport`"),
        "{got}"
    );
    assert!(
        got.contains("`rate_limit.redis_cluster[1]`: `rediss://u:***@h:nope`"),
        "{got}"
    );
    let main = "listeners: []
tokenginx:
  url: rediss://127.0.0.1:6380
  tls: {ca_file: missing-ca.pem, client_cert: c.pem}
rate_limit:
  store: local
  redis_tls: {ca_file: ca.pem}
";
    let got = errors(main, &[]);
    assert!(
        got.iter()
            .any(|e| e.starts_with("conf.yaml:4:9: `tokenginx.tls.ca_file`: missing-ca.pem")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|e| e.starts_with("conf.yaml:4:34: `tokenginx.tls.client_cert`: c.pem")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|e| e
                .contains("`rate_limit.store`: Redis settings are given but `store` is `local`")),
        "{got:?}"
    );
}

fn check(conf: &Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["check", "-c"])
        .arg(conf)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_command_prints_table_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_config(dir.path(), MAIN, &[("web.yaml", GOOD_ROUTES)]);
    let (code, out, _) = check(&conf);
    assert_eq!(code, 0);
    assert!(out.starts_with("ok\n"), "{out}");
    assert!(
        out.contains("/web") && out.contains("127.0.0.1:3003"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("routes/bad.yaml"),
        "routes:\n  - name: x\n    prefix: /x\n    upstream: none\n",
    )
    .unwrap();
    let (code, _, err) = check(&conf);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.yaml:4:5: `routes[0].upstream`: no upstream named `none`"),
        "{err}"
    );
}

#[test]
fn shipped_config_is_valid() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.yaml");
    let (code, out, err) = check(&conf);
    assert_eq!(code, 0, "{err}");
    for prefix in ["/oauth", "/admin", "/kline", "/flow", "/test"] {
        assert!(out.contains(prefix), "{prefix} missing from\n{out}");
    }
}

/// The keys serde accepts at one level, read from its unknown-field error.
fn keys_at(main: &str, routes: &str) -> Vec<String> {
    let errs = errors(main, &[("r.yaml", routes)]);
    let msg = errs
        .iter()
        .find(|e| e.contains("zz_unknown"))
        .unwrap_or_else(|| panic!("{errs:?}"));
    let list = msg
        .split("expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("{msg}"));
    let list = list.trim_start_matches("one of ");
    list.split([',', ' '])
        .filter(|k| k.starts_with('`'))
        .map(|k| k.trim_matches('`').to_string())
        .collect()
}

#[test]
fn readme_documents_every_config_key() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let up = "upstreams:\n  u:\n    backends: [127.0.0.1:1]\n";
    let levels = [
        keys_at("zz_unknown: 1\nlisteners: []\n", ""),
        keys_at("listeners:\n  - {addr: 127.0.0.1:1, zz_unknown: 1}\n", ""),
        keys_at("listeners:\n  - {addr: 127.0.0.1:1, tls: {cert: a, key: b, zz_unknown: 1}}\n", ""),
        keys_at(MAIN, "zz_unknown: 1\n"),
        keys_at(MAIN, &format!("{up}    zz_unknown: 1\n")),
        keys_at(MAIN, &format!("{up}    health_check: {{zz_unknown: 1}}\n")),
        keys_at(MAIN, &format!("{up}    circuit_breaker: {{zz_unknown: 1}}\n")),
        keys_at(MAIN, &format!("{up}routes:\n  - {{name: a, prefix: /, upstream: u, zz_unknown: 1}}\n")),
        keys_at(MAIN, &format!("{up}routes:\n  - {{name: a, prefix: /, upstream: u, headers: {{zz_unknown: 1}}}}\n")),
        vec!["addr".to_string(), "weight".to_string()],
        keys_at("listeners: []\njwt: {issuers: [], zz_unknown: 1}\n", ""),
        keys_at("listeners: []\njwt:\n  issuers:\n    - {issuer: a, algorithms: [RS256], zz_unknown: 1}\n", ""),
        keys_at("listeners: []\ntokenginx: {url: \"redis://x\", zz_unknown: 1}\n", ""),
        keys_at("listeners: []\nrate_limit: {zz_unknown: 1}\n", ""),
        keys_at("listeners: []\noauth: {issuer: a, client_id: b, zz_unknown: 1}\n", ""),
        keys_at("listeners: []\naccess_log: {zz_unknown: 1}\n", ""),
        keys_at("listeners: []\nacme: {domains: [a.example.com], zz_unknown: 1}\n", ""),
        keys_at("listeners:\n  - {addr: 127.0.0.1:1, tls: {cert: a, key: b, certificates: [{cert: c, key: d, zz_unknown: 1}]}}\n", ""),
        vec!["key".to_string(), "rate".to_string(), "burst".to_string()],
    ];
    let missing: Vec<&String> = levels
        .iter()
        .flatten()
        .filter(|k| !readme.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's configuration reference lacks {missing:?}"
    );
}

#[test]
fn oauth_errors_name_their_keys() {
    let main = "listeners: []\noauth:\n  issuer: not-a-url\n  client_id: ''\n  callback_path: //evil\n  cookie: 'a b'\n  timeout_ms: 0\n";
    let routes = "upstreams: {web: {backends: ['127.0.0.1:1']}}\nroutes:\n  - {name: a, prefix: /a, upstream: web, auth: jwt, on_unauthenticated: login}\n";
    let got = errors(main, &[("r.yaml", routes)]);
    assert_errors_include(
        &got,
        &[
            "`oauth.issuer`: must be an http(s) URL",
            "`oauth.client_id`: must not be empty",
            "`oauth.callback_path`: must be a local path",
            "`oauth.cookie`: must be a cookie name",
            "`oauth.timeout_ms`",
            "`routes[0].on_unauthenticated`: `login` starts the gateway's own login: use `auth: oauth`",
        ],
    );
    let routes = "upstreams: {web: {backends: ['127.0.0.1:1']}}\nroutes:\n  - {name: a, prefix: /a, upstream: web, auth: oauth}\n";
    let got = errors("listeners: []\n", &[("r.yaml", routes)]);
    assert!(
        got.iter()
            .any(|e| e.contains("`routes[0].auth`: needs the `oauth` section")),
        "{got:#?}"
    );
}

#[test]
fn circuit_breaker_errors_name_their_keys() {
    let routes = "upstreams:\n  web:\n    backends: ['127.0.0.1:1']\n    max_in_flight: 0\n    circuit_breaker: {error_ratio: 1.5, open_seconds: 0}\n  ok:\n    backends: ['127.0.0.1:1']\nroutes:\n  - {name: a, prefix: /a, upstream: ok, timeout_ms: 0}\n";
    let got = errors("listeners: []\n", &[("r.yaml", routes)]);
    assert_errors_include(
        &got,
        &[
            "`upstreams.web.max_in_flight`: must be at least 1",
            "`upstreams.web.circuit_breaker.error_ratio`: must be in (0, 1]",
            "`upstreams.web.circuit_breaker.open_seconds`: must be between 1 and 3600",
            "`routes[0].timeout_ms`",
        ],
    );
}

#[test]
fn retry_errors_name_their_keys() {
    let routes = "upstreams:\n  both:\n    backends: ['127.0.0.1:1']\n    retries: 1\n    retry: {max: 2}\n  bad:\n    backends: ['127.0.0.1:1']\n    retry:\n      on: [reset, 5xx, 200, '503']\n      max: 11\n      backoff_ms: {base: 300, max: 100}\n      budget_percent: 0\n  many:\n    backends: ['127.0.0.1:1']\n    retries: 50\nroutes:\n  - {name: a, prefix: /a, upstream: both}\n  - {name: b, prefix: /b, upstream: bad}\n  - {name: c, prefix: /c, upstream: many}\n";
    let got = errors("listeners: []\n", &[("r.yaml", routes)]);
    assert_errors_include(
        &got,
        &[
            "routes/r.yaml:4:5: `upstreams.both.retries`: `retries` is the short form of `retry`: set one of them, not both",
            "`upstreams.bad.retry.on[1]`: `5xx` is not connect_failure, reset, timeout or a status 400-599",
            "`upstreams.bad.retry.on[2]`: `200` is not",
            "`upstreams.bad.retry.max`: must be between 0 and 10",
            "`upstreams.bad.retry.backoff_ms.max`: must be at least `base`",
            "`upstreams.bad.retry.budget_percent`: must be between 1 and 100",
            "`upstreams.many.retries`: must be between 0 and 10",
        ],
    );
    assert!(
        !got.iter().any(|e| e.contains("on[3]")),
        "a quoted status is a status: {got:#?}"
    );
}

#[test]
fn fallback_errors_name_their_keys() {
    let routes = "upstreams:\n  web:\n    backends: ['127.0.0.1:1']\nroutes:\n  - name: a\n    prefix: /a\n    upstream: web\n    fallback_upstream: nowhere\n  - name: b\n    prefix: /b\n    upstream: web\n    fallback_upstream: web\n    fallback: {status: 99, body_file: missing.json}\n  - name: c\n    prefix: /c\n    upstream: web\n    fallback: {status: 204, body_file: conf.yaml, content_type: \"bad\\nvalue\"}\n";
    let got = errors("listeners: []\n", &[("r.yaml", routes)]);
    assert_errors_include(
        &got,
        &[
            "routes/r.yaml:8:5: `routes[0].fallback_upstream`: no upstream named `nowhere`",
            "`routes[1].fallback_upstream`: is the route's own upstream",
            "`routes[1].fallback.status`: 99 is not a final status (200-599)",
            "`routes[1].fallback.body_file`: cannot read missing.json",
            "`routes[2].fallback.body_file`: a 204 answer has no body",
            "`routes[2].fallback.content_type`: not a valid header value",
        ],
    );
}

#[test]
fn dns_backend_errors_name_their_keys() {
    let main = "listeners: []\ndns: {nameservers: ['127.0.0.1:5353', 'resolver.example'], timeout_ms: 5}\n";
    let routes = "upstreams:\n  named:\n    backends: ['bad_host!:80', {dns: app.test, port: 0}, 'app.test:0', {dns: app.test, port: 0}]\n    resolve_interval_ms: 10\nroutes:\n  - {name: a, prefix: /a, upstream: named}\n";
    let got = errors(main, &[("r.yaml", routes)]);
    assert_errors_include(
        &got,
        &[
            "conf.yaml:2:39: `dns.nameservers[1]`: `resolver.example` is not an ip or ip:port",
            "`dns.timeout_ms`: 5 ms is outside 10..=60000 ms",
            "`upstreams.named.backends[0]`: `bad_host!` is not a host name",
            "`upstreams.named.backends[1]`: port must be 1-65535",
            "`upstreams.named.backends[2]`: `app.test:0` is not a valid ip:port or host:port",
            "`upstreams.named.backends[3]`: backend app.test:0 is listed twice",
            "`upstreams.named.resolve_interval_ms`: 10 ms is outside 100..=3600000 ms",
        ],
    );
}

#[test]
fn cors_and_rewrite_errors_name_their_keys() {
    let routes = "upstreams:\n  web:\n    backends: ['127.0.0.1:1']\nroutes:\n  - name: a\n    prefix: /a\n    upstream: web\n    cors: {allow_origins: ['*'], allow_credentials: true}\n  - name: b\n    prefix: /b\n    upstream: web\n    cors: {allow_origins: ['null', 'https://a.test/path', 'https://ok.test'], allow_methods: ['G E T'], allow_headers: ['*'], allow_credentials: true, max_age_seconds: 100000}\n  - name: c\n    prefix: /c\n    upstream: web\n    strip_prefix: true\n    rewrite: {regex: '^/c/(unclosed', replacement: 'api'}\n  - name: d\n    prefix: /d\n    upstream: web\n    rewrite: {regex: '^/d/(.*)$', replacement: '/x/$2/$${name}'}\n";
    let got = errors("listeners: []\n", &[("r.yaml", routes)]);
    assert_errors_include(
        &got,
        &[
            "routes/r.yaml:8:12: `routes[0].cors.allow_origins`: `*` with `allow_credentials: true`",
            "`routes[1].cors.allow_origins[0]`: `null` is not an origin",
            "`routes[1].cors.allow_origins[1]`: `https://a.test/path` is not an origin",
            "`routes[1].cors.allow_methods[0]`: `G E T` is not a method",
            "`routes[1].cors.allow_headers`: `*` is not honoured with credentials",
            "`routes[1].cors.max_age_seconds`: must be at most 86400",
            "`routes[2].strip_prefix`: `rewrite` replaces `strip_prefix`",
            "`routes[2].rewrite.replacement`: must be a path starting with /",
            "`routes[2].rewrite.regex`: not a valid regex",
            "`routes[3].rewrite.replacement`: `$2` names no group of the regex",
            "`routes[3].rewrite.replacement`: `$name` names no group of the regex",
        ],
    );
}

#[test]
fn api_key_errors_name_their_keys() {
    let main = "listeners: []\napi_keys: {sources: ['query:key'], lookup_key: 'apikey:{token}'}\n";
    let routes = "upstreams:\n  web:\n    backends: ['127.0.0.1:1']\nroutes:\n  - {name: a, prefix: /a, upstream: web, auth: [jwt, opaque, api_key]}\n  - {name: b, prefix: /b, upstream: web, auth: [none, api_key]}\n  - {name: c, prefix: /c, upstream: web, auth: api_key, rate_limit: {key: consumers, rate: 1/s}}\n";
    let got = errors(main, &[("r.yaml", routes)]);
    assert_errors_include(
        &got,
        &[
            "`api_keys.sources[0]`: `query:key` is not `header:NAME` or `authorization:SCHEME`",
            "`api_keys.lookup_key`: needs the `tokenginx` section",
            "`api_keys.lookup_key`:",
            "`routes[0].auth`: list `api_key` with at most one of jwt, opaque, any, oauth",
            "`routes[1].auth`: list `api_key` with at most one of jwt, opaque, any, oauth",
            "is not ip, user, consumer, route or header:NAME",
        ],
    );
}

#[test]
fn validate_errors_name_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"type\": ").unwrap();
    std::fs::write(dir.path().join("wrong.json"), "{\"type\": \"integr\"}").unwrap();
    let routes = "upstreams:\n  web:\n    backends: ['127.0.0.1:1']\nroutes:\n  - {name: a, prefix: /a, upstream: web, validate: {json_schema: missing.json}}\n  - {name: b, prefix: /b, upstream: web, validate: {json_schema: broken.json}}\n  - {name: c, prefix: /c, upstream: web, validate: {json_schema: wrong.json}}\n";
    let conf = write_config(dir.path(), "listeners: []\n", &[("r.yaml", routes)]);
    let got: Vec<String> = match load_with_env(&conf, &Metrics::new(), &env) {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|e| {
                    e.to_string()
                        .replace(&format!("{}/", dir.path().display()), "")
                })
                .collect()
        }
    };
    assert_errors_include(
        &got,
        &[
            "routes/r.yaml:5:53: `routes[0].validate.json_schema`: cannot read missing.json",
            "`routes[1].validate.json_schema`: broken.json is not JSON: line 1, column 9",
            "`routes[2].validate.json_schema`: wrong.json is not a valid JSON Schema",
        ],
    );
}

#[test]
fn aggregate_errors_name_their_keys() {
    let routes = "upstreams:\n  web:\n    backends: ['127.0.0.1:1']\n  secure:\n    backends: ['127.0.0.1:2']\n    tls: true\nroutes:\n  - name: a\n    prefix: /a\n    aggregate:\n      timeout_ms: 0\n      parts:\n        - {name: x, upstream: web, path: /x}\n        - {name: x, upstream: nowhere, path: 'y/../z'}\n        - {name: z, upstream: secure, path: /z}\n  - {name: b, prefix: /b}\n";
    let got = errors("listeners: []\n", &[("r.yaml", routes)]);
    assert_errors_include(
        &got,
        &[
            "`routes[0].methods`: an aggregate answers reads only",
            "`routes[0].aggregate.timeout_ms`: 0 ms is outside 1..=600000 ms",
            "`routes[0].aggregate.parts[1].name`: `x`: part names must be unique",
            "`routes[0].aggregate.parts[1].path`: `y/../z` is not a normalised path",
            "`routes[0].aggregate.parts[1].upstream`: no upstream named `nowhere`",
            "`routes[0].aggregate.parts[2].upstream`: `secure` speaks TLS or HTTP/2",
            "`routes[1]`: `upstream` is required (unless the route has `aggregate`)",
        ],
    );
}

#[test]
fn tracing_errors_name_their_keys() {
    let main = "listeners: []\ntracing: {otlp_endpoint: 'collector:4318', sample_ratio: 1.5, queue_size: 0}\n";
    let got = errors(main, &[]);
    assert_errors_include(
        &got,
        &[
            "`tracing.otlp_endpoint`: `collector:4318` is not an http(s) URL",
            "`tracing.sample_ratio`: must be between 0 and 1",
            "`tracing.queue_size`: must be between 1 and 1000000",
        ],
    );
}

#[test]
fn dashboard_errors_name_their_keys() {
    let main = "listeners: []\ndashboard: {enabled: true, max_routes: 0}\n";
    assert_errors_include(
        &errors(main, &[]),
        &["`dashboard.max_routes`: must be between 1 and 10000"],
    );
    let unknown = errors(
        "listeners: []\ndashboard: {enabled: true, routes: 3}\n",
        &[],
    );
    assert!(
        unknown
            .iter()
            .any(|e| e.contains("dashboard") && e.contains("routes")),
        "{unknown:?}"
    );
}

#[test]
fn acme_errors_name_their_keys() {
    let main = "listeners:\n  - addr: 127.0.0.1:1\nacme:\n  directory_url: http://insecure.example/dir\n  contact: ops@example.com\n  domains: ['*.example.com', 'bad name', app.example.com, app.example.com]\n  storage: redis\n  renew_before_days: 0\n  retry_seconds: 0\n  challenge: tls-alpn-01\n";
    let got = errors(main, &[]);
    assert_errors_include(
        &got,
        &[
            "`acme.directory_url`: `http://insecure.example/dir` is not an https URL",
            "`acme.domains[0]`: `*.example.com`: wildcard certificates need the DNS-01 challenge",
            "`acme.domains[1]`: `bad name` is not a DNS name",
            "`acme.domains[3]`: `app.example.com` is listed twice",
            "`acme.contact[0]`: `ops@example.com` is not a mailto: URL",
            "`acme.renew_before_days`: must be between 1 and 365",
            "`acme.retry_seconds`: must be between 1 and 86400",
            "`acme.challenge`: tls-alpn-01 needs a TLS listener",
            "`acme.storage`: `redis` keeps certificates in the TokenginX store",
        ],
    );
}
