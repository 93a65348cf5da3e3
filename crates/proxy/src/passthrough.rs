//! The upstream's answer relayed as it is, in as few writes to the client as the upstream
//! allows. Each write costs the gateway a system call and the client a wake-up: the head, an
//! SSE priming event and the answer went out as three writes, each the moment it arrived from
//! the upstream. Now:
//! - the head waits (briefly) for the body's first piece, so the two leave together;
//! - a POST whose event stream carries the JSON-RPC answer to its one request ends once that
//!   event is relayed, as the transport specifies ("after the JSON-RPC response has been sent,
//!   the server SHOULD close the SSE stream"), without waiting for the upstream's own end of
//!   the body. What is left of the upstream's body is read to its end in the background, so
//!   the connection goes back to the pool.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::BodyDataStream;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::metrics::Tracked;
use crate::upstream::Relayed;

/// How long the head waits for the body's first piece. It is usually there with the head (an
/// SSE priming event, or a JSON answer); an upstream that sends its head alone and works on
/// gets it relayed alone after this.
const HEAD_WAITS: Duration = Duration::from_millis(5);
/// Pieces already there are joined into one write, up to this many.
const JOIN: usize = 16;
/// After the answer went out, how long the rest of the upstream's body is read before the
/// connection is given up.
const DRAIN_FOR: Duration = Duration::from_secs(30);

type Upstream = BodyDataStream<reqwest::Body>;

pub struct Passthrough {
    body: Option<Upstream>,
    /// What the stream yielded while the head waited: it goes out first.
    ready: Option<Option<Result<Bytes, actix_web::Error>>>,
    failed: Option<reqwest::Error>,
    /// Set for an event stream that answers one request: ends the relay at the answer.
    answer: Option<AnswerScan>,
    _open: Option<Tracked>,
}

impl Passthrough {
    /// `answers`: the id of the one request the POST carried, when the answer ends the relay.
    /// `head_waits`: whether the head may wait for the first piece (not for a GET's stream,
    /// whose first event can be minutes away and whose head says the stream is open).
    pub async fn new(response: Relayed, answers: Option<Value>, head_waits: bool) -> Self {
        let sse = crate::rewrite::is_sse(response.headers());
        let mut this = Self {
            body: Some(BodyDataStream::new(response.into_body())),
            ready: None,
            failed: None,
            answer: answers.filter(|_| sse).map(AnswerScan::new),
            // An event stream is counted as open for as long as it is relayed.
            _open: sse.then(Tracked::stream),
        };
        if head_waits {
            // The timer is only armed when the piece is not there at once: arming one that
            // fires before the thread's next timer costs a wake-up of the thread's driver.
            if let Ok(first) = tokio::time::timeout(HEAD_WAITS, this.next()).await {
                this.ready = Some(first);
            }
        }
        this
    }
}

/// Reads the rest of an upstream body in the background, so its connection is reused.
fn drain(mut body: Upstream) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN_FOR, async { while let Some(Ok(_)) = body.next().await {} }).await;
    });
}

impl Stream for Passthrough {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(first) = this.ready.take() {
            return Poll::Ready(first);
        }
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(actix_web::error::ErrorBadGateway(e))));
        }
        let mut joined = Vec::new();
        let mut answered = false;
        if let Some(body) = this.body.as_mut() {
            while !answered && joined.len() < JOIN {
                match body.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(piece))) => {
                        answered = this.answer.as_mut().is_some_and(|scan| scan.feed(&piece));
                        joined.push(piece);
                    }
                    // What arrived before the failure goes out first, then the failure.
                    Poll::Ready(Some(Err(e))) => {
                        this.body = None;
                        if joined.is_empty() {
                            return Poll::Ready(Some(Err(actix_web::error::ErrorBadGateway(e))));
                        }
                        this.failed = Some(e);
                        break;
                    }
                    Poll::Ready(None) => {
                        this.body = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if answered {
            if let Some(body) = this.body.take() {
                drain(body);
            }
        }
        match joined.len() {
            0 if this.body.is_some() => Poll::Pending,
            0 => Poll::Ready(None),
            1 => Poll::Ready(joined.pop().map(Ok)),
            _ => Poll::Ready(Some(Ok(joined.concat().into()))),
        }
    }
}

/// Follows an event stream's events (only their `data` lines are kept) until one carries the
/// JSON-RPC answer to a given request id.
struct AnswerScan {
    id: Value,
    /// The current line, when a piece ended inside it.
    line: Vec<u8>,
    /// The current event's data so far.
    data: Vec<u8>,
    has_data: bool,
    /// The last piece ended in `\r`: a `\n` starting the next one belongs to that line end.
    after_cr: bool,
}

/// What tells an answer from a request or notification.
#[derive(Deserialize)]
struct Reply {
    id: Option<Value>,
    method: Option<IgnoredAny>,
    result: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

impl AnswerScan {
    fn new(id: Value) -> Self {
        Self { id, line: Vec::new(), data: Vec::new(), has_data: false, after_cr: false }
    }

