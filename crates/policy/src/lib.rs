//! mcpgate's contract between the control plane and the proxy (DESIGN.md §5, §9): the policy
//! snapshot and its typed entries, its signing keys, the token formats and the MCP URLs. It
//! depends on no other crate of mcpgate's, on no database and no web framework.
//!
//! The policy snapshot: the contract between the control plane and the proxy.
//! One immutable document per publication, serialized canonically, signed with Ed25519 as a
//! compact JWS. It holds what the proxy needs to decide, and no secret in clear: tokens appear
//! as SHA-256 digests, upstream credentials not at all.

pub mod access_token;
pub mod clock;
pub mod delta;
pub mod idp;
pub mod kinds;
pub mod outbound;
pub mod sign;
pub mod token;
pub mod tools;
pub mod urls;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use kinds::{ServerKind, ServerRole, SubjectKind, TenantRole, Transport, UnknownValue};
pub use outbound::{AuthLevel, GrantType, OutboundAuth};
pub use sign::{Jwk, Jwks};
pub use tools::{ToolAnnotations, ToolSetting};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Strictly increasing; a proxy never accepts a version older than the one it holds.
    pub version: i64,
    pub issued_at: DateTime<Utc>,
    /// The signing key; equals the JWS header's `kid`.
    pub kid: String,
    pub tenants: Vec<TenantEntry>,
    pub users: Vec<UserEntry>,
    pub members: Vec<MemberEntry>,
    pub teams: Vec<TeamEntry>,
    pub virtual_accounts: Vec<VirtualAccountEntry>,
    pub servers: Vec<ServerEntry>,
    /// Collaborator grants: who may use or manage which server.
    pub access: Vec<AccessEntry>,
    /// Live bearer tokens, by digest.
    pub tokens: Vec<TokenEntry>,
    /// Gateway-issued OAuth token ids revoked before their expiry (the OAuth server adds them).
    pub revoked_gateway_tokens: Vec<String>,
    /// Identity providers whose JWTs are accepted (`accept_jwt`), with their keys.
    pub identity_providers: Vec<idp::IdpEntry>,
    /// Keys that verify gateway-issued tokens and snapshots.
    pub gateway_keys: Jwks,
}

