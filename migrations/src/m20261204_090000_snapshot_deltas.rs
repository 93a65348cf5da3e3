use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PolicySnapshots {
    Table,
    Delta,
}

/// Each stored snapshot keeps the signed delta from the snapshot stored before it, so any
/// control plane can send a replica that is a few versions behind just the changes.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PolicySnapshots::Table)
                    .add_column(ColumnDef::new(PolicySnapshots::Delta).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(PolicySnapshots::Table).drop_column(PolicySnapshots::Delta).to_owned())
            .await
    }
}
