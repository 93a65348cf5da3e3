use sea_orm::entity::prelude::*;

/// A client of the gateway's authorization server.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_clients")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Issued at registration, or the metadata document's URL.
    pub client_id: String,
    /// `dynamic` or `metadata_document`.
    pub kind: String,
    pub client_name: Option<String>,
    pub redirect_uris: Json,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: String,
    /// SHA-256 (hex) of a confidential client's secret.
    pub secret_digest: Option<String>,
    /// The registered (or fetched) metadata, as accepted.
    pub metadata: Json,
    pub created_at: ChronoDateTimeUtc,
    /// When a metadata document was last fetched.
    pub fetched_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
