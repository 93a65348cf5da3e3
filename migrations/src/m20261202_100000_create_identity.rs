use sea_orm_migration::prelude::*;

use crate::columns::{cascade, id_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    IdentityTenantId,
    IdentityIssuer,
    IdentitySubject,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Outcome,
}

#[derive(DeriveIden)]
enum IdentityProviders {
    Table,
    Id,
    TenantId,
    Slug,
    DisplayName,
    Issuer,
    ClientId,
    ClientSecret,
    Scopes,
    Audiences,
    UserClaim,
    AllowedDomains,
    GroupsClaim,
    GroupTeams,
    VirtualAccountClaims,
    DefaultRole,
    Login,
    AcceptJwt,
    SsoRequired,
    JwksUri,
    Jwks,
    JwksFetchedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IdpSessions {
    Table,
    Id,
    UserId,
    IdpId,
    RefreshToken,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    PublicId,
    TenantId,
    Email,
    Role,
    TokenDigest,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    AcceptedAt,
    AcceptedBy,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Refusal codes (`domain_not_allowed`, `jwt_unmapped_subject`, …) are audit outcomes
        // too. SQLite does not enforce lengths (nor can it alter a column); PostgreSQL does.
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditEvents::Table)
                        .modify_column(ColumnDef::new(AuditEvents::Outcome).string_len(64).not_null())
                        .to_owned(),
                )
                .await?;
        }
        // One column per statement: SQLite adds one at a time.
        for col in [
            ColumnDef::new(Users::IdentityTenantId).big_integer().null().to_owned(),
            ColumnDef::new(Users::IdentityIssuer).text().null().to_owned(),
            ColumnDef::new(Users::IdentitySubject).text().null().to_owned(),
        ] {
            manager.alter_table(Table::alter().table(Users::Table).add_column(col).to_owned()).await?;
        }
        // An organisation's OpenID provider: SSO sign-in (`login`) and bearer JWTs
        // (`accept_jwt`). `tenant_id` null = the platform's own provider.
        manager
            .create_table(
                Table::create()
                    .table(IdentityProviders::Table)
                    .col(id_col(IdentityProviders::Id))
                    .col(ColumnDef::new(IdentityProviders::TenantId).big_integer().null())
                    .col(ColumnDef::new(IdentityProviders::Slug).string_len(64).not_null())
                    .col(ColumnDef::new(IdentityProviders::DisplayName).string_len(200).not_null())
                    .col(ColumnDef::new(IdentityProviders::Issuer).text().not_null())
                    .col(ColumnDef::new(IdentityProviders::ClientId).text().not_null())
                    // Sealed, bound to the provider's row.
                    .col(ColumnDef::new(IdentityProviders::ClientSecret).text().null())
                    .col(ColumnDef::new(IdentityProviders::Scopes).json().not_null())
                    .col(ColumnDef::new(IdentityProviders::Audiences).json().not_null())
                    .col(ColumnDef::new(IdentityProviders::UserClaim).string_len(64).not_null())
                    .col(ColumnDef::new(IdentityProviders::AllowedDomains).json().not_null())
                    .col(ColumnDef::new(IdentityProviders::GroupsClaim).string_len(64).null())
                    .col(ColumnDef::new(IdentityProviders::GroupTeams).json().not_null())
                    .col(ColumnDef::new(IdentityProviders::VirtualAccountClaims).json().not_null())
                    .col(ColumnDef::new(IdentityProviders::DefaultRole).string_len(16).not_null())
                    .col(ColumnDef::new(IdentityProviders::Login).boolean().not_null())
                    .col(ColumnDef::new(IdentityProviders::AcceptJwt).boolean().not_null())
                    .col(ColumnDef::new(IdentityProviders::SsoRequired).boolean().not_null())
                    // Discovered from the issuer; the keys are cached for replicas and outages.
                    .col(ColumnDef::new(IdentityProviders::JwksUri).text().null())
                    .col(ColumnDef::new(IdentityProviders::Jwks).json().null())
                    .col(ColumnDef::new(IdentityProviders::JwksFetchedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(IdentityProviders::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(IdentityProviders::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(
                        IdentityProviders::Table,
                        IdentityProviders::TenantId,
                        Tenants::Table,
                        Tenants::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("identity_providers_tenant_slug")
                    .table(IdentityProviders::Table)
                    .col(IdentityProviders::TenantId)
                    .col(IdentityProviders::Slug)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // A person's session at the provider they signed in with (its refresh token, sealed):
        // asked again when their gateway sign-in is refreshed, so that a person the provider
        // no longer knows loses access.
        manager
            .create_table(
                Table::create()
                    .table(IdpSessions::Table)
                    .col(id_col(IdpSessions::Id))
                    .col(ColumnDef::new(IdpSessions::UserId).big_integer().not_null())
                    .col(ColumnDef::new(IdpSessions::IdpId).big_integer().not_null())
                    .col(ColumnDef::new(IdpSessions::RefreshToken).text().not_null())
                    .col(ColumnDef::new(IdpSessions::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(IdpSessions::Table, IdpSessions::UserId, Users::Table, Users::Id))
                    .foreign_key(&mut cascade(
                        IdpSessions::Table,
                        IdpSessions::IdpId,
                        IdentityProviders::Table,
                        IdentityProviders::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idp_sessions_user_idp")
                    .table(IdpSessions::Table)
                    .col(IdpSessions::UserId)
                    .col(IdpSessions::IdpId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Invitations to a tenant by email: a single-use link, its secret kept as a digest.
        manager
            .create_table(
                Table::create()
                    .table(Invitations::Table)
                    .col(id_col(Invitations::Id))
                    .col(ColumnDef::new(Invitations::PublicId).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(Invitations::TenantId).big_integer().not_null())
                    .col(ColumnDef::new(Invitations::Email).string_len(320).not_null())
                    .col(ColumnDef::new(Invitations::Role).string_len(16).not_null())
                    .col(ColumnDef::new(Invitations::TokenDigest).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(Invitations::CreatedBy).text().not_null())
                    .col(ColumnDef::new(Invitations::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Invitations::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Invitations::AcceptedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Invitations::AcceptedBy).big_integer().null())
                    .col(ColumnDef::new(Invitations::RevokedAt).timestamp_with_time_zone().null())
                    .foreign_key(&mut cascade(Invitations::Table, Invitations::TenantId, Tenants::Table, Tenants::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Invitations::Table, Invitations::AcceptedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Invitations::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(IdpSessions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(IdentityProviders::Table).to_owned()).await?;
        for col in [Users::IdentityTenantId, Users::IdentityIssuer, Users::IdentitySubject] {
            manager.alter_table(Table::alter().table(Users::Table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}
