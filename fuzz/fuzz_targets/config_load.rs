//! `config::compile::load_with_env` on fuzzed files: never panics (errors
//! are the expected answer to most inputs).
//!
//! The input is written as `conf.yaml` and as `routes/r.yaml` in a private
//! temporary directory. If it contains the line `#--route--`, the part
//! before it is conf.yaml and the part after it is the route file, so a
//! valid conf.yaml (see `fuzz/seeds/config_load/`) lets the fuzzer reach
//! deep into route compilation.
//!
//! Loading resolves backend and listener addresses (`to_socket_addrs`), so
//! a fuzzed host name would become a DNS query: `scripts/fuzz.sh` runs the
//! fuzzer in a network namespace with only loopback.
//!
//! Each JWKS issuer builds an HTTP client whose TLS setup parses the
//! system's CA bundle, most of an execution's time under the sanitizer; the
//! harness points OpenSSL at an empty bundle (nothing is ever fetched).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use gatehouse::config::compile::load_with_env;
use gatehouse::metrics::Metrics;
use libfuzzer_sys::fuzz_target;

const SPLIT: &[u8] = b"\n#--route--\n";

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("gatehouse-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(d.join("routes")).expect("temp dir");
        std::fs::create_dir_all(d.join("no-certs")).expect("temp dir");
        std::fs::write(d.join("no-certs.pem"), b"").expect("empty CA bundle");
        std::env::set_var("SSL_CERT_FILE", d.join("no-certs.pem"));
        std::env::set_var("SSL_CERT_DIR", d.join("no-certs"));
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let (conf, route) = match data.windows(SPLIT.len()).position(|w| w == SPLIT) {
        Some(i) => (&data[..i], &data[i + SPLIT.len()..]),
        None => (data, data),
    };
    let dir = dir();
    let conf_path = dir.join("conf.yaml");
    std::fs::write(&conf_path, conf).expect("write conf.yaml");
    std::fs::write(dir.join("routes/r.yaml"), route).expect("write route file");
    let metrics = Metrics::new();
    match load_with_env(&conf_path, &metrics, &|name| {
        // One defined variable, so `${...}` substitution has both outcomes.
        (name == "FUZZ").then(|| "1".to_string())
    }) {
        Ok(runtime) => {
            // A config that loads also describes itself (what `check` prints).
            let _ = runtime.describe();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "Err with no errors");
            for e in &errors.0 {
                let _ = e.to_string();
            }
        }
    }
});
