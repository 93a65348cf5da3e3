//! The admin web console: the files under `web/` (ES modules, CSS, no build step), embedded in
//! the release binary at compile time and served at `/` (the shell) and `/console/…` (its
//! files). Debug builds read them from `web/` as they are, so editing the console needs no
//! rebuild. The console is a client of `/api/v1` like any other; this module only hands out
//! its files.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

#[derive(rust_embed::Embed)]
#[folder = "web/"]
#[include = "index.html"]
#[include = "*.css"]
#[include = "js/**/*.js"]
#[include = "img/*"]
struct Files;

/// Scripts, styles and connections from this origin only; no inline script or style, no eval.
/// Images may also come from `https:` (a tenant's logo) and `data:` (icons drawn in CSS).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
                       connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(shell)).route("/console/{path:.*}", web::get().to(file));
}

async fn shell(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

async fn file(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    if path.as_str() == "index.html" {
        return HttpResponse::NotFound().finish();
    }
    serve(&req, &path)
}

fn serve(req: &HttpRequest, path: &str) -> HttpResponse {
    let Some(file) = Files::get(path) else {
        return HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("no such console file");
    };
    let etag = {
        use base64::Engine;
        format!("\"{}\"", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&file.metadata.sha256_hash()[..12]))
    };
    let unchanged = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str());
    let mut response = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::CONTENT_TYPE, content_type(path)))
        .insert_header((header::ETAG, etag))
        // Revalidated every time: an upgraded gateway never runs last version's modules.
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header(("content-security-policy", CSP))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header(("cross-origin-opener-policy", "same-origin"));
    if unchanged {
        return response.finish();
    }
    response.body(file.data.into_owned())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
