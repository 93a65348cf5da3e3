//! Server-rendered pages for people in a browser, outside the console: signing in to connect a
//! server, entering one's own key, coming back from a provider. Plain HTML, no script, strict
//! headers. Markup is written with maud's `html!`: checked at compile time, and every value put
//! into it is escaped unless it is markup already.

pub mod authorize;
pub mod connect;
pub mod sso;

use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use maud::{html, Markup, DOCTYPE};
use secrecy::SecretString;

use crate::error::ApiError;
use crate::state::AppState;

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
    match crate::web::sign_in(req, state, email, password).await {
        Ok((_, secret, ttl)) => FormSignIn::Done(crate::web::session_cookie(
            state,
            secret,
            actix_web::cookie::time::Duration::seconds(ttl.num_seconds()),
        )),
        Err(ApiError::TooManyAttempts { retry_after_secs }) => {
            FormSignIn::Retry(format!("Too many failed attempts; try again in {retry_after_secs} seconds."))
        }
        Err(ApiError::SsoRequired { provider, .. }) => {
            FormSignIn::Retry(format!("This email signs in with {provider}: use the button for it below."))
        }
        Err(ApiError::InvalidCredentials | ApiError::Validation(_)) => {
            FormSignIn::Retry("The email or password is not correct.".into())
        }
        Err(e) => FormSignIn::Failed(failure_page("Sign-in failed", &e)),
    }
}

/// The cookie behind the token of forms shown before anyone is signed in (the sign-in forms):
/// a cross-site page can make a browser post a form, but cannot read or set this cookie, so it
/// cannot know the token the form must carry (login CSRF).
pub const FORM_COOKIE: &str = "mcpgate_form";

/// The token a page's sign-in form carries: this browser's form cookie, or a new one that the
/// page then sets.
pub struct FormToken {
    pub value: String,
    fresh: bool,
}

impl FormToken {
    pub fn of(req: &HttpRequest) -> Self {
        match req.cookie(FORM_COOKIE).map(|c| c.value().to_owned()).filter(|v| v.len() >= 32) {
            Some(value) => Self { value, fresh: false },
            None => Self { value: crate::auth::session::random_secret(), fresh: true },
        }
    }

    /// The hidden field, for the form.
    pub fn field(&self) -> Markup {
        html! { input type="hidden" name="form_token" value=(self.value); }
    }

    /// The page, with the cookie when it is new.
    pub fn attach(&self, state: &AppState, mut response: HttpResponse) -> HttpResponse {
        if self.fresh {
            let cookie = Cookie::build(FORM_COOKIE, self.value.clone())
                .path("/")
                .http_only(true)
                .same_site(actix_web::cookie::SameSite::Strict)
                .secure(state.settings.secure_cookies())
                .finish();
            let _ = response.add_cookie(&cookie);
        }
        response
    }
}

/// Every page form POST: it must come from this gateway's own pages — a browser's `Origin`
/// (and `Sec-Fetch-Site`, where sent) says so — and, for the sign-in forms, carry the form
/// token. `Some` is the refusal to answer with.
pub fn check_form_post(req: &HttpRequest, state: &AppState, form_token: Option<&str>) -> Option<HttpResponse> {
    let refused = || {
        error_page(
            StatusCode::FORBIDDEN,
            "Not accepted",
            "This form was not sent from this gateway's own page. Open the page again and retry.",
        )
    };
    let own = url::Url::parse(&state.settings.public_base_url()).map(|u| u.origin().ascii_serialization()).ok();
    if let Some(origin) = req.headers().get("origin") {
        // `null` (a sandboxed or privacy-stripped origin) is refused like a foreign one.
        if origin.to_str().ok().map(|o| o.trim_end_matches('/')) != own.as_deref() {
            return Some(refused());
        }
    }
    if req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "cross-site") {
        return Some(refused());
    }
    if let Some(presented) = form_token {
        use subtle::ConstantTimeEq;
        let cookie = req.cookie(FORM_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
        if cookie.len() < 32 || !bool::from(cookie.as_bytes().ct_eq(presented.as_bytes())) {
            return Some(refused());
        }
    }
    None
}

/// A value made safe for a URL's query string.
pub fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A complete page around `body`.
pub fn page(status: StatusCode, title: &str, body: Markup) -> HttpResponse {
    tenant_page(status, title, None, body)
}

