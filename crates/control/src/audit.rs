//! The audit trail: every mutation records who did what to what, in the same transaction as
//! the change itself, so the trail and the state cannot disagree.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Set, Statement,
    TransactionSession, TransactionTrait,
};
use serde_json::Value;

use crate::page::{self, PageRequest, Paged};
use crate::store::entities::{audit_events, tenants};

/// Who is acting, and the request that carried it.
#[derive(Clone, Debug)]
pub struct Actor {
    /// `user:<email>`, `virtualaccount:<name>` or `system`.
    pub subject: String,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Self { subject: "system".into(), request_id: None }
    }
}

pub const SUCCESS: &str = "success";

/// What an audit event says: the action, its target, optional details and, for tenant-scoped
/// changes, the tenant.
pub struct Event {
    action: &'static str,
    target: String,
    tenant: Option<(i64, String)>,
    details: Option<Value>,
    outcome: &'static str,
}

impl Event {
    pub fn new(action: &'static str, target: impl Into<String>) -> Self {
        Self { action, target: target.into(), tenant: None, details: None, outcome: SUCCESS }
    }

    pub fn tenant(mut self, tenant: &tenants::Model) -> Self {
        self.tenant = Some((tenant.id, tenant.slug.clone()));
        self
    }

    pub fn in_tenant(self, tenant: Option<&tenants::Model>) -> Self {
        match tenant {
            Some(t) => self.tenant(t),
            None => self,
        }
    }

    /// A refusal's code instead of `success`.
    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: impl Into<Option<Value>>) -> Self {
        self.details = details.into();
        self
    }
}

/// Writes an audit event on `db`. Most changes go through [`Change`]; this is for events
/// written inside a change that is not the caller's to commit.
pub async fn record(db: &impl ConnectionTrait, actor: &Actor, event: Event, now: DateTime<Utc>) -> Result<(), DbErr> {
    let (tenant_id, tenant_slug) = event.tenant.unzip();
    audit_events::ActiveModel {
        at: Set(now),
        tenant_id: Set(tenant_id),
        tenant_slug: Set(tenant_slug),
        actor: Set(actor.subject.clone()),
        action: Set(event.action.to_owned()),
        target: Set(event.target),
        outcome: Set(event.outcome.to_owned()),
        request_id: Set(actor.request_id.clone()),
        details: Set(event.details),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// One audited change to the control plane's state: the change itself, its audit event and
/// the policy version commit together or not at all, so the trail and the state cannot
/// disagree and a snapshot at version N reflects exactly the changes committed by N.
pub struct Change<'a, T> {
    txn: T,
    actor: &'a Actor,
    now: DateTime<Utc>,
    /// For the transaction-latency metric (the clock above may be a test's).
    began: std::time::Instant,
}

impl<'a, T: ConnectionTrait + TransactionSession> Change<'a, T> {
    pub async fn begin<C>(db: &C, actor: &'a Actor, now: DateTime<Utc>) -> Result<Self, DbErr>
    where
        C: TransactionTrait<Transaction = T>,
    {
        let began = std::time::Instant::now();
        Ok(Self { txn: crate::store::begin_write(db).await?, actor, now, began })
    }

    /// The transaction every read and write of the change goes through.
    pub fn db(&self) -> &T {
        &self.txn
    }

    /// An event besides the one `commit` records, for changes that are several actions.
    pub async fn record(&self, event: Event) -> Result<(), DbErr> {
        record(&self.txn, self.actor, event, self.now).await
    }

    /// Records `event`, moves the policy version (anything audited may change what the proxy
    /// enforces) and commits.
    pub async fn commit(self, event: Event) -> Result<(), DbErr> {
        self.record(event).await?;
        crate::policy::publish::bump(&self.txn).await?;
        self.txn.commit().await?;
        crate::proxy::metrics::get().db_transaction_seconds.observe(self.began.elapsed().as_secs_f64());
        Ok(())
    }
}

#[derive(Default)]
pub struct Filter {
    pub action: Option<String>,
    pub actor: Option<String>,
    /// A target, e.g. `server:github` (a server's changes and its proxied calls).
    pub target: Option<String>,
    pub outcome: Option<String>,
    /// Events at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Events before this instant.
    pub until: Option<DateTime<Utc>>,
}

/// A tenant's events, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    filter: Filter,
    page: PageRequest,
) -> Result<Paged<audit_events::Model>, DbErr> {
    let mut select = audit_events::Entity::find().filter(audit_events::Column::TenantId.eq(tenant.id));
    if let Some(action) = filter.action {
        select = select.filter(audit_events::Column::Action.eq(action));
    }
    if let Some(actor) = filter.actor {
        select = select.filter(audit_events::Column::Actor.eq(actor));
    }
    if let Some(target) = filter.target {
        select = select.filter(audit_events::Column::Target.eq(target));
    }
    if let Some(outcome) = filter.outcome {
        select = select.filter(audit_events::Column::Outcome.eq(outcome));
    }
    if let Some(since) = filter.since {
        select = select.filter(audit_events::Column::At.gte(since));
    }
    if let Some(until) = filter.until {
        select = select.filter(audit_events::Column::At.lt(until));
    }
    page::fetch(db, select, audit_events::Column::Id, |e| e.id, page.newest_first()).await
}

/// A decision's `details`, as text: written as JSON without building a value tree first.
#[derive(serde::Serialize)]
struct DecisionDetails<'a> {
    snapshot_version: i64,
    reason: &'a Option<String>,
    method: &'a Option<String>,
    name: &'a Option<String>,
    upstream_status: Option<u16>,
    latency_ms: Option<f64>,
}

