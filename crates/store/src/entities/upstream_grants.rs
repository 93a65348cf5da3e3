use sea_orm::entity::prelude::*;

/// The per-user token vault: one user's OAuth grant at one server's authorization server.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "upstream_grants")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub server_id: i64,
    pub user_id: i64,
    /// Sealed; NULL once the grant is unusable.
    pub access_token: Option<String>,
    /// Sealed.
    pub refresh_token: Option<String>,
    pub expires_at: Option<ChronoDateTimeUtc>,
    pub scopes: Option<String>,
    /// `authenticated` or `unauthenticated`.
    pub status: String,
    /// Why a grant is unauthenticated: `invalid_grant`, `refresh_failed`, `upstream_error`, `network_error`.
    pub reason: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
