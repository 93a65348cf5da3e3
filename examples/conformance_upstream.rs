//! The conformance fixture as a process: `cargo run --example conformance_upstream -- PORT
//! [--session-only]` serves it at http://127.0.0.1:PORT/mcp for `.ci/conformance`;
//! `--session-only` makes it refuse the stateless revision (2026-07-28), as servers written for
//! 2025-11-25 do.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../tests/fixture/mod.rs"]
mod fixture;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "8001".into());
    let session_only = std::env::args().any(|a| a == "--session-only");
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("conformance fixture on http://127.0.0.1:{port}/mcp");
    fixture::serve_with(listener, session_only).await
}
