use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: ChronoDateTimeUtc,
    pub tenant_id: Option<i64>,
    pub tenant_slug: Option<String>,
    /// Who acted, e.g. `user:ann@example.com`.
    pub actor: String,
    /// What was done, e.g. `server.create`.
    pub action: String,
    /// What it was done to, e.g. `server:github`.
    pub target: String,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    pub request_id: Option<String>,
    pub details: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
