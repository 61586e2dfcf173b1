//! YAML loading that remembers where every key stands.
//!
//! `serde_yaml` gives no positions for values, and a config error that does
//! not name a line is half an error. This module walks yaml-rust2's event
//! stream once and produces two things: a `serde_yaml::Value` for typed
//! deserialization, and a table from each value's path (`routes[2].upstream`)
//! to the line and column of its key. `${NAME}` is expanded in scalars here,
//! where the scalar's quoting style is still known: an unquoted scalar that
//! becomes `8080` after expansion is a number, a quoted one stays a string.

use std::collections::HashMap;

use serde_yaml::{Mapping, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::error::{ConfigError, Position};

/// A parsed YAML document plus the position of every path in it.
pub struct MarkedDoc {
    /// The document, environment variables already expanded.
    pub value: Value,
    /// Position of each path (`a.b[3].c`); the root is the empty path.
    positions: HashMap<String, Position>,
}

impl MarkedDoc {
    /// Parses `src`, expanding `${NAME}` with `env`. Every syntax error,
    /// duplicate key and unset variable is collected, each with its position.
    pub fn parse(
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<MarkedDoc, Vec<ConfigError>> {
        let mut builder = Builder {
            env,
            positions: HashMap::new(),
            anchors: HashMap::new(),
            errors: Vec::new(),
            expanded: 0,
        };
        let mut parser = Parser::new_from_str(src);
        let value = match builder.document(&mut parser) {
            Ok(v) => v,
            Err(e) => {
                builder.errors.push(ConfigError::at(
                    Position::from(e.marker()),
                    format!("YAML syntax: {}", e.info()),
                ));
                Value::Null
            }
        };
        if builder.errors.is_empty() {
            Ok(MarkedDoc {
                value,
                positions: builder.positions,
            })
        } else {
            Err(builder.errors)
        }
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn position(&self, path: &str) -> Position {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.positions.get("").copied().unwrap_or_default(),
            }
        }
    }
}

impl From<&Marker> for Position {
    fn from(m: &Marker) -> Self {
        Position {
            line: m.line(),
            // yaml-rust2 counts columns from 0; editors count from 1.
            col: m.col() + 1,
        }
    }
}

/// Most nodes that aliases may copy into one document: a few aliases of a
/// list are fine, a "billion laughs" bomb is an error, not an OOM.
const MAX_ALIAS_NODES: usize = 100_000;

struct Builder<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    positions: HashMap<String, Position>,
    /// Anchored values with their node count.
    anchors: HashMap<usize, (Value, usize)>,
    errors: Vec<ConfigError>,
    /// Nodes copied by aliases so far.
    expanded: usize,
}

/// Nodes in `v`, counting no further than `limit`.
fn node_count(v: &Value, limit: usize) -> usize {
    let mut n = 1;
    match v {
        Value::Sequence(items) => {
            for i in items {
                n += node_count(i, limit);
                if n > limit {
                    break;
                }
            }
        }
        Value::Mapping(m) => {
            for (_, i) in m {
                n += node_count(i, limit);
                if n > limit {
                    break;
                }
            }
        }
        _ => {}
    }
    n
}

type ParseResult<T> = Result<T, yaml_rust2::ScanError>;

