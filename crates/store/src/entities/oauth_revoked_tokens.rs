use sea_orm::entity::prelude::*;

/// An access token revoked before its expiry, by `jti`; kept until it would have expired.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_revoked_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub jti: String,
    pub expires_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
