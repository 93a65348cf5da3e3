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
enum Servers {
    Table,
    Id,
    TenantId,
    Slug,
    DisplayName,
    Description,
    Kind,
    Url,
    Transport,
    AdditionalHeaders,
    TlsRejectUnauthorized,
    TlsCaCertificate,
    ToolSettings,
    Tags,
    ProbedTools,
    ProbedAt,
    ProbeProtocolVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum VirtualMembers {
    Table,
    Id,
    VirtualServerId,
    MemberServerId,
    EnabledTools,
    Position,
}

#[derive(DeriveIden)]
enum Collaborators {
    Table,
    Id,
    ServerId,
    SubjectKind,
    SubjectId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    TenantId,
    TenantSlug,
    Actor,
    Action,
    Target,
    Outcome,
    RequestId,
    Details,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Servers::Table)
                    .col(id_col(Servers::Id))
                    .col(ColumnDef::new(Servers::TenantId).big_integer().not_null())
                    .col(ColumnDef::new(Servers::Slug).string_len(63).not_null())
                    .col(ColumnDef::new(Servers::DisplayName).string_len(200).not_null())
                    .col(ColumnDef::new(Servers::Description).string_len(2000).null())
                    .col(ColumnDef::new(Servers::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(Servers::Url).string_len(2048).null())
                    .col(ColumnDef::new(Servers::Transport).string_len(32).null())
                    .col(ColumnDef::new(Servers::AdditionalHeaders).json().not_null())
                    .col(ColumnDef::new(Servers::TlsRejectUnauthorized).boolean().not_null().default(true))
                    .col(ColumnDef::new(Servers::TlsCaCertificate).text().null())
                    .col(ColumnDef::new(Servers::ToolSettings).json().not_null())
                    .col(ColumnDef::new(Servers::Tags).json().not_null())
                    .col(ColumnDef::new(Servers::ProbedTools).json().null())
                    .col(ColumnDef::new(Servers::ProbedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Servers::ProbeProtocolVersion).string_len(32).null())
                    .col(ColumnDef::new(Servers::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Servers::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Servers::Table, Servers::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_servers_tenant_slug")
                    .table(Servers::Table)
                    .col(Servers::TenantId)
                    .col(Servers::Slug)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VirtualMembers::Table)
                    .col(id_col(VirtualMembers::Id))
                    .col(ColumnDef::new(VirtualMembers::VirtualServerId).big_integer().not_null())
                    .col(ColumnDef::new(VirtualMembers::MemberServerId).big_integer().not_null())
                    // NULL means every tool of the member.
                    .col(ColumnDef::new(VirtualMembers::EnabledTools).json().null())
                    .col(ColumnDef::new(VirtualMembers::Position).integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(VirtualMembers::Table, VirtualMembers::VirtualServerId)
                            .to(Servers::Table, Servers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    // A member in use cannot disappear underneath a virtual server.
                    .foreign_key(
                        ForeignKey::create()
                            .from(VirtualMembers::Table, VirtualMembers::MemberServerId)
                            .to(Servers::Table, Servers::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_virtual_members")
                    .table(VirtualMembers::Table)
                    .col(VirtualMembers::VirtualServerId)
                    .col(VirtualMembers::MemberServerId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_virtual_members_member")
                    .table(VirtualMembers::Table)
                    .col(VirtualMembers::MemberServerId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Collaborators::Table)
                    .col(id_col(Collaborators::Id))
                    .col(ColumnDef::new(Collaborators::ServerId).big_integer().not_null())
                    .col(ColumnDef::new(Collaborators::SubjectKind).string_len(32).not_null())
                    .col(ColumnDef::new(Collaborators::SubjectId).big_integer().not_null())
                    .col(ColumnDef::new(Collaborators::Role).string_len(16).not_null())
                    .col(ColumnDef::new(Collaborators::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Collaborators::Table, Collaborators::ServerId)
                            .to(Servers::Table, Servers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_collaborators_subject")
                    .table(Collaborators::Table)
                    .col(Collaborators::ServerId)
                    .col(Collaborators::SubjectKind)
                    .col(Collaborators::SubjectId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_collaborators_subject")
                    .table(Collaborators::Table)
                    .col(Collaborators::SubjectKind)
                    .col(Collaborators::SubjectId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(id_col(AuditEvents::Id))
                    .col(ColumnDef::new(AuditEvents::At).timestamp_with_time_zone().not_null())
                    // No foreign key: the trail outlives the tenant it describes.
                    .col(ColumnDef::new(AuditEvents::TenantId).big_integer().null())
                    .col(ColumnDef::new(AuditEvents::TenantSlug).string_len(63).null())
                    .col(ColumnDef::new(AuditEvents::Actor).string_len(400).not_null())
                    .col(ColumnDef::new(AuditEvents::Action).string_len(64).not_null())
                    .col(ColumnDef::new(AuditEvents::Target).string_len(400).not_null())
                    .col(ColumnDef::new(AuditEvents::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(AuditEvents::RequestId).string_len(64).null())
                    .col(ColumnDef::new(AuditEvents::Details).json().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_tenant")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditEvents::Table.into_iden(),
            Collaborators::Table.into_iden(),
            VirtualMembers::Table.into_iden(),
            Servers::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
