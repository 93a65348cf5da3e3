use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub display_name: String,
    /// argon2id PHC string; `None` for users who sign in only through an identity provider.
    pub password_hash: Option<String>,
    pub is_platform_admin: bool,
    pub disabled: bool,
    /// The identity provider that vouches for this person (`iss`, and the tenant whose
    /// provider it is; `None` for the platform's). A tenant's provider signs in only the
    /// people it vouches for, so no tenant can claim another tenant's or the platform's users.
    pub identity_tenant_id: Option<i64>,
    pub identity_issuer: Option<String>,
    /// The provider's `sub` for this person: a reassigned email does not move the account.
    pub identity_subject: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
