//! A verified snapshot with the lookups the proxy needs, built once when the snapshot is
//! accepted so that a request only does hash-map reads.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use mcpgate_policy::idp::{self, IdpEntry, Rejection};
use mcpgate_policy::{access_token, token};
use mcpgate_policy::{ServerEntry, ServerRole, Snapshot, SubjectKind, TenantRole, TokenOwner};
use serde_json::{Map, Value};

/// The grant id of an access token minted from a virtual-account token (client credentials):
/// `vat:` and the token's digest.
const SOURCE_TOKEN: &str = "vat:";

pub fn source_token_grant(digest: &[u8; 32]) -> String {
    use base64::Engine;
    format!("{SOURCE_TOKEN}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
}

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
    /// Tenant slug, then server slug: looked up by `&str` on every request, without building
    /// an owned key.
    servers: HashMap<String, HashMap<String, usize>>,
    server_ids: HashMap<i64, usize>,
    tenant_ids: HashMap<String, i64>,
    emails: HashMap<i64, usize>,
    by_email: HashMap<String, usize>,
    tokens: HashMap<[u8; 32], usize>,
    tenant_roles: HashMap<(i64, i64), TenantRole>,
    user_teams: HashMap<i64, HashSet<i64>>,
    everyone: HashMap<i64, i64>,
    access: HashMap<i64, Vec<usize>>,
    disabled_users: HashSet<i64>,
    accounts: HashMap<i64, usize>,
    /// The gateway's own keys, for its OAuth access tokens.
    verifier: access_token::Verifier,
    /// Revoked gateway token ids and grant ids.
    revoked: HashSet<String>,
}

