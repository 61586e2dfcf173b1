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
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use boring::asn1::Asn1Time;
use log::warn;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ext;
use pingora_core::tls::nid::Nid;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::ssl::{
    select_next_proto, AlpnError, ClientHello, ExtensionType, NameType, SelectCertError, Ssl,
    SslRef,
};
use pingora_core::tls::x509::X509;

use crate::acme::ACME_TLS_ALPN;
use crate::config::Runtime;

/// What is wrong with a PEM certificate and key.
#[derive(Debug)]
pub enum PemError {
    /// The certificate chain does not parse.
    Cert(String),
    /// The key does not parse.
    Key(String),
    /// The key is not the certificate's.
    Mismatch,
}

impl std::fmt::Display for PemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PemError::Cert(e) => write!(f, "certificate: {e}"),
            PemError::Key(e) => write!(f, "key: {e}"),
            PemError::Mismatch => f.write_str("the key does not belong to the certificate"),
        }
    }
}

/// A certificate chain and its key.
pub struct CertKey {
    chain: Vec<X509>,
    key: PKey<Private>,
}

impl CertKey {
    /// Reads a PEM chain and key; the key must belong to the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<CertKey, String> {
        let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
        CertKey::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            PemError::Cert(e) => format!("{}: {e}", cert.display()),
            PemError::Key(e) => format!("{}: {e}", key.display()),
            PemError::Mismatch => {
                format!("{} does not belong to {}", key.display(), cert.display())
            }
        })
    }

    /// A PEM chain and key held in memory; the key must belong to the
    /// certificate.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertKey, PemError> {
        let chain = X509::stack_from_pem(cert_pem)
            .map_err(|e| PemError::Cert(format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(PemError::Cert("no certificate in it".into()));
        }
        let key = PKey::private_key_from_pem(key_pem)
            .map_err(|e| PemError::Key(format!("not a PEM private key: {e}")))?;
        let matches = chain[0]
            .public_key()
            .map(|p| p.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(PemError::Mismatch);
        }
        Ok(CertKey { chain, key })
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &X509 {
        &self.chain[0]
    }

    /// When the leaf certificate expires, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        let epoch = Asn1Time::from_unix(0).expect("the epoch is a valid time");
        epoch
            .diff(self.chain[0].not_after())
            .map_or(0, |d| i64::from(d.days) * 86_400 + i64::from(d.secs))
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
            .filter_map(|e| e.data().as_utf8().ok().map(|s| s.to_ascii_lowercase()))
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

    /// Each name served and when its certificate expires.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        let exact = self.exact.iter().map(|(n, c)| (n.clone(), c));
        let wildcard = self.wildcard.iter().map(|(s, c)| (format!("*{s}"), c));
        exact
            .chain(wildcard)
            .chain(self.default.names().into_iter().map(|n| (n, &self.default)))
            .map(|(n, c)| (n, c.not_after()))
            .collect()
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

/// The handshake callback of a TLS listener: the ACME certificate of the
/// SNI name when there is one (the TLS-ALPN-01 challenge certificate for
/// `acme-tls/1` clients), else the listener's own.
pub struct SniCallbacks {
    /// The listener's certificates.
    pub store: Arc<CertStore>,
    /// The running config, for its ACME certificates.
    pub live: Arc<ArcSwap<Runtime>>,
}

#[async_trait]
impl TlsAccept for SniCallbacks {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let sni = ssl
            .servername(NameType::HOST_NAME)
            .map(str::to_ascii_lowercase);
        let runtime = self.live.load();
        let from_acme = match (runtime.acme.as_deref(), sni.as_deref()) {
            (Some(acme), Some(name)) if ssl.ex_data(*ACME_OFFERED).is_some() => {
                acme.alpn_certificate(name)
            }
            (Some(acme), Some(name)) => acme.certificate(name),
            _ => None,
        };
        let set = self.store.current.load();
        let ck = from_acme
            .as_ref()
            .unwrap_or_else(|| set.pick(sni.as_deref()));
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

/// The mark of a handshake whose client offers `acme-tls/1`.
static ACME_OFFERED: LazyLock<boring::ex_data::Index<Ssl, ()>> =
    LazyLock::new(|| Ssl::new_ex_index().expect("BoringSSL has a free ex_data index"));

/// Marks the handshake when the client offers `acme-tls/1` among its ALPN
/// protocols: BoringSSL negotiates ALPN only after the certificate callback,
/// which therefore reads this mark to serve an ACME validator its challenge
/// certificate (RFC 8737).
pub fn mark_acme_offer(mut hello: ClientHello<'_>) -> Result<(), SelectCertError> {
    let alpn = hello.get_extension(ExtensionType::APPLICATION_LAYER_PROTOCOL_NEGOTIATION);
    if alpn.is_some_and(|list| offers(list, ACME_TLS_ALPN)) {
        hello.ssl_mut().set_ex_data(*ACME_OFFERED, ());
    }
    Ok(())
}

/// Whether the body of a ClientHello's ALPN extension (RFC 7301: a two-byte
/// length, then one-byte-length names) names `protocol`.
fn offers(list: &[u8], protocol: &[u8]) -> bool {
    let Some(mut names) = list.get(2..) else {
        return false;
    };
    while let Some((&len, rest)) = names.split_first() {
        let Some(name) = rest.get(..usize::from(len)) else {
            return false;
        };
        if name == protocol {
            return true;
        }
        names = &rest[usize::from(len)..];
    }
    false
}

/// The ALPN choice of a TLS listener, in the server's order of preference:
/// `acme-tls/1` (only ACME validators offer it), `h2`, `http/1.1`.
pub fn select_alpn<'a>(_: &mut SslRef, client: &'a [u8]) -> Result<&'a [u8], AlpnError> {
    select_next_proto(b"\x0aacme-tls/1\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ALPN extension body naming `names`.
    fn alpn(names: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for name in names {
            list.push(name.len() as u8);
            list.extend_from_slice(name);
        }
        let mut body = (list.len() as u16).to_be_bytes().to_vec();
        body.extend(list);
        body
    }

    #[test]
    fn the_acme_protocol_is_found_among_those_offered() {
        assert!(offers(&alpn(&[b"acme-tls/1"]), ACME_TLS_ALPN));
        assert!(offers(&alpn(&[b"h2", b"acme-tls/1"]), ACME_TLS_ALPN));
        assert!(!offers(&alpn(&[b"h2", b"http/1.1"]), ACME_TLS_ALPN));
        assert!(!offers(&alpn(&[b"acme-tls/10"]), ACME_TLS_ALPN));
    }

    #[test]
    fn a_malformed_alpn_list_offers_nothing() {
        let mut cut = alpn(&[b"acme-tls/1"]);
        cut.pop();
        assert!(!offers(&cut, ACME_TLS_ALPN));
        assert!(!offers(&[0], ACME_TLS_ALPN));
        assert!(!offers(&[], ACME_TLS_ALPN));
    }
}
