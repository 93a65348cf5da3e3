//! The MCP server registry: remote servers (an upstream URL) and virtual servers (a
//! composition of remote servers of the same tenant), their tool settings, collaborators and
//! the cached result of the last probe.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::audit::{Actor, Change, Event};
use crate::caller::Caller;
use crate::domain::{DisplayName, Email, Slug};
use crate::error::{Error, FieldError, Result};
use crate::page::{self, PageRequest, Paged};
use crate::store::entities::{
    auth_overrides, collaborators, servers, team_members, teams, tenant_members, tenants, upstream_clients,
    upstream_grants, users, virtual_members,
};

pub use mcpgate_policy::{ServerKind, ServerRole, SubjectKind, ToolAnnotations, ToolSetting, Transport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AllTools {
    #[serde(rename = "all")]
    All,
}

/// `"all"`, or the names of the member's tools to expose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EnabledTools {
    All(AllTools),
    Only(Vec<String>),
}

/// One member of a virtual server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// Slug of a remote server of the same tenant.
    pub server: String,
    #[serde(default = "all_tools")]
    pub enabled_tools: EnabledTools,
    /// Credentials this virtual server uses for the member instead of the member's own: a
    /// shared one (`header` global, `oauth2` client_credentials) or `passthrough`. Secrets are
    /// write-only. (Per-user credentials are set on the member server itself.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_data: Option<crate::outbound::AuthData>,
}

fn all_tools() -> EnabledTools {
    EnabledTools::All(AllTools::All)
}

/// A tool as reported by the last probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProbedTool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Upstream connection settings of a remote server, already validated.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub url: url::Url,
    pub transport: Transport,
    pub additional_headers: BTreeMap<String, String>,
    pub tls_reject_unauthorized: bool,
    pub tls_ca_certificate: Option<String>,
    /// Outbound auth in its stored form (secrets sealed).
    pub auth_data: Option<Value>,
}

pub enum NewKind {
    Remote(Upstream),
    Virtual(Vec<MemberSpec>),
}

pub struct NewServer {
    pub slug: Slug,
    pub display_name: DisplayName,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub tool_settings: Vec<ToolSetting>,
    pub metrics_tool_names: bool,
    pub kind: NewKind,
}

#[derive(Default)]
pub struct ServerPatch {
    pub display_name: Option<DisplayName>,
    pub description: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub tool_settings: Option<Vec<ToolSetting>>,
    pub metrics_tool_names: Option<bool>,
    pub url: Option<url::Url>,
    pub transport: Option<Transport>,
    pub additional_headers: Option<BTreeMap<String, String>>,
    pub tls_reject_unauthorized: Option<bool>,
    pub tls_ca_certificate: Option<Option<String>>,
    /// Stored form (secrets sealed); `Some(None)` removes it.
    pub auth_data: Option<Option<Value>>,
    pub members: Option<Vec<MemberSpec>>,
}

/// A server with its virtual members (in order) resolved to their rows.
pub struct ServerDetail {
    pub server: servers::Model,
    pub members: Vec<(virtual_members::Model, servers::Model)>,
}

fn json_of<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The outbound auth type of a stored configuration, for audit details.
fn auth_type(stored: Option<&Value>) -> Value {
    json!(crate::outbound::snapshot_entry_of(stored).kind())
}

pub fn tool_settings_of(server: &servers::Model) -> Vec<ToolSetting> {
    serde_json::from_value(server.tool_settings.clone()).unwrap_or_default()
}

pub fn tags_of(server: &servers::Model) -> Vec<String> {
    serde_json::from_value(server.tags.clone()).unwrap_or_default()
}

pub fn headers_of(server: &servers::Model) -> BTreeMap<String, String> {
    serde_json::from_value(server.additional_headers.clone()).unwrap_or_default()
}

pub fn probed_tools_of(server: &servers::Model) -> Option<Vec<ProbedTool>> {
    server.probed_tools.as_ref().and_then(|v| serde_json::from_value(v.clone()).ok())
}

pub fn enabled_tools_of(member: &virtual_members::Model) -> EnabledTools {
    match &member.enabled_tools {
        Some(v) => serde_json::from_value(v.clone()).map(EnabledTools::Only).unwrap_or_else(|_| all_tools()),
        None => all_tools(),
    }
}

