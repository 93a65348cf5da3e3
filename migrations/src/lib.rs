//! Schema migrations for mcpgate. Written with sea-query's portable schema helpers only, so
//! SQLite and PostgreSQL run exactly the same steps.

pub use sea_orm_migration::prelude::*;

mod columns;

mod m20261127_170000_create_users_and_sessions;
mod m20261127_170100_create_tenants_members_teams;
mod m20261127_180000_create_servers_collaborators_audit;
mod m20261127_190000_create_tokens_and_virtual_accounts;
mod m20261127_200000_create_policy;
mod m20261128_100000_create_outbound_auth;
mod m20261128_200000_create_oauth_server;
mod m20261202_100000_create_identity;
mod m20261202_200000_tenant_logo;
mod m20261203_090000_server_metrics_tools;
mod m20261204_090000_snapshot_deltas;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_170000_create_users_and_sessions::Migration),
            Box::new(m20261127_170100_create_tenants_members_teams::Migration),
            Box::new(m20261127_180000_create_servers_collaborators_audit::Migration),
            Box::new(m20261127_190000_create_tokens_and_virtual_accounts::Migration),
            Box::new(m20261127_200000_create_policy::Migration),
            Box::new(m20261128_100000_create_outbound_auth::Migration),
            Box::new(m20261128_200000_create_oauth_server::Migration),
            Box::new(m20261202_100000_create_identity::Migration),
            Box::new(m20261202_200000_tenant_logo::Migration),
            Box::new(m20261203_090000_server_metrics_tools::Migration),
            Box::new(m20261204_090000_snapshot_deltas::Migration),
        ]
    }
}
