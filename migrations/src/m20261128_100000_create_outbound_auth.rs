use sea_orm_migration::prelude::*;

use crate::columns::{cascade, id_col};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Servers {
    Table,
    Id,
    AuthData,
}

#[derive(DeriveIden)]
enum VirtualMembers {
    Table,
    AuthData,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum AuthOverrides {
    Table,
    Id,
    ServerId,
    SubjectKind,
    SubjectId,
    Values,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UpstreamGrants {
    Table,
    Id,
    ServerId,
    UserId,
    AccessToken,
    RefreshToken,
    ExpiresAt,
    Scopes,
    Status,
    Reason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UpstreamAuthStates {
    Table,
    Id,
    StateDigest,
    UserId,
    ServerId,
    Verifier,
    ReturnTo,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum UpstreamClients {
    Table,
    Id,
    ServerId,
    Issuer,
    ClientId,
    ClientSecret,
    Endpoints,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Outbound auth of a server, with its secrets sealed under the master key.
        manager
            .alter_table(
                Table::alter()
                    .table(Servers::Table)
                    .add_column(ColumnDef::new(Servers::AuthData).json().null())
                    .to_owned(),
            )
            .await?;
        // A virtual server may call one member with other credentials than the member's own.
        manager
            .alter_table(
                Table::alter()
                    .table(VirtualMembers::Table)
                    .add_column(ColumnDef::new(VirtualMembers::AuthData).json().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthOverrides::Table)
                    .col(id_col(AuthOverrides::Id))
                    .col(ColumnDef::new(AuthOverrides::ServerId).big_integer().not_null())
                    // `user` or `virtualaccount`.
                    .col(ColumnDef::new(AuthOverrides::SubjectKind).string_len(16).not_null())
                    .col(ColumnDef::new(AuthOverrides::SubjectId).big_integer().not_null())
                    // `{"PLACEHOLDER": "value"}`, sealed as a whole.
                    .col(ColumnDef::new(AuthOverrides::Values).text().not_null())
                    .col(ColumnDef::new(AuthOverrides::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AuthOverrides::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(
                        AuthOverrides::Table,
                        AuthOverrides::ServerId,
                        Servers::Table,
                        Servers::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_auth_overrides_subject")
                    .table(AuthOverrides::Table)
                    .col(AuthOverrides::ServerId)
                    .col(AuthOverrides::SubjectKind)
                    .col(AuthOverrides::SubjectId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UpstreamGrants::Table)
                    .col(id_col(UpstreamGrants::Id))
                    .col(ColumnDef::new(UpstreamGrants::ServerId).big_integer().not_null())
                    .col(ColumnDef::new(UpstreamGrants::UserId).big_integer().not_null())
                    // Sealed; empty once a grant is unusable.
                    .col(ColumnDef::new(UpstreamGrants::AccessToken).text().null())
                    .col(ColumnDef::new(UpstreamGrants::RefreshToken).text().null())
                    .col(ColumnDef::new(UpstreamGrants::ExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(UpstreamGrants::Scopes).text().null())
                    // `authenticated` or `unauthenticated`.
                    .col(ColumnDef::new(UpstreamGrants::Status).string_len(32).not_null())
                    .col(ColumnDef::new(UpstreamGrants::Reason).string_len(32).null())
                    .col(ColumnDef::new(UpstreamGrants::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(UpstreamGrants::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(
                        UpstreamGrants::Table,
                        UpstreamGrants::ServerId,
                        Servers::Table,
                        Servers::Id,
                    ))
                    .foreign_key(&mut cascade(UpstreamGrants::Table, UpstreamGrants::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_upstream_grants_user")
                    .table(UpstreamGrants::Table)
                    .col(UpstreamGrants::ServerId)
                    .col(UpstreamGrants::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Authorizations in flight: single use, short-lived, bound to the user who started them.
        manager
            .create_table(
                Table::create()
                    .table(UpstreamAuthStates::Table)
                    .col(id_col(UpstreamAuthStates::Id))
                    .col(ColumnDef::new(UpstreamAuthStates::StateDigest).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(UpstreamAuthStates::UserId).big_integer().not_null())
                    .col(ColumnDef::new(UpstreamAuthStates::ServerId).big_integer().not_null())
                    // PKCE verifier, sealed.
                    .col(ColumnDef::new(UpstreamAuthStates::Verifier).text().not_null())
                    .col(ColumnDef::new(UpstreamAuthStates::ReturnTo).text().null())
                    .col(ColumnDef::new(UpstreamAuthStates::ExpiresAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(
                        UpstreamAuthStates::Table,
                        UpstreamAuthStates::ServerId,
                        Servers::Table,
                        Servers::Id,
                    ))
                    .foreign_key(&mut cascade(
                        UpstreamAuthStates::Table,
                        UpstreamAuthStates::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        // The gateway's own registration at a server's authorization server (RFC 7591), and
        // the endpoints discovered for it.
        manager
            .create_table(
                Table::create()
                    .table(UpstreamClients::Table)
                    .col(id_col(UpstreamClients::Id))
                    .col(ColumnDef::new(UpstreamClients::ServerId).big_integer().not_null().unique_key())
                    .col(ColumnDef::new(UpstreamClients::Issuer).text().null())
                    .col(ColumnDef::new(UpstreamClients::ClientId).text().not_null())
                    .col(ColumnDef::new(UpstreamClients::ClientSecret).text().null())
                    .col(ColumnDef::new(UpstreamClients::Endpoints).json().not_null())
                    .col(ColumnDef::new(UpstreamClients::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(&mut cascade(
                        UpstreamClients::Table,
                        UpstreamClients::ServerId,
                        Servers::Table,
                        Servers::Id,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UpstreamClients::Table.into_iden(),
            UpstreamAuthStates::Table.into_iden(),
            UpstreamGrants::Table.into_iden(),
            AuthOverrides::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager
            .alter_table(Table::alter().table(VirtualMembers::Table).drop_column(VirtualMembers::AuthData).to_owned())
            .await?;
        manager.alter_table(Table::alter().table(Servers::Table).drop_column(Servers::AuthData).to_owned()).await
    }
}
