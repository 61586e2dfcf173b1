//! Deployment files (`Dockerfile`, `deploy/`): Prometheus rules and config
//! pass promtool; every metric the alerts and the Grafana dashboard use is a
//! family the real gateway exposes and the README documents; the container
//! and Kubernetes configs are the shipped ones and pass `gatehouse check`;
//! the image's HEALTHCHECK command works against a real admin port; the
//! Kubernetes probes and the systemd unit say what operators rely on.
//! Docker itself is not needed: the image is not built here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;
use serde_yaml::Value as Yaml;

use crate::auth_support::{now, JwksServer, RedisServer, TestKey};
use crate::common::{bin, client, free_port, route_file, Gateway, Upstream};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs promtool in the repository; its absence is a failure, never a skip.
fn promtool(args: &[&str]) {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is needed: apt-get install -y prometheus")
        }
        Err(e) => panic!("promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}",
        text(&out)
    );
}

/// `gatehouse check -c conf`: the config must load exactly as `run` would.
fn gatehouse_check(conf: &Path) {
    let out = Command::new(bin())
        .args(["check", "-c"])
        .arg(conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gatehouse check {} failed:\n{}",
        conf.display(),
        text(&out)
    );
}

/// The Grafana dashboard, and every PromQL expression in it (panel targets,
/// rows' nested panels, template variable queries).
fn dashboard() -> (serde_json::Value, Vec<String>) {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/gatehouse.json")).unwrap();
    let mut exprs = Vec::new();
    let mut stack: Vec<&serde_json::Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(nested) = p["panels"].as_array() {
            stack.extend(nested);
        }
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("panel {:?} has no targets", p["title"]));
        for t in targets {
            exprs.push(t["expr"].as_str().expect("target without expr").to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            exprs.push(v["query"].as_str().unwrap().to_string());
        }
    }
    (dash, exprs)
}

/// Every alert rule of deploy/prometheus/alerts.yml.
fn alert_rules() -> Vec<Yaml> {
    let doc = yaml("deploy/prometheus/alerts.yml");
    let groups = doc["groups"].as_sequence().unwrap();
    assert!(groups.iter().any(|g| g["name"] == "gatehouse"));
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

/// Tokens that name gatehouse or process metrics.
fn metric_tokens(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("gatehouse_") || t.starts_with("process_"))
}

