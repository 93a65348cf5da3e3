use sea_orm::entity::prelude::*;

/// One sign-in of a user through a client for one MCP URL: the family of its refresh tokens.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_grants")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The `grant_id` claim of its access tokens.
    pub public_id: String,
    pub user_id: i64,
    /// `oauth_clients.id`.
    pub client_id: i64,
    pub resource: String,
    pub scope: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    /// Last time the client got tokens with it.
    pub last_used_at: ChronoDateTimeUtc,
    /// Absolute end of the sign-in.
    pub expires_at: ChronoDateTimeUtc,
    /// Latest expiry of an access token issued from it.
    pub access_expires_at: Option<ChronoDateTimeUtc>,
    pub revoked_at: Option<ChronoDateTimeUtc>,
    /// `user`, `client`, `refresh_token_reuse`, `code_reuse`.
    pub revoked_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
