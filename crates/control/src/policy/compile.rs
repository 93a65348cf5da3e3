//! Compiles the policy-relevant state of the store into a snapshot.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, Statement};

use crate::policy::idp::{IdpEntry, VirtualAccountRule};
use crate::policy::{
    AccessEntry, Jwks, MemberEntry, ServerEntry, Snapshot, TeamEntry, TenantEntry, TokenEntry, TokenOwner, UserEntry,
    VirtualAccountEntry, VirtualMemberEntry,
};
use crate::policy::{ServerKind, ServerRole, SubjectKind, TenantRole, Transport, UnknownValue};
use crate::servers::{enabled_tools_of, tool_settings_of, EnabledTools};
use crate::store::entities::{
    collaborators, identity_providers, servers, team_members, teams, tenant_members, tenants, users, virtual_accounts,
    virtual_members,
};

/// The live tokens, oldest first. They are most of the rows of a large installation (100,000
/// tokens), and fetching that many rows one by one through the driver costs several times
/// the database's own work; so the database joins them into one text,
/// `<hex digest>:<u|v><owner id>:<expiry, unix seconds, or empty>` separated by commas,
/// which is split here. Expired and revoked tokens stay behind.
async fn read_tokens(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<TokenEntry>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT string_agg(digest || ':' || COALESCE('u' || user_id::text, 'v' || virtual_account_id::text) \
             || ':' || COALESCE(FLOOR(EXTRACT(EPOCH FROM expires_at))::bigint::text, ''), ',' ORDER BY id) AS tokens \
             FROM access_tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)"
        }
        _ => {
            "SELECT group_concat(digest || ':' || COALESCE('u' || user_id, 'v' || virtual_account_id) \
             || ':' || COALESCE(CAST(unixepoch(expires_at) AS TEXT), ''), ',' ORDER BY id) AS tokens \
             FROM access_tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
        }
    };
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, [now.into()])).await?;
    let Some(joined) = row.map(|r| r.try_get::<Option<String>>("", "tokens")).transpose()?.flatten() else {
        return Ok(Vec::new());
    };
    let parse = |entry: &str| -> Option<TokenEntry> {
        let mut parts = entry.split(':');
        let digest = crate::policy::digest_from_hex(parts.next()?)?;
        let owner = parts.next()?;
        let (subject_kind, id) = match owner.split_at_checked(1)? {
            ("u", id) => (TokenOwner::User, id),
            ("v", id) => (TokenOwner::VirtualAccount, id),
            _ => return None,
        };
        let expires_at = match parts.next()? {
            "" => None,
            secs => Some(DateTime::from_timestamp(secs.parse().ok()?, 0)?),
        };
        Some(TokenEntry { digest, subject_kind, subject: id.parse().ok()?, expires_at })
    };
    Ok(joined.split(',').filter_map(parse).collect())
}

