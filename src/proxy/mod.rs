//! The data plane. It enforces only what a verified policy snapshot says and never reads the
//! store: `proxy/` depends on `policy/` (and, later, the credential resolver), nothing else.

pub mod decisions;
pub mod guard;
pub mod holder;
pub mod index;
pub mod legacy;
pub mod replica;
pub mod rewrite;
pub mod routes;
pub mod session;
pub mod tools;
pub mod upstream;
pub mod virtual_server;
