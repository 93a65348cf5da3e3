//! The floor of `bench/floor`: an HTTP/1.1 relay with nothing of mcpgate in it. It forwards
//! every request to one upstream URL over a pooled keep-alive connection (the client the
//! relay uses, hyper-util's, per thread as mcpgate has it) and streams the answer back as it
//! arrives. No auth, no policy, no session, no records: what is left is what the HTTP server,
//! the client and the kernel cost, so mcpgate's own share of its cost per call is the
//! difference.
//!
//! `bare_relay actix|hyper LISTEN UPSTREAM_URL`
//! - `actix`: served by actix-web, as mcpgate is (two workers, one per core here);
//! - `hyper`: served by hyper's HTTP/1 connection directly, on one current-thread runtime per
//!   core as actix runs it, so the two differ only in the server.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark tool fails loudly

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORKERS: usize = 2;

thread_local! {
    static CLIENT: Client<HttpConnector, Full<Bytes>> = {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(connector)
    };
}

/// The request to the upstream: the client's method, headers (but those of its own hop) and
/// body.
fn outbound<'a>(
    upstream: &http::Uri,
    method: http::Method,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::builder().method(method).uri(upstream.clone());
    for (name, value) in headers {
        if [&b"host"[..], b"connection", b"content-length", b"transfer-encoding"].contains(&name) {
            continue;
        }
        request = request.header(name, value);
    }
    request.body(Full::new(body)).expect("headers that parsed once parse again")
}

/// The upstream's answer's headers, but those of its own hop.
fn relayed(headers: &http::HeaderMap) -> impl Iterator<Item = (&http::HeaderName, &http::HeaderValue)> {
    headers.iter().filter(|(name, _)| {
        ![http::header::CONNECTION, http::header::CONTENT_LENGTH, http::header::TRANSFER_ENCODING].contains(name)
    })
}

mod actix {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use futures_util::StreamExt;
    use http_body_util::BodyExt;

    async fn relay(req: HttpRequest, body: web::Bytes, upstream: web::Data<http::Uri>) -> HttpResponse {
        let method = http::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
        let headers = req.headers().iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        let request = super::outbound(&upstream, method, headers, body);
        let Ok(answer) = super::CLIENT.with(|c| c.request(request)).await else {
            return HttpResponse::BadGateway().finish();
        };
        let mut response =
            HttpResponse::build(actix_web::http::StatusCode::from_u16(answer.status().as_u16()).unwrap());
        for (name, value) in super::relayed(answer.headers()) {
            response.insert_header((name.as_str(), value.as_bytes()));
        }
        let body = answer.into_body().into_data_stream().map(|piece| piece.map_err(actix_web::error::ErrorBadGateway));
        response.streaming(body)
    }

    pub fn serve(listen: &str, upstream: http::Uri) -> std::io::Result<()> {
        let upstream = web::Data::new(upstream);
        actix_web::rt::System::new().block_on(
            HttpServer::new(move || App::new().app_data(upstream.clone()).default_service(web::to(relay)))
                .workers(super::WORKERS)
                .on_connect(|connection, _| {
                    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
                        let _ = tcp.set_nodelay(true);
                    }
                })
                .bind(listen)?
                .run(),
        )
    }
}

mod hyper_server {
    use bytes::Bytes;
    use http_body_util::combinators::BoxBody;
    use http_body_util::BodyExt;
    use hyper::body::Incoming;

    async fn relay(
        req: http::Request<Incoming>,
        upstream: http::Uri,
    ) -> Result<http::Response<BoxBody<Bytes, hyper::Error>>, hyper::Error> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let headers = parts.headers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        let request = super::outbound(&upstream, parts.method.clone(), headers, body);
        let Ok(answer) = super::CLIENT.with(|c| c.request(request)).await else {
            let mut refused = http::Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
            *refused.status_mut() = http::StatusCode::BAD_GATEWAY;
            return Ok(refused);
        };
        let mut response = http::Response::builder().status(answer.status());
        for (name, value) in super::relayed(answer.headers()) {
            response = response.header(name, value);
        }
        Ok(response.body(answer.into_body().boxed()).unwrap())
    }

    /// One current-thread runtime per worker, as actix runs them; the accepting thread hands
    /// connections out in turn.
    pub fn serve(listen: &str, upstream: http::Uri) -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let mut workers = Vec::new();
        for _ in 0..super::WORKERS {
            let (hand, mut connections) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some(connection) = connections.recv().await {
                        let Ok(connection) = tokio::net::TcpStream::from_std(connection) else { continue };
                        let _ = connection.set_nodelay(true);
                        let upstream = upstream.clone();
                        tokio::task::spawn_local(async move {
                            let service = hyper::service::service_fn(move |req| relay(req, upstream.clone()));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(connection), service)
                                .await;
                        });
                    }
                });
            });
            workers.push(hand);
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            for turn in 0.. {
                let (connection, _) = listener.accept().await?;
                let _ = workers[turn % workers.len()].send(connection.into_std()?);
            }
            Ok(())
        })
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, listen, upstream] = args.as_slice() else {
        eprintln!("usage: bare_relay actix|hyper LISTEN UPSTREAM_URL");
        std::process::exit(2);
    };
    let upstream: http::Uri = upstream.parse().expect("an upstream URL");
    match server.as_str() {
        "actix" => actix::serve(listen, upstream),
        "hyper" => hyper_server::serve(listen, upstream),
        other => {
            eprintln!("unknown server {other:?}: actix or hyper");
            std::process::exit(2);
        }
    }
}
