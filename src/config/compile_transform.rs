//! Validation and compilation of a route's request transformation keys:
//! `cors` (see [`crate::cors`]), `rewrite` and `validate` (see
//! [`crate::validate`]).

use http::{HeaderName, HeaderValue, Method};
use regex::Regex;

use std::hash::Hash;
use std::sync::Arc;

use super::compile::{resolve, Compiler, Parsed};
use super::file::{CorsFile, RouteEntry, RouteFile};
use crate::cors::{Cors, OriginPattern};
use crate::validate::BodySchema;

/// Methods of actual requests when neither `allow_methods` nor the route's
/// `methods` say.
const DEFAULT_METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::POST];

/// Longest `Access-Control-Max-Age` accepted (Firefox's cap; Chromium's is 2 h).
const MAX_AGE_LIMIT: u64 = 86_400;

/// A route's compiled `rewrite`.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// What is matched.
    pub regex: Regex,
    /// What replaces the match.
    pub replacement: String,
}

impl Compiler<'_> {
    /// Route `key`'s CORS policy, if it has one.
    pub(super) fn route_cors(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        e: &RouteEntry,
        route_methods: Option<&[Method]>,
    ) -> Option<Cors> {
        let c: &CorsFile = e.cors.as_ref()?;
        let ckey = format!("{key}.cors");
        let before = self.errors.len();
        let any_origin = c.allow_origins.iter().any(|o| o == "*");
        let mut origins = Vec::new();
        for (i, o) in c.allow_origins.iter().enumerate() {
            if o == "*" {
                continue;
            }
            match OriginPattern::parse(o) {
                Some(p) => origins.push(p),
                None => self.errors.push(f.err(
                    &format!("{ckey}.allow_origins[{i}]"),
                    format!("`{o}` is not an origin (scheme://host[:port], the host possibly `*.suffix`; never `null`)"),
                )),
            }
        }
        if c.allow_origins.is_empty() {
            self.errors
                .push(f.err(&format!("{ckey}.allow_origins"), "list at least one origin"));
        }
        if any_origin && c.allow_credentials {
            self.errors.push(f.err(
                &format!("{ckey}.allow_origins"),
                "`*` with `allow_credentials: true` would let any site act as the signed-in user: list the origins",
            ));
        }
        if any_origin && !origins.is_empty() {
            self.errors.push(f.err(
                &format!("{ckey}.allow_origins"),
                "`*` already allows every origin: list origins or `*`, not both",
            ));
        }
        let methods: Vec<Method> = match &c.allow_methods {
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| {
                            self.errors.push(f.err(
                                &format!("{ckey}.allow_methods[{i}]"),
                                format!("`{m}` is not a method"),
                            ))
                        })
                        .ok()
                })
                .collect(),
            None => route_methods.map_or(DEFAULT_METHODS.to_vec(), <[Method]>::to_vec),
        };
        let names = |this: &mut Self, field: &str, list: &[String]| -> Vec<HeaderName> {
            list.iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    HeaderName::try_from(h.as_str())
                        .map_err(|_| {
                            this.errors.push(f.err(
                                &format!("{ckey}.{field}[{i}]"),
                                format!("`{h}` is not a header name"),
                            ))
                        })
                        .ok()
                })
                .collect()
        };
        let headers = c
            .allow_headers
            .as_ref()
            .map(|list| names(self, "allow_headers", list));
        if c.allow_credentials
            && headers
                .as_ref()
                .is_some_and(|h| h.iter().any(|n| n.as_str() == "*"))
        {
            self.errors.push(f.err(
                &format!("{ckey}.allow_headers"),
                "`*` is not honoured with credentials: list the headers",
            ));
        }
        let expose = names(self, "expose_headers", &c.expose_headers);
        if c.max_age_seconds > MAX_AGE_LIMIT {
            self.errors.push(f.err(
                &format!("{ckey}.max_age_seconds"),
                format!("must be at most {MAX_AGE_LIMIT}"),
            ));
        }
        if self.errors.len() > before {
            return None;
        }
        let join = |items: Vec<&str>| HeaderValue::try_from(items.join(", ")).ok();
        Some(Cors {
            origins,
            any_origin,
            methods_value: join(methods.iter().map(Method::as_str).collect())?,
            methods,
            headers,
            expose: (!expose.is_empty())
                .then(|| join(expose.iter().map(HeaderName::as_str).collect()))
                .flatten(),
            credentials: c.allow_credentials,
            max_age: HeaderValue::from(c.max_age_seconds),
        })
    }

    /// Route `key`'s body schema, if it has one: the file is read and the
    /// schema compiled now (its references must be inside it: nothing is
    /// fetched), and the file is watched like the config.
    pub(super) fn route_schema(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        e: &RouteEntry,
    ) -> Option<BodySchema> {
        let v = e.validate.as_ref()?;
        let vkey = format!("{key}.validate.json_schema");
        let path = resolve(&self.base, &v.json_schema);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(err) => {
                self.errors
                    .push(f.err(&vkey, format!("cannot read {}: {err}", path.display())));
                return None;
            }
        };
        text.hash(&mut self.hasher);
        self.extra_files.push(path.clone());
        let schema: serde_json::Value = match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(err) => {
                self.errors.push(f.err(
                    &vkey,
                    format!(
                        "{} is not JSON: line {}, column {}: {err}",
                        path.display(),
                        err.line(),
                        err.column()
                    ),
                ));
                return None;
            }
        };
        match jsonschema::validator_for(&schema) {
            Ok(validator) => Some(BodySchema {
                validator: Arc::new(validator),
            }),
            Err(err) => {
                self.errors.push(f.err(
                    &vkey,
                    format!(
                        "{} is not a valid JSON Schema: {err} (at {})",
                        path.display(),
                        err.schema_path()
                    ),
                ));
                None
            }
        }
    }

    /// Route `key`'s path rewrite, if it has one.
    pub(super) fn route_rewrite(
        &mut self,
        f: &Parsed<RouteFile>,
        key: &str,
        e: &RouteEntry,
    ) -> Option<Rewrite> {
        let r = e.rewrite.as_ref()?;
        let rkey = format!("{key}.rewrite");
        if e.strip_prefix {
            self.errors.push(f.err(
                &format!("{key}.strip_prefix"),
                "`rewrite` replaces `strip_prefix`: set one of them",
            ));
        }
        if !r.replacement.starts_with('/') {
            self.errors.push(f.err(
                &format!("{rkey}.replacement"),
                "must be a path starting with /",
            ));
        }
        match Regex::new(&r.regex) {
            Ok(regex) => {
                for group in capture_refs(&r.replacement) {
                    let known = match group.parse::<usize>() {
                        Ok(n) => n < regex.captures_len(),
                        Err(_) => regex.capture_names().flatten().any(|n| n == group),
                    };
                    if !known {
                        self.errors.push(f.err(
                            &format!("{rkey}.replacement"),
                            format!("`${group}` names no group of the regex"),
                        ));
                    }
                }
                Some(Rewrite {
                    regex,
                    replacement: r.replacement.clone(),
                })
            }
            Err(err) => {
                let text = err.to_string();
                let last = text.lines().last().unwrap_or("invalid").trim().to_string();
                self.errors.push(f.err(
                    &format!("{rkey}.regex"),
                    format!("not a valid regex: {last}"),
                ));
                None
            }
        }
    }
}

/// The group references (`$1`, `${name}`) of a replacement; `$$` is a
/// literal dollar.
fn capture_refs(replacement: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = replacement;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').unwrap_or(r.len());
            out.push(&r[..end]);
            rest = &r[end.min(r.len())..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}
