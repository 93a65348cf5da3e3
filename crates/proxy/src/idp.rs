//! Accepting identity-provider JWTs as bearer tokens, in the proxy and (through the same
//! type) the API. The snapshot carries each provider's issuer, audiences and keys, so a token
//! is verified without asking the control plane. A token naming a key the snapshot does not
//! have makes this process fetch the provider's key set itself — at most once per provider
//! every [`REFRESH_EVERY`] — and keep what it fetched for [`KEYS_KEPT`], so a provider that
//! rotates its keys is followed at once and one that is down does not stop valid tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mcpgate_policy::idp::JwkSet;
use mcpgate_policy::idp::{self, IdpEntry, Rejection};

use crate::egress::Egress;
use crate::index::{Policy, Subject};

/// How often one provider's keys may be fetched because of an unknown `kid`.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How long fetched keys are used before falling back to the snapshot's.
pub const KEYS_KEPT: Duration = Duration::from_secs(24 * 3600);

struct Fetched {
    keys: Option<(JwkSet, Instant)>,
    last_attempt: Option<Instant>,
}

/// Who an accepted IdP token stands for, and the provider that issued it.
#[derive(Clone, Debug)]
pub struct IdpCaller {
    pub subject: Subject,
    pub provider: String,
}

pub struct IdpKeys {
    http: reqwest::Client,
    egress: Arc<Egress>,
    fetched: Mutex<HashMap<(i64, String), Fetched>>,
}

impl IdpKeys {
    pub fn new(egress: Arc<Egress>) -> anyhow::Result<Self> {
        let http = egress.builder().connect_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(10)).build()?;
        Ok(Self { http, egress, fetched: Mutex::default() })
    }

    /// The keys to verify with: freshly fetched ones while they last, else the snapshot's.
    fn keys(&self, entry: &IdpEntry) -> JwkSet {
        let fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        match fetched.get(&(entry.id, entry.issuer.clone())).and_then(|f| f.keys.as_ref()) {
            Some((keys, at)) if at.elapsed() < KEYS_KEPT => keys.clone(),
            _ => idp::key_set(&entry.keys),
        }
    }

    /// Fetches the provider's key set, unless that was tried less than [`REFRESH_EVERY`] ago.
    async fn refresh(&self, entry: &IdpEntry) -> Option<JwkSet> {
        let key = (entry.id, entry.issuer.clone());
        {
            let mut fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
            let slot = fetched.entry(key.clone()).or_insert(Fetched { keys: None, last_attempt: None });
            if slot.last_attempt.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
                return None;
            }
            slot.last_attempt = Some(Instant::now());
        }
        let url = url::Url::parse(entry.jwks_uri.as_deref()?).ok()?;
        self.egress.check_url(&url).ok()?;
        let response = self.http.get(url).send().await.ok()?.error_for_status().ok()?;
        let keys: JwkSet = response.json().await.ok()?;
        tracing::info!(provider = %entry.slug, keys = keys.keys.len(), "fetched an identity provider's keys");
        let mut fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = fetched.get_mut(&key) {
            slot.keys = Some((keys.clone(), Instant::now()));
        }
        Some(keys)
    }

    /// Verifies an IdP token and finds who it stands for. `tenant`: the tenant being called
    /// (its providers and the platform's may have issued it); `None` for the API (any).
    pub async fn authenticate(
        &self,
        policy: &Policy,
        token: &str,
        tenant: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<IdpCaller, Rejection> {
        let (issuer, kid) = idp::peek(token).ok_or(Rejection::Invalid)?;
        let candidates = policy.identity_providers(&issuer, tenant);
        if candidates.is_empty() {
            return Err(Rejection::UnknownIssuer);
        }
        let mut last = Rejection::UnknownIssuer;
        for entry in candidates {
            let mut keys = self.keys(entry);
            if idp::find_key(&keys, kid.as_deref()).is_none() {
                if let Some(fresh) = self.refresh(entry).await {
                    keys = fresh;
                }
            }
            let Some(key) = idp::find_key(&keys, kid.as_deref()) else {
                last = Rejection::UnknownKey;
                continue;
            };
            let claims = match idp::verify(entry, key, token, now.timestamp()) {
                Ok(claims) => claims,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match policy.idp_subject(entry, &claims, now) {
                Ok(subject) => return Ok(IdpCaller { subject, provider: entry.slug.clone() }),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