pub async fn get(db: &impl ConnectionTrait, tenant: &tenants::Model, slug: &str) -> Result<servers::Model> {
    servers::Entity::find()
        .filter(servers::Column::TenantId.eq(tenant.id))
        .filter(servers::Column::Slug.eq(slug))
        .one(db)
        .await?
        .ok_or(Error::NotFound)
}

/// Ids of every server of a tenant.
pub async fn ids_in(db: &impl ConnectionTrait, tenant: &tenants::Model) -> Result<Vec<i64>, sea_orm::DbErr> {
    Ok(servers::Entity::find()
        .filter(servers::Column::TenantId.eq(tenant.id))
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect())
}

pub async fn detail(db: &impl ConnectionTrait, server: servers::Model) -> Result<ServerDetail> {
    Ok(details(db, vec![server]).await?.pop().unwrap_or_else(|| unreachable!("one server in, one detail out")))
}

/// The details of several servers in two queries, whatever their number: their member links,
/// then the member servers.
pub async fn details(db: &impl ConnectionTrait, servers_in: Vec<servers::Model>) -> Result<Vec<ServerDetail>> {
    let virtual_ids: Vec<i64> =
        servers_in.iter().filter(|s| s.kind == ServerKind::Virtual.as_str()).map(|s| s.id).collect();
    if virtual_ids.is_empty() {
        return Ok(servers_in.into_iter().map(|server| ServerDetail { server, members: Vec::new() }).collect());
    }
    let links = virtual_members::Entity::find()
        .filter(virtual_members::Column::VirtualServerId.is_in(virtual_ids))
        .order_by_asc(virtual_members::Column::VirtualServerId)
        .order_by_asc(virtual_members::Column::Position)
        .all(db)
        .await?;
    let ids: HashSet<i64> = links.iter().map(|l| l.member_server_id).collect();
    let rows: std::collections::HashMap<i64, servers::Model> = servers::Entity::find()
        .filter(servers::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let mut by_server: std::collections::HashMap<i64, Vec<(virtual_members::Model, servers::Model)>> =
        std::collections::HashMap::new();
    for link in links {
        if let Some(member) = rows.get(&link.member_server_id) {
            by_server.entry(link.virtual_server_id).or_default().push((link, member.clone()));
        }
    }
    Ok(servers_in
        .into_iter()
        .map(|server| {
            let members = by_server.remove(&server.id).unwrap_or_default();
            ServerDetail { server, members }
        })
        .collect())
}

/// Who is composing a virtual server, for the check that they may use what they add.
pub struct Composer<'a> {
    pub caller: &'a Caller,
    pub tenant_admin: bool,
    /// Members already in the virtual server, which a change may keep without that check.
    pub existing: Vec<i64>,
}

/// Checks the members of a virtual server against the registry: each must be a distinct remote
/// server of the same tenant that the composer may use (a server they cannot see gets the same
/// answer as one that does not exist), and named tools must exist when it has been probed.
async fn resolve_members(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    specs: &[MemberSpec],
    composer: &Composer<'_>,
) -> Result<Vec<(servers::Model, EnabledTools, Option<Value>)>> {
    let mut errors = Vec::new();
    let mut resolved = Vec::new();
    let mut seen = HashSet::new();
    if specs.is_empty() {
        errors.push(FieldError::new("servers", "required", "a virtual server needs at least one member server"));
    }
    for (i, spec) in specs.iter().enumerate() {
        let field = format!("servers[{i}].server");
        if !seen.insert(spec.server.clone()) {
            errors.push(FieldError::new(field, "duplicate", format!("{} is listed twice", spec.server)));
            continue;
        }
        let Some(member) = servers::Entity::find()
            .filter(servers::Column::TenantId.eq(tenant.id))
            .filter(servers::Column::Slug.eq(spec.server.as_str()))
            .one(db)
            .await?
        else {
            errors.push(unknown_member(field, spec, tenant));
            continue;
        };
        if !composer.existing.contains(&member.id)
            && role_of(db, tenant, composer.caller, composer.tenant_admin, &member).await?.is_none()
        {
            errors.push(unknown_member(field, spec, tenant));
            continue;
        }
        if ServerKind::parse(&member.kind)? != ServerKind::Remote {
            errors.push(FieldError::new(
                field,
                "not_remote",
                format!("{} is a virtual server; members must be remote", spec.server),
            ));
            continue;
        }
        if let (EnabledTools::Only(names), Some(probed)) = (&spec.enabled_tools, probed_tools_of(&member)) {
            for name in names {
                if !probed.iter().any(|t| &t.name == name) {
                    errors.push(FieldError::new(
                        format!("servers[{i}].enabled_tools"),
                        "unknown_tool",
                        format!("{} has no tool named {name} (as of its last probe)", spec.server),
                    ));
                }
            }
        }
        // Already validated and sealed by the caller: the stored form as it is.
        let auth = spec.auth_data.as_ref().map(json_of);
        resolved.push((member, spec.enabled_tools.clone(), auth));
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(Error::Validation(errors))
    }
}

