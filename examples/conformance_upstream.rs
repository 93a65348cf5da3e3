//! The conformance fixture as a process: `cargo run --example conformance_upstream -- PORT`
//! serves it at http://127.0.0.1:PORT/mcp for `.ci/conformance`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../tests/fixture/mod.rs"]
mod fixture;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "8001".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("conformance fixture on http://127.0.0.1:{port}/mcp");
    fixture::serve(listener).await
}
