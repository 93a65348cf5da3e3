//! The relay's own HTTP/1.1 client, for upstreams with the default TLS settings: hyper-util's
//! pooled client, connecting through the egress policy's resolver. reqwest wraps the same
//! client, but on every relayed call it also turned the URL into a string and back twice (for
//! its redirect policy and for the response), copied the headers twice and ran a retry layer:
//! together more CPU than the client it wraps (bench/RESULTS.md). The relay follows no
//! redirect, keeps no cookie and retries nothing, so it sends with the client directly.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::egress::Egress;

pub type Client =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>;

/// A client verifying certificates against the platform's roots, as reqwest's default does,
/// and with its timeouts: 10 s to connect, 15 s TCP keepalive, 90 s before an idle pooled
/// connection is closed.
pub fn client(egress: Arc<Egress>) -> anyhow::Result<Client> {
    crate::http_client::install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no TLS crypto provider is installed"))?;
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(Resolver(egress));
    // The TLS layer wraps it, so https URLs pass through this connector too.
    http.enforce_http(false);
    // MCP answers are small writes; see http_client::no_delay.
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_keepalive(Some(Duration::from_secs(15)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .build(https))
}

/// hyper-util's resolver: [`Egress::resolve`].
#[derive(Clone)]
pub struct Resolver(Arc<Egress>);

type Resolving = Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.0.clone();
        Box::pin(async move { Ok(policy.resolve(name.as_str()).await?.into_iter()) })
    }
}

/// What went wrong, with its causes: hyper-util's own message is only "client error
/// (Connect)". None of them names the URL.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_not_connected_to() {
        let client = client(Arc::new(Egress::default())).unwrap();
        let request = http::Request::get("http://localhost:9/").body(Full::new(Bytes::new())).expect("a valid request");
        let error = client.request(request).await.unwrap_err();
        assert!(describe(&error).contains("does not call"), "{}", describe(&error));
    }

    #[tokio::test]
    async fn an_allowed_upstream_is_reached() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await.unwrap();
            socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
        });
        let client = client(Arc::new(Egress::open())).unwrap();
        let request = http::Request::get(format!("http://localhost:{port}/"))
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
}
