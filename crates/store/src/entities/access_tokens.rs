use sea_orm::entity::prelude::*;

/// Personal access tokens (`kind = pat`, owned by a user) and virtual-account tokens
/// (`kind = va`), which share format, storage and verification.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The id shown by the API (a UUID).
    #[sea_orm(unique)]
    pub public_id: String,
    /// `pat` or `va`.
    pub kind: String,
    pub user_id: Option<i64>,
    pub virtual_account_id: Option<i64>,
    pub name: String,
    pub digest: String,
    pub prefix: String,
    pub created_at: ChronoDateTimeUtc,
    pub expires_at: Option<ChronoDateTimeUtc>,
    pub last_used_at: Option<ChronoDateTimeUtc>,
    pub revoked_at: Option<ChronoDateTimeUtc>,
    /// Sealed token awaiting its one-time pickup after a scheduled rotation.
    pub pending_secret: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
