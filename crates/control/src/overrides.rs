//! Auth Overrides (DESIGN.md §2): a subject's own values for a server's per-user credential
//! placeholders, or their own values for its shared headers. Values are sealed at rest and
//! never shown again; managers set anyone's, other collaborators only their own.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::{Actor, Change, Event};
use crate::auth::seal::Sealer;
use crate::error::{Error, FieldError, Result};
use crate::outbound::AuthData;
use crate::servers::SubjectKind;
use crate::store::entities::{auth_overrides, servers, tenants, users};

/// An override as the API shows it: whose it is and which values are set, never the values.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OverrideView {
    /// `user:<email>` or `virtualaccount:<name>`.
    pub subject: String,
    /// The placeholder names that have a (write-only) value.
    pub values_set: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a subject must fill for a server.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OverrideSchema {
    /// The server's outbound auth type (`none`, `header`, `oauth2`, `passthrough`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The placeholder names to fill; empty when the server takes no Auth Override.
    pub placeholders: Vec<String>,
    /// The header templates the values go into.
    pub headers: BTreeMap<String, String>,
    /// Servers with one shared credential (`header`, `global`): the headers a subject may
    /// replace with their own values, keyed by header name.
    pub overridable_headers: Vec<String>,
}

const MAX_VALUE: usize = 8192;

fn auth_of(server: &servers::Model) -> Option<AuthData> {
    server.auth_data.as_ref().and_then(AuthData::from_stored)
}

pub fn schema(server: &servers::Model) -> OverrideSchema {
    let auth = auth_of(server);
    let kind = crate::outbound::snapshot_entry_of(server.auth_data.as_ref()).kind().to_owned();
    let placeholders = auth.as_ref().map(AuthData::placeholder_names).unwrap_or_default();
    let (headers, overridable_headers) = match auth {
        Some(AuthData::Header(h)) if !placeholders.is_empty() => (h.headers, Vec::new()),
        Some(AuthData::Header(h)) => (BTreeMap::new(), h.headers.into_keys().collect()),
        _ => (BTreeMap::new(), Vec::new()),
    };
    OverrideSchema { kind, placeholders, headers, overridable_headers }
}

