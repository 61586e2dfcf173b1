//! Configuration: `conf.yaml` plus every `routes/*.yaml`, loaded in two
//! layers. `file` holds the serde types exactly as operators write them;
//! `compile` validates everything (collecting every error with file, line
//! and key) and builds the runtime structures the request path uses.

pub mod acme_file;
pub mod auth_file;
pub mod compile;
mod compile_acme;
mod compile_aggregate;
mod compile_api_keys;
mod compile_auth;
mod compile_dashboard;
mod compile_discovery;
mod compile_fallback;
mod compile_limit;
mod compile_oauth;
mod compile_redis;
mod compile_resilience;
mod compile_transform;
pub mod error;
pub mod file;
pub mod limit_file;
pub mod oauth_file;
pub mod redis_file;
pub mod reload;
pub mod yaml;

pub use compile::{
    load, load_reusing, AccessLogSpec, HeaderRules, Listener, Rewrite, Route, Runtime,
    ServerSettings, Settings,
};
pub use error::{ConfigError, ConfigErrors, Position};