impl Snapshot {
    /// A snapshot with nothing in it yet: the start of tests and tools that fill in parts.
    pub fn empty(version: i64, kid: &str, issued_at: DateTime<Utc>) -> Self {
        Self {
            version,
            issued_at,
            kid: kid.to_owned(),
            tenants: vec![],
            users: vec![],
            members: vec![],
            teams: vec![],
            virtual_accounts: vec![],
            servers: vec![],
            access: vec![],
            tokens: vec![],
            revoked_gateway_tokens: vec![],
            identity_providers: vec![],
            gateway_keys: Jwks::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantEntry {
    pub id: i64,
    pub slug: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub id: i64,
    pub email: String,
    pub disabled: bool,
    /// The provider that vouches for this person (a tenant's, by tenant id and issuer), and
    /// the subject it knows them by: a tenant's provider's tokens map only to these people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_tenant: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_subject: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    pub tenant: i64,
    pub user: i64,
    pub role: TenantRole,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamEntry {
    pub id: i64,
    pub tenant: i64,
    pub slug: String,
    /// The built-in `everyone` team: every tenant member, implicitly.
    pub builtin: bool,
    pub members: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAccountEntry {
    pub id: i64,
    pub tenant: i64,
    pub name: String,
    /// `admin` lets the account manage its tenant.
    pub tenant_role: Option<TenantRole>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerEntry {
    pub id: i64,
    pub tenant: i64,
    pub slug: String,
    pub kind: ServerKind,
    pub url: Option<String>,
    pub transport: Option<Transport>,
    pub additional_headers: Value,
    pub tls_reject_unauthorized: bool,
    pub tls_ca_certificate: Option<String>,
    pub tool_settings: Vec<ToolSetting>,
    pub members: Vec<VirtualMemberEntry>,
    /// Outbound auth type and non-secret parameters.
    pub outbound_auth: OutboundAuth,
    /// The tool names the metrics count this server's calls by, when it opted in (any other
    /// name counts as `other`); empty when it did not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_tools: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VirtualMemberEntry {
    pub server: i64,
    /// `None` for every tool.
    pub enabled_tools: Option<Vec<String>>,
    /// The virtual server's own outbound auth for this member (type and non-secret
    /// parameters), in place of the member's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_auth: Option<OutboundAuth>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    pub server: i64,
    pub subject_kind: SubjectKind,
    pub subject: i64,
    pub role: ServerRole,
}

/// One live token. Tokens dominate large snapshots (100,000 of them is most of the bytes), so
/// each is one compact string, `<base64url digest>.<u|v><subject id>[.<expiry, unix seconds>]`,
/// rather than an object: a third of the size, and much faster to hash and parse.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenEntry {
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    pub subject_kind: TokenOwner,
    pub subject: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Whose token it is: a user's personal access token or a virtual account's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenOwner {
    User,
    VirtualAccount,
}

impl Serialize for TokenEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let kind = match self.subject_kind {
            TokenOwner::User => 'u',
            TokenOwner::VirtualAccount => 'v',
        };
        let mut out = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.digest);
        out.push_str(&format!(".{kind}{}", self.subject));
        if let Some(at) = self.expires_at {
            out.push_str(&format!(".{}", at.timestamp()));
        }
        serializer.serialize_str(&out)
    }
}

impl TokenEntry {
    fn parse(text: &str) -> Option<Self> {
        use base64::Engine;
        let mut parts = text.split('.');
        let mut digest = [0u8; 32];
        let encoded = parts.next()?;
        if encoded.len() != 43
            || base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(encoded, &mut digest).ok()? != 32
        {
            return None;
        }
        let subject = parts.next()?;
        let subject_kind = match subject.as_bytes().first()? {
            b'u' => TokenOwner::User,
            b'v' => TokenOwner::VirtualAccount,
            _ => return None,
        };
        let expires_at = match parts.next() {
            None => None,
            Some(secs) => Some(DateTime::from_timestamp(secs.parse().ok()?, 0)?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self { digest, subject_kind, subject: subject[1..].parse().ok()?, expires_at })
    }
}

impl<'de> Deserialize<'de> for TokenEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TokenEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a token entry: <digest>.<u|v><id>[.<expiry>]")
            }
            // Borrowed straight from the document when it can be: no copy per token.
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TokenEntry, E> {
                TokenEntry::parse(text).ok_or_else(|| E::custom(format!("invalid token entry {text:?}")))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Hex SHA-256 (as stored) to bytes; `None` if it is not 64 hex digits.
pub fn digest_from_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// JSON with object keys sorted at every level and no insignificant whitespace, so the same
/// snapshot always has the same bytes.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::canonical_json;

    #[test]
    fn token_entries_round_trip_through_their_compact_form() {
        use super::{TokenEntry, TokenOwner};
        let digest = [0xab; 32];
        let encoded = "q6ur".repeat(10) + "q6s";
        let entries = [
            TokenEntry { digest, subject_kind: TokenOwner::User, subject: 42, expires_at: None },
            TokenEntry {
                digest,
                subject_kind: TokenOwner::VirtualAccount,
                subject: 7,
                expires_at: chrono::DateTime::from_timestamp(1_900_000_000, 0),
            },
        ];
        let json = serde_json::to_value(&entries).unwrap();
        assert_eq!(json[0], format!("{encoded}.u42"));
        assert_eq!(json[1], format!("{encoded}.v7.1900000000"));
        assert_eq!(serde_json::from_value::<Vec<TokenEntry>>(json).unwrap(), entries);
        assert_eq!(super::digest_from_hex(&"ab".repeat(32)), Some(digest));
        assert_eq!(super::digest_from_hex("zz"), None);
        for bad in ["", "abc.u1", &format!("{encoded}.x1"), &format!("{encoded}.u"), &format!("{encoded}.u1.soon")] {
            assert!(serde_json::from_value::<TokenEntry>(json!(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"z": [3, {"y": 1, "x": 2}], "c": "é\"q"}});
        assert_eq!(canonical_json(&a), r#"{"a":{"c":"é\"q","z":[3,{"x":2,"y":1}]},"b":1}"#);
    }
}
