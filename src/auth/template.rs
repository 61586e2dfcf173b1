//! Key templates of TokenginX: `oauth:token:{jti}`, `oauth:token:{token}`.

/// A parsed template: literal text and `{name}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

impl Template {
    /// Parses `text`; every placeholder must be one of `allowed`.
    pub fn parse(text: &str, allowed: &[&str]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{text}`"))?
                + open;
            let name = &rest[open + 1..close];
            if !allowed.contains(&name) {
                return Err(format!("`{{{name}}}` is not one of {}", allowed.join(", ")));
            }
            parts.push(Part::Field(name.to_string()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err(format!("`{text}` has no placeholder"));
        }
        Ok(Template { parts })
    }

    /// Fills the placeholders with `value(name)`; `None` if one is missing.
    pub fn render(&self, value: impl Fn(&str) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&value(f)?),
            }
        }
        Some(out)
    }

    /// Fills the placeholders from JWT claims (strings or numbers).
    pub fn render_claims(&self, claims: &serde_json::Value) -> Option<String> {
        self.render(|name| match claims.get(name)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = Template::parse("oauth:token:{jti}", &["jti", "sid", "sub"]).unwrap();
        assert_eq!(
            t.render_claims(&serde_json::json!({"jti": "abc"}))
                .as_deref(),
            Some("oauth:token:abc")
        );
        assert_eq!(t.render_claims(&serde_json::json!({"sub": "u"})), None);
        assert!(Template::parse("x:{nope}", &["jti"]).is_err());
        assert!(Template::parse("x:{jti", &["jti"]).is_err());
        assert!(Template::parse("static", &["jti"]).is_err());
        let t = Template::parse("{sub}/{sid}", &["sid", "sub"]).unwrap();
        assert_eq!(
            t.render(|n| Some(n.to_uppercase())).as_deref(),
            Some("SUB/SID")
        );
    }
}
