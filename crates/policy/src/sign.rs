//! Ed25519 signing of snapshots as compact JWS (`alg: EdDSA`, `kid`), and verification
//! against a JWKS. The payload is the snapshot's canonical JSON.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::delta::Delta;
use crate::{canonical_json, Snapshot};

pub const JWS_TYPE: &str = "mcpgate-policy+jws";
pub const DELTA_JWS_TYPE: &str = "mcpgate-policy-delta+jws";

/// A signing key pair: PKCS#8 private key and raw public key.
pub struct KeyMaterial {
    pub kid: String,
    pub pkcs8: Vec<u8>,
    pub public: Vec<u8>,
}

impl KeyMaterial {
    pub fn generate() -> anyhow::Result<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
        Self::from_pkcs8(pkcs8.as_ref().to_vec(), None)
    }

    /// `kid` defaults to a digest of the public key.
    pub fn from_pkcs8(pkcs8: Vec<u8>, kid: Option<String>) -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| anyhow::anyhow!("invalid Ed25519 PKCS#8 key"))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = kid.unwrap_or_else(|| {
            let digest = ring::digest::digest(&ring::digest::SHA256, &public);
            URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
        });
        Ok(Self { kid, pkcs8, public })
    }

    pub fn jwk(&self) -> Jwk {
        Jwk::ed25519(&self.kid, &self.public)
    }
}

/// An Ed25519 public key as a JSON Web Key (RFC 8037).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

impl Jwk {
    pub fn ed25519(kid: &str, public: &[u8]) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(public),
            kid: kid.to_owned(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the document is not a compact JWS")]
    Malformed,
    #[error("the JWS header is not an mcpgate policy header")]
    BadHeader,
    #[error("no trusted key has kid {0}")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the payload is not a snapshot: {0}")]
    BadPayload(String),
    #[error("the payload names kid {payload} but was signed with {header}")]
    KidMismatch { header: String, payload: String },
}

/// Signs a snapshot; its `kid` must be the key's.
pub fn sign(snapshot: &Snapshot, key: &KeyMaterial) -> anyhow::Result<String> {
    anyhow::ensure!(snapshot.kid == key.kid, "snapshot kid {} is not the signing key {}", snapshot.kid, key.kid);
    sign_payload(&serde_json::to_value(snapshot)?, JWS_TYPE, key)
}

/// Signs a delta between snapshots; its `kid` must be the key's.
pub fn sign_delta(delta: &Delta, key: &KeyMaterial) -> anyhow::Result<String> {
    anyhow::ensure!(delta.kid == key.kid, "delta kid {} is not the signing key {}", delta.kid, key.kid);
    sign_payload(&serde_json::to_value(delta)?, DELTA_JWS_TYPE, key)
}

fn sign_payload(payload: &serde_json::Value, typ: &str, key: &KeyMaterial) -> anyhow::Result<String> {
    let header = canonical_json(&json!({"alg": "EdDSA", "kid": key.kid, "typ": typ}));
    let payload = canonical_json(payload);
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_ed_der(&key.pkcs8), Algorithm::EdDSA)?;
    Ok(format!("{message}.{signature}"))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: String,
    typ: Option<String>,
}

/// Verifies a compact JWS against trusted keys and returns the snapshot it carries.
pub fn verify(jws: &str, trusted: &Jwks) -> Result<Snapshot, VerifyError> {
    let (snapshot, kid): (Snapshot, String) = verify_payload(jws, trusted, JWS_TYPE)?;
    if snapshot.kid != kid {
        return Err(VerifyError::KidMismatch { header: kid, payload: snapshot.kid });
    }
    Ok(snapshot)
}

/// Verifies a signed delta against trusted keys and returns it (not yet applied).
pub fn verify_delta(jws: &str, trusted: &Jwks) -> Result<Delta, VerifyError> {
    let (delta, kid): (Delta, String) = verify_payload(jws, trusted, DELTA_JWS_TYPE)?;
    if delta.kid != kid {
        return Err(VerifyError::KidMismatch { header: kid, payload: delta.kid });
    }
    Ok(delta)
}

