//! Wiring: builds the application from settings, binds its own listener (so tests can ask
//! for port 0 and read the port back) and runs it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use sea_orm::DatabaseConnection;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_scalar::{Scalar, Servable};

use crate::api;
use crate::auth::oauth_server::ServerConfig;
use crate::auth::password;
use crate::auth::seal::{load_proxy_key, Sealer};
use crate::auth::throttle::LoginThrottle;
use crate::clock::Clock;
use crate::config::Settings;
use crate::control::lease::{self, Leadership};
use crate::control::tokens::UsageRecorder;
use crate::control::vault::Vault;
use crate::control::{sessions, users, virtual_accounts};
use crate::error::ApiError;
use crate::policy::publish::{trusted_keys, Publisher};
use crate::proxy::decisions::{DecisionLog, Destination};
use crate::proxy::holder::PolicyHolder;
use crate::proxy::routes::{ProxyConfig, ProxyState};
use crate::proxy::session::SessionSealer;
pub use crate::state::AppState;
use crate::store;

pub struct Application {
    port: u16,
    server: Server,
    metrics_port: Option<u16>,
    decisions: DecisionLog,
    pub bootstrap: users::Bootstrap,
    /// Shared state, for embedding and tests (e.g. to run a background job on demand).
    pub state: web::Data<AppState>,
}

/// Opens the database (creating the data directory for SQLite) and applies migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let (db, guard) = open_under_startup_lock(settings).await?;
    guard.release().await;
    Ok(db)
}

/// [`open_database`], still holding the start-up lock (control planes starting together on one
/// PostgreSQL database migrate one at a time), so the caller's own start-up work runs under
/// the same lock before it releases it.
async fn open_under_startup_lock(settings: &Settings) -> anyhow::Result<(DatabaseConnection, lease::StartupGuard)> {
    let url = settings.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    }
    let db = store::connect(&url, settings.db_max_connections).await.context("connecting to the database")?;
    let guard = lease::startup_lock(&db, &url).await.context("taking the start-up lock")?;
    store::migrate(&db).await.context("applying database migrations")?;
    Ok((db, guard))
}

