//! Reusable error responses for the OpenAPI document: every operation lists the problems it
//! can return by naming these.

use utoipa::IntoResponses;

use crate::error::Problem;

/// The body is not JSON, or is malformed.
#[derive(IntoResponses)]
#[response(status = 400, description = "Malformed body (`invalid_body`)", content_type = "application/problem+json")]
pub struct BadRequest(#[allow(dead_code)] Problem);

/// No valid session or token.
#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "Not signed in, session expired, or wrong credentials (`unauthenticated`, `invalid_credentials`)",
    content_type = "application/problem+json"
)]
pub struct Unauthorized(#[allow(dead_code)] Problem);

/// Signed in, but not allowed, or the CSRF header is missing.
#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "Not allowed for this caller, or missing `x-csrf-token` (`forbidden`, `csrf_failed`)",
    content_type = "application/problem+json"
)]
pub struct Forbidden(#[allow(dead_code)] Problem);

/// Unknown, or not visible to the caller: the two are indistinguishable on purpose.
#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "Does not exist or is not visible to the caller (`not_found`)",
    content_type = "application/problem+json"
)]
pub struct NotFound(#[allow(dead_code)] Problem);

/// A uniqueness or invariant conflict.
#[derive(IntoResponses)]
#[response(
    status = 409,
    description = "Conflicts with existing state (`already_exists`, `last_admin`, `builtin_team`)",
    content_type = "application/problem+json"
)]
pub struct Conflict(#[allow(dead_code)] Problem);

/// The body is too large.
#[derive(IntoResponses)]
#[response(
    status = 413,
    description = "Body too large (`payload_too_large`)",
    content_type = "application/problem+json"
)]
pub struct PayloadTooLarge(#[allow(dead_code)] Problem);

/// The body is not `application/json`.
#[derive(IntoResponses)]
#[response(
    status = 415,
    description = "Content-Type is not application/json (`unsupported_media_type`)",
    content_type = "application/problem+json"
)]
pub struct UnsupportedMediaType(#[allow(dead_code)] Problem);

/// One or more fields are invalid; `errors` names each.
#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "Invalid fields, each named in `errors` (`validation_failed`)",
    content_type = "application/problem+json"
)]
pub struct Unprocessable(#[allow(dead_code)] Problem);

/// Too many failed attempts.
#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Too many failed attempts; see `Retry-After` (`too_many_attempts`)",
    content_type = "application/problem+json"
)]
pub struct TooManyRequests(#[allow(dead_code)] Problem);

/// Not ready to serve.
#[derive(IntoResponses)]
#[response(status = 503, description = "Not ready (`unavailable`)", content_type = "application/problem+json")]
pub struct Unavailable(#[allow(dead_code)] Problem);

/// An unexpected failure; the body carries the request id to report.
#[derive(IntoResponses)]
#[response(status = 500, description = "Internal error (`internal`)", content_type = "application/problem+json")]
pub struct Internal(#[allow(dead_code)] Problem);
