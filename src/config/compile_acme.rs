//! Compilation of conf.yaml's `acme`: every key checked, the running ACME
//! client (with the certificates it serves) kept when the section did not
//! change, else a new one.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::acme_file::{AcmeFile, ChallengeKind};
use super::compile::{resolve, Compiler, Parsed, ServerSettings};
use super::file::MainFile;
use crate::acme::storage::Storage;
use crate::acme::{Acme, AcmeMetrics, AcmeSettings};
use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::routing::host::parse_authority;

/// The most `renew_before_days` may say (certificates live 90 days or less).
const MAX_RENEW_BEFORE_DAYS: u64 = 365;

impl Compiler<'_> {
    /// The ACME client of `acme`, or `None` without the section.
    pub(super) fn acme(
        &mut self,
        main: &Parsed<MainFile>,
        server: &ServerSettings,
        auth: &Auth,
        metrics: &Metrics,
        print: u64,
    ) -> Option<Arc<Acme>> {
        let a = main.content.acme.as_ref()?;
        let settings = self.acme_settings(main, a, server);
        let storage = self.acme_storage(main, a, auth);
        let (settings, storage) = (settings?, storage?);
        if let Some(running) = self
            .previous
            .filter(|p| p.fingerprints.acme == print)
            .and_then(|p| p.acme.as_ref())
        {
            return Some(Arc::clone(running));
        }
        Some(Arc::new(Acme::new(
            settings,
            storage,
            AcmeMetrics::new(metrics),
        )))
    }

    fn acme_settings(
        &mut self,
        main: &Parsed<MainFile>,
        a: &AcmeFile,
        server: &ServerSettings,
    ) -> Option<AcmeSettings> {
        let errors = self.errors.len();
        let https = a
            .directory_url
            .parse::<http::Uri>()
            .is_ok_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
        if !https {
            self.errors.push(main.err(
                "acme.directory_url",
                format!("`{}` is not an https URL", a.directory_url),
            ));
        }
        if a.domains.is_empty() {
            self.errors
                .push(main.err("acme.domains", "name at least one domain"));
        }
        let mut domains: Vec<String> = Vec::new();
        for (i, d) in a.domains.iter().enumerate() {
            let key = format!("acme.domains[{i}]");
            if d.starts_with("*.") {
                self.errors.push(main.err(
                    &key,
                    format!("`{d}`: wildcard certificates need the DNS-01 challenge, which the gateway does not answer"),
                ));
                continue;
            }
            match parse_authority(d) {
                Ok(h)
                    if h.port.is_none()
                        && h.host.contains('.')
                        && !h.host.starts_with('[')
                        && h.host.parse::<std::net::IpAddr>().is_err() =>
                {
                    let name = h.host.into_owned();
                    if domains.contains(&name) {
                        self.errors
                            .push(main.err(&key, format!("`{d}` is listed twice")));
                    }
                    domains.push(name);
                }
                _ => self
                    .errors
                    .push(main.err(&key, format!("`{d}` is not a DNS name"))),
            }
        }
        for (i, c) in a.contact.urls().iter().enumerate() {
            if !c.starts_with("mailto:") || c.len() <= "mailto:".len() {
                self.errors.push(main.err(
                    &format!("acme.contact[{i}]"),
                    format!("`{c}` is not a mailto: URL"),
                ));
            }
        }
        self.bounded(
            main,
            "acme.renew_before_days",
            u64::from(a.renew_before_days),
            1,
            MAX_RENEW_BEFORE_DAYS,
        );
        self.bounded(main, "acme.retry_seconds", a.retry_seconds, 1, 86_400);
        let (tls, plain) = server
            .listeners
            .iter()
            .fold((0, 0), |(t, p), l| match l.tls {
                Some(_) => (t + 1, p),
                None => (t, p + 1),
            });
        match a.challenge {
            ChallengeKind::Http01 if plain == 0 => self.errors.push(main.err(
                "acme.challenge",
                "http-01 needs a plain listener (the ACME server connects on port 80)",
            )),
            ChallengeKind::TlsAlpn01 if tls == 0 => self.errors.push(main.err(
                "acme.challenge",
                "tls-alpn-01 needs a TLS listener (the ACME server connects on port 443)",
            )),
            _ => {}
        }
        let ca_roots = a.ca_file.as_ref().and_then(|f| {
            let path = resolve(&self.base, f);
            self.extra_files.push(path.clone());
            let roots: Result<Vec<CertificateDer<'static>>, String> =
                CertificateDer::pem_file_iter(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|certs| certs.collect::<Result<_, _>>().map_err(|e| e.to_string()));
            match roots {
                Ok(r) if !r.is_empty() => Some(r),
                Ok(_) => {
                    self.errors.push(main.err(
                        "acme.ca_file",
                        format!("{}: no certificate in it", path.display()),
                    ));
                    None
                }
                Err(e) => {
                    self.errors
                        .push(main.err("acme.ca_file", format!("{}: {e}", path.display())));
                    None
                }
            }
        });
        if self.errors.len() > errors {
            return None;
        }
        Some(AcmeSettings {
            directory_url: a.directory_url.clone(),
            ca_roots,
            contact: a.contact.urls(),
            domains,
            challenge: a.challenge,
            renew_before: Duration::from_secs(u64::from(a.renew_before_days) * 86_400),
            retry: Duration::from_secs(a.retry_seconds),
        })
    }

    fn acme_storage(
        &mut self,
        main: &Parsed<MainFile>,
        a: &AcmeFile,
        auth: &Auth,
    ) -> Option<Storage> {
        if a.storage == "redis" {
            let Some(t) = &auth.tokenginx else {
                self.errors.push(main.err(
                    "acme.storage",
                    "`redis` keeps certificates in the TokenginX store: configure `tokenginx`",
                ));
                return None;
            };
            return Some(Storage::redis(t.settings.client.clone()));
        }
        if a.storage.is_empty() {
            self.errors.push(main.err(
                "acme.storage",
                "name a directory, or `redis` for the TokenginX store",
            ));
            return None;
        }
        Some(Storage::Files(resolve(&self.base, &a.storage)))
    }
}
