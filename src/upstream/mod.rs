//! Upstream pools: backends, balancing, active and passive health.

pub mod breaker;
pub mod connect_failure;
pub mod health;
pub mod pool;
pub mod retry;
pub mod upgrade_gate;

pub use health::HealthSpec;
pub use pool::{EjectionPolicy, Lease, Pick, Pool, PoolSettings, Tried};
