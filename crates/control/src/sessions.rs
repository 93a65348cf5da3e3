//! Server-side console sessions: revocable (a row to delete) and expiring (`expires_at`).

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use crate::auth::session::{digest, random_secret};
use crate::store::entities::{sessions, users};

/// Starts a session; returns the secret for the cookie (never stored) and the row.
pub async fn create(
    db: &impl ConnectionTrait,
    user_id: i64,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(String, sessions::Model), DbErr> {
    let secret = random_secret();
    let row = sessions::ActiveModel {
        digest: Set(digest(&secret)),
        user_id: Set(user_id),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((secret, row))
}

/// The live session for a cookie secret and its user; `None` when unknown, expired, or the
/// user is disabled.
pub async fn lookup(
    db: &impl ConnectionTrait,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<(sessions::Model, users::Model)>, DbErr> {
    let Some(session) = sessions::Entity::find().filter(sessions::Column::Digest.eq(digest(secret))).one(db).await?
    else {
        return Ok(None);
    };
    if session.expires_at <= now {
        return Ok(None);
    }
    let user = users::Entity::find_by_id(session.user_id).one(db).await?;
    Ok(user.filter(|u| !u.disabled).map(|u| (session, u)))
}

pub async fn delete(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    sessions::Entity::delete_by_id(id).exec(db).await.map(|_| ())
}

/// Ends every session of a user, optionally keeping one (the caller's own).
pub async fn delete_for_user(db: &impl ConnectionTrait, user_id: i64, keep: Option<i64>) -> Result<u64, DbErr> {
    let mut query = sessions::Entity::delete_many().filter(sessions::Column::UserId.eq(user_id));
    if let Some(keep) = keep {
        query = query.filter(sessions::Column::Id.ne(keep));
    }
    Ok(query.exec(db).await?.rows_affected)
}

pub async fn purge_expired(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(sessions::Entity::delete_many().filter(sessions::Column::ExpiresAt.lte(now)).exec(db).await?.rows_affected)
}
