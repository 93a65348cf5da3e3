//! Outbound HTTP clients. TLS goes through rustls with the ring provider, installed once for
//! the process before the first client is built.

use std::sync::Once;

pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How the gateway names itself to the servers it calls.
pub const USER_AGENT: &str = concat!("mcpgate/", env!("CARGO_PKG_VERSION"));

/// A client builder with the provider in place and a recognisable user agent.
pub fn builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder().user_agent(USER_AGENT)
}

/// Accepted connections send small writes at once. MCP answers are streams of small SSE
/// events; with Nagle's algorithm each one after the first waits for the client's delayed ACK
/// (about 40 ms on Linux).
pub fn no_delay(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let _ = tcp.set_nodelay(true);
    }
}
