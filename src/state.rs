//! What every request handler shares: the store, the clock, the settings, the keys, the
//! in-process proxy's verified policy, the credential vault and the OAuth server's settings.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::auth::oauth_server::ServerConfig;
use crate::auth::seal::Sealer;
use crate::auth::throttle::LoginThrottle;
use crate::clock::Clock;
use crate::config::Settings;
use crate::control::tokens::UsageRecorder;
use crate::control::vault::Vault;
use crate::policy::publish::Publisher;
use crate::proxy::holder::PolicyHolder;

/// Shared by every request handler.
pub struct AppState {
    /// The connection that writes (on SQLite the only one; see `store::Db`).
    pub db: DatabaseConnection,
    /// Read-only connections for what needs no transaction of its own: authentication,
    /// access checks, lists and details. A write sent here fails.
    pub reads: DatabaseConnection,
    pub clock: Clock,
    pub settings: Arc<Settings>,
    pub throttle: LoginThrottle,
    pub token_usage: UsageRecorder,
    pub sealer: Sealer,
    pub publisher: Arc<Publisher>,
    /// Whether this process publishes snapshots and runs the background jobs (one control
    /// plane at a time on PostgreSQL).
    pub leadership: Arc<crate::control::lease::Leadership>,
    pub proxy_key: SecretString,
    /// The in-process proxy's verified policy, fed through the same verification a remote
    /// replica uses.
    pub policy: Arc<PolicyHolder>,
    /// Upstream credentials: Auth Overrides, per-user grants, machine tokens.
    pub vault: Arc<Vault>,
    /// Where outbound requests may go.
    pub egress: Arc<crate::egress::Egress>,
    /// Organisations' identity providers (SSO, JWT keys).
    pub oidc: crate::control::identity::Oidc,
    /// Identity providers' keys for their JWTs, shared with the in-process proxy.
    pub idp_keys: Arc<crate::proxy::idp::IdpKeys>,
    /// The gateway's own authorization server.
    pub oauth: ServerConfig,
    /// Client registrations per client address (registration is open to anyone).
    pub registrations: crate::proxy::routes::IdentityLimiter,
}

impl AppState {
    /// The policy this process's proxy enforces, first brought up to date with every committed
    /// change: pages that decide who may use a server (consent, connect) decide from the same
    /// snapshot, with the same function, as the proxy will.
    pub async fn current_policy(&self) -> anyhow::Result<Arc<crate::proxy::index::Policy>> {
        let patience = Duration::from_secs(3);
        let store = crate::store::Db { write: self.db.clone(), read: self.reads.clone() };
        let caught_up = self.publisher.catch_up(&store, &self.sealer, self.clock.now(), &self.leadership, patience);
        if let Err(e) = caught_up.await {
            // Another publication of the same version may have won; the wait below covers it.
            tracing::debug!(error = format!("{e:#}"), "publishing before a decision");
        }
        let wanted = self.publisher.latest().map(|p| p.version);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(policy) = self.policy.current().filter(|p| Some(p.version()) >= wanted) {
                return Ok(policy);
            }
            if std::time::Instant::now() > deadline {
                return self.policy.current().context("the gateway has no verified policy yet");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
