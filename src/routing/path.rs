//! Request path normalisation.
//!
//! Routing and the upstream both see the same normalised path, so a route's
//! policy cannot be bypassed by spelling: `//admin`, `/x/../admin` and
//! `/%61dmin` all become `/admin`, and raw non-ASCII bytes and raw `\`
//! are percent-encoded, so `/café` and `/caf%C3%A9` are one path and no
//! WHATWG parser (Node, browsers) reads `/admin\x` as `/admin/x`. What
//! cannot be normalised without guessing is refused: an encoded `/`
//! (`%2F`), a dot-segment spelled with escapes (`%2e%2e`), NUL, and
//! malformed escapes. [`check_parameters`] refuses the `;` path parameters
//! that Java servers strip per segment (`/admin;x/y` is `/admin/y` to
//! Tomcat), unless the operator allows them; `..;` never passes.

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/`.
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F`: a slash that is not a separator.
    EncodedSlash,
    /// `.` or `..` written with escapes.
    EncodedDotSegment,
    /// A NUL byte, raw or escaped.
    Nul,
    /// A `;` path parameter, not allowed by `path_params`.
    Parameter,
    /// A dot-segment with a `;` parameter (`..;`): a traversal for servers
    /// that strip parameters.
    DotSegmentParameter,
}

impl PathError {
    /// Human text for the JSON error body.
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "request path must start with /",
            PathError::BadEscape => "request path has an invalid percent-encoding",
            PathError::EncodedSlash => "request path has an encoded slash (%2F)",
            PathError::EncodedDotSegment => "request path has an encoded dot-segment",
            PathError::Nul => "request path contains NUL",
            PathError::Parameter => "request path has a `;` parameter",
            PathError::DotSegmentParameter => "request path has a dot-segment with a `;` parameter",
        }
    }
}

/// Normalises `path` (no query): decodes escapes of unreserved characters,
/// upper-cases the hex of the others, percent-encodes raw non-ASCII bytes,
/// folds `//`, resolves `.` and `..`.
/// Borrows when the path is already normal, which is the common case.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut segments: Vec<(usize, bool)> = Vec::new();
    for raw in path[1..].split('/') {
        let (segment, had_escape) = decode_segment(raw)?;
        match segment.as_str() {
            "" => continue,
            "." | ".." if had_escape => return Err(PathError::EncodedDotSegment),
            "." => continue,
            ".." => {
                if let Some((start, _)) = segments.pop() {
                    out.truncate(start);
                }
                continue;
            }
            _ => {}
        }
        segments.push((out.len(), had_escape));
        out.push('/');
        out.push_str(&segment);
    }
    let ends_open = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if out.is_empty() || ends_open {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Refuses `;` path parameters in a normalised path: every one unless
/// `allow`, and always one that makes a dot-segment (`..;x`, `.;`), which
/// servers that strip parameters read as `..`.
pub fn check_parameters(path: &str, allow: bool) -> Result<(), PathError> {
    if !path.contains(';') {
        return Ok(());
    }
    for segment in path.split('/') {
        let Some((name, _)) = segment.split_once(';') else {
            continue;
        };
        if matches!(name, "." | "..") {
            return Err(PathError::DotSegmentParameter);
        }
        if !allow {
            return Err(PathError::Parameter);
        }
    }
    Ok(())
}

/// True when nothing in the path needs work: no escapes, no empty or dot
/// segments, no NUL, no raw non-ASCII or backslash.
fn is_plain(bytes: &[u8]) -> bool {
    let mut prev = b'/';
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b'%' | b'\\' | 0 | 0x80.. => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                let rest = &bytes[i..];
                if rest == b"."
                    || rest == b".."
                    || rest.starts_with(b"./")
                    || rest.starts_with(b"../")
                {
                    return false;
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

fn decode_segment(raw: &str) -> Result<(String, bool), PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut had_escape = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0 {
            return Err(PathError::Nul);
        }
        if b >= 0x80 || b == b'\\' {
            push_escape(&mut out, b);
            i += 1;
            continue;
        }
        if b != b'%' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).and_then(|c| hex(*c));
        let lo = bytes.get(i + 2).and_then(|c| hex(*c));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(PathError::BadEscape);
        };
        let decoded = hi << 4 | lo;
        had_escape = true;
        match decoded {
            0 => return Err(PathError::Nul),
            b'/' => return Err(PathError::EncodedSlash),
            c if is_unreserved(c) => out.push(c as char),
            c => push_escape(&mut out, c),
        }
        i += 3;
    }
    Ok((out, had_escape))
}