/// The payload of a compact JWS of type `typ` signed by a trusted key, and that key's id.
fn verify_payload<T: serde::de::DeserializeOwned>(
    jws: &str,
    trusted: &Jwks,
    typ: &str,
) -> Result<(T, String), VerifyError> {
    let mut parts = jws.trim().split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(VerifyError::Malformed);
    };
    let header: Header =
        URL_SAFE_NO_PAD.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(VerifyError::Malformed)?;
    // The algorithm is pinned, and a delta cannot pass for a snapshot or the other way round:
    // a header asking for anything else is refused outright.
    if header.alg != "EdDSA" || header.typ.as_deref() != Some(typ) {
        return Err(VerifyError::BadHeader);
    }
    let key = trusted
        .keys
        .iter()
        .find(|k| k.kid == header.kid && k.crv == "Ed25519")
        .ok_or_else(|| VerifyError::UnknownKey(header.kid.clone()))?;
    let decoding = DecodingKey::from_ed_components(&key.x).map_err(|_| VerifyError::UnknownKey(header.kid.clone()))?;
    let message = &jws.trim()[..h.len() + 1 + p.len()];
    match jsonwebtoken::crypto::verify(s, message.as_bytes(), &decoding, Algorithm::EdDSA) {
        Ok(true) => {}
        _ => return Err(VerifyError::BadSignature),
    }
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| VerifyError::Malformed)?;
    let value: T = serde_json::from_slice(&payload).map_err(|e| VerifyError::BadPayload(e.to_string()))?;
    Ok((value, header.kid))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn snapshot(kid: &str) -> Snapshot {
        Snapshot::empty(7, kid, Utc::now())
    }

    #[test]
    fn sign_verify_and_reject_tampering_and_unknown_keys() {
        let key = KeyMaterial::generate().unwrap();
        let other = KeyMaterial::generate().unwrap();
        let jwks = Jwks { keys: vec![key.jwk()] };
        let jws = sign(&snapshot(&key.kid), &key).unwrap();
        assert_eq!(verify(&jws, &jwks).unwrap().version, 7);

        // A changed payload (version 7 → 8) fails the signature.
        let parts: Vec<&str> = jws.split('.').collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let forged = URL_SAFE_NO_PAD.encode(payload.replace("\"version\":7", "\"version\":8"));
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(verify(&tampered, &jwks), Err(VerifyError::BadSignature));

        // Signed by a key the verifier does not trust.
        let foreign = sign(&snapshot(&other.kid), &other).unwrap();
        assert_eq!(verify(&foreign, &jwks), Err(VerifyError::UnknownKey(other.kid.clone())));
        // Another key's signature under our kid.
        let mut wrong = sign(&snapshot(&other.kid), &other).unwrap();
        wrong = wrong.replace(&parts[0][..0], "");
        let swapped = format!("{}.{}.{}", parts[0], parts[1], wrong.split('.').nth(2).unwrap());
        assert_eq!(verify(&swapped, &jwks), Err(VerifyError::BadSignature));
        assert_eq!(verify("not.a-jws", &jwks), Err(VerifyError::Malformed));
    }

    #[test]
    fn a_delta_verifies_as_a_delta_and_never_as_a_snapshot() {
        let key = KeyMaterial::generate().unwrap();
        let jwks = Jwks { keys: vec![key.jwk()] };
        let base = snapshot(&key.kid);
        let mut next = base.clone();
        next.version = 8;
        next.revoked_gateway_tokens.push("jti-1".into());
        let delta = crate::delta::diff(&base, crate::delta::content_digest(&base), &next);
        let signed = sign_delta(&delta, &key).unwrap();
        assert_eq!(verify_delta(&signed, &jwks).unwrap(), delta);
        assert_eq!(verify(&signed, &jwks), Err(VerifyError::BadHeader));
        let full = sign(&next, &key).unwrap();
        assert_eq!(verify_delta(&full, &jwks), Err(VerifyError::BadHeader));
    }
}
