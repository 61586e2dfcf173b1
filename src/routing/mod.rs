//! Path normalisation and the route table.

pub mod path;
pub mod table;

pub use path::{normalize, PathError};
pub use table::{canonical_prefix, host_key, RouteTable};
