use sea_orm_migration::prelude::*;

use crate::columns::{cascade, id_col};

use crate::m20261127_170000_create_users_and_sessions::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Slug,
    DisplayName,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TenantMembers {
    Table,
    Id,
    TenantId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
    TenantId,
    Slug,
    DisplayName,
    Description,
    Builtin,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TeamMembers {
    Table,
    Id,
    TeamId,
    UserId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(id_col(Tenants::Id))
                    .col(ColumnDef::new(Tenants::Slug).string_len(63).not_null().unique_key())
                    .col(ColumnDef::new(Tenants::DisplayName).string_len(200).not_null())
                    .col(ColumnDef::new(Tenants::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Tenants::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TenantMembers::Table)
                    .col(id_col(TenantMembers::Id))
                    .col(ColumnDef::new(TenantMembers::TenantId).big_integer().not_null())
                    .col(ColumnDef::new(TenantMembers::UserId).big_integer().not_null())
                    .col(ColumnDef::new(TenantMembers::Role).string_len(16).not_null())
                    .col(ColumnDef::new(TenantMembers::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(
                        TenantMembers::Table,
                        TenantMembers::TenantId,
                        Tenants::Table,
                        Tenants::Id,
                    ))
                    .foreign_key(&mut cascade(TenantMembers::Table, TenantMembers::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_tenant_members_tenant_user")
                    .table(TenantMembers::Table)
                    .col(TenantMembers::TenantId)
                    .col(TenantMembers::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tenant_members_user")
                    .table(TenantMembers::Table)
                    .col(TenantMembers::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Teams::Table)
                    .col(id_col(Teams::Id))
                    .col(ColumnDef::new(Teams::TenantId).big_integer().not_null())
                    .col(ColumnDef::new(Teams::Slug).string_len(63).not_null())
                    .col(ColumnDef::new(Teams::DisplayName).string_len(200).not_null())
                    .col(ColumnDef::new(Teams::Description).string_len(2000).null())
                    .col(ColumnDef::new(Teams::Builtin).boolean().not_null().default(false))
                    .col(ColumnDef::new(Teams::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(Teams::Table, Teams::TenantId, Tenants::Table, Tenants::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_teams_tenant_slug")
                    .table(Teams::Table)
                    .col(Teams::TenantId)
                    .col(Teams::Slug)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TeamMembers::Table)
                    .col(id_col(TeamMembers::Id))
                    .col(ColumnDef::new(TeamMembers::TeamId).big_integer().not_null())
                    .col(ColumnDef::new(TeamMembers::UserId).big_integer().not_null())
                    .col(ColumnDef::new(TeamMembers::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(TeamMembers::Table, TeamMembers::TeamId, Teams::Table, Teams::Id))
                    .foreign_key(&mut cascade(TeamMembers::Table, TeamMembers::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_team_members_team_user")
                    .table(TeamMembers::Table)
                    .col(TeamMembers::TeamId)
                    .col(TeamMembers::UserId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TeamMembers::Table.into_iden(),
            Teams::Table.into_iden(),
            TenantMembers::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
