//! `?limit=&cursor=` on every list, and the `{"items", "next_cursor"}` envelope.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::control::page::{PageRequest, Paged, DEFAULT_LIMIT, MAX_LIMIT};
use crate::error::{ApiError, FieldError};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 200 (default 50).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

const CURSOR_PREFIX: &str = "v1:";

impl PageQuery {
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(FieldError::new("limit", "out_of_range", "must be an integer from 1 to 200").into()),
            },
        };
        let after =
            match &self.cursor {
                None => None,
                Some(raw) => Some(decode_cursor(raw).ok_or_else(|| {
                    FieldError::new("cursor", "invalid_cursor", "is not a cursor returned by this list")
                })?),
            };
        Ok(PageRequest { after, limit, descending: false })
    }
}

fn decode_cursor(raw: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(CURSOR_PREFIX)?.parse().ok()
}

pub fn encode_cursor(after: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{after}"))
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    pub fn from_paged<U>(paged: Paged<U>, f: impl FnMut(U) -> T) -> Self {
        Self { next_cursor: paged.next_after.map(encode_cursor), items: paged.items.into_iter().map(f).collect() }
    }

    /// As `from_paged`, for views that can fail (a stored value out of its vocabulary).
    pub fn try_from_paged<U, E>(paged: Paged<U>, f: impl FnMut(U) -> Result<T, E>) -> Result<Self, E> {
        let items = paged.items.into_iter().map(f).collect::<Result<_, E>>()?;
        Ok(Self { next_cursor: paged.next_after.map(encode_cursor), items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejection() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("nonsense"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("v2:5")), None);
        let q = PageQuery { limit: Some("0".into()), cursor: None };
        assert!(q.to_request().is_err());
    }
}
