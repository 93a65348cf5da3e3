use sea_orm::entity::prelude::*;

/// The gateway as an OAuth client of one server's authorization server: the endpoints found
/// by discovery and, when it registered itself (RFC 7591), its client credentials there.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "upstream_clients")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub server_id: i64,
    pub issuer: Option<String>,
    pub client_id: String,
    /// Sealed.
    pub client_secret: Option<String>,
    /// `{"authorization_endpoint", "token_endpoint", "revocation_endpoint"?, "resource"?}`
    pub endpoints: Json,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
