use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "servers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub slug: String,
    pub display_name: String,
    pub description: Option<String>,
    /// `remote` or `virtual`.
    pub kind: String,
    /// Upstream URL; remote servers only.
    pub url: Option<String>,
    /// `streamable_http` or `sse`; remote servers only.
    pub transport: Option<String>,
    /// `{"Header-Name": "value"}` sent to the upstream on every request.
    pub additional_headers: Json,
    pub tls_reject_unauthorized: bool,
    /// PEM bundle trusted in addition to the system roots.
    pub tls_ca_certificate: Option<String>,
    /// `[{"name", "description"?, "disabled"?, "annotations"?}]`
    pub tool_settings: Json,
    /// `["tag", …]`
    pub tags: Json,
    /// Tools seen by the last successful probe: `[{"name", "title"?, "description"?}]`.
    pub probed_tools: Option<Json>,
    pub probed_at: Option<ChronoDateTimeUtc>,
    pub probe_protocol_version: Option<String>,
    /// Outbound auth (`control::outbound::StoredAuth`), secrets sealed; NULL for none.
    pub auth_data: Option<Json>,
    /// Whether the proxy's metrics count this server's tool calls by tool name (the names the
    /// last probe saw and those with settings; any other name is counted as `other`).
    pub metrics_tool_names: bool,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