impl Builder<'_> {
    fn document(&mut self, parser: &mut Parser<std::str::Chars<'_>>) -> ParseResult<Value> {
        let mut value = Value::Null;
        loop {
            let (event, mark) = parser.next_token()?;
            match event {
                Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
                Event::StreamEnd => return Ok(value),
                other => {
                    self.positions.insert(String::new(), Position::from(&mark));
                    value = self.node(parser, other, mark, "")?;
                }
            }
        }
    }

    fn node(
        &mut self,
        parser: &mut Parser<std::str::Chars<'_>>,
        event: Event,
        mark: Marker,
        path: &str,
    ) -> ParseResult<Value> {
        Ok(match event {
            Event::Scalar(text, style, anchor, _) => {
                let v = self.scalar(&text, style, mark);
                self.remember(anchor, &v);
                v
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((v, size)) if self.expanded + size <= MAX_ALIAS_NODES => {
                    self.expanded += size;
                    v.clone()
                }
                Some(_) => {
                    if self.expanded <= MAX_ALIAS_NODES {
                        self.errors.push(ConfigError::at(
                            Position::from(&mark),
                            format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                        ));
                        self.expanded = MAX_ALIAS_NODES + 1;
                    }
                    Value::Null
                }
                None => Value::Null,
            },
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, m) = parser.next_token()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    let item_path = format!("{path}[{}]", items.len());
                    self.positions.insert(item_path.clone(), Position::from(&m));
                    items.push(self.node(parser, ev, m, &item_path)?);
                }
                let v = Value::Sequence(items);
                self.remember(anchor, &v);
                v
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Mapping::new();
                loop {
                    let (ev, key_mark) = parser.next_token()?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(parser, ev, key_mark, path)?;
                    let key_text = match &key {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    let child = if path.is_empty() {
                        key_text.clone()
                    } else {
                        format!("{path}.{key_text}")
                    };
                    let pos = Position::from(&key_mark);
                    if map.contains_key(&key) {
                        self.errors
                            .push(ConfigError::at(pos, format!("duplicate key `{child}`")));
                    }
                    self.positions.insert(child.clone(), pos);
                    let (vev, vmark) = parser.next_token()?;
                    let value = self.node(parser, vev, vmark, &child)?;
                    map.insert(key, value);
                }
                let v = Value::Mapping(map);
                self.remember(anchor, &v);
                v
            }
            _ => Value::Null,
        })
    }

    fn remember(&mut self, anchor: usize, v: &Value) {
        if anchor > 0 {
            let size = node_count(v, MAX_ALIAS_NODES + 1);
            self.anchors.insert(anchor, (v.clone(), size));
        }
    }

    fn scalar(&mut self, text: &str, style: TScalarStyle, mark: Marker) -> Value {
        let expanded = match expand_env(text, self.env) {
            Ok(s) => s,
            Err(name) => {
                self.errors.push(ConfigError::at(
                    Position::from(&mark),
                    format!("environment variable `{name}` is not set"),
                ));
                return Value::Null;
            }
        };
        if style != TScalarStyle::Plain {
            return Value::String(expanded);
        }
        resolve_plain(expanded)
    }
}

/// Resolves an unquoted scalar by YAML 1.2's core schema.
fn resolve_plain(s: String) -> Value {
    match s.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = s.parse::<u64>() {
        return Value::Number(n.into());
    }
    if let Ok(n) = s.parse::<i64>() {
        return Value::Number(n.into());
    }
    let numeric = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'.');
    if numeric {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Number(Number::from(f));
        }
    }
    Value::String(s)
}

/// Replaces every `${NAME}` in `text`; `$$` stands for a literal `$`.
/// Returns the name of the first unset variable as the error.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(format!("{{{body}"));
            };
            let name = &body[..end];
            out.push_str(&env(name).ok_or_else(|| name.to_string())?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "SECRET" => Some("s3cr#t: x".into()),
            _ => None,
        }
    }

    #[test]
    fn positions_point_at_keys() {
        let doc = MarkedDoc::parse("a: 1\nlist:\n  - name: x\n    up: y\n", &env).unwrap();
        assert_eq!(doc.position("a"), Position { line: 1, col: 1 });
        assert_eq!(doc.position("list[0].up"), Position { line: 4, col: 5 });
        assert_eq!(
            doc.position("list[0].up.deeper"),
            Position { line: 4, col: 5 }
        );
    }

    #[test]
    fn env_expansion_keeps_types_by_quoting() {
        let doc = MarkedDoc::parse("p: ${PORT}\nq: \"${PORT}\"\ns: ${SECRET}\n", &env).unwrap();
        assert_eq!(doc.value["p"], Value::Number(8080u64.into()));
        assert_eq!(doc.value["q"], Value::String("8080".into()));
        assert_eq!(doc.value["s"], Value::String("s3cr#t: x".into()));
    }

    #[test]
    fn unset_variable_and_duplicate_key_are_errors() {
        let errs = MarkedDoc::parse("a: ${NOPE}\nb: 1\nb: 2\n", &env)
            .err()
            .unwrap();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            [
                "1:4: environment variable `NOPE` is not set",
                "3:1: duplicate key `b`"
            ]
        );
    }

    #[test]
    fn dollar_escapes() {
        assert_eq!(expand_env("a$$b$c", &env).unwrap(), "a$b$c");
        assert_eq!(expand_env("${PORT}/x", &env).unwrap(), "8080/x");
    }
}
