//! Upstream pools: backends, balancing, active and passive health.

pub mod health;
pub mod pool;

pub use health::HealthSpec;
pub use pool::{Lease, Pool, PoolSettings, Tried};
