//! Rewriting upstream messages on their way to the client without giving up streaming: an SSE
//! response is parsed event by event, each JSON-RPC message passed through a function, and the
//! event re-encoded at once; a JSON response is rewritten whole.

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use sse_stream::{Sse, SseStream};

/// The wire form of one event.
pub fn encode(event: &Sse) -> Bytes {
    let mut out = String::new();
    if let Some(id) = &event.id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    if let Some(name) = &event.event {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    if let Some(retry) = event.retry {
        out.push_str(&format!("retry: {retry}\n"));
    }
    if let Some(data) = &event.data {
        for line in data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    Bytes::from(out)
}

/// Whether a response's headers say its body is an event stream.
pub fn is_sse(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// A message through `map`, or each message of a batch; `None` when nothing is left.
fn each(message: Value, map: &mut impl FnMut(Value) -> Option<Value>) -> Option<Value> {
    match message {
        Value::Array(items) => {
            let kept: Vec<Value> = items.into_iter().filter_map(map).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        one => map(one),
    }
}

/// The response body with every JSON-RPC message passed through `map`.
pub fn messages<F>(
    response: reqwest::Response,
    mut map: F,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::Error>>>>
where
    F: FnMut(Value) -> Value + 'static,
{
    messages_filtered(response, move |message| Some(map(message)))
}

/// As [`messages`], where `map` may also drop a message: its event is left out of a stream
/// (a JSON body whose only message is dropped becomes empty).
pub fn messages_filtered<F>(
    response: reqwest::Response,
    mut map: F,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::Error>>>>
where
    F: FnMut(Value) -> Option<Value> + 'static,
{
    if is_sse(response.headers()) {
        let events = SseStream::from_bytes_stream(response.bytes_stream());
        Box::pin(events.filter_map(move |event| {
            let out = match event {
                Err(e) => Some(Err(actix_web::error::ErrorBadGateway(e))),
                Ok(mut event) => match event.data.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()) {
                    Some(message) => each(message, &mut map).map(|kept| {
                        event.data = Some(kept.to_string());
                        Ok(encode(&event))
                    }),
                    None => Some(Ok(encode(&event))),
                },
            };
            std::future::ready(out)
        }))
    } else {
        Box::pin(futures_util::stream::once(async move {
            let body = response.bytes().await.map_err(actix_web::error::ErrorBadGateway)?;
            Ok(match serde_json::from_slice::<Value>(&body) {
                Ok(message) => each(message, &mut map).map_or_else(Bytes::new, |kept| Bytes::from(kept.to_string())),
                Err(_) => body,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_multiline_data_and_priming_events() {
        let event = Sse { id: Some("7".into()), event: Some("message".into()), data: Some("a\nb".into()), retry: None };
        assert_eq!(encode(&event), "id: 7\nevent: message\ndata: a\ndata: b\n\n");
        let priming = Sse { id: Some("s1".into()), event: None, data: Some(String::new()), retry: Some(500) };
        assert_eq!(encode(&priming), "id: s1\nretry: 500\ndata: \n\n");
    }
}
