//! Time is a parameter (see `mcpgate_policy::clock`).

pub use mcpgate_policy::clock::*;
