//! Domain services: the rules of the control plane, free of HTTP. Every function takes a
//! connection (`&impl ConnectionTrait`, so it works inside a transaction too) and, where
//! time matters, `now`.

pub mod members;
pub mod page;
pub mod sessions;
pub mod teams;
pub mod tenants;
pub mod users;
