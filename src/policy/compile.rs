//! Compiles the policy-relevant state of the store into a snapshot.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::control::servers::{enabled_tools_of, tool_settings_of, EnabledTools};
use crate::policy::{
    AccessEntry, Jwks, MemberEntry, ServerEntry, Snapshot, TeamEntry, TenantEntry, TokenEntry, TokenOwner, UserEntry,
    VirtualAccountEntry, VirtualMemberEntry,
};
use crate::store::entities::{
    access_tokens, collaborators, servers, team_members, teams, tenant_members, tenants, users, virtual_accounts,
    virtual_members,
};

/// Digest (hex), owning user, owning virtual account, expiry.
type TokenRow = (String, Option<i64>, Option<i64>, Option<DateTime<Utc>>);

/// Reads everything the proxy decides on. Run it inside one read transaction so the snapshot
/// is a consistent cut of the store at `version`.
pub async fn compile(
    db: &impl ConnectionTrait,
    version: i64,
    kid: &str,
    gateway_keys: Jwks,
    now: DateTime<Utc>,
) -> Result<Snapshot, DbErr> {
    let tenants = tenants::Entity::find().order_by_asc(tenants::Column::Id).all(db).await?;
    let users = users::Entity::find().order_by_asc(users::Column::Id).all(db).await?;
    let members = tenant_members::Entity::find().order_by_asc(tenant_members::Column::Id).all(db).await?;
    let teams = teams::Entity::find().order_by_asc(teams::Column::Id).all(db).await?;
    let mut team_users: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for m in team_members::Entity::find().order_by_asc(team_members::Column::Id).all(db).await? {
        team_users.entry(m.team_id).or_default().push(m.user_id);
    }
    let accounts = virtual_accounts::Entity::find().order_by_asc(virtual_accounts::Column::Id).all(db).await?;
    let mut links: BTreeMap<i64, Vec<virtual_members::Model>> = BTreeMap::new();
    for l in virtual_members::Entity::find().order_by_asc(virtual_members::Column::Position).all(db).await? {
        links.entry(l.virtual_server_id).or_default().push(l);
    }
    let servers = servers::Entity::find().order_by_asc(servers::Column::Id).all(db).await?;
    let access = collaborators::Entity::find().order_by_asc(collaborators::Column::Id).all(db).await?;
    // Tokens are most of the rows: read only the columns the snapshot needs, as tuples, and
    // leave expired ones in the database.
    let tokens: Vec<TokenRow> = access_tokens::Entity::find()
        .select_only()
        .columns([
            access_tokens::Column::Digest,
            access_tokens::Column::UserId,
            access_tokens::Column::VirtualAccountId,
            access_tokens::Column::ExpiresAt,
        ])
        .filter(access_tokens::Column::RevokedAt.is_null())
        .filter(access_tokens::Column::ExpiresAt.is_null().or(access_tokens::Column::ExpiresAt.gt(now)))
        .order_by_asc(access_tokens::Column::Id)
        .into_tuple()
        .all(db)
        .await?;

    Ok(Snapshot {
        version,
        issued_at: now,
        kid: kid.to_owned(),
        tenants: tenants.into_iter().map(|t| TenantEntry { id: t.id, slug: t.slug }).collect(),
        users: users.into_iter().map(|u| UserEntry { id: u.id, email: u.email, disabled: u.disabled }).collect(),
        members: members
            .into_iter()
            .map(|m| MemberEntry { tenant: m.tenant_id, user: m.user_id, role: m.role })
            .collect(),
        teams: teams
            .into_iter()
            .map(|t| TeamEntry {
                members: team_users.remove(&t.id).unwrap_or_default(),
                id: t.id,
                tenant: t.tenant_id,
                slug: t.slug,
                builtin: t.builtin,
            })
            .collect(),
        virtual_accounts: accounts
            .into_iter()
            .map(|va| VirtualAccountEntry {
                id: va.id,
                tenant: va.tenant_id,
                name: va.name,
                tenant_role: va.tenant_role,
                expires_at: va.expires_at,
            })
            .collect(),
        servers: servers
            .into_iter()
            .map(|s| ServerEntry {
                tool_settings: tool_settings_of(&s),
                members: links
                    .remove(&s.id)
                    .unwrap_or_default()
                    .iter()
                    .map(|l| VirtualMemberEntry {
                        server: l.member_server_id,
                        enabled_tools: match enabled_tools_of(l) {
                            EnabledTools::All(_) => None,
                            EnabledTools::Only(names) => Some(names),
                        },
                        outbound_auth: l
                            .auth_data
                            .as_ref()
                            .map(|a| crate::control::outbound::snapshot_entry_of(Some(a))),
                    })
                    .collect(),
                outbound_auth: crate::control::outbound::snapshot_entry_of(s.auth_data.as_ref()),
                id: s.id,
                tenant: s.tenant_id,
                slug: s.slug,
                kind: s.kind,
                url: s.url,
                transport: s.transport,
                additional_headers: s.additional_headers,
                tls_reject_unauthorized: s.tls_reject_unauthorized,
                tls_ca_certificate: s.tls_ca_certificate,
            })
            .collect(),
        access: access
            .into_iter()
            .map(|c| AccessEntry {
                server: c.server_id,
                subject_kind: c.subject_kind,
                subject: c.subject_id,
                role: c.role,
            })
            .collect(),
        tokens: tokens
            .into_iter()
            .filter_map(|(digest, user, account, expires_at)| {
                let (subject_kind, subject) = match (user, account) {
                    (Some(u), _) => (TokenOwner::User, u),
                    (None, Some(va)) => (TokenOwner::VirtualAccount, va),
                    (None, None) => return None,
                };
                Some(TokenEntry { digest: crate::policy::digest_from_hex(&digest)?, subject_kind, subject, expires_at })
            })
            .collect(),
        revoked_gateway_tokens: Vec::new(),
        identity_providers: Vec::new(),
        gateway_keys,
    })
}
