//! Validation and compilation of API keys: conf.yaml's `api_keys` and the
//! consumer files of its `consumers_dir` (see [`crate::auth::api_key`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compile::{list_yaml, resolve, Compiler, Parsed};
use super::file::{default_consumers_dir, default_key_sources, ConsumersFile, MainFile};
use crate::auth::api_key::{Consumer, KeySource};
use crate::auth::template::Template;
use crate::auth::ApiKeys;

impl Compiler<'_> {
    /// The API keys of the config, and the consumers directory. Consumer
    /// files join `files` (watched, in the version); a missing directory
    /// holds no consumer.
    pub(super) fn api_keys(
        &mut self,
        main: &Parsed<MainFile>,
        base: &Path,
        files: &mut Vec<PathBuf>,
    ) -> (Arc<ApiKeys>, PathBuf) {
        let section = main.content.api_keys.as_ref();
        let source_texts = section.map_or_else(default_key_sources, |s| s.sources.clone());
        let mut sources = Vec::new();
        for (i, text) in source_texts.iter().enumerate() {
            match KeySource::parse(text) {
                Some(s) => sources.push(s),
                None => self.errors.push(main.err(
                    &format!("api_keys.sources[{i}]"),
                    format!("`{text}` is not `header:NAME` or `authorization:SCHEME`"),
                )),
            }
        }
        let lookup_key = section.and_then(|s| s.lookup_key.as_ref()).and_then(|t| {
            if main.content.tokenginx.is_none() {
                self.errors
                    .push(main.err("api_keys.lookup_key", "needs the `tokenginx` section"));
            }
            Template::parse(t, &["sha256"])
                .map_err(|e| self.errors.push(main.err("api_keys.lookup_key", e)))
                .ok()
        });
        let dir_text = section.map_or_else(default_consumers_dir, |s| s.consumers_dir.clone());
        let dir = resolve(base, &dir_text);
        let consumers = self.consumers(&dir, files);
        // Its errors are the authentication section's, reported there.
        let reported = self.errors.len();
        let forward = self.forward_identity(main);
        self.errors.truncate(reported);
        let keys = ApiKeys::new(sources, consumers, lookup_key, &forward).unwrap_or_else(|e| {
            self.errors.push(main.err("api_keys", e));
            ApiKeys::new(Vec::new(), Vec::new(), None, &[]).expect("empty")
        });
        (Arc::new(keys), dir)
    }

    /// The consumers of every file in `dir`, by key hash.
    fn consumers(&mut self, dir: &Path, files: &mut Vec<PathBuf>) -> Vec<(String, Consumer)> {
        let Ok(paths) = list_yaml(dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Consumer)> = Vec::new();
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        for path in paths {
            files.push(path.clone());
            let Some(f) = self.read::<ConsumersFile>(&path) else {
                continue;
            };
            self.consumer_entries(&f, &mut names, &mut out);
        }
        out
    }

    fn consumer_entries(
        &mut self,
        f: &Parsed<ConsumersFile>,
        names: &mut HashMap<String, PathBuf>,
        out: &mut Vec<(String, Consumer)>,
    ) {
        for (i, c) in f.content.consumers.iter().enumerate() {
            let key = format!("consumers[{i}]");
            let before = self.errors.len();
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
            {
                self.errors.push(f.err(
                    &format!("{key}.name"),
                    format!("`{}`: use letters, digits, `-`, `_`, `.`, `@`", c.name),
                ));
            }
            if let Some(other) = names.insert(c.name.clone(), f.path.clone()) {
                self.errors.push(f.err(
                    &format!("{key}.name"),
                    format!(
                        "consumer `{}` is already defined in {}",
                        c.name,
                        other.display()
                    ),
                ));
            }
            let hash = c.key_sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.errors.push(f.err(
                    &format!("{key}.key_sha256"),
                    "must be the 64 hex digits `gatehouse hash-key` prints, never the key itself",
                ));
            } else if out.iter().any(|(h, _)| *h == hash) {
                self.errors.push(f.err(
                    &format!("{key}.key_sha256"),
                    "another consumer has this key",
                ));
            }
            if self.errors.len() == before {
                out.push((
                    hash,
                    Consumer {
                        name: c.name.clone(),
                        scopes: c.scopes.clone(),
                        roles: c.roles.clone(),
                    },
                ));
            }
        }
    }
}