/// Appends `%XX` (upper-case hex) for `c`.
fn push_escape(out: &mut String, c: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(c >> 4) as usize] as char);
    out.push(HEX[(c & 15) as usize] as char);
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved characters: safe to decode, they mean the same either way.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/admin", Ok("/admin")),
            ("/admin/", Ok("/admin/")),
            ("//admin", Ok("/admin")),
            ("/a//b///c", Ok("/a/b/c")),
            ("/x/../admin", Ok("/admin")),
            ("/./admin/./x", Ok("/admin/x")),
            ("/../../admin", Ok("/admin")),
            ("/admin/x/..", Ok("/admin/")),
            ("/admin/.", Ok("/admin/")),
            ("/%61dmin", Ok("/admin")),
            ("/a%7eb", Ok("/a~b")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%3fb", Ok("/a%3Fb")),
            ("/caf\u{e9}/x", Ok("/caf%C3%A9/x")),
            ("/caf%c3%a9/x", Ok("/caf%C3%A9/x")),
            ("/\u{ff41}dmin", Ok("/%EF%BD%81dmin")),
            ("/..;/admin", Ok("/..;/admin")),
            ("/admin\\x", Ok("/admin%5Cx")),
            ("/admin%5cx", Ok("/admin%5Cx")),
            ("/\\\\evil", Ok("/%5C%5Cevil")),
            ("/.well-known/jwks", Ok("/.well-known/jwks")),
            ("/admin%2Fsecret", Err(PathError::EncodedSlash)),
            ("/admin%2fsecret", Err(PathError::EncodedSlash)),
            ("/x/%2e%2e/admin", Err(PathError::EncodedDotSegment)),
            ("/x/.%2E/admin", Err(PathError::EncodedDotSegment)),
            ("/x/%2e/admin", Err(PathError::EncodedDotSegment)),
            ("/a%00b", Err(PathError::Nul)),
            ("/a\0b", Err(PathError::Nul)),
            ("/a%zzb", Err(PathError::BadEscape)),
            ("/a%4", Err(PathError::BadEscape)),
            ("admin", Err(PathError::NotAbsolute)),
            ("", Err(PathError::NotAbsolute)),
        ];
        for (input, want) in cases {
            let got = normalize(input).map(|c| c.into_owned());
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "input {input:?}");
        }
    }

    #[test]
    fn path_parameters_are_refused_unless_allowed_and_dot_ones_always() {
        for path in ["/admin;x=1/y", "/admin;/y", "/a/b;jsessionid=1"] {
            assert_eq!(
                check_parameters(path, false),
                Err(PathError::Parameter),
                "{path}"
            );
            assert_eq!(check_parameters(path, true), Ok(()), "{path}");
        }
        for path in ["/x/..;/admin", "/..;/admin", "/x/.;/y", "/x/..;x=1/admin"] {
            assert_eq!(
                check_parameters(path, true),
                Err(PathError::DotSegmentParameter),
                "{path}"
            );
        }
        assert_eq!(check_parameters("/a%3Bb/c", false), Ok(()));
        assert_eq!(check_parameters("/plain/path", false), Ok(()));
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(
            normalize("/kline/api/v1/candles"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(normalize("/a..b/.c"), Ok(Cow::Borrowed(_))));
    }
}
