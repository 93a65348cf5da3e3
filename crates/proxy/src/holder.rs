//! The proxy's current policy: the last snapshot that verified, behind an `ArcSwap` so every
//! request reads one consistent snapshot without a lock. A snapshot that fails verification or
//! is older than the current one is refused and the last good one keeps serving; with none at
//! all the proxy fails closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::index::Policy;
use mcpgate_policy::delta::{self, ContentDigest, DeltaError};
use mcpgate_policy::sign::{self, VerifyError};
use mcpgate_policy::Jwks;
#[cfg(test)]
use mcpgate_policy::Snapshot;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("snapshot rejected: {0}")]
    Invalid(#[from] VerifyError),
    #[error("snapshot version {offered} is older than the current version {current}")]
    Rollback { current: i64, offered: i64 },
    #[error("snapshot delta not applied: {0}")]
    Delta(#[from] DeltaError),
    #[error("a snapshot delta came before any snapshot")]
    NoBase,
}

#[derive(Default)]
pub struct PolicyHolder {
    current: ArcSwapOption<Policy>,
    /// The content digest of the current snapshot (by version), the base a delta must name;
    /// worked out on the first delta after a full snapshot, then carried from delta to delta.
    digest: Mutex<Option<(i64, ContentDigest)>>,
    /// How many snapshots came in full and how many from deltas.
    full: AtomicU64,
    deltas: AtomicU64,
}

impl PolicyHolder {
    /// The snapshot every decision of one request should use; `None` means fail closed.
    pub fn current(&self) -> Option<Arc<Policy>> {
        self.current.load_full()
    }

    pub fn version(&self) -> Option<i64> {
        self.current.load().as_ref().map(|p| p.version())
    }

    /// Snapshots put in force so far: (from full documents, from deltas).
    pub fn applied(&self) -> (u64, u64) {
        (self.full.load(Ordering::Relaxed), self.deltas.load(Ordering::Relaxed))
    }

    /// Verifies `document` against `trusted` and, if it is newer, makes it current. Offering
    /// the current version again is accepted and changes nothing.
    pub fn offer(&self, document: &str, trusted: &Jwks) -> Result<i64, Rejected> {
        let result = self.offer_checked(document, trusted);
        self.observe(&result);
        result
    }

    /// Verifies a signed delta against `trusted` and applies it to the current snapshot: it
    /// must name the current version and content, and produce the content it names. A delta
    /// for a version already held changes nothing. On refusal the current snapshot keeps
    /// serving; the caller fetches the full snapshot instead.
    pub fn offer_delta(&self, document: &str, trusted: &Jwks) -> Result<i64, Rejected> {
        let result = self.offer_delta_checked(document, trusted);
        self.observe(&result);
        result
    }

    fn offer_delta_checked(&self, document: &str, trusted: &Jwks) -> Result<i64, Rejected> {
        let delta = sign::verify_delta(document, trusted)?;
        let current = self.current().ok_or(Rejected::NoBase)?;
        if current.version() >= delta.version {
            return if current.version() == delta.version {
                Ok(delta.version)
            } else {
                Err(Rejected::Rollback { current: current.version(), offered: delta.version })
            };
        }
        let base_digest = {
            let held = *self.digest.lock().unwrap_or_else(|e| e.into_inner());
            match held {
                Some((version, digest)) if version == current.version() => digest,
                _ => delta::content_digest(&current.snapshot),
            }
        };
        let (snapshot, digest) = delta::apply(&current.snapshot, base_digest, &delta)?;
        let offered = snapshot.version;
        let policy = Arc::new(Policy::build(snapshot));
        let result = self.install(policy, offered);
        if result.is_ok() {
            *self.digest.lock().unwrap_or_else(|e| e.into_inner()) = Some((offered, digest));
            self.deltas.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn observe(&self, result: &Result<i64, Rejected>) {
        let m = crate::metrics::get();
        match (&result, self.current()) {
            (Ok(_), Some(policy)) => {
                m.snapshot_version.set(policy.version());
                m.snapshot_issued.set(policy.snapshot.issued_at.timestamp() as f64);
            }
            (Err(_), _) => {
                m.snapshot_rejected.inc();
            }
            _ => {}
        }
    }

    fn offer_checked(&self, document: &str, trusted: &Jwks) -> Result<i64, Rejected> {
        let snapshot = sign::verify(document, trusted)?;
        let offered = snapshot.version;
        if let Some(current) = self.version().filter(|v| *v >= offered) {
            // Nothing to build: the same version again, or a rollback attempt.
            return if current == offered { Ok(offered) } else { Err(Rejected::Rollback { current, offered }) };
        }
        let result = self.install(Arc::new(Policy::build(snapshot)), offered);
        if result.is_ok() {
            self.full.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Makes `policy` current unless a newer or the same version got there first.
    fn install(&self, policy: Arc<Policy>, offered: i64) -> Result<i64, Rejected> {
        let mut result = Ok(offered);
        self.current.rcu(|current| match current {
            Some(c) if c.version() > offered => {
                result = Err(Rejected::Rollback { current: c.version(), offered });
                current.clone()
            }
            Some(c) if c.version() == offered => {
                result = Ok(offered);
                current.clone()
            }
            _ => {
                result = Ok(offered);
                Some(policy.clone())
            }
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use mcpgate_policy::sign::KeyMaterial;

    fn signed(version: i64, key: &KeyMaterial) -> String {
        let snapshot = Snapshot::empty(version, &key.kid, Utc::now());
        sign::sign(&snapshot, key).unwrap()
    }

    #[test]
    fn keeps_the_last_good_snapshot_and_refuses_bad_ones() {
        let key = KeyMaterial::generate().unwrap();
        let stranger = KeyMaterial::generate().unwrap();
        let trusted = Jwks { keys: vec![key.jwk()] };
        let holder = PolicyHolder::default();
        assert!(holder.current().is_none(), "no snapshot: fail closed");

        assert_eq!(holder.offer(&signed(5, &key), &trusted), Ok(5));
        assert_eq!(holder.offer(&signed(5, &key), &trusted), Ok(5), "the same version again is harmless");

        // Older version: anti-rollback.
        assert_eq!(holder.offer(&signed(4, &key), &trusted), Err(Rejected::Rollback { current: 5, offered: 4 }));
        // Signed by an untrusted key.
        assert!(matches!(
            holder.offer(&signed(9, &stranger), &trusted),
            Err(Rejected::Invalid(VerifyError::UnknownKey(_)))
        ));
        // Tampered: the signature of version 6, the payload of something else.
        let good = signed(6, &key);
        let other = signed(7, &key);
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
        assert_eq!(holder.offer(&forged, &trusted), Err(Rejected::Invalid(VerifyError::BadSignature)));
        assert_eq!(holder.version(), Some(5), "the last good snapshot keeps serving");

        assert_eq!(holder.offer(&good, &trusted), Ok(6));
        assert_eq!(holder.version(), Some(6));
    }

    #[test]
    fn applies_deltas_to_the_snapshot_it_holds_and_refuses_the_rest() {
        use mcpgate_policy::delta;
        use mcpgate_policy::{TokenEntry, TokenOwner};
        let key = KeyMaterial::generate().unwrap();
        let trusted = Jwks { keys: vec![key.jwk()] };
        let holder = PolicyHolder::default();
        let v5 = Snapshot::empty(5, &key.kid, Utc::now());
        let mut v6 = v5.clone();
        v6.version = 6;
        v6.tokens.push(TokenEntry { digest: [9; 32], subject_kind: TokenOwner::User, subject: 1, expires_at: None });
        let mut v7 = v6.clone();
        v7.version = 7;
        v7.tokens.clear();
        let d56 = delta::diff(&v5, delta::content_digest(&v5), &v6);
        let d67 = delta::diff(&v6, d56.digest, &v7);
        let (s56, s67) = (sign::sign_delta(&d56, &key).unwrap(), sign::sign_delta(&d67, &key).unwrap());

        assert_eq!(holder.offer_delta(&s56, &trusted), Err(Rejected::NoBase), "a delta needs a snapshot");
        holder.offer(&sign::sign(&v5, &key).unwrap(), &trusted).unwrap();
        assert!(matches!(holder.offer_delta(&s67, &trusted), Err(Rejected::Delta(_))), "not its base");
        assert_eq!(holder.offer_delta(&s56, &trusted), Ok(6));
        assert_eq!(holder.current().unwrap().snapshot.tokens.len(), 1);
        assert_eq!(holder.offer_delta(&s56, &trusted), Ok(6), "the same delta again is harmless");
        assert_eq!(holder.offer_delta(&s67, &trusted), Ok(7));
        assert!(holder.current().unwrap().snapshot.tokens.is_empty());
        // Tampered: a delta's payload under another delta's signature.
        let parts: Vec<&str> = s56.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], s67.split('.').nth(1).unwrap(), parts[2]);
        assert_eq!(holder.offer_delta(&forged, &trusted), Err(Rejected::Invalid(VerifyError::BadSignature)));
        assert_eq!(holder.version(), Some(7));
    }
}
