//! mcpgate: an MCP gateway. This crate holds the control plane (REST API over a sea-orm store)
//! and, in later stages, the policy snapshot and the proxy.

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod domain;
pub mod error;
pub mod pages;
pub mod policy;
pub mod startup;
pub mod telemetry;

pub use mcpgate_proxy as proxy;
pub use mcpgate_proxy::{egress, http_client};
pub use mcpgate_store as store;

pub use clock::Clock;
pub use config::Settings;
pub use error::ApiError;
pub use startup::Application;
