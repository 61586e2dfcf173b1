//! HTTP/2: h2 over TLS (ALPN), h2c on plain listeners, and gRPC through
//! the gateway to a real gRPC server (Python grpcio) over h2c.

use std::process::{Command, Stdio};

use crate::common::{free_port, route_file, Gateway, Killed, Upstream};

/// A gRPC server: `/echo.Echo/Say` answers the request bytes reversed,
/// `/echo.Echo/Missing` fails with NOT_FOUND (a status in the trailers).
const SERVER: &str = r#"
import sys, grpc
from concurrent import futures
def say(req, ctx):
    ctx.set_trailing_metadata((("x-echo", "yes"),))
    return req[::-1]
def missing(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
ident = lambda b: b
handlers = {
    "Say": grpc.unary_unary_rpc_method_handler(say, request_deserializer=ident, response_serializer=ident),
    "Missing": grpc.unary_unary_rpc_method_handler(missing, request_deserializer=ident, response_serializer=ident),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),))
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
print("ready", flush=True)
server.wait_for_termination()
"#;

const CLIENT: &str = r#"
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
say = ch.unary_unary("/echo.Echo/Say", request_serializer=lambda b: b, response_deserializer=lambda b: b)
reply, call = say.with_call(b"hello gateway", timeout=5)
trailers = dict(call.trailing_metadata())
print("reply", reply.decode(), trailers.get("x-echo"))
try:
    ch.unary_unary("/echo.Echo/Missing", request_serializer=lambda b: b, response_deserializer=lambda b: b)(b"x", timeout=5)
except grpc.RpcError as e:
    print("status", e.code().name, e.details())
"#;

fn python(script: &str, args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).args(args);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_through_the_gateway() {
    let check = python("import grpc", &[]).output().unwrap();
    assert!(
        check.status.success(),
        "grpcio is needed: pip install grpcio"
    );
    let port = free_port();
    let mut server = Killed(
        python(SERVER, &[&port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let routes = format!(
        "upstreams:\n  grpc:\n    backends: [127.0.0.1:{port}]\n    http2: true\nroutes:\n  - name: echo\n    prefix: /echo.Echo\n    upstream: grpc\n"
    );
    let gw = Gateway::start("", &[("r.yaml", &routes)]);
    let out = python(CLIENT, &[&gw.addr.to_string()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reply yawetag olleh yes"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("status NOT_FOUND no such thing"), "{text}");
}

fn curl_version(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("curl is needed: apt-get install -y curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.split(' ');
    (
        parts.next().unwrap_or("").into(),
        parts.next().unwrap_or("").into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2_over_tls_and_h2c_on_plain_listeners() {
    let up = Upstream::start("app").await;
    let routes = route_file(&[up.addr], "", &[("all", "/", "")]);
    let plain = Gateway::start("", &[("r.yaml", &routes)]);
    let url = plain.url("/x");
    assert_eq!(
        curl_version(&["--http2-prior-knowledge", &url]),
        ("2".into(), "200".into())
    );
    assert_eq!(curl_version(&[&url]), ("1.1".into(), "200".into()));

    let tls = Gateway::start_tls("", &[("r.yaml", &routes)]);
    let url = format!("https://localhost:{}/x", tls.addr.port());
    let resolve = tls.curl_resolve();
    assert_eq!(
        curl_version(&["-k", "--resolve", &resolve, "--http2", &url]),
        ("2".into(), "200".into())
    );
    assert_eq!(
        curl_version(&["-k", "--resolve", &resolve, "--http1.1", &url]),
        ("1.1".into(), "200".into())
    );
    // TLS 1.0 and 1.1 are refused.
    let (_, code) = curl_version(&[
        "-k",
        "--resolve",
        &resolve,
        "--tlsv1.1",
        "--tls-max",
        "1.1",
        &url,
    ]);
    assert_eq!(code, "000");
}