fn unknown_member(field: String, spec: &MemberSpec, tenant: &tenants::Model) -> FieldError {
    FieldError::new(field, "unknown_server", format!("no server {} in tenant {}", spec.server, tenant.slug))
}

async fn write_members(
    db: &impl ConnectionTrait,
    virtual_server_id: i64,
    members: Vec<(servers::Model, EnabledTools, Option<Value>)>,
) -> Result<()> {
    virtual_members::Entity::delete_many()
        .filter(virtual_members::Column::VirtualServerId.eq(virtual_server_id))
        .exec(db)
        .await?;
    for (position, (member, enabled, auth)) in members.into_iter().enumerate() {
        virtual_members::ActiveModel {
            virtual_server_id: Set(virtual_server_id),
            member_server_id: Set(member.id),
            enabled_tools: Set(match enabled {
                EnabledTools::All(_) => None,
                EnabledTools::Only(names) => Some(json_of(&names)),
            }),
            position: Set(position as i32),
            auth_data: Set(auth),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// Registers a server. The creator becomes its first manager.
pub async fn create<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    creator: &Caller,
    tenant_admin: bool,
    new: NewServer,
    now: DateTime<Utc>,
) -> Result<ServerDetail> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let composer = Composer { caller: creator, tenant_admin, existing: Vec::new() };
    let members = match &new.kind {
        NewKind::Virtual(specs) => Some(resolve_members(txn, tenant, specs, &composer).await?),
        NewKind::Remote(_) => None,
    };
    let (kind, upstream) = match new.kind {
        NewKind::Remote(upstream) => (ServerKind::Remote, Some(upstream)),
        NewKind::Virtual(_) => (ServerKind::Virtual, None),
    };
    let server = servers::ActiveModel {
        tenant_id: Set(tenant.id),
        slug: Set(new.slug.as_str().to_owned()),
        display_name: Set(new.display_name.into_inner()),
        description: Set(new.description),
        kind: Set(kind.as_str().to_owned()),
        url: Set(upstream.as_ref().map(|u| u.url.to_string())),
        transport: Set(upstream.as_ref().map(|u| u.transport.as_str().to_owned())),
        additional_headers: Set(json_of(&upstream.as_ref().map(|u| u.additional_headers.clone()).unwrap_or_default())),
        tls_reject_unauthorized: Set(upstream.as_ref().is_none_or(|u| u.tls_reject_unauthorized)),
        tls_ca_certificate: Set(upstream.as_ref().and_then(|u| u.tls_ca_certificate.clone())),
        auth_data: Set(upstream.and_then(|u| u.auth_data)),
        tool_settings: Set(json_of(&new.tool_settings)),
        metrics_tool_names: Set(new.metrics_tool_names),
        tags: Set(json_of(&new.tags)),
        probed_tools: Set(None),
        probed_at: Set(None),
        probe_protocol_version: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| {
        Error::unique_violation(e, "slug", format!("a server with slug {} already exists in this tenant", new.slug))
    })?;
    if let Some(members) = members {
        write_members(txn, server.id, members).await?;
    }
    collaborators::ActiveModel {
        server_id: Set(server.id),
        subject_kind: Set(creator.subject().0.as_str().to_owned()),
        subject_id: Set(creator.subject().1),
        role: Set(ServerRole::Manager.as_str().to_owned()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    let details = json!({"kind": kind.as_str(), "url": server.url, "auth": auth_type(server.auth_data.as_ref())});
    let detail = detail(txn, server).await?;
    change
        .commit(Event::new("server.create", format!("server:{}", detail.server.slug)).tenant(tenant).details(details))
        .await?;
    Ok(detail)
}

#[allow(clippy::too_many_arguments)] // the caller's rights travel beside the change
pub async fn update<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    editor: (&Caller, bool),
    server: servers::Model,
    patch: ServerPatch,
    now: DateTime<Utc>,
) -> Result<ServerDetail> {
    let kind = ServerKind::parse(&server.kind)?;
    let remote_only = [
        ("url", patch.url.is_some()),
        ("transport", patch.transport.is_some()),
        ("additional_headers", patch.additional_headers.is_some()),
        ("tls", patch.tls_reject_unauthorized.is_some() || patch.tls_ca_certificate.is_some()),
        ("auth_data", patch.auth_data.is_some()),
    ];
    let mut errors: Vec<FieldError> = Vec::new();
    if kind == ServerKind::Virtual {
        errors.extend(
            remote_only.iter().filter(|(_, set)| *set).map(|(field, _)| {
                FieldError::new(*field, "not_allowed", "a virtual server has no upstream of its own")
            }),
        );
    } else if patch.members.is_some() {
        errors.push(FieldError::new("servers", "not_allowed", "only virtual servers have member servers"));
    }
    // Secrets were given for one destination. When the upstream moves to another origin, the
    // server's own credential must be given again (or removed), and everyone's credentials for
    // it are dropped: a manager must not be able to redirect them to a host of their choosing.
    let origin_of = |u: &str| url::Url::parse(u).ok().map(|u| u.origin().ascii_serialization());
    let origin_changed = patch
        .url
        .as_ref()
        .is_some_and(|new| server.url.as_deref().and_then(origin_of) != Some(new.origin().ascii_serialization()));
    let has_credential = crate::outbound::snapshot_entry_of(server.auth_data.as_ref()).needed();
    if origin_changed && has_credential && patch.auth_data.is_none() {
        errors.push(FieldError::new(
            "auth_data",
            "required_on_origin_change",
            "the upstream moves to another origin: give its auth_data again (or null to remove it); credentials set for the old origin are not sent to the new one",
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let mut dropped = 0;
    if origin_changed {
        dropped += auth_overrides::Entity::delete_many()
            .filter(auth_overrides::Column::ServerId.eq(server.id))
            .exec(txn)
            .await?
            .rows_affected;
        dropped += upstream_grants::Entity::delete_many()
            .filter(upstream_grants::Column::ServerId.eq(server.id))
            .exec(txn)
            .await?
            .rows_affected;
        // Virtual servers' own credentials for this member were meant for the old origin too.
        dropped += virtual_members::Entity::update_many()
            .col_expr(virtual_members::Column::AuthData, Expr::value(Option::<Value>::None))
            .filter(virtual_members::Column::MemberServerId.eq(server.id))
            .filter(virtual_members::Column::AuthData.is_not_null())
            .exec(txn)
            .await?
            .rows_affected;
    }
    if let Some(specs) = &patch.members {
        let existing = virtual_members::Entity::find()
            .filter(virtual_members::Column::VirtualServerId.eq(server.id))
            .all(txn)
            .await?
            .into_iter()
            .map(|m| m.member_server_id)
            .collect();
        let composer = Composer { caller: editor.0, tenant_admin: editor.1, existing };
        let members = resolve_members(txn, tenant, specs, &composer).await?;
        write_members(txn, server.id, members).await?;
    }
    let slug = server.slug.clone();
    let server_id = server.id;
    let url_changed = patch.url.is_some();
    let mut active: servers::ActiveModel = server.into();
    if let Some(v) = patch.display_name {
        active.display_name = Set(v.into_inner());
    }
    if let Some(v) = patch.description {
        active.description = Set(v);
    }
    if let Some(v) = patch.tags {
        active.tags = Set(json_of(&v));
    }
    if let Some(v) = patch.tool_settings {
        active.tool_settings = Set(json_of(&v));
    }
    if let Some(v) = patch.metrics_tool_names {
        active.metrics_tool_names = Set(v);
    }
    if let Some(v) = patch.url {
        // A new upstream may have other tools: the cached probe no longer describes it.
        active.url = Set(Some(v.to_string()));
        active.probed_tools = Set(None);
        active.probed_at = Set(None);
        active.probe_protocol_version = Set(None);
    }
    if let Some(v) = patch.transport {
        active.transport = Set(Some(v.as_str().to_owned()));
    }
    if let Some(v) = patch.additional_headers {
        active.additional_headers = Set(json_of(&v));
    }
    if let Some(v) = patch.tls_reject_unauthorized {
        active.tls_reject_unauthorized = Set(v);
    }
    if let Some(v) = patch.tls_ca_certificate {
        active.tls_ca_certificate = Set(v);
    }
    let auth_changed = patch.auth_data.is_some();
    if auth_changed || url_changed {
        // Another provider, client or resource: the gateway's registration and the endpoints
        // discovered for it belong to the old configuration.
        upstream_clients::Entity::delete_many()
            .filter(upstream_clients::Column::ServerId.eq(server_id))
            .exec(txn)
            .await?;
    }
    if let Some(v) = patch.auth_data {
        active.auth_data = Set(v);
    }
    active.updated_at = Set(now);
    let server = active.update(txn).await?;
    let details = match (auth_changed, origin_changed) {
        (_, true) => Some(
            json!({"auth": auth_type(server.auth_data.as_ref()), "origin_changed": true, "credentials_dropped": dropped}),
        ),
        (true, false) => Some(json!({"auth": auth_type(server.auth_data.as_ref())})),
        (false, false) => None,
    };
    let detail = detail(txn, server).await?;
    change.commit(Event::new("server.update", format!("server:{slug}")).tenant(tenant).details(details)).await?;
    Ok(detail)
}

/// Deletes a server, unless a virtual server still uses it.
pub async fn delete<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    server: servers::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let users_of: Vec<i64> = virtual_members::Entity::find()
        .filter(virtual_members::Column::MemberServerId.eq(server.id))
        .all(txn)
        .await?
        .into_iter()
        .map(|l| l.virtual_server_id)
        .collect();
    if !users_of.is_empty() {
        let mut names: Vec<String> = servers::Entity::find()
            .filter(servers::Column::Id.is_in(users_of))
            .all(txn)
            .await?
            .into_iter()
            .map(|s| s.slug)
            .collect();
        names.sort();
        return Err(Error::conflict(
            "server_in_use",
            None,
            format!(
                "{} is a member of the virtual server(s) {}; remove it from them first",
                server.slug,
                names.join(", ")
            ),
        ));
    }
    servers::Entity::delete_by_id(server.id).exec(txn).await?;
    change.commit(Event::new("server.delete", format!("server:{}", server.slug)).tenant(tenant)).await?;
    Ok(())
}

/// The ids of the teams a user belongs to in a tenant, `everyone` included when they are a member.
async fn team_ids_of(db: &impl ConnectionTrait, tenant: &tenants::Model, user_id: i64) -> Result<Vec<i64>> {
    let tenant_teams = teams::Entity::find().filter(teams::Column::TenantId.eq(tenant.id)).all(db).await?;
    let (everyone, named): (Vec<_>, Vec<_>) = tenant_teams.into_iter().partition(|t| t.builtin);
    let mut ids: Vec<i64> = team_members::Entity::find()
        .filter(team_members::Column::UserId.eq(user_id))
        .filter(team_members::Column::TeamId.is_in(named.into_iter().map(|t| t.id)))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.team_id)
        .collect();
    let is_member = tenant_members::Entity::find()
        .filter(tenant_members::Column::TenantId.eq(tenant.id))
        .filter(tenant_members::Column::UserId.eq(user_id))
        .count(db)
        .await?
        > 0;
    if is_member {
        ids.extend(everyone.into_iter().map(|t| t.id));
    }
    Ok(ids)
}

/// Collaborator rows that apply to a caller: their own, and (for people) their teams'.
async fn caller_condition(db: &impl ConnectionTrait, tenant: &tenants::Model, caller: &Caller) -> Result<Condition> {
    Ok(match caller {
        Caller::User(user) => subject_condition(user.id, team_ids_of(db, tenant, user.id).await?),
        Caller::VirtualAccount(va) => Condition::all()
            .add(collaborators::Column::SubjectKind.eq(SubjectKind::VirtualAccount.as_str()))
            .add(collaborators::Column::SubjectId.eq(va.id)),
    })
}

fn subject_condition(user_id: i64, team_ids: Vec<i64>) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(collaborators::Column::SubjectKind.eq(SubjectKind::User.as_str()))
                .add(collaborators::Column::SubjectId.eq(user_id)),
        )
        .add(
            Condition::all()
                .add(collaborators::Column::SubjectKind.eq(SubjectKind::Team.as_str()))
                .add(collaborators::Column::SubjectId.is_in(team_ids)),
        )
}

/// A user's effective role on a server: tenant admins manage every server; otherwise the
/// highest role granted to them directly or through a team.
pub async fn role_of(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    caller: &Caller,
    tenant_admin: bool,
    server: &servers::Model,
) -> Result<Option<ServerRole>> {
    if tenant_admin {
        return Ok(Some(ServerRole::Manager));
    }
    let condition = caller_condition(db, tenant, caller).await?;
    let grants = collaborators::Entity::find()
        .filter(collaborators::Column::ServerId.eq(server.id))
        .filter(condition)
        .all(db)
        .await?;
    Ok(best_roles(grants)?.remove(&server.id))
}

/// The highest role among grants, by server id.
fn best_roles(grants: Vec<collaborators::Model>) -> Result<std::collections::HashMap<i64, ServerRole>> {
    let mut roles = std::collections::HashMap::new();
    for grant in grants {
        let role = ServerRole::parse(&grant.role)?;
        let best = roles.entry(grant.server_id).or_insert(role);
        *best = (*best).max(role);
    }
    Ok(roles)
}

/// A person's role on a server: platform and tenant admins manage every server of the tenant.
pub async fn user_role(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    user: &users::Model,
    server: &servers::Model,
) -> Result<Option<ServerRole>> {
    let admin = user.is_platform_admin
        || crate::tenants::role_of(db, tenant.id, user.id).await? == Some(crate::domain::TenantRole::Admin);
    role_of(db, tenant, &Caller::User(user.clone()), admin, server).await
}

/// One page of the servers of a tenant a caller can see (all for tenant admins, else those
/// they collaborate on), each with its members and the caller's role, in a constant number of
/// queries whatever the page's size.
pub async fn visible_page(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    caller: &Caller,
    tenant_admin: bool,
    search: Option<&str>,
    page: PageRequest,
) -> Result<Paged<(ServerDetail, ServerRole)>> {
    let mut select = servers::Entity::find().filter(servers::Column::TenantId.eq(tenant.id));
    if let Some(text) = search.map(str::trim).filter(|t| !t.is_empty()) {
        // Case-insensitive on both databases (PostgreSQL's LIKE is not), and the LIKE wildcards
        // in what a person typed are matched as themselves.
        use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
        let escaped: String = text.to_lowercase().chars().fold(String::new(), |mut out, c| {
            if matches!(c, '%' | '_' | '\\') {
                out.push('\\');
            }
            out.push(c);
            out
        });
        let pattern = || LikeExpr::new(format!("%{escaped}%")).escape('\\');
        select = select.filter(
            sea_orm::Condition::any()
                .add(Expr::expr(Func::lower(Expr::col(servers::Column::Slug))).like(pattern()))
                .add(Expr::expr(Func::lower(Expr::col(servers::Column::DisplayName))).like(pattern())),
        );
    }
    // The caller's grants decide both what they see and their role on it.
    let mut roles = std::collections::HashMap::new();
    if !tenant_admin {
        let condition = caller_condition(db, tenant, caller).await?;
        roles = best_roles(collaborators::Entity::find().filter(condition).all(db).await?)?;
        select = select.filter(servers::Column::Id.is_in(roles.keys().copied()));
    }
    let paged = page::fetch(db, select, servers::Column::Id, |s| s.id, page).await?;
    let items = details(db, paged.items)
        .await?
        .into_iter()
        .map(|d| {
            let role = if tenant_admin {
                ServerRole::Manager
            } else {
                roles.get(&d.server.id).copied().unwrap_or(ServerRole::User)
            };
            (d, role)
        })
        .collect();
    Ok(Paged { items, next_after: paged.next_after })
}

/// Records a successful probe's tool list and protocol version on the server.
pub async fn save_probe<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    server: servers::Model,
    protocol_version: String,
    tools: &[ProbedTool],
    now: DateTime<Utc>,
) -> Result<servers::Model> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let mut active: servers::ActiveModel = server.into();
    active.probed_tools = Set(Some(json_of(&tools)));
    active.probed_at = Set(Some(now));
    active.probe_protocol_version = Set(Some(protocol_version));
    let server = active.update(txn).await?;
    let details = json!({"tools": tools.len(), "protocol_version": server.probe_protocol_version});
    change
        .commit(Event::new("server.probe", format!("server:{}", server.slug)).tenant(tenant).details(details))
        .await?;
    Ok(server)
}

