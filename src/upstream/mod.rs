//! Upstream pools: backends, balancing, active and passive health, DNS
//! discovery of their members.

pub mod backend;
pub mod breaker;
pub mod connect_failure;
pub mod discovery;
pub mod health;
pub mod pool;
pub mod retry;
pub mod timeline;
pub mod upgrade_gate;

pub use backend::{Backend, BackendMetrics};
pub use health::HealthSpec;
pub use pool::{EjectionPolicy, Lease, Pick, Pool, PoolSettings, Tried};
