//! Server-rendered pages for people in a browser, outside the console: signing in to connect a
//! server, entering one's own key, coming back from a provider. Plain HTML, no script, strict
//! headers.

pub mod authorize;
pub mod connect;

use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use secrecy::SecretString;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::startup::AppState;

/// What a page's sign-in form led to.
pub enum FormSignIn {
    /// Signed in: the session cookie to set.
    Done(Cookie<'static>),
    /// Something the person can put right: say it on the form again.
    Retry(String),
    /// A failure that is not theirs.
    Failed(HttpResponse),
}

/// Signs a person in from a page's form, with the API's checks and throttling.
pub async fn sign_in_from_form(req: &HttpRequest, state: &AppState, email: &str, password: SecretString) -> FormSignIn {
    match crate::api::auth::sign_in(req, state, email, password).await {
        Ok((_, secret, ttl)) => FormSignIn::Done(crate::api::auth::session_cookie(
            state,
            secret,
            actix_web::cookie::time::Duration::seconds(ttl.num_seconds()),
        )),
        Err(ApiError::TooManyAttempts { retry_after_secs }) => {
            FormSignIn::Retry(format!("Too many failed attempts; try again in {retry_after_secs} seconds."))
        }
        Err(ApiError::InvalidCredentials | ApiError::Validation(_)) => {
            FormSignIn::Retry("The email or password is not correct.".into())
        }
        Err(e) => FormSignIn::Failed(error_page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed", &e.to_string())),
    }
}

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1d232b}\
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input{width:100%;padding:.5rem;box-sizing:border-box;font:inherit}button{margin-top:1rem;padding:.5rem 1.2rem;font:inherit}\
.muted{color:#5b6672}.error{color:#a8071a}code{background:#f1f3f5;padding:0 .2rem}";

/// A value made safe for a URL's query string.
pub fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A complete page; `body` is already HTML.
pub fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // No `form-action`: browsers apply it to the redirects that follow a submission, and a
        // sign-in's forms lead on to the client's redirect URI or a provider's own page.
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
             content=\"width=device-width,initial-scale=1\"><title>{} · mcpgate</title><style>{STYLE}</style></head>\
             <body>{body}</body></html>",
            escape(title)
        ))
}

/// A page that says what went wrong, in words.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(status, title, &format!("<h1>{}</h1><p class=\"error\">{}</p>", escape(title), escape(message)))
}

/// `return_to` must stay on this gateway: anything else would make it an open redirect.
pub fn check_return_to(public_base: &str, target: &str) -> ApiResult<()> {
    let same_origin = url::Url::parse(target)
        .ok()
        .zip(url::Url::parse(public_base).ok())
        .is_some_and(|(t, base)| t.origin() == base.origin());
    if same_origin || (target.starts_with('/') && !target.starts_with("//")) {
        Ok(())
    } else {
        Err(ApiError::Validation(vec![FieldError::new(
            "return_to",
            "invalid_return_to",
            "must be a URL of this gateway",
        )]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_keeps_redirects_home() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let base = "https://gw.example";
        assert!(check_return_to(base, "/connect/acme/github").is_ok());
        assert!(check_return_to(base, "https://gw.example/x").is_ok());
        assert!(check_return_to(base, "//evil.example/x").is_err());
        assert!(check_return_to(base, "https://evil.example/x").is_err());
    }
}
