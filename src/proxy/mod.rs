//! The data plane. It enforces only what a verified policy snapshot says and never reads the
//! store: `proxy/` depends on `policy/` (and, later, the credential resolver), nothing else.

pub mod holder;
pub mod index;
pub mod routes;
