//! Redis and TokenginX clients from their config keys: URL, password and
//! TLS files. Errors never echo a password.

use redis::{ClientTlsConfig, ConnectionInfo, IntoConnectionInfo, TlsCertificates};

use super::compile::{resolve, Compiler, Parsed};
use super::file::MainFile;
use super::redis_file::RedisTlsFile;

impl Compiler<'_> {
    /// The connection info of `url` (key `key`), or an error naming the
    /// key with the password masked.
    pub(super) fn redis_info(
        &mut self,
        main: &Parsed<MainFile>,
        key: &str,
        url: &str,
    ) -> Option<ConnectionInfo> {
        url.into_connection_info()
            .map_err(|e| {
                self.errors
                    .push(main.err(key, format!("`{}`: {e}", redacted(url))))
            })
            .ok()
    }

    /// The certificates of `tls` (key `key`), read from disk now so that a
    /// missing file is a config error, not a failed connection later.
    pub(super) fn redis_tls(
        &mut self,
        main: &Parsed<MainFile>,
        key: &str,
        tls: &RedisTlsFile,
    ) -> Option<TlsCertificates> {
        let mut read = |field: &str, path: &Option<String>| -> Result<Option<Vec<u8>>, ()> {
            let Some(p) = path else { return Ok(None) };
            let path = resolve(&self.base, p);
            std::fs::read(&path).map(Some).map_err(|e| {
                self.errors.push(main.err(
                    &format!("{key}.{field}"),
                    format!("{}: {e}", path.display()),
                ))
            })
        };
        let root_cert = read("ca_file", &tls.ca_file);
        let cert = read("client_cert", &tls.client_cert);
        let key_pem = read("client_key", &tls.client_key);
        let client_tls = match (cert.ok()?, key_pem.ok()?) {
            (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig {
                client_cert,
                client_key,
            }),
            (None, None) => None,
            _ => {
                self.errors
                    .push(main.err(key, "`client_cert` and `client_key` go together"));
                return None;
            }
        };
        Some(TlsCertificates {
            client_tls,
            root_cert: root_cert.ok()?,
        })
    }

    /// A client for `info`, with `tls` certificates when given; `tls` needs
    /// a `rediss://` URL.
    pub(super) fn redis_client(
        &mut self,
        main: &Parsed<MainFile>,
        key: &str,
        info: ConnectionInfo,
        tls: Option<TlsCertificates>,
    ) -> Option<redis::Client> {
        let client = match tls {
            Some(certs) => redis::Client::build_with_tls(info, certs),
            None => redis::Client::open(info),
        };
        client
            .map_err(|e| self.errors.push(main.err(key, e.to_string())))
            .ok()
    }
}

/// `url` with the password of its user-info replaced by `***`.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &url[scheme_end..scheme_end + at];
    let user = userinfo.split_once(':').map_or("", |(u, _)| u);
    format!(
        "{}{user}:***{}",
        &url[..scheme_end],
        &url[scheme_end + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_masked() {
        for (url, shown) in [
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            ("rediss://user:p@ss@h:x", "rediss://user:***@h:x"),
            ("redis://s3cret@h", "redis://:***@h"),
            ("redis://h:6379/#insecure", "redis://h:6379/#insecure"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }
}
