use sea_orm_migration::prelude::*;

use crate::columns::id_col;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PolicyState {
    Table,
    Id,
    Version,
}

#[derive(DeriveIden)]
enum PolicySnapshots {
    Table,
    Version,
    IssuedAt,
    Kid,
    Size,
    Summary,
    Document,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Id,
    Kid,
    PrivateKey,
    PublicKey,
    State,
    CreatedAt,
    RetiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row: the version of the policy-relevant state, bumped in the transaction of
        // every change to it.
        manager
            .create_table(
                Table::create()
                    .table(PolicyState::Table)
                    .col(ColumnDef::new(PolicyState::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(PolicyState::Version).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(PolicyState::Table)
                    .columns([PolicyState::Id, PolicyState::Version])
                    .values_panic([1.into(), 1i64.into()])
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PolicySnapshots::Table)
                    .col(ColumnDef::new(PolicySnapshots::Version).big_integer().not_null().primary_key())
                    .col(ColumnDef::new(PolicySnapshots::IssuedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(PolicySnapshots::Kid).string_len(64).not_null())
                    .col(ColumnDef::new(PolicySnapshots::Size).big_integer().not_null())
                    // What changed since the previous snapshot, from the audit trail.
                    .col(ColumnDef::new(PolicySnapshots::Summary).json().not_null())
                    // The signed document (compact JWS).
                    .col(ColumnDef::new(PolicySnapshots::Document).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(id_col(SigningKeys::Id))
                    .col(ColumnDef::new(SigningKeys::Kid).string_len(64).not_null().unique_key())
                    // PKCS#8, sealed under the master key.
                    .col(ColumnDef::new(SigningKeys::PrivateKey).text().not_null())
                    // Raw Ed25519 public key, base64url.
                    .col(ColumnDef::new(SigningKeys::PublicKey).string_len(64).not_null())
                    // `active` (signs), `published` (verifies only) or `retired` (gone from JWKS).
                    .col(ColumnDef::new(SigningKeys::State).string_len(16).not_null())
                    .col(ColumnDef::new(SigningKeys::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(SigningKeys::RetiredAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SigningKeys::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(PolicySnapshots::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(PolicyState::Table).to_owned()).await
    }
}
