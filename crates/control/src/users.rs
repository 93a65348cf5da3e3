//! Platform users: creation, updates, the first-admin bootstrap.

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};
use secrecy::SecretString;

use crate::audit::{Actor, Change, Event};
use crate::auth::password;
use crate::domain::{DisplayName, Email, NewPassword};
use crate::error::{Error, Result};
use crate::page::{self, PageRequest, Paged};
use crate::servers::SubjectKind;
use crate::sessions;
use crate::store::entities::{collaborators, users};

pub struct NewUser {
    pub email: Email,
    pub display_name: DisplayName,
    pub password: Option<NewPassword>,
    pub is_platform_admin: bool,
}

#[derive(Default)]
pub struct UserPatch {
    pub display_name: Option<DisplayName>,
    pub password: Option<NewPassword>,
    pub disabled: Option<bool>,
    pub is_platform_admin: Option<bool>,
}

pub async fn create<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    new: NewUser,
    now: DateTime<Utc>,
) -> Result<users::Model> {
    let password_hash = match new.password {
        Some(p) => Some(password::hash_password(p.secret().clone()).await?),
        None => None,
    };
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let user = users::ActiveModel {
        email: Set(new.email.as_str().to_owned()),
        display_name: Set(new.display_name.into_inner()),
        password_hash: Set(password_hash),
        is_platform_admin: Set(new.is_platform_admin),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| Error::unique_violation(e, "email", format!("a user with email {} already exists", new.email)))?;
    let details = serde_json::json!({"is_platform_admin": user.is_platform_admin});
    change.commit(Event::new("user.create", format!("user:{}", user.email)).details(details)).await?;
    Ok(user)
}

pub async fn find_by_email(db: &impl ConnectionTrait, email: &Email) -> Result<Option<users::Model>> {
    Ok(users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(db).await?)
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<users::Model> {
    users::Entity::find_by_id(id).one(db).await?.ok_or(Error::NotFound)
}

pub async fn list(db: &impl ConnectionTrait, page: PageRequest) -> Result<Paged<users::Model>> {
    Ok(page::fetch(db, users::Entity::find(), users::Column::Id, |u| u.id, page).await?)
}

/// Applies a patch. Refuses to leave the platform without an active platform admin; disabling a
/// user or changing their password ends their sessions.
pub async fn update<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    id: i64,
    patch: UserPatch,
    now: DateTime<Utc>,
) -> Result<users::Model> {
    let password_hash = match &patch.password {
        Some(p) => Some(password::hash_password(p.secret().clone()).await?),
        None => None,
    };
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let user = get(txn, id).await?;
    let loses_admin = user.is_platform_admin
        && !user.disabled
        && (patch.disabled == Some(true) || patch.is_platform_admin == Some(false));
    if loses_admin && active_admin_count(txn).await? <= 1 {
        return Err(Error::conflict(
            "last_admin",
            None,
            "this is the last active platform admin; make another user a platform admin first",
        ));
    }
    let end_sessions = patch.disabled == Some(true) || password_hash.is_some();
    // Which fields changed, and the new flags; never the password itself.
    let changed: Vec<&str> = [
        ("display_name", patch.display_name.is_some()),
        ("password", password_hash.is_some()),
        ("disabled", patch.disabled.is_some()),
        ("is_platform_admin", patch.is_platform_admin.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let details = serde_json::json!({
        "changed": changed,
        "disabled": patch.disabled,
        "is_platform_admin": patch.is_platform_admin,
    });
    let mut active: users::ActiveModel = user.into();
    if let Some(name) = patch.display_name {
        active.display_name = Set(name.into_inner());
    }
    if let Some(hash) = password_hash {
        active.password_hash = Set(Some(hash));
    }
    if let Some(disabled) = patch.disabled {
        active.disabled = Set(disabled);
    }
    if let Some(admin) = patch.is_platform_admin {
        active.is_platform_admin = Set(admin);
    }
    active.updated_at = Set(now);
    let user = active.update(txn).await?;
    if end_sessions {
        sessions::delete_for_user(txn, id, None).await?;
    }
    change.commit(Event::new("user.update", format!("user:{}", user.email)).details(details)).await?;
    Ok(user)
}

/// Deletes a user with their sessions, tokens, memberships and direct collaborations. What
/// they created for a tenant (servers, virtual accounts) stays: it belongs to the tenant.
pub async fn delete<C: TransactionTrait>(db: &C, actor: &Actor, id: i64, now: DateTime<Utc>) -> Result<()> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let user = get(txn, id).await?;
    if user.is_platform_admin && !user.disabled && active_admin_count(txn).await? <= 1 {
        return Err(Error::conflict(
            "last_admin",
            None,
            "this is the last active platform admin; make another user a platform admin first",
        ));
    }
    collaborators::Entity::delete_many()
        .filter(collaborators::Column::SubjectKind.eq(SubjectKind::User.as_str()))
        .filter(collaborators::Column::SubjectId.eq(user.id))
        .exec(txn)
        .await?;
    // Sessions, tokens, memberships and team memberships cascade with the row.
    users::Entity::delete_by_id(user.id).exec(txn).await?;
    change.commit(Event::new("user.delete", format!("user:{}", user.email))).await?;
    Ok(())
}

/// Active platform admins, their rows locked for the rest of the transaction (PostgreSQL) so
/// that two concurrent demotions cannot both count the other.
async fn active_admin_count(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(users::Entity::find()
        .filter(users::Column::IsPlatformAdmin.eq(true))
        .filter(users::Column::Disabled.eq(false))
        .lock_exclusive()
        .all(db)
        .await?
        .len() as u64)
}

/// Changes a user's own password after checking the current one; ends their other sessions.
pub async fn change_own_password<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    user: &users::Model,
    current: SecretString,
    new: NewPassword,
    keep_session: Option<i64>,
    now: DateTime<Utc>,
) -> Result<()> {
    if !password::verify_password(current, user.password_hash.clone()).await? {
        return Err(Error::Validation(vec![crate::error::FieldError::new(
            "current_password",
            "incorrect",
            "the current password is not correct",
        )]));
    }
    let hash = password::hash_password(new.secret().clone()).await?;
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let mut active: users::ActiveModel = user.clone().into();
    active.password_hash = Set(Some(hash));
    active.updated_at = Set(now);
    active.update(txn).await?;
    sessions::delete_for_user(txn, user.id, keep_session).await?;
    change.commit(Event::new("user.password_change", format!("user:{}", user.email))).await?;
    Ok(())
}