/// Rows per INSERT: well under SQLite's and PostgreSQL's bound parameters per statement.
const DECISIONS_PER_INSERT: usize = 500;
const DECISION_COLUMNS: usize = 9;

/// Writes proxy decisions without touching the policy version: they record enforcement, they
/// do not change what is enforced. One multi-row INSERT per 500 decisions, written by hand: the
/// in-process proxy writes one per proxied request, and building the same statement through
/// the query builder cost as much CPU as the rest of a request's bookkeeping.
pub async fn record_decisions(
    db: &impl ConnectionTrait,
    batch: Vec<crate::proxy::decisions::Decision>,
) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    for chunk in batch.chunks(DECISIONS_PER_INSERT) {
        let mut sql = String::with_capacity(140 + chunk.len() * 60);
        sql.push_str(
            "INSERT INTO audit_events (at, tenant_id, tenant_slug, actor, action, target, outcome, request_id, details) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * DECISION_COLUMNS);
        for (row, d) in chunk.iter().enumerate() {
            if row > 0 {
                sql.push(',');
            }
            sql.push('(');
            for column in 0..DECISION_COLUMNS {
                if column > 0 {
                    sql.push(',');
                }
                match backend {
                    DbBackend::Postgres => {
                        use std::fmt::Write;
                        let _ = write!(sql, "${}", row * DECISION_COLUMNS + column + 1);
                        if column == DECISION_COLUMNS - 1 {
                            sql.push_str("::json");
                        }
                    }
                    _ => sql.push('?'),
                }
            }
            sql.push(')');
            let details = DecisionDetails {
                snapshot_version: d.snapshot_version,
                reason: &d.reason,
                method: &d.method,
                name: &d.name,
                upstream_status: d.upstream_status,
                latency_ms: d.latency_ms,
            };
            values.extend([
                d.at.into(),
                d.tenant_id.into(),
                d.tenant_id.map(|_| d.tenant.clone()).into(),
                d.actor.clone().into(),
                crate::proxy::decisions::ACTION.into(),
                format!("server:{}", d.server).into(),
                d.outcome.clone().into(),
                d.request_id.clone().into(),
                serde_json::to_string(&details).unwrap_or_default().into(),
            ]);
        }
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
}

/// The in-process proxy's decisions go straight into the store.
pub struct StoreDecisions(pub sea_orm::DatabaseConnection);

#[async_trait::async_trait]
impl crate::proxy::decisions::DecisionSink for StoreDecisions {
    async fn write(&self, batch: Vec<crate::proxy::decisions::Decision>) -> anyhow::Result<()> {
        Ok(record_decisions(&self.0, batch).await?)
    }
}
