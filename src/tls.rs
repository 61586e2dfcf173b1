//! TLS termination: each TLS listener picks its certificate by SNI from a
//! set that a config reload can replace, so renewed certificates apply
//! without a restart.
//!
//! A listener's certificates are `tls.cert`/`tls.key` (the default, for
//! clients that send no or an unknown name) plus `tls.certificates`. The
//! names each certificate serves are read from the certificate itself
//! (DNS subject alternative names, or the common name when it has none),
//! `*.example.com` included. The handshake uses Mozilla's intermediate
//! profile: TLS 1.2 and 1.3, modern ciphers, ALPN h2 and http/1.1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::warn;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ext;
use pingora_core::tls::nid::Nid;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::ssl::NameType;
use pingora_core::tls::x509::X509;

/// A certificate chain and its key.
pub struct CertKey {
    chain: Vec<X509>,
    key: PKey<Private>,
}

impl CertKey {
    /// Reads a PEM chain and key; the key must belong to the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<CertKey, String> {
        let pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let chain = X509::stack_from_pem(&pem)
            .map_err(|e| format!("{}: not a PEM certificate: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in it", cert.display()));
        }
        let pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let key_pem = PKey::private_key_from_pem(&pem)
            .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
        let matches = chain[0]
            .public_key()
            .map(|p| p.public_eq(&key_pem))
            .unwrap_or(false);
        if !matches {
            return Err(format!(
                "{} does not belong to {}",
                key.display(),
                cert.display()
            ));
        }
        Ok(CertKey {
            chain,
            key: key_pem,
        })
    }

    /// The same chain and key in the form Pingora presents as a client certificate.
    pub fn into_pingora(self) -> pingora_core::utils::tls::CertKey {
        pingora_core::utils::tls::CertKey::new(self.chain, self.key)
    }

    /// The host names the certificate serves, lower-case.
    pub fn names(&self) -> Vec<String> {
        let leaf = &self.chain[0];
        let sans: Vec<String> = leaf
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                    .collect()
            })
            .unwrap_or_default();
        if !sans.is_empty() {
            return sans;
        }
        leaf.subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
            .collect()
    }
}

/// The certificates of one listener, by name.
pub struct CertSet {
    default: Arc<CertKey>,
    exact: HashMap<String, Arc<CertKey>>,
    /// Keyed by the suffix after `*`: `*.example.com` -> `.example.com`.
    wildcard: HashMap<String, Arc<CertKey>>,
}

impl CertSet {
    /// Loads `(cert, key)` pairs; the first is the default.
    pub fn load(pairs: &[(PathBuf, PathBuf)]) -> Result<CertSet, String> {
        let mut loaded = Vec::new();
        for (cert, key) in pairs {
            loaded.push(Arc::new(CertKey::load(cert, key)?));
        }
        let default = Arc::clone(loaded.first().ok_or("no certificate")?);
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for ck in &loaded {
            for name in ck.names() {
                match name.strip_prefix('*') {
                    Some(suffix) => wildcard
                        .entry(suffix.to_string())
                        .or_insert_with(|| Arc::clone(ck)),
                    None => exact.entry(name).or_insert_with(|| Arc::clone(ck)),
                };
            }
        }
        Ok(CertSet {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for a client's SNI name.
    pub fn pick(&self, sni: Option<&str>) -> &Arc<CertKey> {
        let Some(name) = sni.map(str::to_ascii_lowercase) else {
            return &self.default;
        };
        if let Some(ck) = self.exact.get(&name) {
            return ck;
        }
        name.find('.')
            .and_then(|dot| self.wildcard.get(&name[dot..]))
            .unwrap_or(&self.default)
    }
}

impl std::fmt::Debug for CertSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.exact.keys().chain(self.wildcard.keys()).collect();
        names.sort();
        f.debug_struct("CertSet").field("names", &names).finish()
    }
}

/// A listener's live certificate set: handshakes read it, reloads replace it.
pub struct CertStore {
    current: ArcSwap<CertSet>,
}

impl CertStore {
    /// A store serving `set`.
    pub fn new(set: Arc<CertSet>) -> Arc<CertStore> {
        Arc::new(CertStore {
            current: ArcSwap::new(set),
        })
    }

    /// Serves `set` from the next handshake on.
    pub fn replace(&self, set: Arc<CertSet>) {
        self.current.store(set);
    }
}

/// The handshake callback of a TLS listener.
pub struct SniCallbacks(pub Arc<CertStore>);

#[async_trait]
impl TlsAccept for SniCallbacks {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let set = self.0.current.load();
        let ck = set.pick(ssl.servername(NameType::HOST_NAME));
        let ok = ext::ssl_use_certificate(ssl, &ck.chain[0]).is_ok()
            && ck.chain[1..]
                .iter()
                .all(|c| ext::ssl_add_chain_cert(ssl, c).is_ok())
            && ext::ssl_use_private_key(ssl, &ck.key).is_ok();
        if !ok {
            warn!("TLS: could not set the certificate for a handshake");
        }
    }
}
