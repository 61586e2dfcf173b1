//! Host canonicalisation, path normalisation and the route table.

pub mod host;
pub mod path;
pub mod table;

pub use host::{parse_authority, Authority};
pub use path::{check_parameters, normalize, PathError};
pub use table::{canonical_prefix, RouteTable};
