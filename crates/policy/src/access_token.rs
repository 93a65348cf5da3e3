//! Gateway OAuth access tokens (DESIGN.md §3): JWTs (RFC 9068, `typ: at+jwt`) signed EdDSA with
//! the gateway's signing key (`kid`), whose audience is the one MCP URL they were issued for
//! (RFC 8707), short-lived. The authorization server mints them; the proxy accepts them with
//! nothing but the snapshot's public keys and revocation list.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::sign::KeyMaterial;
use crate::Jwks;

pub const TYP: &str = "at+jwt";

/// The scopes the gateway knows. Access is decided per server by collaborators, not by scope;
/// `offline_access` is accepted because clients ask for it to get a refresh token (which they
/// get either way). Advertised by the authorization server and in resource metadata.
pub const SCOPES: &[&str] = &["offline_access"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The gateway's public base URL.
    pub iss: String,
    /// `u<user id>` or `v<virtual account id>`.
    pub sub: String,
    /// The MCP URL the token is for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// This token's id (revocable one by one).
    pub jti: String,
    pub client_id: String,
    /// The authorization the token came from (revoking it revokes all its tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Signs claims with the gateway's key.
pub fn mint(key: &KeyMaterial, claims: &AccessClaims) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some(TYP.to_owned());
    Ok(jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&key.pkcs8))?)
}

/// A gateway JWT has three dot-separated parts; gateway opaque tokens never do.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2 && !token.starts_with("mgw_")
}

/// The keys a proxy trusts, decoded once per snapshot.
#[derive(Default)]
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
}

impl Verifier {
    pub fn new(jwks: &Jwks) -> Self {
        let keys = jwks
            .keys
            .iter()
            .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
            .filter_map(|k| Some((k.kid.clone(), DecodingKey::from_ed_components(&k.x).ok()?)))
            .collect();
        Self { keys }
    }

    /// The claims of a token that is well signed by a trusted key, issued by `issuer` for
    /// `audience`, and not expired at `now` (unix seconds). Anything else is `None`.
    pub fn verify(&self, token: &str, issuer: &str, audience: &str, now: i64) -> Option<AccessClaims> {
        self.check(token, issuer, Some(audience), now)
    }

    /// As `verify`, for whatever MCP URL the token names (revocation needs no audience).
    pub fn verify_any_audience(&self, token: &str, issuer: &str, now: i64) -> Option<AccessClaims> {
        self.check(token, issuer, None, now)
    }

    fn check(&self, token: &str, issuer: &str, audience: Option<&str>, now: i64) -> Option<AccessClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        // The algorithm and type are pinned: no `none`, no HMAC with a public key, no ID token.
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(TYP) {
            return None;
        }
        let key = self.keys.get(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        match audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        // Expiry is checked against the caller's clock below, with no leeway.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation).ok()?.claims;
        (claims.exp > now).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Jwks;

    fn claims(aud: &str, exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://gw.example".into(),
            sub: "u7".into(),
            aud: aud.into(),
            exp,
            iat: exp - 3600,
            jti: "t1".into(),
            client_id: "c1".into(),
            grant_id: Some("g1".into()),
            scope: None,
        }
    }

    #[test]
    fn accepts_only_its_own_tokens_for_the_right_url_in_time() {
        let key = KeyMaterial::generate().unwrap();
        let other = KeyMaterial::generate().unwrap();
        let verifier = Verifier::new(&Jwks { keys: vec![key.jwk()] });
        let url = "https://gw.example/acme/mcp/github/server";
        let token = mint(&key, &claims(url, 2_000)).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(verifier.verify(&token, "https://gw.example", url, 1_000).unwrap().sub, "u7");
        assert!(verifier
            .verify(&token, "https://gw.example", "https://gw.example/acme/mcp/slack/server", 1_000)
            .is_none());
        assert!(verifier.verify(&token, "https://evil.example", url, 1_000).is_none());
        assert!(verifier.verify(&token, "https://gw.example", url, 2_000).is_none(), "expired");
        let foreign = mint(&other, &claims(url, 2_000)).unwrap();
        assert!(verifier.verify(&foreign, "https://gw.example", url, 1_000).is_none(), "an untrusted key");
        let mut tampered = token.clone().into_bytes();
        let at = token.find('.').unwrap() + 5;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert!(verifier.verify(&String::from_utf8(tampered).unwrap(), "https://gw.example", url, 1_000).is_none());
        assert!(!looks_like_jwt("mgw_pat_abc.def.ghi"));
    }
}
