//! The rate-limit keys of the config files: `rate_limit` in conf.yaml and
//! each route's `rate_limit`.

use serde::Deserialize;

use super::redis_file::RedisTlsFile;

/// Where buckets live.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process.
    #[default]
    Local,
    /// In Redis, shared by every instance.
    Redis,
}

/// What to do when Redis fails.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FallbackFile {
    /// Decide with the local store.
    #[default]
    Local,
    /// Let requests through.
    Allow,
    /// Refuse with 503.
    Deny,
}

/// `rate_limit:` in conf.yaml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// `local` or `redis`.
    #[serde(default)]
    pub store: StoreKind,
    /// One Redis node, for `store: redis`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes, instead of `redis_url`.
    #[serde(default)]
    pub redis_cluster: Vec<String>,
    /// CA and client certificate of `rediss://` connections (mTLS).
    #[serde(default)]
    pub redis_tls: Option<RedisTlsFile>,
    /// Redis unreachable: `local`, `allow` or `deny`.
    #[serde(default)]
    pub on_error: FallbackFile,
    /// Longest a Redis decision may take before `on_error` applies.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Buckets in the local store (memory: 8 bytes each).
    #[serde(default = "default_max_keys")]
    pub local_max_keys: usize,
}

impl Default for RateLimitFile {
    fn default() -> Self {
        RateLimitFile {
            store: StoreKind::Local,
            redis_url: None,
            redis_cluster: Vec::new(),
            redis_tls: None,
            on_error: FallbackFile::Local,
            timeout_ms: default_timeout_ms(),
            local_max_keys: default_max_keys(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    20
}
fn default_max_keys() -> usize {
    1 << 18
}

/// One limit of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitFile {
    /// `ip`, `user`, `route` or `header:NAME`.
    pub key: String,
    /// `N/s`, `N/m` or `N/h`.
    pub rate: String,
    /// Bucket capacity; defaults to N.
    #[serde(default)]
    pub burst: Option<u64>,
}

/// A route's `rate_limit`: one limit or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteLimitsFile {
    /// One limit.
    One(RouteLimitFile),
    /// Several, all enforced.
    Many(Vec<RouteLimitFile>),
}

impl RouteLimitsFile {
    /// The limits as a list.
    pub fn as_slice(&self) -> &[RouteLimitFile] {
        match self {
            RouteLimitsFile::One(l) => std::slice::from_ref(l),
            RouteLimitsFile::Many(v) => v,
        }
    }
}