impl Policy {
    pub fn build(snapshot: Snapshot) -> Self {
        let slugs: HashMap<i64, &str> = snapshot.tenants.iter().map(|t| (t.id, t.slug.as_str())).collect();
        let mut servers: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, s) in snapshot.servers.iter().enumerate() {
            if let Some(tenant) = slugs.get(&s.tenant) {
                servers.entry((*tenant).to_owned()).or_default().insert(s.slug.clone(), i);
            }
        }
        let server_ids = snapshot.servers.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        let tenant_ids = snapshot.tenants.iter().map(|t| (t.slug.clone(), t.id)).collect();
        let emails = snapshot.users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        let by_email = snapshot.users.iter().enumerate().map(|(i, u)| (u.email.clone(), i)).collect();
        let tokens = snapshot.tokens.iter().enumerate().map(|(i, t)| (t.digest, i)).collect();
        let tenant_roles = snapshot.members.iter().map(|m| ((m.tenant, m.user), m.role)).collect();
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
        let verifier = access_token::Verifier::new(&snapshot.gateway_keys);
        let revoked = snapshot.revoked_gateway_tokens.iter().cloned().collect();
        Self {
            snapshot,
            servers,
            server_ids,
            tenant_ids,
            emails,
            by_email,
            tokens,
            tenant_roles,
            user_teams,
            everyone,
            access,
            disabled_users,
            accounts,
            verifier,
            revoked,
        }
    }

    pub fn version(&self) -> i64 {
        self.snapshot.version
    }

    pub fn server(&self, tenant: &str, server: &str) -> Option<&ServerEntry> {
        self.servers.get(tenant)?.get(server).map(|&i| &self.snapshot.servers[i])
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
        let subject = match entry.subject_kind {
            TokenOwner::User => Subject::User(entry.subject),
            TokenOwner::VirtualAccount => Subject::VirtualAccount(entry.subject),
        };
        self.live(subject, now)
    }

    /// The subject, if it may still act: a known, enabled user, or a known, unexpired
    /// virtual account.
    fn live(&self, subject: Subject, now: DateTime<Utc>) -> Option<Subject> {
        match subject {
            Subject::User(id) => {
                (self.emails.contains_key(&id) && !self.disabled_users.contains(&id)).then_some(subject)
            }
            Subject::VirtualAccount(id) => {
                let va = &self.snapshot.virtual_accounts[*self.accounts.get(&id)?];
                va.expires_at.is_none_or(|at| at > now).then_some(subject)
            }
        }
    }

    /// The subject a gateway OAuth access token stands for: signed by a key of this snapshot,
    /// issued by `issuer` for exactly `audience` (the MCP URL being called), unexpired, not
    /// revoked (by token or by grant), and its subject still able to sign in.
    pub fn authenticate_jwt(&self, token: &str, issuer: &str, audience: &str, now: DateTime<Utc>) -> Option<Subject> {
        let claims = self.verifier.verify(token, issuer, audience, now.timestamp())?;
        if self.revoked.contains(&claims.jti) || claims.grant_id.as_ref().is_some_and(|g| self.revoked.contains(g)) {
            return None;
        }
        let subject = crate::session::subject_from_tag(&claims.sub)?;
        // Minted from a virtual-account token: good only while that token is.
        if let Some(encoded) = claims.grant_id.as_deref().and_then(|g| g.strip_prefix(SOURCE_TOKEN)) {
            use base64::Engine;
            let mut digest = [0u8; 32];
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(encoded, &mut digest).ok()?;
            let entry = &self.snapshot.tokens[*self.tokens.get(&digest).filter(|_| decoded == 32)?];
            let same = matches!(subject, Subject::VirtualAccount(id) if entry.subject_kind == TokenOwner::VirtualAccount && entry.subject == id);
            if !same || entry.expires_at.is_some_and(|at| at <= now) {
                return None;
            }
        }
        self.live(subject, now)
    }

    /// Providers that may have issued a token from `issuer`: for a call into a tenant, that
    /// tenant's and the platform's; for the API (`None`), any.
    pub fn identity_providers(&self, issuer: &str, tenant: Option<i64>) -> Vec<&IdpEntry> {
        let issuer = issuer.trim_end_matches('/');
        self.snapshot
            .identity_providers
            .iter()
            .filter(|p| p.issuer.trim_end_matches('/') == issuer)
            .filter(|p| tenant.is_none() || p.tenant.is_none() || p.tenant == tenant)
            .collect()
    }

    /// Who a provider's verified claims name: a virtual account by its rules, else the user
    /// its user claim (a verified email) names, if the provider vouches for them — the
    /// platform's provider for anyone, a tenant's only for the people it signed up.
    pub fn idp_subject(
        &self,
        entry: &IdpEntry,
        claims: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<Subject, Rejection> {
        for rule in &entry.virtual_accounts {
            if rule.claims.iter().all(|(name, want)| idp::claim_has(claims, name, want)) {
                return self.live(Subject::VirtualAccount(rule.account), now).ok_or(Rejection::UnmappedSubject);
            }
        }
        let email = claims.get(&entry.user_claim).and_then(Value::as_str).ok_or(Rejection::UnmappedSubject)?;
        if entry.user_claim == "email" && claims.get("email_verified").is_some_and(|v| v != &Value::Bool(true)) {
            return Err(Rejection::UnmappedSubject);
        }
        let user =
            &self.snapshot.users[*self.by_email.get(&email.trim().to_lowercase()).ok_or(Rejection::UnmappedSubject)?];
        let sub = claims.get("sub").and_then(Value::as_str);
        let vouched = entry.tenant.is_none()
            || (user.identity_tenant == entry.tenant
                && user.identity_issuer.as_deref() == Some(entry.issuer.as_str())
                && user.identity_subject.as_deref().is_none_or(|s| Some(s) == sub));
        if !vouched {
            return Err(Rejection::UnmappedSubject);
        }
        if user.disabled {
            return Err(Rejection::DisabledUser);
        }
        self.live(Subject::User(user.id), now).ok_or(Rejection::UnmappedSubject)
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

    /// The one decision on whether a subject may use a server (DESIGN.md §9a): it exists, the
    /// subject is live and in its tenant, and has a role on it. The proxy decides every call
    /// with it; the consent and connect pages ask it before offering anything. A virtual
    /// server's members are decided one by one with it as well: a role on the virtual server
    /// does not extend to members the subject could not use directly.
    pub fn may_use(&self, subject: Subject, tenant: &str, server: &str, now: DateTime<Utc>) -> bool {
        self.live(subject, now).is_some()
            && self.server(tenant, server).is_some_and(|e| self.role(subject, e).is_some())
    }

    /// The subject's role on a server: tenant admins manage everything; otherwise the best
    /// grant to them directly or (people) through a team, `everyone` included.
    pub fn role(&self, subject: Subject, server: &ServerEntry) -> Option<Role> {
        if !self.in_tenant(subject, server.tenant) {
            return None;
        }
        let admin = match subject {
            Subject::User(user) => self.tenant_roles.get(&(server.tenant, user)) == Some(&TenantRole::Admin),
            Subject::VirtualAccount(id) => self
                .accounts
                .get(&id)
                .is_some_and(|&i| self.snapshot.virtual_accounts[i].tenant_role == Some(TenantRole::Admin)),
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
            .filter(|a| match (a.subject_kind, subject) {
                (SubjectKind::User, Subject::User(user)) => a.subject == user,
                (SubjectKind::VirtualAccount, Subject::VirtualAccount(id)) => a.subject == id,
                (SubjectKind::Team, Subject::User(_)) => teams.contains(&a.subject) || Some(a.subject) == everyone,
                _ => false,
            })
            .map(|a| match a.role {
                ServerRole::Manager => Role::Manager,
                ServerRole::User => Role::User,
            })
            .max()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use mcpgate_policy::access_token::{mint, AccessClaims};
    use mcpgate_policy::sign::KeyMaterial;
    use mcpgate_policy::{Jwks, UserEntry};

    #[test]
    fn revoked_gateway_tokens_and_grants_are_refused() {
        let key = KeyMaterial::generate().unwrap();
        let now = Utc::now();
        let url = "https://gw.example/acme/mcp/github/server";
        let token = |jti: &str, grant: &str| {
            let claims = AccessClaims {
                iss: "https://gw.example".into(),
                sub: "u1".into(),
                aud: url.into(),
                exp: now.timestamp() + 600,
                iat: now.timestamp(),
                jti: jti.into(),
                client_id: "c".into(),
                grant_id: Some(grant.into()),
                scope: None,
            };
            mint(&key, &claims).unwrap()
        };
        let mut snapshot = Snapshot::empty(1, &key.kid, now);
        snapshot.gateway_keys = Jwks { keys: vec![key.jwk()] };
        snapshot.users = vec![UserEntry {
            id: 1,
            email: "ann@example.com".into(),
            disabled: false,
            identity_tenant: None,
            identity_issuer: None,
            identity_subject: None,
        }];
        snapshot.revoked_gateway_tokens = vec!["jti-revoked".into(), "grant-revoked".into()];
        let policy = Policy::build(snapshot.clone());
        let check = |t: &str| policy.authenticate_jwt(t, "https://gw.example", url, now);
        assert_eq!(check(&token("jti-ok", "grant-ok")), Some(Subject::User(1)));
        assert_eq!(check(&token("jti-revoked", "grant-ok")), None, "the token itself is revoked");
        assert_eq!(check(&token("jti-ok", "grant-revoked")), None, "its grant is revoked");
        snapshot.users[0].disabled = true;
        let policy = Policy::build(snapshot);
        assert_eq!(
            policy.authenticate_jwt(&token("jti-ok", "grant-ok"), "https://gw.example", url, now),
            None,
            "disabled user"
        );
    }
}