pub const DEFAULT_ADMIN_EMAIL: &str = "admin@mcpgate.local";

/// What the bootstrap did, so the caller can tell the operator.
pub enum Bootstrap {
    /// Users existed already; nothing was done.
    NotNeeded,
    /// Created from `MCPGATE_ADMIN_EMAIL` / `MCPGATE_ADMIN_PASSWORD`.
    Configured { email: String },
    /// Created with a generated password, to be shown once.
    Generated { email: String, password: SecretString },
}

/// On an empty database, creates the first platform admin.
pub async fn bootstrap_admin<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    email: Option<&str>,
    password: Option<&SecretString>,
    now: DateTime<Utc>,
) -> anyhow::Result<Bootstrap> {
    if users::Entity::find().count(db).await? > 0 {
        return Ok(Bootstrap::NotNeeded);
    }
    let email = Email::parse("admin_email", email.unwrap_or(DEFAULT_ADMIN_EMAIL))
        .map_err(|e| anyhow::anyhow!("MCPGATE_ADMIN_EMAIL: {}", e.message))?;
    let (password, generated) = match password {
        Some(p) => (p.clone(), false),
        None => (SecretString::from(Alphanumeric.sample_string(&mut rand::rng(), 24)), true),
    };
    let checked = NewPassword::parse("admin_password", secrecy::ExposeSecret::expose_secret(&password))
        .map_err(|e| anyhow::anyhow!("MCPGATE_ADMIN_PASSWORD: {}", e.message))?;
    let display_name = DisplayName::parse("display_name", "Administrator").map_err(|e| anyhow::anyhow!(e.message))?;
    create(
        db,
        &Actor::system(),
        NewUser { email: email.clone(), display_name, password: Some(checked), is_platform_admin: true },
        now,
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the first admin failed: {e}"))?;
    let email = email.as_str().to_owned();
    Ok(if generated { Bootstrap::Generated { email, password } } else { Bootstrap::Configured { email } })
}
