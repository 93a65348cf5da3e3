//! Console session secrets. The browser holds a 256-bit random secret in an HttpOnly cookie;
//! the database holds only its SHA-256 digest. The CSRF token is derived from the secret, so
//! it needs no storage and is worthless without the cookie it belongs to.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "mcpgate_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// 32 bytes from the OS CSPRNG, base64url without padding.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256 of a high-entropy secret; what the database stores.
pub fn digest(secret: &str) -> String {
    let hash = Sha256::digest(secret.as_bytes());
    hex::encode(hash)
}

/// The CSRF token bound to a session secret.
pub fn csrf_token(session_secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"mcpgate-csrf-v1:");
    hasher.update(session_secret.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Constant-time check of a presented CSRF token.
pub fn csrf_matches(session_secret: &str, presented: &str) -> bool {
    csrf_token(session_secret).as_bytes().ct_eq(presented.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_long() {
        let (a, b) = (random_secret(), random_secret());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(digest(&a).len(), 64);
    }

    #[test]
    fn csrf_is_bound_to_the_session() {
        let (a, b) = (random_secret(), random_secret());
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
    }
}