impl Application {
    pub async fn build(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        // Migrations and the first administrator, one control plane at a time.
        let (db, guard) = open_under_startup_lock(&settings).await?;
        let bootstrap =
            users::bootstrap_admin(&db, settings.admin_email.as_deref(), settings.admin_password.as_ref(), clock.now())
                .await;
        guard.release().await;
        let bootstrap = bootstrap?;
        // Opened after the migrations: readers need the tables (and the file) to exist.
        let reads = store::connect_readers(&settings.database_url(), &db, settings.db_max_connections)
            .await
            .context("connecting the database's readers")?;
        let store = store::Db { write: db.clone(), read: reads.clone() };
        // Computed now so the first sign-in costs the same as the rest.
        tokio::task::spawn_blocking(password::init).await.context("warming the password hasher")?;

        let listener = TcpListener::bind(&settings.listen).with_context(|| format!("binding {}", settings.listen))?;
        let bound = listener.local_addr()?;
        let port = bound.port();
        let mut settings = settings;
        if settings.public_url.is_none() {
            settings.public_url = Some(Settings::bound_base_url(bound));
        }
        let throttle = LoginThrottle::new(
            settings.login_max_failures,
            chrono::Duration::minutes(i64::from(settings.login_window_minutes)),
        );
        let workers = settings.workers;
        let sealer = Sealer::load(settings.master_key.as_ref(), &settings.data_dir)?;
        let proxy_key = load_proxy_key(settings.proxy_key.as_ref(), &settings.data_dir)?;
        // One control plane publishes (on PostgreSQL, whoever holds the lease); the first
        // snapshot exists before the first request is served.
        let leadership = Leadership::new(&db, &settings.database_url());
        let holder = leadership.acquire_now().await;
        tokio::spawn(leadership.clone().run(holder));
        let publisher = Arc::new(Publisher::default());
        publisher.start(&store, &sealer, &clock, &leadership).await.context("publishing the policy snapshot")?;
        tokio::spawn(publisher.clone().run(store, sealer.clone(), clock.clone(), leadership.clone()));
        let policy = Arc::new(PolicyHolder::default());
        spawn_policy_subscriber(&publisher, policy.clone(), reads.clone()).await;
        let egress = Arc::new(settings.egress());
        if settings.upstream_allow_private {
            tracing::warn!("MCPGATE_UPSTREAM_ALLOW_PRIVATE is on: upstreams may be on private and loopback addresses");
        }
        let vault = Arc::new(Vault::new(
            db.clone(),
            sealer.clone(),
            clock.clone(),
            settings.public_base_url(),
            egress.clone(),
        )?);
        let oauth = ServerConfig {
            issuer: settings.public_base_url(),
            access_ttl: chrono::Duration::seconds(i64::from(settings.oauth_access_token_ttl_seconds)),
            idle: chrono::Duration::hours(i64::from(settings.oauth_sign_in_idle_hours)),
            max: chrono::Duration::hours(i64::from(settings.oauth_sign_in_max_hours)),
            allow_private_documents: settings.oauth_cimd_allow_private,
        };
        let oidc = crate::control::identity::Oidc::new(egress.clone())?;
        let idp_keys = Arc::new(crate::proxy::idp::IdpKeys::new(egress.clone())?);
        let state = web::Data::new(AppState {
            oidc,
            idp_keys: idp_keys.clone(),
            oauth,
            registrations: governor::RateLimiter::keyed(crate::api::oauth::REGISTRATION_QUOTA),
            db,
            reads,
            clock,
            settings: Arc::new(settings),
            throttle,
            token_usage: UsageRecorder::default(),
            sealer,
            publisher,
            leadership,
            proxy_key,
            policy,
            vault,
            egress,
        });
        let decisions =
            DecisionLog::spawn(Destination::Sink(Arc::new(crate::control::audit::StoreDecisions(state.db.clone()))));
        let proxy = web::Data::new(ProxyState::new(
            state.policy.clone(),
            ProxyConfig {
                public_base: state.settings.public_base_url(),
                upstream_timeout: Duration::from_secs(u64::from(state.settings.upstream_timeout_seconds.max(1))),
                max_concurrent: state.settings.proxy_max_concurrent,
                allowed_origins: state.settings.allowed_origins.clone(),
                rate_limit_per_minute: state.settings.proxy_rate_limit_per_minute,
                egress: state.egress.clone(),
                idp_keys,
            },
            state.clock.clone(),
            SessionSealer::from_proxy_key(&state.proxy_key),
            decisions.clone(),
            state.vault.clone(),
        )?);
        let doc = web::Data::new(api::openapi_json());
        let spec = api::openapi();
        let routes = web::Data::new(RouteTable::new(&spec));

        let server_state = state.clone();
        let mut server = HttpServer::new(move || {
            // The MCP route first: every proxied request is matched against the routes before it.
            let (app, _) = App::new()
                .configure(|cfg| crate::proxy::routes::configure(cfg, proxy.clone()))
                .into_utoipa_app()
                .app_data(server_state.clone())
                .configure(api::configure)
                .split_for_parts();
            app.app_data(doc.clone())
                .app_data(web::PayloadConfig::new(api::json::BODY_LIMIT))
                .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::Validation(vec![crate::error::FieldError::new("query", "invalid", e.to_string())]).into()
                }))
                .route("/api/openapi.json", web::get().to(serve_openapi))
                .configure(crate::pages::connect::configure)
                .configure(crate::pages::authorize::configure)
                .configure(crate::pages::sso::configure)
                .configure(api::oauth::configure)
                .configure(crate::console::configure)
                .service(Scalar::with_url("/api/docs", spec.clone()))
                .app_data(routes.clone())
                .default_service(web::to(unmatched))
                .wrap(from_fn(api::middleware::request_id))
                .wrap(security_headers())
                .wrap(TracingLogger::<crate::proxy::span::LeanSpan>::new())
        })
        .on_connect(crate::http_client::no_delay)
        .listen(listener)?
        .shutdown_timeout(u64::from(state.settings.shutdown_timeout_seconds));
        if workers > 0 {
            server = server.workers(workers);
        }
        let server = server.run();

        spawn_background_jobs(state.clone());
        let metrics_port = match &state.settings.metrics_listen {
            Some(listen) => {
                let (port, metrics) = crate::proxy::metrics::serve(listen)?;
                tokio::spawn(metrics);
                spawn_gauges(state.clone());
                Some(port)
            }
            None => None,
        };
        Ok(Self { port, server, metrics_port, decisions, bootstrap, state })
    }

    /// The port `/metrics` is served on, when `metrics_listen` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until a signal stops the server: on SIGTERM (or SIGINT) it stops accepting,
    /// lets requests and streams in flight finish within `shutdown_timeout_seconds`, then
    /// writes the proxy decisions it still holds before returning.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.decisions.flush().await;
        tracing::info!("stopped");
        result
    }
}

/// Headers every answer carries unless it sets its own: no content sniffing, and no page of
/// the gateway (the API explorer included) inside another site's frame.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("x-content-type-options", "nosniff"))
        .add(("x-frame-options", "DENY"))
        .add(("content-security-policy", "frame-ancestors 'none'"))
}

