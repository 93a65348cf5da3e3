use sea_orm::entity::prelude::*;

/// A subject's own values for a server's per-user credential placeholders.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_overrides")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub server_id: i64,
    /// `user` or `virtualaccount`.
    pub subject_kind: String,
    pub subject_id: i64,
    /// `{"PLACEHOLDER": "value"}` as JSON, sealed under the master key.
    pub values: String,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
