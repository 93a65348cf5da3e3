//! The proxy's current policy: the last snapshot that verified, behind an `ArcSwap` so every
//! request reads one consistent snapshot without a lock. A snapshot that fails verification or
//! is older than the current one is refused and the last good one keeps serving; with none at
//! all the proxy fails closed.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::index::Policy;
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
}

#[derive(Default)]
pub struct PolicyHolder {
    current: ArcSwapOption<Policy>,
}

impl PolicyHolder {
    /// The snapshot every decision of one request should use; `None` means fail closed.
    pub fn current(&self) -> Option<Arc<Policy>> {
        self.current.load_full()
    }

    pub fn version(&self) -> Option<i64> {
        self.current.load().as_ref().map(|p| p.version())
    }

    /// Verifies `document` against `trusted` and, if it is newer, makes it current. Offering
    /// the current version again is accepted and changes nothing.
    pub fn offer(&self, document: &str, trusted: &Jwks) -> Result<i64, Rejected> {
        let result = self.offer_checked(document, trusted);
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
        result
    }

    fn offer_checked(&self, document: &str, trusted: &Jwks) -> Result<i64, Rejected> {
        let snapshot = sign::verify(document, trusted)?;
        let offered = snapshot.version;
        if let Some(current) = self.version().filter(|v| *v >= offered) {
            // Nothing to build: the same version again, or a rollback attempt.
            return if current == offered { Ok(offered) } else { Err(Rejected::Rollback { current, offered }) };
        }
        let mut result = Ok(offered);
        let policy = Arc::new(Policy::build(snapshot));
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
}
