//! Domain services: the rules of the control plane, free of HTTP. Every function takes a
//! connection (`&impl ConnectionTrait`, so it works inside a transaction too) and, where
//! time matters, `now`.

pub mod audit;
pub mod caller;
pub mod legacy_sse;
pub mod members;
pub mod outbound;
pub mod overrides;
pub mod page;
pub mod probe;
pub mod rekey;
pub mod servers;
pub mod sessions;
pub mod teams;
pub mod tenants;
pub mod tokens;
pub mod upstream_oauth;
pub mod users;
pub mod vault;
pub mod virtual_accounts;