/// A collaborator with a readable subject (`user:<email>`, `team:<slug>`, …).
pub struct Collaborator {
    pub row: collaborators::Model,
    pub role: ServerRole,
    pub subject: String,
    pub display_name: String,
}

/// Parses `user:<email>`, `team:<slug>` or `virtualaccount:<name>` and finds that subject in the
/// tenant. Users must be tenant members.
pub async fn resolve_subject(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    raw: &str,
) -> Result<(SubjectKind, i64, String, String)> {
    let err = |code: &str, msg: String| Error::from(FieldError::new("subject", code, msg));
    let (kind, rest) = raw
        .split_once(':')
        .ok_or_else(|| err("invalid_subject", "must be user:<email>, team:<slug> or virtualaccount:<name>".into()))?;
    match kind {
        "user" => {
            let email = Email::parse("subject", rest)?;
            let user = users::Entity::find()
                .filter(users::Column::Email.eq(email.as_str()))
                .one(db)
                .await?
                .ok_or_else(|| err("unknown_subject", format!("no user {email}")))?;
            let member = tenant_members::Entity::find()
                .filter(tenant_members::Column::TenantId.eq(tenant.id))
                .filter(tenant_members::Column::UserId.eq(user.id))
                .count(db)
                .await?
                > 0;
            if !member {
                return Err(err("not_a_member", format!("{email} is not a member of tenant {}", tenant.slug)));
            }
            Ok((SubjectKind::User, user.id, format!("user:{email}"), user.display_name))
        }
        "team" => {
            let team = teams::Entity::find()
                .filter(teams::Column::TenantId.eq(tenant.id))
                .filter(teams::Column::Slug.eq(rest))
                .one(db)
                .await?
                .ok_or_else(|| err("unknown_subject", format!("no team {rest} in tenant {}", tenant.slug)))?;
            Ok((SubjectKind::Team, team.id, format!("team:{}", team.slug), team.display_name))
        }
        "virtualaccount" => crate::virtual_accounts::resolve_subject(db, tenant, rest)
            .await?
            .map(|va| (SubjectKind::VirtualAccount, va.id, format!("virtualaccount:{}", va.name), va.name.clone()))
            .ok_or_else(|| err("unknown_subject", format!("no virtual account {rest} in tenant {}", tenant.slug))),
        _ => Err(err("invalid_subject", "must be user:<email>, team:<slug> or virtualaccount:<name>".into())),
    }
}

