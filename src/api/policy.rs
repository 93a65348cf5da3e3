//! Policy snapshots for proxies: the latest signed snapshot (with ETag and long-poll), the
//! history, and the verification keys.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, post, web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use sea_orm::{EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};

use crate::api::extract::{state, PlatformAdmin};
use crate::api::json::ApiJson;
use crate::api::pagination::PageQuery;
use crate::api::responses::*;
use crate::error::{ApiError, ApiResult};
use crate::policy::publish::{trusted_keys, Published};
use crate::policy::Jwks;
use crate::state::AppState;
use crate::store::entities::policy_snapshots;

/// Longest long-poll a caller may ask for.
const MAX_WAIT_SECONDS: u64 = 60;
pub const VERSION_HEADER: &str = "x-mcpgate-policy-version";

/// Whether the request presents the proxy key as its bearer token: `None` when it presents no
/// bearer token at all.
fn presents_proxy_key(req: &HttpRequest) -> Option<bool> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::token::from_bearer_header)?;
    Some(state(req).is_ok_and(|state| presented.as_bytes().ct_eq(state.proxy_key.expose_secret().as_bytes()).into()))
}

/// A proxy (presenting the proxy key as a bearer token) or a platform admin.
pub struct PolicyReader;

impl FromRequest for PolicyReader {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_proxy = presents_proxy_key(req) == Some(true);
        let admin = (!is_proxy).then(|| PlatformAdmin::from_request(req, payload));
        Box::pin(async move {
            if let Some(admin) = admin {
                admin.await?;
            }
            Ok(PolicyReader)
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// Answer only with a snapshot newer than this version…
    pub after: Option<i64>,
    /// …waiting up to this many seconds (at most 60) for one; `304` if none came.
    pub wait: Option<u64>,
    /// With `after`: answer with the signed deltas from `after` to the newest snapshot
    /// (`application/json`, [`SnapshotDeltas`]) when they chain and are smaller than the
    /// snapshot; otherwise the full snapshot as usual.
    pub deltas: Option<bool>,
}

/// The way from the caller's snapshot to the newest: signed deltas to apply in order.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SnapshotDeltas {
    /// The version the last delta produces.
    pub version: i64,
    /// Compact JWS documents (`typ` `mcpgate-policy-delta+jws`), oldest first; each applies
    /// to the version the previous one produced, the first to `after`.
    pub deltas: Vec<String>,
}

fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

fn not_modified(version: Option<i64>) -> HttpResponse {
    let mut response = HttpResponse::NotModified();
    if let Some(v) = version {
        response.insert_header((header::ETAG, etag(v))).insert_header((VERSION_HEADER, v.to_string()));
    }
    response.finish()
}

fn document(published: &Published) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/jose")
        .insert_header((header::ETAG, etag(published.version)))
        .insert_header((VERSION_HEADER, published.version.to_string()))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(published.document.to_string())
}

/// The latest signed snapshot, as a compact JWS (`application/jose`).
///
/// `If-None-Match` with the current ETag gives `304`. With `after=N&wait=S` the request waits
/// up to S seconds for a version newer than N (long-poll) and gives `304` if none arrives.
/// With `after=N&deltas=true` a newer version comes as the signed deltas from N when they are
/// at hand and smaller (a replica applies them to the snapshot it verified), else in full.
#[utoipa::path(
    tag = "policy",
    params(SnapshotQuery),
    security(("proxy_key" = []), ("session" = []), ("token" = [])),
    responses(
        (status = 200, description = "The snapshot (compact JWS), or with `deltas=true` the deltas to it",
         content((String = "application/jose"), (SnapshotDeltas = "application/json")),
         headers(("etag" = String, description = "\"v<version>\""), ("x-mcpgate-policy-version" = i64))),
        (status = 304, description = "No newer snapshot"),
        Unauthorized, Forbidden, Unprocessable, Unavailable, Internal
    )
)]
#[get("/policy/snapshot")]
pub async fn latest_snapshot(
    req: HttpRequest,
    state: web::Data<AppState>,
    _reader: PolicyReader,
    query: web::Query<SnapshotQuery>,
) -> ApiResult<HttpResponse> {
    let mut updates = state.publisher.subscribe();
    let current = updates.borrow().clone();
    let Some(mut published) = current else {
        return Err(ApiError::Unavailable("no policy snapshot has been published yet".into()));
    };
    if let Some(after) = query.after {
        if published.version <= after {
            let wait = Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
            let newer = tokio::time::timeout(wait, async {
                while updates.changed().await.is_ok() {
                    if let Some(p) = updates.borrow().clone().filter(|p| p.version > after) {
                        return Some(p);
                    }
                }
                None
            })
            .await;
            match newer {
                Ok(Some(p)) => published = p,
                _ => return Ok(not_modified(Some(published.version))),
            }
        }
    }
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag(published.version)));
    if matches {
        return Ok(not_modified(Some(published.version)));
    }
    if let (Some(after), Some(true)) = (query.after, query.deltas) {
        // The usual case without a query: a long-poll woken by the very next snapshot.
        let chain = match &published.delta {
            Some((from, delta)) if *from == after => Some((published.version, vec![delta.clone()])),
            _ => crate::policy::publish::delta_chain(&state.reads, after).await?,
        };
        if let Some((version, deltas)) = chain {
            return Ok(HttpResponse::Ok()
                .insert_header((header::ETAG, etag(version)))
                .insert_header((VERSION_HEADER, version.to_string()))
                .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                .json(SnapshotDeltas { version, deltas: deltas.iter().map(|d| d.to_string()).collect() }));
        }
    }
    Ok(document(&published))
}

