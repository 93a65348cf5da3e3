use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "identity_providers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `None`: the platform's provider (its admins, the console's sign-in).
    pub tenant_id: Option<i64>,
    pub slug: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    /// Sealed at `Place::idp_secret`.
    pub client_secret: Option<String>,
    /// `["openid", "email", …]`
    pub scopes: Json,
    /// Audiences accepted on inbound JWTs.
    pub audiences: Json,
    pub user_claim: String,
    pub allowed_domains: Json,
    pub groups_claim: Option<String>,
    /// `{"<claim value>": "<team slug>"}`
    pub group_teams: Json,
    /// `{"<claim>": "<value>"}` that make a token a virtual account's, by name in `va_claim`.
    pub virtual_account_claims: Json,
    pub default_role: String,
    pub login: bool,
    pub accept_jwt: bool,
    pub sso_required: bool,
    pub jwks_uri: Option<String>,
    pub jwks: Option<Json>,
    pub jwks_fetched_at: Option<ChronoDateTimeUtc>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