/// The API's paths and their methods, from the OpenAPI document: a request for a path that
/// exists with a method it does not take is answered 405 with `Allow`, not 404.
pub struct RouteTable(Vec<(Vec<String>, Vec<&'static str>)>);

impl RouteTable {
    fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        use utoipa::openapi::HttpMethod;
        let all = [
            (HttpMethod::Get, "GET"),
            (HttpMethod::Post, "POST"),
            (HttpMethod::Put, "PUT"),
            (HttpMethod::Patch, "PATCH"),
            (HttpMethod::Delete, "DELETE"),
        ];
        let table = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path.split('/').map(str::to_owned).collect();
                let methods = all
                    .iter()
                    .filter(|(m, _)| match m {
                        HttpMethod::Get => item.get.is_some(),
                        HttpMethod::Post => item.post.is_some(),
                        HttpMethod::Put => item.put.is_some(),
                        HttpMethod::Patch => item.patch.is_some(),
                        HttpMethod::Delete => item.delete.is_some(),
                        _ => false,
                    })
                    .map(|(_, name)| *name)
                    .collect();
                (segments, methods)
            })
            .collect();
        Self(table)
    }

    /// The methods of the documented path `path` matches (`{param}` matches one segment).
    fn methods(&self, path: &str) -> Option<&[&'static str]> {
        let wanted: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(segments, _)| {
                segments.len() == wanted.len()
                    && segments.iter().zip(&wanted).all(|(s, w)| s == w || (s.starts_with('{') && !w.is_empty()))
            })
            .map(|(_, methods)| methods.as_slice())
    }
}

async fn unmatched(req: actix_web::HttpRequest, routes: web::Data<RouteTable>) -> Result<HttpResponse, ApiError> {
    match routes.methods(req.path()) {
        Some(methods) if !methods.is_empty() => {
            Err(ApiError::MethodNotAllowed { method: req.method().to_string(), allow: methods.join(", ") })
        }
        _ => Err(ApiError::NotFound),
    }
}

async fn serve_openapi(doc: web::Data<String>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(doc.get_ref().clone())
}

/// Feeds every published snapshot to the in-process proxy's holder, verified against the
/// published keys like any replica would. Waits for the first one so serving starts with a
/// policy in place.
async fn spawn_policy_subscriber(publisher: &Publisher, holder: Arc<PolicyHolder>, db: DatabaseConnection) {
    let mut updates = publisher.subscribe();
    let offer = |published: Option<crate::policy::publish::Published>,
                 holder: Arc<PolicyHolder>,
                 db: DatabaseConnection| async move {
        let Some(published) = published else { return };
        let keys = match trusted_keys(&db).await {
            Ok(keys) => keys,
            Err(e) => return tracing::warn!(error = %e, "reading the policy keys failed"),
        };
        // The next snapshot after the one in force comes as its delta, like on a replica:
        // applying it costs what changed, not a parse of the whole document.
        if let Some((from, delta)) = &published.delta {
            if holder.version() == Some(*from) {
                match holder.offer_delta(delta, &keys) {
                    Ok(version) => return tracing::debug!(version, "policy snapshot in force (delta)"),
                    Err(e) => tracing::warn!(error = %e, "the in-process proxy refused a delta; taking the snapshot"),
                }
            }
        }
        match holder.offer(&published.document, &keys) {
            Ok(version) => tracing::debug!(version, "policy snapshot in force"),
            Err(e) => tracing::error!(error = %e, "the in-process proxy refused a policy snapshot"),
        }
    };
    let first = updates.borrow_and_update().clone();
    offer(first, holder.clone(), db.clone()).await;
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let next = updates.borrow_and_update().clone();
            offer(next, holder.clone(), db.clone()).await;
        }
    });
}

/// The control plane's gauges (counts of rows) are read every 15 seconds, and at once.
fn spawn_gauges(state: web::Data<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            if let Err(e) = crate::control::gauges::refresh(&state.db, state.clock.now()).await {
                tracing::warn!(error = %e, "reading the gauges failed");
            }
        }
    });
}

/// Housekeeping on timers: token usage flushes (every process its own), and on the publisher
/// only, scheduled token rotation, purges of spent records and identity providers' keys.
fn spawn_background_jobs(state: web::Data<AppState>) {
    let usage = state.clone();
    tokio::spawn(async move {
        let every = Duration::from_secs(u64::from(usage.settings.token_usage_flush_seconds.max(1)));
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = usage.token_usage.flush(&usage.db).await {
                tracing::warn!(error = %e, "writing token last-used times failed");
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            // One control plane runs these at a time: the publisher.
            if !state.leadership.is_publisher() {
                continue;
            }
            match virtual_accounts::rotate_due(&state.db, &state.sealer, state.clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rotated = n, "virtual-account tokens rotated on schedule"),
                Err(e) => tracing::warn!(error = %e, "scheduled token rotation failed"),
            }
            match crate::auth::oauth_server::grants::purge(&state.db, state.clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "ended sign-ins and spent OAuth records removed"),
                Err(e) => tracing::warn!(error = %e, "purging OAuth records failed"),
            }
            match crate::control::identity::refresh_keys(&state.db, &state.oidc, state.clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(changed = n, "identity provider keys refreshed"),
                Err(e) => tracing::warn!(error = %e, "refreshing identity provider keys failed"),
            }
            match sessions::purge_expired(&state.db, state.clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired sessions removed"),
                Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
            }
        }
    });
}