/// Reads everything the proxy decides on. Run it inside one read transaction so the snapshot
/// is a consistent cut of the store at `version`.
/// A stored value outside its vocabulary stops the publication: a snapshot never guesses.
fn corrupt(e: UnknownValue) -> DbErr {
    DbErr::Custom(format!("stored data: {e}"))
}

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
    let tokens = read_tokens(db, now).await?;
    let revoked_gateway_tokens = revoked_ids(db, now).await?;
    let providers = identity_providers::Entity::find()
        .filter(identity_providers::Column::AcceptJwt.eq(true))
        .order_by_asc(identity_providers::Column::Id)
        .all(db)
        .await?;
    let identity_providers = providers
        .into_iter()
        .map(|p| {
            let rules: Vec<crate::identity::VirtualAccountMapping> =
                serde_json::from_value(p.virtual_account_claims.clone()).unwrap_or_default();
            // A rule naming an account of another tenant (or none) maps nothing.
            let virtual_accounts = rules
                .into_iter()
                .filter_map(|r| {
                    let account =
                        accounts.iter().find(|a| Some(a.tenant_id) == p.tenant_id && a.name == r.virtual_account)?;
                    Some(VirtualAccountRule { claims: r.claims, account: account.id })
                })
                .collect();
            IdpEntry {
                id: p.id,
                tenant: p.tenant_id,
                slug: p.slug,
                issuer: p.issuer,
                audiences: serde_json::from_value(p.audiences).unwrap_or_default(),
                jwks_uri: p.jwks_uri,
                keys: p.jwks.unwrap_or_else(|| serde_json::json!({"keys": []})),
                user_claim: p.user_claim,
                virtual_accounts,
            }
        })
        .collect();

    Ok(Snapshot {
        version,
        issued_at: now,
        kid: kid.to_owned(),
        tenants: tenants.into_iter().map(|t| TenantEntry { id: t.id, slug: t.slug }).collect(),
        users: users
            .into_iter()
            .map(|u| UserEntry {
                id: u.id,
                email: u.email,
                disabled: u.disabled,
                identity_tenant: u.identity_tenant_id,
                identity_issuer: u.identity_issuer,
                identity_subject: u.identity_subject,
            })
            .collect(),
        members: members
            .into_iter()
            .map(|m| Ok(MemberEntry { tenant: m.tenant_id, user: m.user_id, role: TenantRole::parse(&m.role)? }))
            .collect::<Result<_, UnknownValue>>()
            .map_err(corrupt)?,
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
            .map(|va| {
                Ok(VirtualAccountEntry {
                    id: va.id,
                    tenant: va.tenant_id,
                    name: va.name,
                    tenant_role: va.tenant_role.as_deref().map(TenantRole::parse).transpose()?,
                    expires_at: va.expires_at,
                })
            })
            .collect::<Result<_, UnknownValue>>()
            .map_err(corrupt)?,
        servers: servers
            .into_iter()
            .map(|s| {
                Ok(ServerEntry {
                    metrics_tools: metrics_tools_of(&s),
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
                            outbound_auth: l.auth_data.as_ref().map(|a| crate::outbound::snapshot_entry_of(Some(a))),
                        })
                        .collect(),
                    outbound_auth: crate::outbound::snapshot_entry_of(s.auth_data.as_ref()),
                    id: s.id,
                    tenant: s.tenant_id,
                    slug: s.slug,
                    kind: ServerKind::parse(&s.kind)?,
                    url: s.url,
                    transport: s.transport.as_deref().map(Transport::parse).transpose()?,
                    additional_headers: s.additional_headers,
                    tls_reject_unauthorized: s.tls_reject_unauthorized,
                    tls_ca_certificate: s.tls_ca_certificate,
                })
            })
            .collect::<Result<_, UnknownValue>>()
            .map_err(corrupt)?,
        access: access
            .into_iter()
            .map(|c| {
                Ok(AccessEntry {
                    server: c.server_id,
                    subject_kind: SubjectKind::parse(&c.subject_kind)?,
                    subject: c.subject_id,
                    role: ServerRole::parse(&c.role)?,
                })
            })
            .collect::<Result<_, UnknownValue>>()
            .map_err(corrupt)?,
        tokens,
        revoked_gateway_tokens,
        identity_providers,
        gateway_keys,
    })
}

/// Ids that must travel in the snapshot: revoked sign-ins and tokens whose access tokens may
/// still be unexpired.
pub async fn revoked_ids(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<String>, sea_orm::DbErr> {
    let grants = crate::store::entities::oauth_grants::Entity::find()
        .filter(crate::store::entities::oauth_grants::Column::RevokedAt.is_not_null())
        .filter(crate::store::entities::oauth_grants::Column::AccessExpiresAt.gt(now))
        .order_by_asc(crate::store::entities::oauth_grants::Column::Id)
        .all(db)
        .await?;
    let tokens = crate::store::entities::oauth_revoked_tokens::Entity::find()
        .filter(crate::store::entities::oauth_revoked_tokens::Column::ExpiresAt.gt(now))
        .order_by_asc(crate::store::entities::oauth_revoked_tokens::Column::Id)
        .all(db)
        .await?;
    Ok(grants.into_iter().map(|g| g.public_id).chain(tokens.into_iter().map(|t| t.jti)).collect())
}

/// The tool names a server's calls are counted by, when it opted in: those its last probe saw
/// and those it has settings for, sorted, each once. A bounded set the server's managers
/// choose, so what clients send cannot grow the metrics.
fn metrics_tools_of(server: &crate::store::entities::servers::Model) -> Vec<String> {
    if !server.metrics_tool_names {
        return Vec::new();
    }
    let probed = crate::servers::probed_tools_of(server).unwrap_or_default().into_iter().map(|t| t.name);
    let set: std::collections::BTreeSet<String> =
        probed.chain(tool_settings_of(server).into_iter().map(|t| t.name)).collect();
    set.into_iter().collect()
}