    /// True once an event ending in `piece` carried the answer.
    fn feed(&mut self, mut piece: &[u8]) -> bool {
        if self.after_cr && piece.first() == Some(&b'\n') {
            piece = &piece[1..];
        }
        self.after_cr = false;
        while let Some(end) = piece.iter().position(|&b| b == b'\n' || b == b'\r') {
            let answered = if self.line.is_empty() {
                self.line_ended(&piece[..end])
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&piece[..end]);
                let answered = self.line_ended(&line);
                line.clear();
                self.line = line;
                answered
            };
            if answered {
                return true;
            }
            let crlf = piece[end] == b'\r';
            piece = &piece[end + 1..];
            if crlf {
                match piece.first() {
                    Some(b'\n') => piece = &piece[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        self.line.extend_from_slice(piece);
        false
    }

    fn line_ended(&mut self, line: &[u8]) -> bool {
        if line.is_empty() {
            let answered = self.has_data && self.is_answer();
            self.data.clear();
            self.has_data = false;
            return answered;
        }
        if let Some(value) = line.strip_prefix(b"data") {
            let value = match value {
                [] => value,
                [b':', b' ', rest @ ..] | [b':', rest @ ..] => rest,
                // `dataX: …` is another field.
                _ => return false,
            };
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        false
    }

    fn is_answer(&self) -> bool {
        serde_json::from_slice::<Reply>(&self.data).is_ok_and(|reply| {
            reply.method.is_none()
                && (reply.result.is_some() || reply.error.is_some())
                && reply.id.as_ref() == Some(&self.id)
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const STREAM: &str = "id: s1\nretry: 500\ndata: \n\n\
        event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n\
        data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n\
        data: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n\
        event: message\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":7,\"result\":{\"content\":[]}}\r\n\r\n";

    #[test]
    fn only_the_answer_to_the_request_ends_the_stream() {
        let mut scan = AnswerScan::new(json!(7));
        assert!(scan.feed(STREAM.as_bytes()));
        // Notifications, the upstream's own requests (even with the same id) and answers to
        // other ids never end it.
        let mut other = AnswerScan::new(json!(9));
        assert!(!other.feed(STREAM.as_bytes()));
        let mut string_id = AnswerScan::new(json!("7"));
        assert!(!string_id.feed(STREAM.as_bytes()));
    }

    #[test]
    fn an_error_is_an_answer_too_and_data_without_a_space_counts() {
        let mut scan = AnswerScan::new(json!("a"));
        assert!(
            scan.feed(b"data:{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":{\"code\":-32601,\"message\":\"no\"}}\r\r")
        );
        let mut not_data = AnswerScan::new(json!("a"));
        assert!(!not_data.feed(b"database: {\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{}}\n\n"));
    }

    /// An upstream answer as the relay gets it: these pieces, then (`hang`) no end of the body.
    fn relayed(pieces: Vec<Result<&'static str, std::io::Error>>, hang: bool) -> Relayed {
        let pieces =
            futures_util::stream::iter(pieces.into_iter().map(|p| p.map(|text| Bytes::from_static(text.as_bytes()))));
        let body = if hang {
            reqwest::Body::wrap_stream(pieces.chain(futures_util::stream::pending()))
        } else {
            reqwest::Body::wrap_stream(pieces)
        };
        http::Response::builder().header("content-type", "text/event-stream").body(body).unwrap()
    }

    #[tokio::test]
    async fn the_answer_ends_a_stream_the_upstream_keeps_open() {
        let pieces = vec![
            Ok("id: p\nretry: 500\ndata: \n\n"),
            Ok("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n"),
            Ok("data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n"),
        ];
        let relay = Passthrough::new(relayed(pieces, true), Some(json!(3)), true).await;
        let out = tokio::time::timeout(Duration::from_secs(5), relay.collect::<Vec<_>>()).await.expect("it ends");
        let text: Vec<u8> = out.into_iter().flat_map(|piece| piece.unwrap().to_vec()).collect();
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with("id: p\n") && text.contains("notifications/progress"), "{text}");
        assert!(text.ends_with("\"id\":3,\"result\":{}}\n\n"), "{text}");
    }

    #[tokio::test]
    async fn what_arrived_before_a_failure_goes_out_then_the_failure() {
        let pieces = vec![Ok("data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n"), Err(std::io::Error::other("reset"))];
        let out = Passthrough::new(relayed(pieces, false), Some(json!(3)), true).await.collect::<Vec<_>>().await;
        assert_eq!(out.len(), 2);
        assert!(out[0].as_ref().is_ok_and(|piece| piece.starts_with(b"data: ")));
        assert!(out[1].is_err(), "the client learns the body broke off");
    }

    proptest! {
        /// However the stream is cut into pieces, the answer is found in the piece that
        /// completes it, and never before.
        #[test]
        fn pieces_cut_anywhere(cuts in prop::collection::btree_set(1usize..STREAM.len(), 0..12)) {
            let bytes = STREAM.as_bytes();
            let ends: Vec<usize> = cuts.into_iter().chain([bytes.len()]).collect();
            let mut scan = AnswerScan::new(json!(7));
            let mut start = 0;
            let mut found = None;
            for &end in &ends {
                if scan.feed(&bytes[start..end]) {
                    found = Some(end);
                    break;
                }
                start = end;
            }
            // The stream ends in the answer's `\r\n\r\n`: the answer is complete with the
            // blank line's `\r`, the last byte but one, so the first piece to hold it says so.
            let expected = ends.into_iter().find(|&end| end > bytes.len() - 2);
            prop_assert_eq!(found, expected);
        }
    }
}
