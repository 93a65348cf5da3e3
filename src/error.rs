//! The HTTP API's error, rendered as RFC 9457 `application/problem+json`. `ApiError::meta` is
//! the single table that gives each variant its HTTP status, stable `code` and title; clients
//! match on `code`, never on the human-readable `detail`. The domain's own errors
//! (`mcpgate_control::error::Error`) become one of these at the edge.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use sea_orm::{DbErr, SqlErr};
use serde::Serialize;
use utoipa::ToSchema;

use mcpgate_control::error::Error;
pub use mcpgate_control::error::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidBody(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("authentication is required")]
    Unauthenticated,
    #[error("the email or password is not correct")]
    InvalidCredentials,
    #[error("the bearer token is malformed, unknown, expired or revoked")]
    InvalidToken,
    #[error("{0}")]
    IdpTokenRejected(mcpgate_policy::idp::Rejection),
    #[error("this request needs the x-csrf-token header returned at sign-in")]
    CsrfFailed,
    #[error("{0}")]
    Forbidden(String),
    #[error("the resource does not exist or you cannot see it")]
    NotFound,
    #[error("this path does not take {method}; it takes {allow}")]
    MethodNotAllowed { method: String, allow: String },
    #[error("{detail}")]
    Conflict { code: &'static str, field: Option<&'static str>, detail: String },
    #[error("{provider} requires signing in through it for this email: open {start_url}")]
    SsoRequired { provider: String, start_url: String },
    #[error("too many failed attempts; try again in {retry_after_secs} seconds")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// The problem document (RFC 9457) every API error is rendered as.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI identifying the problem type: `urn:mcpgate:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable error code.
    pub code: String,
    /// The id of the request, also sent as the `x-request-id` header; quote it in bug reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Invalid fields, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// Status, code and title of every variant: the one place they are defined.
    pub fn meta(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid_body", "Malformed request body"),
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Validation failed"),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", "Invalid credentials"),
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token", "Invalid token"),
            Self::IdpTokenRejected(r) => (StatusCode::UNAUTHORIZED, r.code(), "Identity-provider token not accepted"),
            Self::CsrfFailed => (StatusCode::FORBIDDEN, "csrf_failed", "CSRF check failed"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::SsoRequired { .. } => (StatusCode::FORBIDDEN, "sso_required", "Sign in with your organisation"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            Self::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed")
            }
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code, "Conflict"),
            Self::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", "Too many attempts"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type")
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
        }
    }

    pub fn conflict(code: &'static str, field: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self::Conflict { code, field, detail: detail.into() }
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }

    /// A unique-constraint violation becomes a 409 naming `field`; anything else is passed on.
    pub fn unique_violation(err: DbErr, field: &'static str, detail: impl Into<String>) -> Self {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            Self::conflict("already_exists", Some(field), detail)
        } else {
            err.into()
        }
    }

    pub fn problem(&self, request_id: Option<&str>) -> Problem {
        let (status, code, title) = self.meta();
        let errors = match self {
            Self::Validation(errors) => errors.clone(),
            Self::Conflict { code, field: Some(field), detail } => {
                vec![FieldError::new(*field, *code, detail.clone())]
            }
            _ => Vec::new(),
        };
        let detail = match self {
            // Never show library or database text; the request id leads to the logged cause.
            Self::Internal(_) => "an internal error occurred; quote the request id when reporting it".to_owned(),
            Self::Validation(errors) if errors.len() == 1 => {
                format!("{}: {}", errors[0].field, errors[0].message)
            }
            other => other.to_string(),
        };
        Problem {
            type_uri: format!("urn:mcpgate:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            request_id: request_id.map(str::to_owned),
            errors,
        }
    }

    pub fn render(&self, request_id: Option<&str>) -> HttpResponse {
        let (status, _, _) = self.meta();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self {
            Self::TooManyAttempts { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Unauthenticated => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::MethodNotAllowed { allow, .. } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    response.insert_header((header::ALLOW, value));
                }
            }
            Self::InvalidToken => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""));
            }
            Self::IdpTokenRejected(r) => {
                let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{}\"", r.code());
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.insert_header((header::WWW_AUTHENTICATE, value));
                }
            }
            _ => {}
        }
        // Serializing this plain struct cannot fail.
        response.body(serde_json::to_string(&self.problem(request_id)).unwrap_or_default())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.meta().0
    }

    /// Rendered without a request id here; the request-id middleware re-renders the error
    /// with the id of the request it belongs to.
    fn error_response(&self) -> HttpResponse {
        self.render(None)
    }
}

/// Database errors, stored values and invalid fields mean what the domain says they mean.
impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        Error::from(err).into()
    }
}

impl From<mcpgate_policy::UnknownValue> for ApiError {
    fn from(e: mcpgate_policy::UnknownValue) -> Self {
        Error::from(e).into()
    }
}

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        Error::from(err).into()
    }
}

/// Each domain error has the HTTP meaning its name says.
impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Validation(errors) => Self::Validation(errors),
            Error::Forbidden(detail) => Self::Forbidden(detail),
            Error::NotFound => Self::NotFound,
            Error::Conflict { code, field, detail } => Self::Conflict { code, field, detail },
            Error::Unavailable(detail) => Self::Unavailable(detail),
            Error::Internal(err) => Self::Internal(err),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
