//! The data plane. It enforces only what a verified policy snapshot says and never reads the
//! store; the only thing it hands back is its decisions, through `decisions::DecisionLog`
//! (written to the store by `mcpgate serve`, posted to the control plane by replicas).

pub mod bridge;
pub mod challenge;
pub mod credentials;
pub mod decisions;
pub mod direct;
pub mod egress;
pub mod error;
pub mod failover;
pub mod guard;
pub mod holder;
pub mod http_client;
pub mod idp;
pub mod index;
pub mod legacy;
pub mod metrics;
pub mod mrtr;
pub mod params;
pub mod passthrough;
pub mod replica;
pub mod rewrite;
pub mod routes;
pub mod session;
pub mod span;
pub mod tools;
pub mod upstream;
pub mod virtual_server;
