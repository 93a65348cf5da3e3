use sea_orm::entity::prelude::*;

/// A per-user authorization in flight, found again by the digest of its `state`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "upstream_auth_states")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// SHA-256 (hex) of the `state` sent to the provider.
    pub state_digest: String,
    pub user_id: i64,
    pub server_id: i64,
    /// PKCE code verifier, sealed.
    pub verifier: String,
    /// Where the browser goes once the grant is stored.
    pub return_to: Option<String>,
    pub expires_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
