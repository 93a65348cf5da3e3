use sea_orm_migration::prelude::*;

use crate::columns::id_col;

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
}

#[derive(DeriveIden)]
enum VirtualAccounts {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    TenantRole,
    ExpiresAt,
    RotateIntervalDays,
    RotateGraceDays,
    LastRotatedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Id,
    PublicId,
    Kind,
    UserId,
    VirtualAccountId,
    Name,
    Digest,
    Prefix,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
    PendingSecret,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VirtualAccounts::Table)
                    .col(id_col(VirtualAccounts::Id))
                    .col(ColumnDef::new(VirtualAccounts::TenantId).big_integer().not_null())
                    .col(ColumnDef::new(VirtualAccounts::Name).string_len(63).not_null())
                    .col(ColumnDef::new(VirtualAccounts::Description).string_len(2000).null())
                    // NULL, or `admin` for an account that manages the tenant through the API.
                    .col(ColumnDef::new(VirtualAccounts::TenantRole).string_len(16).null())
                    .col(ColumnDef::new(VirtualAccounts::ExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(VirtualAccounts::RotateIntervalDays).integer().null())
                    .col(ColumnDef::new(VirtualAccounts::RotateGraceDays).integer().null())
                    .col(ColumnDef::new(VirtualAccounts::LastRotatedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(VirtualAccounts::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(VirtualAccounts::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(VirtualAccounts::Table, VirtualAccounts::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_virtual_accounts_tenant_name")
                    .table(VirtualAccounts::Table)
                    .col(VirtualAccounts::TenantId)
                    .col(VirtualAccounts::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccessTokens::Table)
                    .col(id_col(AccessTokens::Id))
                    // The id the API shows: random, so it reveals nothing about volume.
                    .col(ColumnDef::new(AccessTokens::PublicId).string_len(36).not_null().unique_key())
                    // `pat` or `va`.
                    .col(ColumnDef::new(AccessTokens::Kind).string_len(8).not_null())
                    .col(ColumnDef::new(AccessTokens::UserId).big_integer().null())
                    .col(ColumnDef::new(AccessTokens::VirtualAccountId).big_integer().null())
                    .col(ColumnDef::new(AccessTokens::Name).string_len(200).not_null())
                    // SHA-256 of the whole token; the token itself is never stored.
                    .col(ColumnDef::new(AccessTokens::Digest).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(AccessTokens::Prefix).string_len(32).not_null())
                    .col(ColumnDef::new(AccessTokens::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AccessTokens::ExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(AccessTokens::LastUsedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(AccessTokens::RevokedAt).timestamp_with_time_zone().null())
                    // A token issued by scheduled rotation, sealed under the master key until its
                    // one-time pickup; NULL otherwise.
                    .col(ColumnDef::new(AccessTokens::PendingSecret).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccessTokens::Table, AccessTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccessTokens::Table, AccessTokens::VirtualAccountId)
                            .to(VirtualAccounts::Table, VirtualAccounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_access_tokens_user")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_access_tokens_virtual_account")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::VirtualAccountId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AccessTokens::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(VirtualAccounts::Table).to_owned()).await
    }
}
