//! The policy snapshot. Its contract — types, signing, token formats, MCP URLs — is the
//! `mcpgate-policy` crate; compiling it from the store and publishing it are the control
//! plane's, here.

pub mod compile;
pub mod publish;

pub use mcpgate_policy::*;