/// Collaborators of a server, with subjects spelled out.
pub async fn collaborators(db: &impl ConnectionTrait, server: &servers::Model) -> Result<Vec<Collaborator>> {
    let rows = collaborators::Entity::find()
        .filter(collaborators::Column::ServerId.eq(server.id))
        .order_by_asc(collaborators::Column::Id)
        .all(db)
        .await?;
    // One query per kind of subject, not one per collaborator.
    let ids = |kind: &str| rows.iter().filter(|r| r.subject_kind == kind).map(|r| r.subject_id).collect::<Vec<_>>();
    let people: std::collections::HashMap<i64, users::Model> = users::Entity::find()
        .filter(users::Column::Id.is_in(ids(SubjectKind::User.as_str())))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let groups: std::collections::HashMap<i64, teams::Model> = teams::Entity::find()
        .filter(teams::Column::Id.is_in(ids(SubjectKind::Team.as_str())))
        .all(db)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let accounts = crate::virtual_accounts::names_of(db, ids(SubjectKind::VirtualAccount.as_str())).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (subject, display_name) = match row.subject_kind.as_str() {
            "user" => match people.get(&row.subject_id) {
                Some(u) => (format!("user:{}", u.email), u.display_name.clone()),
                None => continue,
            },
            "team" => match groups.get(&row.subject_id) {
                Some(t) => (format!("team:{}", t.slug), t.display_name.clone()),
                None => continue,
            },
            _ => match accounts.get(&row.subject_id) {
                Some(name) => (format!("virtualaccount:{name}"), name.clone()),
                None => continue,
            },
        };
        out.push(Collaborator { role: ServerRole::parse(&row.role)?, row, subject, display_name });
    }
    Ok(out)
}

