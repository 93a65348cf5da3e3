//! A verified snapshot with the lookups the proxy needs, built once when the snapshot is
//! accepted so that a request only does hash-map reads.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::auth::token;
use crate::policy::{ServerEntry, Snapshot, TokenOwner};

/// Who is calling, as the snapshot knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    User(i64),
    VirtualAccount(i64),
}

/// What a subject may do on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    User,
    Manager,
}

pub struct Policy {
    pub snapshot: Snapshot,
    servers: HashMap<(String, String), usize>,
    server_ids: HashMap<i64, usize>,
    tenant_ids: HashMap<String, i64>,
    emails: HashMap<i64, usize>,
    tokens: HashMap<[u8; 32], usize>,
    tenant_roles: HashMap<(i64, i64), String>,
    user_teams: HashMap<i64, HashSet<i64>>,
    everyone: HashMap<i64, i64>,
    access: HashMap<i64, Vec<usize>>,
    disabled_users: HashSet<i64>,
    accounts: HashMap<i64, usize>,
}

impl Policy {
    pub fn build(snapshot: Snapshot) -> Self {
        let slugs: HashMap<i64, &str> = snapshot.tenants.iter().map(|t| (t.id, t.slug.as_str())).collect();
        let servers = snapshot
            .servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some(((slugs.get(&s.tenant)?.to_string(), s.slug.clone()), i)))
            .collect();
        let server_ids = snapshot.servers.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        let tenant_ids = snapshot.tenants.iter().map(|t| (t.slug.clone(), t.id)).collect();
        let emails = snapshot.users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        let tokens = snapshot.tokens.iter().enumerate().map(|(i, t)| (t.digest, i)).collect();
        let tenant_roles = snapshot.members.iter().map(|m| ((m.tenant, m.user), m.role.clone())).collect();
        let mut user_teams: HashMap<i64, HashSet<i64>> = HashMap::new();
        let mut everyone = HashMap::new();
        for team in &snapshot.teams {
            if team.builtin {
                everyone.insert(team.tenant, team.id);
            }
            for user in &team.members {
                user_teams.entry(*user).or_default().insert(team.id);
            }
        }
        let mut access: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, a) in snapshot.access.iter().enumerate() {
            access.entry(a.server).or_default().push(i);
        }
        let disabled_users = snapshot.users.iter().filter(|u| u.disabled).map(|u| u.id).collect();
        let accounts = snapshot.virtual_accounts.iter().enumerate().map(|(i, va)| (va.id, i)).collect();
        Self {
            snapshot,
            servers,
            server_ids,
            tenant_ids,
            emails,
            tokens,
            tenant_roles,
            user_teams,
            everyone,
            access,
            disabled_users,
            accounts,
        }
    }

    pub fn version(&self) -> i64 {
        self.snapshot.version
    }

    pub fn server(&self, tenant: &str, server: &str) -> Option<&ServerEntry> {
        self.servers.get(&(tenant.to_owned(), server.to_owned())).map(|&i| &self.snapshot.servers[i])
    }

    pub fn server_by_id(&self, id: i64) -> Option<&ServerEntry> {
        self.server_ids.get(&id).map(|&i| &self.snapshot.servers[i])
    }

    pub fn tenant(&self, slug: &str) -> Option<i64> {
        self.tenant_ids.get(slug).copied()
    }

    /// The audit trail's name for a subject: `user:<email>` or `virtualaccount:<name>`.
    pub fn subject_name(&self, subject: Subject) -> String {
        match subject {
            Subject::User(id) => match self.emails.get(&id) {
                Some(&i) => format!("user:{}", self.snapshot.users[i].email),
                None => format!("user:#{id}"),
            },
            Subject::VirtualAccount(id) => match self.accounts.get(&id) {
                Some(&i) => format!("virtualaccount:{}", self.snapshot.virtual_accounts[i].name),
                None => format!("virtualaccount:#{id}"),
            },
        }
    }

    /// The subject a bearer token stands for: well formed, known by digest, unexpired, and
    /// owned by an enabled user or a live virtual account.
    pub fn authenticate(&self, bearer: &str, now: DateTime<Utc>) -> Option<Subject> {
        token::parse(bearer)?;
        let entry = &self.snapshot.tokens[*self.tokens.get(&token::digest_bytes(bearer))?];
        if entry.expires_at.is_some_and(|at| at <= now) {
            return None;
        }
        match entry.subject_kind {
            TokenOwner::User if !self.disabled_users.contains(&entry.subject) => Some(Subject::User(entry.subject)),
            TokenOwner::VirtualAccount => {
                let va = &self.snapshot.virtual_accounts[*self.accounts.get(&entry.subject)?];
                va.expires_at.is_none_or(|at| at > now).then_some(Subject::VirtualAccount(va.id))
            }
            _ => None,
        }
    }

    /// Whether the subject belongs to the tenant at all (members, the tenant's own accounts).
    pub fn in_tenant(&self, subject: Subject, tenant: i64) -> bool {
        match subject {
            Subject::User(user) => self.tenant_roles.contains_key(&(tenant, user)),
            Subject::VirtualAccount(id) => {
                self.accounts.get(&id).is_some_and(|&i| self.snapshot.virtual_accounts[i].tenant == tenant)
            }
        }
    }

    /// The subject's role on a server: tenant admins manage everything; otherwise the best
    /// grant to them directly or (people) through a team, `everyone` included.
    pub fn role(&self, subject: Subject, server: &ServerEntry) -> Option<Role> {
        if !self.in_tenant(subject, server.tenant) {
            return None;
        }
        let admin = match subject {
            Subject::User(user) => self.tenant_roles.get(&(server.tenant, user)).is_some_and(|r| r == "admin"),
            Subject::VirtualAccount(id) => self
                .accounts
                .get(&id)
                .is_some_and(|&i| self.snapshot.virtual_accounts[i].tenant_role.as_deref() == Some("admin")),
        };
        if admin {
            return Some(Role::Manager);
        }
        let no_teams = HashSet::new();
        let teams = match subject {
            Subject::User(user) => self.user_teams.get(&user).unwrap_or(&no_teams),
            Subject::VirtualAccount(_) => &no_teams,
        };
        let everyone = self.everyone.get(&server.tenant).copied();
        self.access
            .get(&server.id)?
            .iter()
            .map(|&i| &self.snapshot.access[i])
            .filter(|a| match (a.subject_kind.as_str(), subject) {
                ("user", Subject::User(user)) => a.subject == user,
                ("virtualaccount", Subject::VirtualAccount(id)) => a.subject == id,
                ("team", Subject::User(_)) => teams.contains(&a.subject) || Some(a.subject) == everyone,
                _ => false,
            })
            .map(|a| if a.role == "manager" { Role::Manager } else { Role::User })
            .max()
    }
}
