//! Credentials: password hashing, console session secrets, sign-in throttling.

pub mod password;
pub mod session;
pub mod throttle;
