//! Integration tests: the real `gatehouse` binary against real upstream
//! servers on loopback ports chosen at run time.

mod admin;
mod aggregate;
mod api_keys;
mod auth;
mod auth_support;
mod browser;
mod common;
mod config;
mod conformance;
mod cors;
mod demo;
mod deploy;
mod discovery;
mod edge;
mod fallbacks;
mod fault_peers;
mod fuzz_regressions;
mod headers;
mod host;
mod http2;
mod keepalive;
mod lifecycle;
mod limits;
mod oauth;
mod oauth_support;
mod observability;
mod pipelining;
mod protocols;
mod reload;
mod resilience;
mod retries;
mod routing;
mod slowloris;
mod tls;
mod upstreams;
