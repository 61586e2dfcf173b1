//! Real parts for auth tests: signing keys made with OpenSSL, a JWKS
//! server on loopback, and a real `redis-server` standing in for TokenginX.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use boring::rsa::Rsa;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::common::free_port;

/// A signing key and its public JWK.
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
}

impl TestKey {
    /// A fresh key for `alg` (RS*, PS*, ES256, ES384, EdDSA).
    pub fn new(alg: Algorithm, kid: &str) -> TestKey {
        let encoding = match alg {
            Algorithm::ES256 => {
                EncodingKey::from_ec_der(&ecdsa_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING))
            }
            Algorithm::ES384 => {
                EncodingKey::from_ec_der(&ecdsa_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING))
            }
            Algorithm::EdDSA => EncodingKey::from_ed_der(
                Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
                    .unwrap()
                    .as_ref(),
            ),
            _ => EncodingKey::from_rsa_der(
                &Rsa::generate(2048).unwrap().private_key_to_der().unwrap(),
            ),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        TestKey {
            alg,
            kid: kid.to_string(),
            encoding,
            jwk,
        }
    }

    /// Signs `claims` with this key's `alg` and `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }
}

/// A loopback port whose cluster bus port (`port + 10000`) is free too.
pub fn cluster_port() -> u16 {
    loop {
        let p = 20_000 + (fastrand::u16(..) % 10_000);
        let ok = [p, p + 10_000]
            .iter()
            .all(|q| TcpListener::bind(("127.0.0.1", *q)).is_ok());
        if ok {
            return p;
        }
    }
}

/// Three cluster-enabled nodes joined into a 3-master Redis Cluster with
/// `redis-cli --cluster create`.
pub fn redis_cluster() -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_cluster_node(cluster_port()))
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli is needed: apt-get install -y redis-tools");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in &nodes {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &n.port.to_string(), "cluster", "info"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not converge");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}

/// Signs with an HMAC secret.
pub fn sign_hs(alg: Algorithm, secret: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Serves a JWKS document that tests can change, counting fetches.
pub struct JwksServer {
    pub addr: SocketAddr,
    body: Arc<Mutex<Option<String>>>,
    pub fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Serves the public keys of `keys`.
    pub fn start(keys: &[&TestKey]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = JwksServer {
            addr,
            body: Arc::new(Mutex::new(None)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        server.publish(keys);
        let (body, fetches) = (server.body.clone(), server.fetches.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 4096];
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = conn.read(&mut buf);
                fetches.fetch_add(1, Relaxed);
                let reply = match body.lock().unwrap().clone() {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                };
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        server
    }

    /// Replaces the published keys.
    pub fn publish(&self, keys: &[&TestKey]) {
        let set = JwkSet {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        self.serve(serde_json::to_string(&set).unwrap());
    }

    /// Serves `body` as the JWKS document from now on.
    pub fn serve(&self, body: String) {
        *self.body.lock().unwrap() = Some(body);
    }

    /// Makes the server answer 503 from now on.
    pub fn fail(&self) {
        *self.body.lock().unwrap() = None;
    }

    pub fn url(&self) -> String {
        format!("http://{}/oauth/.well-known/jwks.json", self.addr)
    }
}

/// A real `redis-server` on a free loopback port, stopped on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::spawn(free_port(), &[], None)
    }

    /// A cluster-enabled node (its bus port, `port + 10000`, must be free too).
    pub fn start_cluster_node(port: u16) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nodes.conf");
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            conf.to_str().unwrap(),
        ];
        Self::spawn(port, &args, Some(dir))
    }

    fn spawn(port: u16, extra: &[&str], dir: Option<tempfile::TempDir>) -> RedisServer {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(d) = &dir {
            cmd.current_dir(d.path());
        }
        let child = cmd
            .spawn()
            .expect("redis-server is needed: apt-get install -y redis-server");
        let server = RedisServer {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.cmd(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command (RESP) and returns the first reply line.
    pub fn cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .map(str::to_string)
    }

    /// Stops the server (the gateway must then apply `on_error`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh ECDSA private key, PKCS#8 DER.
fn ecdsa_pkcs8(alg: &'static EcdsaSigningAlgorithm) -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}
