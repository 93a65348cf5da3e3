//! The one integration-test binary: each test starts a real server on a random port with its
//! own database (SQLite, or PostgreSQL when TEST_DATABASE_URL is set) and talks HTTP to it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod auth;
mod console;
mod errors;
#[path = "../fixture/mod.rs"]
mod fixture;
mod gateway;
#[path = "../fixture/guarded.rs"]
mod guarded;
mod ha;
mod helpers;
mod identity;
mod isolation;
mod members;
mod metrics;
mod oauth;
mod openapi;
mod outbound;
mod peers;
mod policy;
mod process;
mod proxy;
mod security;
mod servers;
mod stateless;
mod teams;
mod tenants;
mod tokens;
mod users;
