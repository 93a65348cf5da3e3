//! The control plane's own error: what went wrong in domain terms. The HTTP API, the pages
//! and the CLI each turn it into their own answer (a problem document, an error page, a
//! message); nothing here knows about HTTP.

use sea_orm::{DbErr, SqlErr};
use serde::Serialize;
use utoipa::ToSchema;
/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the field in the request, e.g. `slug` or `permissions[0].role`.
    pub field: String,
    /// Stable machine-readable reason, e.g. `invalid_slug`, `unknown_field`, `required`.
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), code: code.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names invalid values; each field says which and why.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or not visible to the caller: the two are never told apart.
    #[error("the resource does not exist or you cannot see it")]
    NotFound,
    #[error("{detail}")]
    Conflict { code: &'static str, field: Option<&'static str>, detail: String },
    /// A peer the change depends on (an upstream, a provider) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn conflict(code: &'static str, field: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self::Conflict { code, field, detail: detail.into() }
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }

    /// A unique-constraint violation becomes a conflict naming `field`; anything else is passed on.
    pub fn unique_violation(err: DbErr, field: &'static str, detail: impl Into<String>) -> Self {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            Self::conflict("already_exists", Some(field), detail)
        } else {
            err.into()
        }
    }
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match err {
            DbErr::RecordNotFound(_) => Self::NotFound,
            err if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Self::conflict("already_exists", None, "a resource with these values already exists")
            }
            err => Self::Internal(anyhow::Error::new(err).context("database error")),
        }
    }
}

/// A stored value outside its vocabulary is a corrupt row, never a default.
impl From<mcpgate_policy::UnknownValue> for Error {
    fn from(e: mcpgate_policy::UnknownValue) -> Self {
        Self::Internal(anyhow::anyhow!("stored data: {e}"))
    }
}

impl From<FieldError> for Error {
    fn from(err: FieldError) -> Self {
        Self::Validation(vec![err])
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
