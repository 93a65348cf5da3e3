//! Domain services: the rules of the control plane. Every function takes a connection
//! (`&impl ConnectionTrait`, so it works inside a transaction too) and, where time matters,
//! `now`. The control plane also compiles and publishes the policy snapshot (`policy`) and
//! keeps the secrets and passwords (`auth`). It may use the store, the policy contract and the
//! proxy crate's egress client and credential types; nothing of the HTTP API or the pages.

pub mod auth;
pub mod domain;
pub mod error;
pub mod policy;

pub mod audit;
pub mod caller;
pub mod gauges;
pub mod identity;
pub mod invitations;
pub mod lease;
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

pub use mcpgate_policy::clock;
pub use mcpgate_proxy as proxy;
pub use mcpgate_proxy::{egress, http_client};
pub use mcpgate_store as store;
