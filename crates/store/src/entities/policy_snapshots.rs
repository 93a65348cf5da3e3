use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "policy_snapshots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i64,
    pub issued_at: ChronoDateTimeUtc,
    pub kid: String,
    pub size: i64,
    /// What changed since the previous snapshot.
    pub summary: Json,
    /// Compact JWS.
    pub document: String,
    /// The signed delta from the snapshot stored before this one (compact JWS), when the
    /// publisher had that one at hand.
    pub delta: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
