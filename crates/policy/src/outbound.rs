//! What the snapshot says about a server's outbound auth: its kind and non-secret parameters,
//! enough for the proxy to know whether a call needs a credential, whose, and whether it can be
//! refreshed. Secrets never appear here.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuthLevel {
    /// One credential for every caller.
    Global,
    /// Each caller supplies their own values for the placeholders.
    PerUser,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// A machine token for the gateway itself, shared by all callers.
    ClientCredentials,
    /// Each user authorizes the gateway once at the provider.
    AuthorizationCode,
}

/// A server's (or a virtual server's member override's) outbound auth, as the proxy sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundAuth {
    #[default]
    None,
    Header {
        auth_level: AuthLevel,
        /// The placeholders each caller fills (per-user headers).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        placeholders: Vec<String>,
    },
    Oauth2 {
        grant_type: Option<GrantType>,
    },
    Passthrough,
}

impl OutboundAuth {
    /// The `type` of the wire form: `none`, `header`, `oauth2` or `passthrough`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Header { .. } => "header",
            Self::Oauth2 { .. } => "oauth2",
            Self::Passthrough => "passthrough",
        }
    }

    /// Requests carry a credential the resolver supplies.
    pub fn needed(&self) -> bool {
        matches!(self, Self::Header { .. } | Self::Oauth2 { .. })
    }

    /// OAuth credentials can be refreshed; keys cannot.
    pub fn refreshable(&self) -> bool {
        matches!(self, Self::Oauth2 { .. })
    }

    /// Each user authorizes this server at its provider.
    pub fn per_user_oauth(&self) -> bool {
        matches!(self, Self::Oauth2 { grant_type: Some(GrantType::AuthorizationCode) })
    }

    /// The caller supplies their own credential (a key or an authorization).
    pub fn per_user(&self) -> bool {
        matches!(self, Self::Header { auth_level: AuthLevel::PerUser, .. }) || self.per_user_oauth()
    }

    pub fn passthrough(&self) -> bool {
        matches!(self, Self::Passthrough)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_wire_form_is_the_snapshots() {
        let cases = [
            (OutboundAuth::None, json!({"type": "none"})),
            (
                OutboundAuth::Header { auth_level: AuthLevel::Global, placeholders: vec![] },
                json!({"type": "header", "auth_level": "global"}),
            ),
            (
                OutboundAuth::Header { auth_level: AuthLevel::PerUser, placeholders: vec!["API_KEY".into()] },
                json!({"type": "header", "auth_level": "per_user", "placeholders": ["API_KEY"]}),
            ),
            (
                OutboundAuth::Oauth2 { grant_type: Some(GrantType::AuthorizationCode) },
                json!({"type": "oauth2", "grant_type": "authorization_code"}),
            ),
            (OutboundAuth::Passthrough, json!({"type": "passthrough"})),
        ];
        for (auth, wire) in cases {
            assert_eq!(serde_json::to_value(&auth).unwrap(), wire);
            assert_eq!(serde_json::from_value::<OutboundAuth>(wire).unwrap(), auth);
        }
        assert!(serde_json::from_value::<OutboundAuth>(json!({"type": "kerberos"})).is_err());
        assert!(OutboundAuth::Oauth2 { grant_type: Some(GrantType::AuthorizationCode) }.per_user());
        assert!(!OutboundAuth::Oauth2 { grant_type: Some(GrantType::ClientCredentials) }.per_user());
    }
}
