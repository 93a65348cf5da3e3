//! Invitations: a tenant admin invites someone by email; the link (shown once) is accepted by
//! signing in with that email, by password or through an identity provider, and makes them a
//! member with the invited role. Single use, expiring, revocable. The link's secret is kept
//! as a digest only.

use chrono::{DateTime, Duration, Utc};
use rand::distr::{Alphanumeric, SampleString};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set, TransactionTrait,
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::{Actor, Change, Event};
use crate::domain::{Email, TenantRole};
use crate::error::{Error, Result};
use crate::page::{self, PageRequest, Paged};
use crate::store::entities::{invitations, tenant_members, tenants, users};

pub const DEFAULT_DAYS: u32 = 7;
pub const MAX_DAYS: u32 = 30;

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub role: TenantRole,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    /// The link to send the invitee; only in the answer to the request that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl InvitationView {
    pub fn of(row: &invitations::Model, now: DateTime<Utc>) -> Result<Self> {
        let status = if row.accepted_at.is_some() {
            "accepted"
        } else if row.revoked_at.is_some() {
            "revoked"
        } else if row.expires_at <= now {
            "expired"
        } else {
            "pending"
        };
        Ok(Self {
            id: row.public_id.clone(),
            email: row.email.clone(),
            role: TenantRole::parse(&row.role)?,
            status: status.to_owned(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            accepted_at: row.accepted_at,
            url: None,
        })
    }
}

/// A new invitation and the secret of its link.
pub struct Issued {
    pub row: invitations::Model,
    pub secret: String,
}

pub async fn create<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    email: &Email,
    role: TenantRole,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Issued> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    // Someone already a member needs no invitation.
    if let Some(user) = users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(txn).await? {
        let member = tenant_members::Entity::find()
            .filter(tenant_members::Column::TenantId.eq(tenant.id))
            .filter(tenant_members::Column::UserId.eq(user.id))
            .one(txn)
            .await?;
        if member.is_some() {
            return Err(Error::conflict("already_member", Some("email"), format!("{email} is already a member")));
        }
    }
    let secret = format!("mgw_inv_{}", Alphanumeric.sample_string(&mut rand::rng(), 40));
    let public_id = format!("inv_{}", Alphanumeric.sample_string(&mut rand::rng(), 16));
    let row = invitations::ActiveModel {
        public_id: Set(public_id),
        tenant_id: Set(tenant.id),
        email: Set(email.as_str().to_owned()),
        role: Set(role.as_str().to_owned()),
        token_digest: Set(mcpgate_policy::token::digest(&secret)),
        created_by: Set(actor.subject.clone()),
        created_at: Set(now),
        expires_at: Set(now + Duration::days(i64::from(days.clamp(1, MAX_DAYS)))),
        accepted_at: Set(None),
        accepted_by: Set(None),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    let details = json!({"id": row.public_id, "email": row.email, "role": row.role, "expires_at": row.expires_at});
    change.commit(Event::new("invitation.create", format!("user:{email}")).tenant(tenant).details(details)).await?;
    Ok(Issued { row, secret })
}

pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    page: PageRequest,
) -> Result<Paged<invitations::Model>> {
    let select = invitations::Entity::find().filter(invitations::Column::TenantId.eq(tenant.id));
    Ok(page::fetch(db, select, invitations::Column::Id, |r| r.id, page.newest_first()).await?)
}

pub async fn get(db: &impl ConnectionTrait, tenant: &tenants::Model, id: &str) -> Result<invitations::Model> {
    invitations::Entity::find()
        .filter(invitations::Column::TenantId.eq(tenant.id))
        .filter(invitations::Column::PublicId.eq(id))
        .one(db)
        .await?
        .ok_or(Error::NotFound)
}

/// Revoking an accepted invitation changes nothing (the membership is managed as members).
pub async fn revoke<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    row: invitations::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    if row.accepted_at.is_some() || row.revoked_at.is_some() {
        return Ok(());
    }
    let change = Change::begin(db, actor, now).await?;
    let email = row.email.clone();
    let id = row.public_id.clone();
    let mut active = row.into_active_model();
    active.revoked_at = Set(Some(now));
    active.update(change.db()).await?;
    change
        .commit(Event::new("invitation.revoke", format!("user:{email}")).tenant(tenant).details(json!({"id": id})))
        .await?;
    Ok(())
}

/// An invitation whose link is `secret`, still open (not used, revoked or expired).
pub async fn find_open(
    db: &impl ConnectionTrait,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<invitations::Model>> {
    let row = invitations::Entity::find()
        .filter(invitations::Column::TokenDigest.eq(mcpgate_policy::token::digest(secret)))
        .one(db)
        .await?;
    Ok(row.filter(|r| r.accepted_at.is_none() && r.revoked_at.is_none() && r.expires_at > now))
}

pub(crate) async fn mark_accepted(
    db: &impl ConnectionTrait,
    row: invitations::Model,
    user_id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut active = row.into_active_model();
    active.accepted_at = Set(Some(now));
    active.accepted_by = Set(Some(user_id));
    active.update(db).await?;
    Ok(())
}

/// Accepts an invitation for a user who signed in with a password: the email must be theirs.
pub async fn accept<C: TransactionTrait>(
    db: &C,
    user: &users::Model,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<tenants::Model> {
    let actor = Actor { subject: format!("user:{}", user.email), request_id: None };
    let change = Change::begin(db, &actor, now).await?;
    let txn = change.db();
    let Some(row) = find_open(txn, secret, now).await?.filter(|r| r.email == user.email) else {
        return Err(Error::NotFound);
    };
    let tenant = tenants::Entity::find_by_id(row.tenant_id).one(txn).await?.ok_or(Error::NotFound)?;
    let member = tenant_members::Entity::find()
        .filter(tenant_members::Column::TenantId.eq(tenant.id))
        .filter(tenant_members::Column::UserId.eq(user.id))
        .one(txn)
        .await?;
    if member.is_none() {
        tenant_members::ActiveModel {
            tenant_id: Set(tenant.id),
            user_id: Set(user.id),
            role: Set(row.role.clone()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(txn)
        .await?;
    }
    let details = json!({"id": row.public_id, "role": row.role});
    mark_accepted(txn, row, user.id, now).await?;
    change
        .commit(Event::new("invitation.accept", format!("user:{}", user.email)).tenant(&tenant).details(details))
        .await?;
    Ok(tenant)
}