/// A complete page around `body`, in the console's stylesheet, headed by the tenant whose
/// gateway is asking (its display name, and its logo when it has one).
pub fn tenant_page(
    status: StatusCode,
    title: &str,
    tenant: Option<&crate::store::entities::tenants::Model>,
    body: Markup,
) -> HttpResponse {
    let document = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · mcpgate" }
                link rel="icon" href="/console/img/mark.svg" type="image/svg+xml";
                link rel="stylesheet" href="/console/app.css";
            }
            body.page {
                main {
                    p.brand {
                        @if let Some(logo) = tenant.and_then(|t| t.logo_url.as_deref()) {
                            img.tenant-logo src=(logo) alt="";
                        } @else {
                            img src="/console/img/mark.svg" alt="" width="28" height="28";
                        }
                        @match tenant {
                            Some(t) => span { strong { (t.display_name) } " · mcpgate" },
                            None => strong { "mcpgate" },
                        }
                    }
                    (body)
                }
            }
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // No `form-action`: browsers apply it to the redirects that follow a submission, and a
        // sign-in's forms lead on to the client's redirect URI or a provider's own page.
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self' https:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("x-frame-options", "DENY"))
        // Not `no-referrer`: browsers then send `Origin: null` on the page's own form posts.
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(document.into_string())
}

/// A page that says what went wrong, in words the person can act on.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(status, title, html! { h1 { (title) } p.error { (message) } })
}

/// A domain error on a page: what the person can act on in words, an internal failure as
/// [`failure_page`].
pub fn domain_error_page(status: StatusCode, title: &str, error: &crate::control::error::Error) -> HttpResponse {
    match error {
        crate::control::error::Error::Internal(cause) => failure_page(title, cause),
        other => error_page(status, title, &other.to_string()),
    }
}

/// A failure on the gateway's side: the cause goes to the log (with the request's id, from its
/// span), the person gets words, not a database's or a library's text.
pub fn failure_page(title: &str, error: &dyn std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %error, "{title}");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        title,
        "Something went wrong on the gateway's side. Try again in a moment; if it keeps happening, tell the gateway's administrator the time it happened.",
    )
}

pub use crate::web::check_return_to;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Text built from the pieces open redirects are made of never yields a target a browser
        /// would take off the gateway: an accepted `return_to` resolves (as a browser resolves
        /// it) to this origin, and is handed back as a plain local path.
        #[test]
        fn return_to_never_escapes(
            prefix in prop::sample::select(vec!["", "/", "//", "\\\\", "/\\", "\\/", "/\t/", "/%2F", "https:", "https://", "http://", "javascript:", "data:", "///", " /", "/./", "/../"]),
            host in prop::sample::select(vec!["evil.example", "gw.example", "gw.example@evil.example", "gw.example.evil.example", "127.0.0.1", "[::1]", ""]),
            rest in "[ -~\\t\\n]{0,20}",
            noise in "\\PC{0,12}",
        ) {
            let base = "https://gw.example";
            for candidate in [format!("{prefix}{host}{rest}"), format!("{prefix}{host}/{noise}"), noise.clone()] {
                if let Ok(local) = check_return_to(base, &candidate) {
                    prop_assert!(local.starts_with('/') && !local.starts_with("//"), "{:?} -> {:?}", candidate, local);
                    let resolved = url::Url::parse(base).unwrap().join(&local).unwrap();
                    prop_assert_eq!(resolved.host_str(), Some("gw.example"), "{:?}", candidate);
                    prop_assert!(!local.contains('\\') && !local.chars().any(char::is_control));
                }
            }
        }
    }

    #[test]
    fn pages_escape_what_they_show_and_redirects_stay_home() {
        let shown = error_page(StatusCode::BAD_REQUEST, "<b>title</b>", "<script>alert(1)</script>\"'&");
        let body = actix_web::body::to_bytes(shown.into_body());
        let body = futures_util::FutureExt::now_or_never(body).unwrap().unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("<script>") && !text.contains("<b>"), "{text}");
        assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"), "{text}");
        let base = "https://gw.example";
        assert_eq!(check_return_to(base, "/connect/acme/github?a=1").unwrap(), "/connect/acme/github?a=1");
        assert_eq!(check_return_to(base, "https://gw.example/x").unwrap(), "/x");
        // Scheme-relative text resolves under the gateway, as a browser would read it.
        assert_eq!(check_return_to(base, "https:evil.example").unwrap(), "/evil.example");
        for bad in [
            "//evil.example/x",
            "https://evil.example/x",
            "/\\evil.example/x",
            "/\t/evil.example/x",
            "/\\/evil.example/x",
            "\\\\evil.example",
            "javascript:alert(1)",
            "https://gw.example@evil.example/",
            "",
        ] {
            assert!(check_return_to(base, bad).is_err(), "{bad:?}");
        }
    }
}
