//! `ApiJson<T>`: the JSON body extractor. Unlike `web::Json` it reports every failure as a
//! problem document: 415 for a wrong Content-Type, 413 past the size limit, 400 for malformed
//! JSON, and 422 naming the field for unknown, missing or mistyped fields.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::api::extract::TenantAccess;
use crate::error::{ApiError, FieldError};

/// Upper bound for control-plane request bodies.
pub const BODY_LIMIT: usize = 256 * 1024;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || v.ends_with("+json")
            })
            .unwrap_or(false);
        let body = Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let parsed = async {
                if !is_json {
                    return Err(ApiError::UnsupportedMediaType);
                }
                let bytes = body.await.map_err(|e| match e.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
                    _ => ApiError::InvalidBody("the request body could not be read".into()),
                })?;
                parse(&bytes)
            };
            match parsed.await {
                Ok(value) => Ok(ApiJson(value)),
                // A handler's extractors run concurrently, so a bad body could answer before
                // the caller's rights are checked and tell a stranger that a tenant exists.
                // Under a tenant, the caller's refusal (401/404) comes first.
                Err(invalid) if req.match_info().get("tenant").is_some() => {
                    Err(TenantAccess::from_request(&req, &mut Payload::None).await.err().unwrap_or(invalid))
                }
                Err(invalid) => Err(invalid),
            }
        })
    }
}

/// For `Option<Option<T>>` fields of PATCH bodies: tells an explicit `null` (clear the value)
/// from an absent field (keep it). Use with `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Deserializes, keeping the path of the field that failed.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(field_error)?;
    // Trailing garbage after a valid document is malformed JSON too.
    de.end().map_err(|e| ApiError::InvalidBody(format!("malformed JSON: {}", strip_position(&e.to_string()))))?;
    Ok(value)
}

fn field_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let message = strip_position(&inner.to_string());
    if !inner.is_data() {
        return ApiError::InvalidBody(format!("malformed JSON: {message}"));
    }
    // serde names unknown and missing fields in the message, not in the path.
    let quoted = message.split('`').nth(1).map(str::to_owned);
    // The path sometimes already ends at the offending key; name it once.
    let join = |name: &str| match path.as_str() {
        "." => name.to_owned(),
        p if p == name || p.ends_with(&format!(".{name}")) => p.to_owned(),
        p => format!("{p}.{name}"),
    };
    let (field, code) = if message.starts_with("unknown field") {
        (quoted.map(|n| join(&n)).unwrap_or(path.clone()), "unknown_field")
    } else if message.starts_with("missing field") {
        (quoted.map(|n| join(&n)).unwrap_or(path.clone()), "required")
    } else {
        (if path == "." { "body".to_owned() } else { path.clone() }, "invalid_type")
    };
    ApiError::Validation(vec![FieldError::new(field, code, message)])
}

/// serde_json appends " at line L column C"; useful for syntax errors only.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains("column") => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        slug: String,
        inner: Option<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        role: String,
    }

    fn fields(err: ApiError) -> Vec<(String, String)> {
        match err {
            ApiError::Validation(errors) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field() {
        assert_eq!(
            fields(parse::<Body>(br#"{"slug":"a","x":1}"#).unwrap_err()),
            [("x".into(), "unknown_field".into())]
        );
        assert_eq!(fields(parse::<Body>(br#"{}"#).unwrap_err()), [("slug".into(), "required".into())]);
        assert_eq!(fields(parse::<Body>(br#"{"slug":1}"#).unwrap_err()), [("slug".into(), "invalid_type".into())]);
        assert_eq!(
            fields(parse::<Body>(br#"{"slug":"a","inner":{"role":"x","y":2}}"#).unwrap_err()),
            [("inner.y".into(), "unknown_field".into())]
        );
        assert!(matches!(parse::<Body>(br#"{"slug":"#), Err(ApiError::InvalidBody(_))));
        assert!(matches!(parse::<Body>(br#"{"slug":"a"} x"#), Err(ApiError::InvalidBody(_))));
    }
}
