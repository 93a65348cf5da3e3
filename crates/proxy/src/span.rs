//! The per-request span, made cheap: `tracing-actix-web`'s default span computes a dozen
//! fields (route, user agent, client address from the forwarding headers, …) on every request
//! even when no subscriber wants it; at the proxy's rates that was ~6 % of its CPU. This span
//! is at debug level and names only method, path, request id and status, and its fields are
//! computed only when a subscriber is listening. The request id (`RequestId`, which decisions
//! and problem documents carry) is assigned by `TracingLogger` either way.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

pub struct LeanSpan;

impl RootSpanBuilder for LeanSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = request.extensions().get::<RequestId>().copied();
        tracing::debug_span!(
            "request",
            method = %request.method(),
            path = %request.path(),
            request_id = id.map(tracing::field::display),
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(response) = outcome {
            span.record("status", response.status().as_u16());
        }
    }
}
