//! Credentials: the gateway's own OAuth authorization server lives here; password hashing,
//! session secrets, sealing and the sign-in throttle are the control plane's.

pub use mcpgate_oauth as oauth_server;

pub use mcpgate_control::auth::{access_token, challenge, password, seal, session, throttle, token};