fn last_manager() -> Error {
    Error::conflict(
        "last_manager",
        None,
        "a server must keep at least one manager; make another collaborator a manager first",
    )
}

async fn managers_other_than(db: &impl ConnectionTrait, server_id: i64, row_id: i64) -> Result<u64> {
    Ok(collaborators::Entity::find()
        .filter(collaborators::Column::ServerId.eq(server_id))
        .filter(collaborators::Column::Role.eq(ServerRole::Manager.as_str()))
        .filter(collaborators::Column::Id.ne(row_id))
        .count(db)
        .await?)
}

/// Grants (or changes) a subject's role on a server. Returns the collaborator and whether it
/// is new.
pub async fn put_collaborator<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    server: &servers::Model,
    subject: &str,
    role: ServerRole,
    now: DateTime<Utc>,
) -> Result<(Collaborator, bool)> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let (kind, id, subject, display_name) = resolve_subject(txn, tenant, subject).await?;
    let existing = collaborators::Entity::find()
        .filter(collaborators::Column::ServerId.eq(server.id))
        .filter(collaborators::Column::SubjectKind.eq(kind.as_str()))
        .filter(collaborators::Column::SubjectId.eq(id))
        .one(txn)
        .await?;
    let (row, created) = match existing {
        Some(row) => {
            if ServerRole::parse(&row.role)? == ServerRole::Manager
                && role != ServerRole::Manager
                && managers_other_than(txn, server.id, row.id).await? == 0
            {
                return Err(last_manager());
            }
            let mut active: collaborators::ActiveModel = row.into();
            active.role = Set(role.as_str().to_owned());
            (active.update(txn).await?, false)
        }
        None => {
            let row = collaborators::ActiveModel {
                server_id: Set(server.id),
                subject_kind: Set(kind.as_str().to_owned()),
                subject_id: Set(id),
                role: Set(role.as_str().to_owned()),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            (row, true)
        }
    };
    let details = json!({"subject": subject, "role": role.as_str()});
    change
        .commit(Event::new("collaborator.put", format!("server:{}", server.slug)).tenant(tenant).details(details))
        .await?;
    Ok((Collaborator { row, role, subject, display_name }, created))
}

pub async fn remove_collaborator<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    server: &servers::Model,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    // An unknown or malformed subject is simply not a collaborator.
    let (kind, id, subject, _) = resolve_subject(txn, tenant, subject).await.map_err(|_| Error::NotFound)?;
    let row = collaborators::Entity::find()
        .filter(collaborators::Column::ServerId.eq(server.id))
        .filter(collaborators::Column::SubjectKind.eq(kind.as_str()))
        .filter(collaborators::Column::SubjectId.eq(id))
        .one(txn)
        .await?
        .ok_or(Error::NotFound)?;
    if ServerRole::parse(&row.role)? == ServerRole::Manager && managers_other_than(txn, server.id, row.id).await? == 0 {
        return Err(last_manager());
    }
    collaborators::Entity::delete_by_id(row.id).exec(txn).await?;
    let details = json!({"subject": subject});
    change
        .commit(Event::new("collaborator.remove", format!("server:{}", server.slug)).tenant(tenant).details(details))
        .await?;
    Ok(())
}
