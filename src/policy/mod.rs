//! The policy snapshot: the contract between the control plane and the proxy (DESIGN.md §5).
//! One immutable document per publication, serialized canonically, signed with Ed25519 as a
//! compact JWS. It holds what the proxy needs to decide, and no secret in clear: tokens appear
//! as SHA-256 digests, upstream credentials not at all.

pub mod compile;
pub mod publish;
pub mod sign;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::control::servers::ToolSetting;
pub use sign::{Jwk, Jwks};

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
    /// Tenant identity providers (the IdP issue adds them).
    pub identity_providers: Vec<Value>,
    /// Keys that verify gateway-issued tokens and snapshots.
    pub gateway_keys: Jwks,
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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    pub tenant: i64,
    pub user: i64,
    /// `admin` or `member`.
    pub role: String,
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
    pub tenant_role: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerEntry {
    pub id: i64,
    pub tenant: i64,
    pub slug: String,
    /// `remote` or `virtual`.
    pub kind: String,
    pub url: Option<String>,
    pub transport: Option<String>,
    pub additional_headers: Value,
    pub tls_reject_unauthorized: bool,
    pub tls_ca_certificate: Option<String>,
    pub tool_settings: Vec<ToolSetting>,
    pub members: Vec<VirtualMemberEntry>,
    /// Outbound auth type and non-secret parameters (`{"type": "none"}` until outbound auth).
    pub outbound_auth: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualMemberEntry {
    pub server: i64,
    /// `None` for every tool.
    pub enabled_tools: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    pub server: i64,
    /// `user`, `team` or `virtualaccount`.
    pub subject_kind: String,
    pub subject: i64,
    /// `manager` or `user`.
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Hex SHA-256 of the token.
    pub digest: String,
    /// `user` or `virtualaccount`.
    pub subject_kind: String,
    pub subject: i64,
    pub expires_at: Option<DateTime<Utc>>,
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
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"z": [3, {"y": 1, "x": 2}], "c": "é\"q"}});
        assert_eq!(canonical_json(&a), r#"{"a":{"c":"é\"q","z":[3,{"x":2,"y":1}]},"b":1}"#);
    }
}
