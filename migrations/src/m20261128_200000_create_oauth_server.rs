use sea_orm_migration::prelude::*;

use crate::columns::{cascade, id_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    Id,
    ClientId,
    Kind,
    ClientName,
    RedirectUris,
    TokenEndpointAuthMethod,
    SecretDigest,
    Metadata,
    CreatedAt,
    FetchedAt,
}

#[derive(DeriveIden)]
enum OauthConsents {
    Table,
    Id,
    UserId,
    ClientId,
    Resource,
    Scope,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OauthCodes {
    Table,
    Id,
    CodeDigest,
    ClientId,
    UserId,
    RedirectUri,
    CodeChallenge,
    Resource,
    Scope,
    GrantId,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum OauthGrants {
    Table,
    Id,
    PublicId,
    UserId,
    ClientId,
    Resource,
    Scope,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    AccessExpiresAt,
    RevokedAt,
    RevokedReason,
}

#[derive(DeriveIden)]
enum OauthRefreshTokens {
    Table,
    Id,
    GrantId,
    Digest,
    CreatedAt,
    RotatedAt,
}

#[derive(DeriveIden)]
enum OauthRevokedTokens {
    Table,
    Id,
    Jti,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Clients of the gateway's authorization server: registered (RFC 7591) or known by
        // their metadata document's URL (fetched, cached here).
        manager
            .create_table(
                Table::create()
                    .table(OauthClients::Table)
                    .col(id_col(OauthClients::Id))
                    .col(ColumnDef::new(OauthClients::ClientId).string_len(2048).not_null().unique_key())
                    // `dynamic` or `metadata_document`.
                    .col(ColumnDef::new(OauthClients::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(OauthClients::ClientName).text().null())
                    .col(ColumnDef::new(OauthClients::RedirectUris).json().not_null())
                    .col(ColumnDef::new(OauthClients::TokenEndpointAuthMethod).string_len(32).not_null())
                    // SHA-256 (hex) of a confidential client's secret.
                    .col(ColumnDef::new(OauthClients::SecretDigest).string_len(64).null())
                    .col(ColumnDef::new(OauthClients::Metadata).json().not_null())
                    .col(ColumnDef::new(OauthClients::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(OauthClients::FetchedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthConsents::Table)
                    .col(id_col(OauthConsents::Id))
                    .col(ColumnDef::new(OauthConsents::UserId).big_integer().not_null())
                    .col(ColumnDef::new(OauthConsents::ClientId).big_integer().not_null())
                    .col(ColumnDef::new(OauthConsents::Resource).text().not_null())
                    .col(ColumnDef::new(OauthConsents::Scope).text().null())
                    .col(ColumnDef::new(OauthConsents::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(OauthConsents::Table, OauthConsents::UserId, Users::Table, Users::Id))
                    .foreign_key(&mut cascade(
                        OauthConsents::Table,
                        OauthConsents::ClientId,
                        OauthClients::Table,
                        OauthClients::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        // Sign-ins: one per approval, the family every refresh token of it belongs to.
        manager
            .create_table(
                Table::create()
                    .table(OauthGrants::Table)
                    .col(id_col(OauthGrants::Id))
                    .col(ColumnDef::new(OauthGrants::PublicId).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(OauthGrants::UserId).big_integer().not_null())
                    .col(ColumnDef::new(OauthGrants::ClientId).big_integer().not_null())
                    .col(ColumnDef::new(OauthGrants::Resource).text().not_null())
                    .col(ColumnDef::new(OauthGrants::Scope).text().null())
                    .col(ColumnDef::new(OauthGrants::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(OauthGrants::LastUsedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(OauthGrants::ExpiresAt).timestamp_with_time_zone().not_null())
                    // The latest expiry of an access token issued from it: how long a revocation
                    // must travel in snapshots.
                    .col(ColumnDef::new(OauthGrants::AccessExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(OauthGrants::RevokedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(OauthGrants::RevokedReason).string_len(32).null())
                    .foreign_key(&mut cascade(OauthGrants::Table, OauthGrants::UserId, Users::Table, Users::Id))
                    .foreign_key(&mut cascade(
                        OauthGrants::Table,
                        OauthGrants::ClientId,
                        OauthClients::Table,
                        OauthClients::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthCodes::Table)
                    .col(id_col(OauthCodes::Id))
                    .col(ColumnDef::new(OauthCodes::CodeDigest).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(OauthCodes::ClientId).big_integer().not_null())
                    .col(ColumnDef::new(OauthCodes::UserId).big_integer().not_null())
                    .col(ColumnDef::new(OauthCodes::RedirectUri).text().not_null())
                    .col(ColumnDef::new(OauthCodes::CodeChallenge).string_len(128).not_null())
                    .col(ColumnDef::new(OauthCodes::Resource).text().not_null())
                    .col(ColumnDef::new(OauthCodes::Scope).text().null())
                    // The sign-in the code was exchanged for, revoked if the code comes back.
                    .col(ColumnDef::new(OauthCodes::GrantId).big_integer().null())
                    .col(ColumnDef::new(OauthCodes::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(OauthCodes::UsedAt).timestamp_with_time_zone().null())
                    .foreign_key(&mut cascade(OauthCodes::Table, OauthCodes::UserId, Users::Table, Users::Id))
                    .foreign_key(&mut cascade(
                        OauthCodes::Table,
                        OauthCodes::ClientId,
                        OauthClients::Table,
                        OauthClients::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthRefreshTokens::Table)
                    .col(id_col(OauthRefreshTokens::Id))
                    .col(ColumnDef::new(OauthRefreshTokens::GrantId).big_integer().not_null())
                    .col(ColumnDef::new(OauthRefreshTokens::Digest).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(OauthRefreshTokens::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(OauthRefreshTokens::RotatedAt).timestamp_with_time_zone().null())
                    .foreign_key(&mut cascade(
                        OauthRefreshTokens::Table,
                        OauthRefreshTokens::GrantId,
                        OauthGrants::Table,
                        OauthGrants::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        // Single access tokens revoked before their expiry (RFC 7009).
        manager
            .create_table(
                Table::create()
                    .table(OauthRevokedTokens::Table)
                    .col(id_col(OauthRevokedTokens::Id))
                    .col(ColumnDef::new(OauthRevokedTokens::Jti).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(OauthRevokedTokens::ExpiresAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OauthRevokedTokens::Table.into_iden(),
            OauthRefreshTokens::Table.into_iden(),
            OauthCodes::Table.into_iden(),
            OauthGrants::Table.into_iden(),
            OauthConsents::Table.into_iden(),
            OauthClients::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
