//! `routing::normalize` on arbitrary UTF-8: never panics, and every path it
//! accepts is in normal form (starts with `/`, no `//`, no `.`/`..`
//! segments, escapes only of reserved bytes and in upper-case hex), so
//! normalising it again returns it unchanged.
#![no_main]

use gatehouse::routing::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    check(path);
    // Request targets arrive with a leading slash; make sure most inputs get
    // past the first check.
    if !path.starts_with('/') {
        check(&format!("/{path}"));
    }
});

fn check(path: &str) {
    let Ok(n) = normalize(path) else {
        return;
    };
    let n: &str = &n;
    assert!(n.starts_with('/'), "{path:?} -> {n:?}: not absolute");
    assert!(!n.contains("//"), "{path:?} -> {n:?}: empty segment");
    assert!(!n.contains('\0'), "{path:?} -> {n:?}: NUL");
    for seg in n.split('/') {
        assert!(
            seg != "." && seg != "..",
            "{path:?} -> {n:?}: dot-segment left"
        );
    }
    let b = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        let hex = b.get(i + 1..i + 3).unwrap_or_else(|| {
            panic!("{path:?} -> {n:?}: truncated escape");
        });
        assert!(
            hex.iter()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
            "{path:?} -> {n:?}: escape not in upper-case hex"
        );
        let byte = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        assert!(
            byte != b'/' && byte != 0,
            "{path:?} -> {n:?}: encoded slash or NUL kept"
        );
        assert!(
            !(byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)),
            "{path:?} -> {n:?}: unreserved byte left encoded"
        );
    }
    match normalize(n) {
        Ok(again) => assert_eq!(&*again, n, "{path:?}: not idempotent"),
        Err(e) => panic!("{path:?} -> {n:?}: normal form refused: {e:?}"),
    }
}
