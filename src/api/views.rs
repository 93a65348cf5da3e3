//! Response bodies: what the API shows of each stored row (never a hash or digest).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::TenantRole;
use crate::store::entities::{teams, tenants, users};

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub is_platform_admin: bool,
    pub disabled: bool,
    /// Whether the user can sign in with a password.
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<users::Model> for UserView {
    fn from(u: users::Model) -> Self {
        Self {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            is_platform_admin: u.is_platform_admin,
            disabled: u.disabled,
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub slug: String,
    pub display_name: String,
    /// The tenant's logo (https), shown on its sign-in, consent and connect pages.
    pub logo_url: Option<String>,
    /// The caller's own role in this tenant; `null` for a platform admin who is not a member.
    pub role: Option<TenantRole>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantView {
    pub fn new(t: tenants::Model, role: Option<TenantRole>) -> Self {
        Self {
            slug: t.slug,
            display_name: t.display_name,
            logo_url: t.logo_url,
            role,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantMemberView {
    pub email: String,
    pub display_name: String,
    pub role: TenantRole,
    pub added_at: DateTime<Utc>,
}

impl From<crate::control::members::Member> for TenantMemberView {
    fn from(m: crate::control::members::Member) -> Self {
        Self { email: m.user.email, display_name: m.user.display_name, role: m.role, added_at: m.membership.created_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamView {
    pub slug: String,
    pub display_name: String,
    pub description: Option<String>,
    /// `true` for the built-in `everyone` team, whose members are all tenant members.
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
}

impl From<teams::Model> for TeamView {
    fn from(t: teams::Model) -> Self {
        Self {
            slug: t.slug,
            display_name: t.display_name,
            description: t.description,
            builtin: t.builtin,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamMemberView {
    pub email: String,
    pub display_name: String,
}

impl From<users::Model> for TeamMemberView {
    fn from(u: users::Model) -> Self {
        Self { email: u.email, display_name: u.display_name }
    }
}
