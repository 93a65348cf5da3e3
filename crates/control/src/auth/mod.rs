//! Credentials the control plane keeps: password hashes, session secrets, sealed secrets, the
//! sign-in throttle. (Token formats are the policy crate's; upstream challenges the proxy's.)

pub mod password;
pub mod seal;
pub mod session;
pub mod throttle;

pub use mcpgate_policy::{access_token, token};
pub use mcpgate_proxy::challenge;
