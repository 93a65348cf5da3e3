//! mcpgate: an MCP gateway. This crate is the binary's half: the HTTP API, the pages, the
//! OAuth authorization server's endpoints, the CLI and the wiring. The layers below are
//! crates of their own (ARCHITECTURE.md): `mcpgate-policy` (the snapshot contract),
//! `mcpgate-proxy` (the data plane), `mcpgate-store` and `mcpgate-control` (the domain).

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod error;
pub mod pages;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod web;

pub use mcpgate_control as control;
pub use mcpgate_control::{domain, policy};
pub use mcpgate_policy::clock;
pub use mcpgate_proxy as proxy;
pub use mcpgate_proxy::{egress, http_client};
pub use mcpgate_store as store;

pub use clock::Clock;
pub use config::Settings;
pub use error::ApiError;
pub use startup::Application;
