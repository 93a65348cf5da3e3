//! The control plane's gauges, read from the store now and then (they are counts of rows, not
//! events): live tokens by kind, live MCP-client sign-ins, and the database pool.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter};

use crate::auth::token::TokenKind;
use crate::proxy::metrics::{self, KindLabels, StateLabels};
use crate::store::entities::{access_tokens, oauth_grants};

pub async fn refresh(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<(), DbErr> {
    let m = metrics::get();
    for (kind, label) in [(TokenKind::PersonalAccess, "personal"), (TokenKind::VirtualAccount, "virtual_account")] {
        let live = access_tokens::Entity::find()
            .filter(access_tokens::Column::Kind.eq(kind.as_str()))
            .filter(access_tokens::Column::RevokedAt.is_null())
            .filter(
                Condition::any()
                    .add(access_tokens::Column::ExpiresAt.is_null())
                    .add(access_tokens::Column::ExpiresAt.gt(now)),
            )
            .count(db)
            .await?;
        m.tokens.get_or_create(&KindLabels { kind: label.into() }).set(live as i64);
    }
    let grants = oauth_grants::Entity::find()
        .filter(oauth_grants::Column::RevokedAt.is_null())
        .filter(oauth_grants::Column::ExpiresAt.gt(now))
        .count(db)
        .await?;
    m.oauth_grants.set(grants as i64);
    let (size, idle) = pool(db);
    m.db_connections.get_or_create(&StateLabels { state: "idle".into() }).set(idle);
    m.db_connections.get_or_create(&StateLabels { state: "in_use".into() }).set(size - idle);
    Ok(())
}

/// Connections open and idle in the pool, whichever database it is.
fn pool(db: &DatabaseConnection) -> (i64, i64) {
    match db.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            let p = db.get_sqlite_connection_pool();
            (i64::from(p.size()), p.num_idle() as i64)
        }
        sea_orm::DbBackend::Postgres => {
            let p = db.get_postgres_connection_pool();
            (i64::from(p.size()), p.num_idle() as i64)
        }
        _ => (0, 0),
    }
}
