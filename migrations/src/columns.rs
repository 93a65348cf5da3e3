//! Column and key shapes every migration uses. Past migrations call these too, so a change
//! here changes how they would build a fresh database: add new helpers, do not alter these.

use sea_orm_migration::prelude::*;

/// A 64-bit auto-increment primary key.
pub fn id_col<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().auto_increment().primary_key().to_owned()
}

/// A foreign key whose rows go when the row they point at goes.
pub fn cascade<T: IntoIden + 'static, C: IntoIden + 'static, R: IntoIden + 'static, RC: IntoIden + 'static>(
    table: T,
    col: C,
    to: R,
    to_col: RC,
) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(table, col).to(to, to_col).on_delete(ForeignKeyAction::Cascade).to_owned()
}
