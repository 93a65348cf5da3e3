//! The closed vocabularies of the snapshot and the registry: server kinds, transports, roles
//! and subject kinds. Stored as text; a stored value that is none of them is an error, never a
//! silent default (a role misread as another is a hole).

use serde::{Deserialize, Serialize};

/// A stored value outside its vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {what}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

macro_rules! vocabulary {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The stored text back; anything else is an error.
            pub fn parse(value: &str) -> Result<Self, UnknownValue> {
                match value {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownValue { what: $what, value: other.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    Remote,
    Virtual,
}
vocabulary!(ServerKind, "server kind", { Remote => "remote", Virtual => "virtual" });

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// MCP Streamable HTTP (the current transport).
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport (protocol revision 2024-11-05).
    Sse,
}
vocabulary!(Transport, "transport", { StreamableHttp => "streamable_http", Sse => "sse" });

/// A collaborator's role on a server. Ordered: a manager can do everything a user can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServerRole {
    /// Reads the server and calls its tools.
    User,
    /// Also edits the server, its collaborators and anyone's Auth Override on it.
    Manager,
}
vocabulary!(ServerRole, "server role", { User => "user", Manager => "manager" });

/// Who a collaborator grant names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubjectKind {
    #[serde(rename = "user")]
    User,
    #[serde(rename = "team")]
    Team,
    #[serde(rename = "virtualaccount")]
    VirtualAccount,
}
vocabulary!(SubjectKind, "subject kind", { User => "user", Team => "team", VirtualAccount => "virtualaccount" });

/// Tenant membership role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TenantRole {
    Admin,
    Member,
}
vocabulary!(TenantRole, "tenant role", { Admin => "admin", Member => "member" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_round_trips_and_strangers_are_errors() {
        for kind in [SubjectKind::User, SubjectKind::Team, SubjectKind::VirtualAccount] {
            assert_eq!(SubjectKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(ServerRole::parse("manager"), Ok(ServerRole::Manager));
        assert_eq!(TenantRole::parse("Admin").unwrap_err().value, "Admin");
        assert!(ServerKind::parse("").is_err());
        assert!(Transport::parse("websocket").is_err());
        assert!(ServerRole::User < ServerRole::Manager);
    }
}