/// Checks values against the server: every placeholder (per-user headers) or some of the
/// shared headers (global headers), each value one line.
pub fn check_values(server: &servers::Model, values: &BTreeMap<String, String>) -> Result<()> {
    let schema = schema(server);
    let per_user = !schema.placeholders.is_empty();
    let wanted = if per_user { schema.placeholders } else { schema.overridable_headers };
    if wanted.is_empty() {
        return Err(Error::conflict(
            "no_override",
            None,
            format!(
                "{} takes no Auth Override: its outbound auth has neither placeholders nor shared headers",
                server.slug
            ),
        ));
    }
    let mut errors = Vec::new();
    if values.is_empty() {
        errors.push(FieldError::new("values", "required", format!("give a value for {}", wanted.join(", "))));
    }
    for (name, value) in values {
        let field = format!("values.{name}");
        let known = if per_user { wanted.contains(name) } else { wanted.iter().any(|w| w.eq_ignore_ascii_case(name)) };
        if !known {
            let what = if per_user { "placeholder" } else { "shared header" };
            errors.push(FieldError::new(
                field,
                if per_user { "unknown_placeholder" } else { "unknown_header" },
                format!("{} has no {what} {name}; it has {}", server.slug, wanted.join(", ")),
            ));
        } else if !crate::domain::is_header_value(value, MAX_VALUE) {
            errors.push(FieldError::new(
                field,
                "invalid_value",
                "must be non-empty, at most 8192 bytes, with no control characters",
            ));
        }
    }
    if per_user {
        for name in wanted.iter().filter(|n| !values.contains_key(*n)) {
            errors.push(FieldError::new(format!("values.{name}"), "required", "every placeholder needs a value"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// The override rows of one subject on one server (`kind` is `user` or `virtualaccount`).
pub fn of_subject(server_id: i64, kind: &str, id: i64) -> Condition {
    Condition::all()
        .add(auth_overrides::Column::ServerId.eq(server_id))
        .add(auth_overrides::Column::SubjectKind.eq(kind))
        .add(auth_overrides::Column::SubjectId.eq(id))
}

async fn label(db: &impl ConnectionTrait, row: &auth_overrides::Model) -> Result<Option<String>> {
    Ok(match row.subject_kind.as_str() {
        "user" => users::Entity::find_by_id(row.subject_id).one(db).await?.map(|u| format!("user:{}", u.email)),
        _ => crate::virtual_accounts::name_of(db, row.subject_id).await?.map(|name| format!("virtualaccount:{name}")),
    })
}

fn view(row: &auth_overrides::Model, subject: String, sealer: &Sealer) -> OverrideView {
    let place = crate::auth::seal::Place::override_values(row.server_id, &row.subject_kind, row.subject_id);
    let values_set = sealer
        .open_at(&row.values, &place)
        .ok()
        .and_then(|b| serde_json::from_slice::<BTreeMap<String, String>>(&b).ok())
        .map(|v| v.into_keys().collect())
        .unwrap_or_default();
    OverrideView { subject, values_set, created_at: row.created_at, updated_at: row.updated_at }
}

/// The overrides on a server; `only` restricts them to one subject.
pub async fn list(
    db: &impl ConnectionTrait,
    sealer: &Sealer,
    server: &servers::Model,
    only: Option<(SubjectKind, i64)>,
) -> Result<Vec<OverrideView>> {
    let query = match only {
        Some((kind, id)) => auth_overrides::Entity::find().filter(of_subject(server.id, kind.as_str(), id)),
        None => auth_overrides::Entity::find().filter(auth_overrides::Column::ServerId.eq(server.id)),
    };
    let rows = query.order_by_asc(auth_overrides::Column::Id).all(db).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(subject) = label(db, &row).await? {
            out.push(view(&row, subject, sealer));
        }
    }
    Ok(out)
}

/// Sets a subject's values (replacing any earlier ones). Returns the view and whether it is new.
#[allow(clippy::too_many_arguments)]
pub async fn put<C: TransactionTrait>(
    db: &C,
    sealer: &Sealer,
    actor: &Actor,
    tenant: &tenants::Model,
    server: &servers::Model,
    subject: (SubjectKind, i64, String),
    values: BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(OverrideView, bool)> {
    check_values(server, &values)?;
    let (kind, id, label) = subject;
    let place = crate::auth::seal::Place::override_values(server.id, kind.as_str(), id);
    let sealed = sealer.seal_at(serde_json::to_string(&values).map_err(anyhow::Error::from)?.as_bytes(), &place)?;
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let existing = auth_overrides::Entity::find().filter(of_subject(server.id, kind.as_str(), id)).one(txn).await?;
    let created = existing.is_none();
    let row = match existing {
        Some(row) => {
            let mut active: auth_overrides::ActiveModel = row.into();
            active.values = Set(sealed);
            active.updated_at = Set(now);
            active.update(txn).await?
        }
        None => {
            auth_overrides::ActiveModel {
                server_id: Set(server.id),
                subject_kind: Set(kind.as_str().to_owned()),
                subject_id: Set(id),
                values: Set(sealed),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(txn)
            .await?
        }
    };
    // The names only: the values are secrets.
    let details = json!({"subject": label, "values_set": values.keys().collect::<Vec<_>>()});
    change
        .commit(Event::new("auth_override.put", format!("server:{}", server.slug)).tenant(tenant).details(details))
        .await?;
    Ok((view(&row, label, sealer), created))
}

pub async fn delete<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    server: &servers::Model,
    subject: (SubjectKind, i64, String),
    now: DateTime<Utc>,
) -> Result<()> {
    let (kind, id, label) = subject;
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let deleted =
        auth_overrides::Entity::delete_many().filter(of_subject(server.id, kind.as_str(), id)).exec(txn).await?;
    if deleted.rows_affected == 0 {
        return Err(Error::NotFound);
    }
    change
        .commit(
            Event::new("auth_override.delete", format!("server:{}", server.slug))
                .tenant(tenant)
                .details(json!({"subject": label})),
        )
        .await?;
    Ok(())
}
