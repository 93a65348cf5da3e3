//! Credentials: password hashing, console session secrets, sign-in throttling.

pub mod oauth_server;
pub mod password;
pub mod seal;
pub mod session;
pub mod throttle;

pub use mcpgate_policy::{access_token, token};
pub use mcpgate_proxy::challenge;