#[derive(Serialize, ToSchema)]
pub struct SnapshotInfo {
    pub version: i64,
    pub issued_at: DateTime<Utc>,
    pub kid: String,
    /// Bytes of the signed document.
    pub size: i64,
    /// What changed since the previous snapshot.
    pub summary: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct SnapshotHistory {
    pub items: Vec<SnapshotInfo>,
    /// Pass as `cursor` for older snapshots; `null` at the oldest.
    pub next_cursor: Option<String>,
}

/// Snapshot history, newest first.
#[utoipa::path(
    tag = "policy",
    params(PageQuery),
    security(("proxy_key" = []), ("session" = []), ("token" = [])),
    responses((status = 200, description = "A page of snapshots", body = SnapshotHistory), Unauthorized, Forbidden, Unprocessable, Internal)
)]
#[get("/policy/snapshots")]
pub async fn snapshot_history(
    state: web::Data<AppState>,
    _reader: PolicyReader,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<SnapshotHistory>> {
    use sea_orm::ColumnTrait;
    let page = query.to_request()?;
    let mut select = policy_snapshots::Entity::find()
        .select_only()
        .columns([
            policy_snapshots::Column::Version,
            policy_snapshots::Column::IssuedAt,
            policy_snapshots::Column::Kid,
            policy_snapshots::Column::Size,
            policy_snapshots::Column::Summary,
        ])
        .column_as(sea_orm::sea_query::Expr::val(""), "document")
        .column_as(sea_orm::sea_query::Expr::cust("NULL"), "delta")
        .order_by_desc(policy_snapshots::Column::Version)
        .limit(page.limit + 1);
    if let Some(after) = page.after {
        select = select.filter(policy_snapshots::Column::Version.lt(after));
    }
    let mut rows = select.all(&state.reads).await?;
    let next = if rows.len() as u64 > page.limit {
        rows.truncate(page.limit as usize);
        rows.last().map(|r| r.version)
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|r| SnapshotInfo {
            version: r.version,
            issued_at: r.issued_at,
            kid: r.kid,
            size: r.size,
            summary: r.summary,
        })
        .collect();
    Ok(web::Json(SnapshotHistory { items, next_cursor: next.map(crate::api::pagination::encode_cursor) }))
}

/// The keys that verify snapshots (and, later, gateway-issued tokens), as a JWKS.
#[utoipa::path(
    tag = "policy",
    security(()),
    responses((status = 200, description = "JSON Web Key Set", body = Jwks), Internal)
)]
#[get("/policy/keys")]
pub async fn keys(state: web::Data<AppState>) -> ApiResult<web::Json<Jwks>> {
    Ok(web::Json(trusted_keys(&state.reads).await?))
}

/// Only a proxy: the proxy key as a bearer token.
pub struct ProxyCredential;

impl FromRequest for ProxyCredential {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match presents_proxy_key(req) {
            Some(true) => Ok(ProxyCredential),
            Some(false) => Err(ApiError::InvalidToken),
            None => Err(ApiError::Unauthenticated),
        };
        std::future::ready(result)
    }
}

/// Upper bound of one batch of decisions.
const MAX_DECISIONS: usize = 1000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBatch {
    pub items: Vec<crate::proxy::decisions::Decision>,
}

/// Proxy replicas report their decisions (allowed, denied and why, with the snapshot version
/// that decided) for the audit trail. Only the proxy key may write here.
#[utoipa::path(
    tag = "policy",
    security(("proxy_key" = [])),
    request_body = DecisionBatch,
    responses((status = 204, description = "Recorded"), BadRequest, Unauthorized, Unprocessable, Internal)
)]
#[post("/policy/decisions")]
pub async fn record_decisions(
    state: web::Data<AppState>,
    _proxy: ProxyCredential,
    ApiJson(batch): ApiJson<DecisionBatch>,
) -> ApiResult<HttpResponse> {
    if batch.items.len() > MAX_DECISIONS {
        return Err(ApiError::Validation(vec![crate::error::FieldError::new(
            "items",
            "too_many",
            format!("at most {MAX_DECISIONS} decisions per batch"),
        )]));
    }
    crate::control::audit::record_decisions(&state.db, batch.items).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The answer of the credential endpoint: a credential, or why there is none.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum CredentialAnswer {
    Resolved(crate::proxy::credentials::Resolved),
    Failed { error: crate::proxy::credentials::CredentialError },
}

/// Proxy replicas fetch the outbound credential a caller uses on a server (DESIGN.md §4). The
/// answer holds secrets in clear, so only the proxy key may ask — not even a platform admin.
#[utoipa::path(
    tag = "policy",
    security(("proxy_key" = [])),
    request_body = crate::proxy::credentials::CredentialRequest,
    responses(
        (status = 200, description = "The credential headers and how long to reuse them, or `{\"error\"}` saying why there are none", body = CredentialAnswer),
        BadRequest, Unauthorized, Unprocessable, Internal
    )
)]
#[post("/policy/credentials")]
pub async fn resolve_credential(
    state: web::Data<AppState>,
    _proxy: ProxyCredential,
    ApiJson(request): ApiJson<crate::proxy::credentials::CredentialRequest>,
) -> ApiResult<HttpResponse> {
    use crate::proxy::credentials::CredentialResolver;
    if request.subject().is_none() {
        return Err(ApiError::Validation(vec![crate::error::FieldError::new(
            "subject",
            "invalid",
            "u<user id> or v<virtual account id>",
        )]));
    }
    let answer = match state.vault.resolve(&request).await {
        Ok(resolved) => CredentialAnswer::Resolved(resolved),
        Err(error) => CredentialAnswer::Failed { error },
    };
    Ok(HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(answer))
}
