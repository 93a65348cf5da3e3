//! argon2id password hashing. Hashing is deliberately expensive, so it runs on the blocking
//! pool; a sign-in for an unknown account is verified against a dummy hash so the response
//! time does not reveal which accounts exist.

use std::sync::OnceLock;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use secrecy::{ExposeSecret, SecretString};

fn hasher() -> Argon2<'static> {
    // argon2id v19 with the OWASP-recommended parameters (19 MiB, t=2, p=1).
    Argon2::default()
}

pub fn hash_password_blocking(password: &SecretString) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = hasher()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
    Ok(hash.to_string())
}

pub async fn hash_password(password: SecretString) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .context("password hashing task panicked")?
}

/// A hash of a random password nobody knows, computed once, for the unknown-account case.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = SecretString::from(crate::auth::session::random_secret());
        // Hashing a fixed-size input cannot fail; fall back to a constant PHC string anyway.
        hash_password_blocking(&random).unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9j1lOq3hu0lRR0QgYlp0lz0B9bzyVJbGtHY4uUvh4dE"
                .to_owned()
        })
    })
}

/// Warms the dummy hash so the first sign-in is not slower than the others.
pub fn init() {
    let _ = dummy_hash();
}

fn verifications() -> &'static tokio::sync::Semaphore {
    static TURNS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    TURNS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2))
    })
}

/// Verifies `password` against `stored` (or against the dummy hash when there is no account or
/// no password), always doing the same amount of work. Returns whether it matched.
pub async fn verify_password(password: SecretString, stored: Option<String>) -> anyhow::Result<bool> {
    // At most one verification per core at a time: a burst of sign-ins waits its turn instead
    // of taking every blocking thread (each one is ~19 MiB and tens of milliseconds).
    let _turn = verifications().acquire().await.context("password verification is shut down")?;
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match &stored {
            Some(h) => (h.as_str(), true),
            None => (dummy_hash(), false),
        };
        let parsed = PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
        let ok = hasher().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok();
        Ok(ok && real)
    })
    .await
    .context("password verification task panicked")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let hash = hash_password("correct horse battery".to_owned().into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".to_owned().into(), Some(hash.clone())).await.unwrap());
        assert!(!verify_password("wrong horse battery".to_owned().into(), Some(hash)).await.unwrap());
        assert!(!verify_password("anything at all".to_owned().into(), None).await.unwrap());
    }
}