#[test]
fn prometheus_files_pass_promtool() {
    promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    // Which alerts fire on made-up series (alerts_test.yml).
    promtool(&["test", "rules", "deploy/prometheus/alerts_test.yml"]);
    let amtool = Command::new("amtool")
        .args(["check-config", "deploy/alertmanager/alertmanager.yml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("amtool is needed: apt-get install -y prometheus-alertmanager");
    assert!(
        amtool.status.success(),
        "amtool check-config:\n{}{}",
        String::from_utf8_lossy(&amtool.stdout),
        String::from_utf8_lossy(&amtool.stderr)
    );
    // The dashboard's queries, with Grafana's variables filled in, as
    // recording rules: promtool then parses each one.
    let (_, exprs) = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs
        .iter()
        .filter(|e| !e.starts_with("label_values"))
        .enumerate()
    {
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$route", ".*");
        rules.push_str(&format!(
            "      - record: panel_{i}\n        expr: {}\n",
            json!(e)
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()]);
}

#[test]
fn alert_rules_and_dashboard_are_complete() {
    for rule in alert_rules() {
        let name = rule["alert"].as_str().expect("alert name");
        assert!(rule["for"].is_string(), "{name}: no `for`");
        assert!(
            rule["labels"]["severity"].is_string(),
            "{name}: no severity"
        );
        for a in ["summary", "description"] {
            assert!(rule["annotations"][a].is_string(), "{name}: no {a}");
        }
    }
    let (dash, _) = dashboard();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = dash["templating"]["list"].as_array().unwrap();
    let var = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no ${n}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(
        var("route")["query"],
        "label_values(gatehouse_requests_total, route)"
    );
}

/// The route chosen for "is this metric real": a gateway whose config
/// creates every labelled series (a JWKS issuer, TokenginX on a real
/// redis-server, a rate-limited route), driven until each family the alerts
/// and the dashboard use shows up in its /metrics as a `# TYPE` line. Each
/// name must also be in the README's metrics table (the operator contract).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_and_dashboard_use_only_exposed_metrics() {
    let mut wanted = BTreeSet::new();
    for rule in alert_rules() {
        wanted.extend(metric_tokens(rule["expr"].as_str().unwrap()).map(str::to_string));
    }
    let (_, exprs) = dashboard();
    for e in &exprs {
        wanted.extend(metric_tokens(e).map(str::to_string));
    }
    assert!(wanted.contains("gatehouse_requests_total"), "{wanted:?}");

    let readme = read("README.md");
    let documented: BTreeSet<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();

    const ISS: &str = "https://auth.deploy.test";
    let key = TestKey::new(Algorithm::ES256, "k1");
    let jwks = JwksServer::start(&[&key]);
    let redis = RedisServer::start();
    let up = Upstream::start("app").await;
    let conf = format!(
        "jwt:\n  issuers:\n    - issuer: {ISS}\n      jwks_url: {}\n      algorithms: [ES256]\n\
         tokenginx:\n  url: {}\n  timeout_ms: 500\n",
        jwks.url(),
        redis.url()
    );
    let routes = route_file(
        &[up.addr],
        "",
        &[
            ("pub", "/pub", ""),
            ("sess", "/sess", "auth: jwt\nsession: required"),
            (
                "limited",
                "/limited",
                "rate_limit: {key: route, rate: 1/m, burst: 1}",
            ),
        ],
    );
    let gw = Gateway::start(&conf, &[("r.yaml", &routes)]);
    let token = key.sign(&json!({"iss": ISS, "sub": "u1", "jti": "j1", "exp": now() + 600}));

    let c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (families, missing) = loop {
        // 200, 401 missing token, 401 session gone (a TokenginX lookup),
        // 200 then 429.
        c.get(gw.url("/pub")).send().await.unwrap();
        c.get(gw.url("/sess")).send().await.unwrap();
        c.get(gw.url("/sess"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        c.get(gw.url("/limited")).send().await.unwrap();
        c.get(gw.url("/limited")).send().await.unwrap();
        let body = c
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // name -> kind, from `# TYPE name kind`.
        let exposed: BTreeMap<String, String> = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect();
        let family = |t: &str| -> Option<String> {
            if exposed.contains_key(t) {
                return Some(t.to_string());
            }
            ["_bucket", "_sum", "_count"].iter().find_map(|s| {
                let base = t.strip_suffix(s)?;
                (exposed.get(base)? == "histogram").then(|| base.to_string())
            })
        };
        let missing: Vec<&String> = wanted.iter().filter(|t| family(t).is_none()).collect();
        if missing.is_empty() || Instant::now() > deadline {
            let families: BTreeSet<String> = wanted.iter().filter_map(|t| family(t)).collect();
            break (families, format!("{missing:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        missing,
        "[]",
        "metrics used by deploy/ but not exposed by the gateway; log:\n{}",
        gw.log()
    );
    for f in &families {
        let ok = documented.contains(f.as_str())
            || (f.starts_with("process_") && documented.contains("process_*"));
        assert!(ok, "{f} is not in the README's metrics table");
    }
}

#[test]
fn container_and_kubernetes_configs_are_the_shipped_ones_and_load() {
    // deploy/docker/conf.yaml = conf.yaml with admin on 0.0.0.0, nothing else.
    let shipped = yaml("conf.yaml");
    let mut container = yaml("deploy/docker/conf.yaml");
    assert_eq!(container["admin"], "0.0.0.0:9091");
    container["admin"] = shipped["admin"].clone();
    assert_eq!(
        container, shipped,
        "deploy/docker/conf.yaml must be conf.yaml with only `admin` changed"
    );
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    std::fs::create_dir_all(image.join("routes")).unwrap();
    std::fs::copy(
        repo().join("deploy/docker/conf.yaml"),
        image.join("conf.yaml"),
    )
    .unwrap();
    let mut route_files = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("routes")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::copy(&p, image.join("routes").join(&name)).unwrap();
        route_files.insert(name, std::fs::read_to_string(&p).unwrap());
    }
    gatehouse_check(&image.join("conf.yaml"));

    // The ConfigMap holds the same texts, and the Deployment's volume items
    // lay them out as /etc/gatehouse/{conf.yaml,routes/*.yaml}.
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    let data = cm["data"].as_mapping().unwrap();
    let text_of = |key: &str| data[key].as_str().unwrap_or_else(|| panic!("no key {key}"));
    assert_eq!(
        text_of("conf.yaml").trim_end(),
        read("deploy/docker/conf.yaml").trim_end()
    );
    for (name, body) in &route_files {
        assert_eq!(text_of(name).trim_end(), body.trim_end(), "routes/{name}");
    }
    assert_eq!(data.len(), route_files.len() + 1, "stray ConfigMap keys");
    let dep = yaml("deploy/kubernetes/deployment.yaml");
    let vol = dep["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == cm["metadata"]["name"])
        .expect("a volume of the ConfigMap");
    let mounted = dir.path().join("mounted");
    let items = vol["configMap"]["items"].as_sequence().unwrap();
    assert_eq!(items.len(), data.len(), "every ConfigMap key is mounted");
    for item in items {
        let path = mounted.join(item["path"].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text_of(item["key"].as_str().unwrap())).unwrap();
    }
    gatehouse_check(&mounted.join("conf.yaml"));
}

#[test]
fn kubernetes_manifests() {
    let kust = yaml("deploy/kubernetes/kustomization.yaml");
    let listed: BTreeSet<&str> = kust["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for f in [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
    ] {
        assert!(listed.contains(f), "kustomization.yaml does not list {f}");
        let doc = yaml(&format!("deploy/kubernetes/{f}"));
        assert!(
            doc["kind"].is_string() && doc["apiVersion"].is_string(),
            "{f}"
        );
    }
    let pdb = yaml("deploy/kubernetes/pdb.yaml");
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    let dep = yaml("deploy/kubernetes/deployment.yaml");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let port_number = |p: &Yaml| -> u64 {
        match p.as_str() {
            Some(name) => c["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|q| q["name"] == name)
                .and_then(|q| q["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port {name}")),
            None => p.as_u64().unwrap(),
        }
    };
    for (probe, path) in [
        ("livenessProbe", "/health/live"),
        ("readinessProbe", "/health/ready"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            port_number(&get["port"]),
            9091,
            "{probe} is not on the admin port"
        );
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(c["lifecycle"]["preStop"].is_mapping());
    // Long enough for the drain: the config's grace period plus runtime
    // shutdown must fit, or SIGKILL cuts requests short.
    let conf = yaml("deploy/docker/conf.yaml");
    let drain = conf["grace_period_seconds"].as_u64().unwrap()
        + conf["graceful_shutdown_timeout_seconds"].as_u64().unwrap();
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > drain);
    // subPath mounts never see ConfigMap updates (no hot reload).
    for m in c["volumeMounts"].as_sequence().unwrap() {
        assert!(m["subPath"].is_null(), "subPath mount {m:?}");
    }
}

#[test]
fn systemd_unit_and_logrotate() {
    let unit = read("deploy/systemd/gatehouse.service");
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "Type=simple",
        "ExecStart=/usr/local/bin/gatehouse run -c /etc/gatehouse/conf.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "User=gatehouse",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RuntimeDirectory=gatehouse",
    ] {
        assert!(lines.contains(want), "gatehouse.service lacks `{want}`");
    }
    let stop: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec")
        .parse()
        .unwrap();
    let conf = yaml("conf.yaml");
    assert!(stop > conf["grace_period_seconds"].as_u64().unwrap());
    let logrotate = read("deploy/systemd/logrotate.conf");
    assert!(logrotate.contains("-s USR1 gatehouse.service"));
}

/// The Dockerfile's HEALTHCHECK command, run with bash against a real admin
/// port (200: pass), the proxy port (404: fail) and a closed port (fail);
/// and every file its COPY lines take from the build context exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dockerfile_healthcheck_and_copies() {
    let dockerfile = read("Dockerfile").replace("\\\n", " ");
    let check = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .and_then(|l| l.split_once(" CMD "))
        .expect("a HEALTHCHECK ... CMD [...] line")
        .1;
    let argv: Vec<String> = serde_json::from_str(check.trim()).expect("exec-form CMD");
    assert!(argv.iter().any(|a| a.contains("/health/live")));
    assert!(dockerfile.lines().any(|l| l.trim() == "USER gatehouse"));
    assert!(dockerfile.lines().any(|l| l.trim() == "EXPOSE 6188 9091"));
    for l in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let args: Vec<&str> = l.split_whitespace().skip(1).collect();
        for src in &args[..args.len() - 1] {
            assert!(repo().join(src).exists(), "Dockerfile copies missing {src}");
        }
    }

    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("web", "/web", "")]);
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let probe = |port: u16| {
        let argv: Vec<String> = argv
            .iter()
            .map(|a| {
                a.replace(
                    "/dev/tcp/127.0.0.1/9091",
                    &format!("/dev/tcp/127.0.0.1/{port}"),
                )
            })
            .collect();
        assert!(
            argv.iter().any(|a| a.contains(&format!("/{port}"))),
            "{argv:?}"
        );
        // Docker applies --timeout; here `timeout` does.
        Command::new("timeout")
            .arg("5")
            .args(argv)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        probe(gw.admin.port()),
        "healthcheck fails on a live gateway"
    );
    assert!(!probe(gw.addr.port()), "healthcheck passes on a 404");
    assert!(!probe(free_port()), "healthcheck passes on a closed port");
}
