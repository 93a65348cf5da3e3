//! Organisations' identity providers in the snapshot, and verifying the JWTs they issue
//! (`Authorization: Bearer <IdP JWT>`). Verification needs no control plane: the provider's
//! issuer, audiences and keys travel in the signed snapshot; a proxy may refresh the keys
//! itself when a token names a key it does not know.

use std::collections::BTreeMap;

pub use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdpEntry {
    pub id: i64,
    /// `None`: the platform's provider.
    pub tenant: Option<i64>,
    pub slug: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    /// The provider's key set (JWKS) as the control plane last fetched it.
    pub keys: Value,
    /// The claim naming the person (their email).
    pub user_claim: String,
    pub virtual_accounts: Vec<VirtualAccountRule>,
}

/// A token whose claims include all of `claims` acts as virtual account `account`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAccountRule {
    pub claims: BTreeMap<String, String>,
    pub account: i64,
}

/// Why an IdP JWT was not accepted. Each has its own code, in answers and in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the token's issuer is not an identity provider that this gateway accepts tokens from")]
    UnknownIssuer,
    #[error("the token is signed with a key its identity provider does not publish")]
    UnknownKey,
    #[error("the token is malformed or its signature is not valid")]
    Invalid,
    #[error("the token is not meant for this gateway (audience)")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token names nobody this identity provider may sign in (no verified email of a known, vouched-for user, and no virtual-account rule)")]
    UnmappedSubject,
    #[error("the token's user is disabled")]
    DisabledUser,
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownIssuer => "jwt_unknown_issuer",
            Self::UnknownKey => "jwt_unknown_key",
            Self::Invalid => "jwt_invalid",
            Self::Audience => "jwt_audience",
            Self::Expired => "jwt_expired",
            Self::NotYetValid => "jwt_not_yet_valid",
            Self::UnmappedSubject => "jwt_unmapped_subject",
            Self::DisabledUser => "jwt_user_disabled",
        }
    }
}

/// A compact JWT's claims, read without verifying anything: for choosing how to verify it, or
/// for the claims of a token verified by other means.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a token says about itself before anything is verified: its issuer and key id, only to
/// choose the provider and key to verify it with.
pub fn peek(token: &str) -> Option<(String, Option<String>)> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let claims = unverified_claims(token)?;
    Some((claims.get("iss")?.as_str()?.to_owned(), header.kid))
}

/// The provider's keys, parsed; a key set that does not parse has no keys.
pub fn key_set(keys: &Value) -> JwkSet {
    serde_json::from_value(keys.clone()).unwrap_or(JwkSet { keys: Vec::new() })
}

/// The key a token's `kid` names (or the only key, when the token names none).
pub fn find_key<'k>(keys: &'k JwkSet, kid: Option<&str>) -> Option<&'k Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Verifies a token against one provider's key: signature (asymmetric algorithms only),
/// issuer, audience, and `exp`/`nbf` against `now`. Returns its claims.
pub fn verify(entry: &IdpEntry, key: &Jwk, token: &str, now: i64) -> Result<Map<String, Value>, Rejection> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid)?;
    if !asymmetric(header.alg) {
        return Err(Rejection::Invalid);
    }
    let decoding = DecodingKey::from_jwk(key).map_err(|_| Rejection::UnknownKey)?;
    let mut validation = Validation::new(header.alg);
    // The issuer as registered, with or without its trailing slash.
    let bare = entry.issuer.trim_end_matches('/');
    validation.set_issuer(&[bare.to_owned(), format!("{bare}/")]);
    if entry.audiences.is_empty() {
        return Err(Rejection::Audience);
    }
    validation.set_audience(&entry.audiences);
    // Time is checked below against the gateway's clock, with our leeway.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims = ["iss", "aud", "exp"].iter().map(|s| s.to_string()).collect();
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidAudience => Rejection::Audience,
            ErrorKind::InvalidIssuer => Rejection::UnknownIssuer,
            _ => Rejection::Invalid,
        }
    })?;
    let claims = data.claims;
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or(Rejection::Invalid)?;
    if exp + LEEWAY_SECS <= now {
        return Err(Rejection::Expired);
    }
    // A token issued in the future (by our clock) is not valid yet either.
    let not_before = claims.get("nbf").or_else(|| claims.get("iat")).and_then(Value::as_i64);
    if not_before.is_some_and(|nbf| nbf - LEEWAY_SECS > now) {
        return Err(Rejection::NotYetValid);
    }
    Ok(claims)
}

/// Whether a claim holds `want` (a string equal to it, or an array containing it).
pub fn claim_has(claims: &Map<String, Value>, name: &str, want: &str) -> bool {
    match claims.get(name) {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(want)),
        Some(Value::Bool(b)) => b.to_string() == want,
        Some(Value::Number(n)) => n.to_string() == want,
        _ => false,
    }
}
