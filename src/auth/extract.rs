//! Finding the token of a request: the `Authorization: Bearer` header
//! and/or cookies, in the order `token_sources` lists them.

use pingora_http::RequestHeader;

/// One place a token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Header,
    /// A cookie of this name.
    Cookie(String),
}

impl TokenSource {
    /// Parses `header` or `cookie:NAME`.
    pub fn parse(text: &str) -> Option<TokenSource> {
        match text.split_once(':') {
            None if text == "header" => Some(TokenSource::Header),
            Some(("cookie", name)) if is_cookie_name(name) => {
                Some(TokenSource::Cookie(name.into()))
            }
            _ => None,
        }
    }
}

fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What a request carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// A token.
    Token(&'a str),
    /// No token anywhere.
    Missing,
    /// An Authorization header that is not a usable bearer token.
    Malformed,
}

/// The first token found in `sources`.
pub fn find<'a>(req: &'a RequestHeader, sources: &[TokenSource]) -> Found<'a> {
    for source in sources {
        match source {
            TokenSource::Header => {
                let Some(v) = req.headers.get(http::header::AUTHORIZATION) else {
                    continue;
                };
                let Ok(v) = v.to_str() else {
                    return Found::Malformed;
                };
                let mut parts = v.trim().splitn(2, ' ');
                let (scheme, token) = (
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("").trim(),
                );
                if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
                    return Found::Malformed;
                }
                return Found::Token(token);
            }
            TokenSource::Cookie(name) => {
                if let Some(t) = cookie(req, name).filter(|t| !t.is_empty()) {
                    return Found::Token(t);
                }
            }
        }
    }
    Found::Missing
}

/// The value of cookie `name`.
pub fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn extraction_table() {
        let both = [
            TokenSource::Header,
            TokenSource::Cookie("access_token".into()),
        ];
        let cookie_first = [
            TokenSource::Cookie("access_token".into()),
            TokenSource::Header,
        ];
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [TokenSource], Found<'a>);
        let cases: &[Case] = &[
            (
                &[("authorization", "Bearer abc")],
                &both,
                Found::Token("abc"),
            ),
            (
                &[("authorization", "bearer   abc ")],
                &both,
                Found::Token("abc"),
            ),
            (&[("authorization", "Basic eDp5")], &both, Found::Malformed),
            (&[("authorization", "Bearer")], &both, Found::Malformed),
            (
                &[("cookie", "a=1; access_token=tok; b=2")],
                &both,
                Found::Token("tok"),
            ),
            (
                &[("cookie", "a=1"), ("cookie", "access_token=\"q\"")],
                &both,
                Found::Token("q"),
            ),
            (&[("cookie", "access_token=")], &both, Found::Missing),
            (&[], &both, Found::Missing),
            (
                &[("authorization", "Bearer h"), ("cookie", "access_token=c")],
                &cookie_first,
                Found::Token("c"),
            ),
            (
                &[("cookie", "access_token=c")],
                &[TokenSource::Header],
                Found::Missing,
            ),
        ];
        for (headers, sources, want) in cases {
            assert_eq!(find(&req(headers), sources), *want, "{headers:?}");
        }
    }

    #[test]
    fn source_parsing() {
        assert_eq!(TokenSource::parse("header"), Some(TokenSource::Header));
        assert_eq!(
            TokenSource::parse("cookie:sid"),
            Some(TokenSource::Cookie("sid".into()))
        );
        assert_eq!(TokenSource::parse("cookie:"), None);
        assert_eq!(TokenSource::parse("query:t"), None);
    }
}
