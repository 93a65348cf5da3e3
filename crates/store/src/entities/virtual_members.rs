use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "virtual_members")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub virtual_server_id: i64,
    pub member_server_id: i64,
    /// `["tool", …]`, or NULL for every tool.
    pub enabled_tools: Option<Json>,
    pub position: i32,
    /// Outbound auth used for this member instead of the member's own; NULL to use its own.
    pub auth_data: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
