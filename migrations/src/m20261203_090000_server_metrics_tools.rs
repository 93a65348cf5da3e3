use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Servers {
    Table,
    MetricsToolNames,
}

/// A server's opt-in to per-tool metrics: off, the metrics name no tools (their label sets
/// stay bounded whatever clients send).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Servers::Table)
                    .add_column(ColumnDef::new(Servers::MetricsToolNames).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Servers::Table).drop_column(Servers::MetricsToolNames).to_owned())
            .await
    }
}
