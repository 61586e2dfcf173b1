//! The gateway's cookies: reading one out of a request's `Cookie` headers,
//! writing `Set-Cookie`, and removing the gateway's own from what an
//! upstream receives.

use http::header::COOKIE;
use pingora_http::RequestHeader;

/// The `name=value` pairs of every `Cookie` header.
fn pairs(req: &RequestHeader) -> impl Iterator<Item = (&str, &str)> {
    req.headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim().trim_matches('"')))
        })
}

/// The value of cookie `name`, if the request carries it.
pub fn get<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    pairs(req).find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Attributes of the gateway's cookies.
#[derive(Debug, Clone, Copy)]
pub struct Jar {
    /// Whether the public origin is HTTPS: `Secure` and the `__Host-`
    /// prefix.
    pub secure: bool,
}

impl Jar {
    /// The name as sent: `__Host-` + `base` on HTTPS.
    pub fn name(self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_string()
        }
    }

    /// `Set-Cookie` for `base` = `value`, living `max_age` seconds:
    /// HttpOnly, SameSite=Lax, Path=/, Secure on HTTPS.
    pub fn set(self, base: &str, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{}",
            self.name(base),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` that deletes `base`.
    pub fn clear(self, base: &str) -> String {
        self.set(base, "", 0)
    }
}

/// Removes the cookies named in `names` from the request's `Cookie`
/// headers (the others stay, in one header); the header goes when none is
/// left.
pub fn strip(req: &mut RequestHeader, names: &[String]) {
    if !pairs(req).any(|(n, _)| names.iter().any(|g| g == n)) {
        return;
    }
    let kept: Vec<String> = req
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n.trim());
            !pair.is_empty() && !names.iter().any(|g| g == name)
        })
        .map(str::to_string)
        .collect();
    req.remove_header(&COOKIE);
    if !kept.is_empty() {
        let _ = req.insert_header(COOKIE, kept.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_strip() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("cookie", "a=1; gatehouse_session=abc")
            .unwrap();
        r.append_header("cookie", "b=2").unwrap();
        assert_eq!(get(&r, "gatehouse_session"), Some("abc"));
        assert_eq!(get(&r, "b"), Some("2"));
        assert_eq!(get(&r, "c"), None);
        strip(&mut r, &["gatehouse_session".into()]);
        let left: Vec<_> = r.headers.get_all("cookie").iter().collect();
        assert_eq!(left, ["a=1; b=2"]);
        strip(&mut r, &["a".into(), "b".into()]);
        assert!(r.headers.get("cookie").is_none());

        let tls = Jar { secure: true };
        assert_eq!(
            tls.set("s", "v", 60),
            "__Host-s=v; Max-Age=60; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let plain = Jar { secure: false };
        assert_eq!(
            plain.clear("s"),
            "s=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
        );
    }
}
