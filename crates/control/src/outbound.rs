//! Outbound authentication of a server (DESIGN.md §4): what the API accepts, how it is stored
//! (secrets sealed under the master key), what the API shows back (never a secret) and what
//! the policy snapshot carries (the type and non-secret parameters only).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::seal::Sealer;
use crate::error::{Error, FieldError};

pub use mcpgate_policy::{AuthLevel, GrantType, OutboundAuth};

/// Headers sent upstream. With `global` the values are secrets (write-only); with `per_user`
/// they are templates whose `{{PLACEHOLDER}}`s each caller fills with an Auth Override.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderAuth {
    pub auth_level: AuthLevel,
    /// `global`: the values are secrets, write-only. `per_user`: templates, shown back.
    #[schema(write_only)]
    pub headers: BTreeMap<String, String>,
}

/// OAuth 2.0 at the upstream's authorization server. `client_secret` is write-only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Auth {
    pub grant_type: Option<GrantType>,
    /// Where tokens are asked for; discovered from the upstream's metadata when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// authorization_code: with `token_url`, or leave both out to discover them from the
    /// upstream's metadata (RFC 9728, then RFC 8414 / OpenID discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// authorization_code without a `client_id`: where the gateway registers itself (RFC 7591);
    /// discovered when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_url: Option<String>,
    /// A pre-registered client id, or an https URL of a Client ID Metadata Document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(write_only)]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Extra form parameters sent with every token request (e.g. `audience`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_token_params: Option<BTreeMap<String, String>>,
}

/// A server's outbound auth as written to the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthData {
    Header(HeaderAuth),
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Auth),
    /// Forwards the caller's own identity-provider token (never a gateway token or PAT).
    Passthrough,
}

/// Outbound auth as the API shows it: every secret replaced by the fact that it is set.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct AuthDataView {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_level: Option<AuthLevel>,
    /// `per_user`: the header templates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// `global`: the headers whose (write-only) values are set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_headers: Option<Vec<String>>,
    /// `per_user`: the names each caller fills in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholders: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<GrantType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Whether a (write-only) client secret is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_set: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_token_params: Option<BTreeMap<String, String>>,
}

const MAX_HEADERS: usize = 20;
const MAX_VALUE: usize = 8192;
/// Headers the gateway owns on the upstream connection: neither credentials nor additional
/// headers may set them.
pub const GATEWAY_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "accept",
];

/// The `{{NAME}}` placeholders of a template, in order of first use; `Err` names the problem.
pub fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { return Err("a {{ is not closed by }}".into()) };
        let name = after[..end].trim();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("{{{{{name}}}}} is not a placeholder name (letters, digits and _)"));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err("a }} has no opening {{".into());
    }
    Ok(names)
}

fn http_url(errors: &mut Vec<FieldError>, field: &str, value: Option<&str>) {
    let Some(value) = value else { return };
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => errors.push(FieldError::new(field, "invalid_url", "must be an absolute http(s) URL")),
    }
}

fn required(errors: &mut Vec<FieldError>, field: &str, value: &Option<String>, why: &str) {
    if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
        errors.push(FieldError::new(field, "required", why));
    }
}

fn forbidden(errors: &mut Vec<FieldError>, field: &str, set: bool, why: &str) {
    if set {
        errors.push(FieldError::new(field, "not_allowed", why));
    }
}

impl AuthData {
    /// Checks the configuration; `prefix` is the field path it was given under.
    pub fn validate(&self, prefix: &str) -> Result<(), Error> {
        let mut errors = Vec::new();
        let field = |name: &str| format!("{prefix}.{name}");
        match self {
            AuthData::Passthrough => {}
            AuthData::Header(h) => {
                if h.headers.is_empty() {
                    errors.push(FieldError::new(field("headers"), "required", "at least one header is needed"));
                }
                if h.headers.len() > MAX_HEADERS {
                    errors.push(FieldError::new(
                        field("headers"),
                        "too_many",
                        format!("at most {MAX_HEADERS} headers"),
                    ));
                }
                let mut seen = BTreeSet::new();
                let mut any_placeholder = false;
                for (name, value) in &h.headers {
                    let f = field(&format!("headers.{name}"));
                    let lower = name.to_ascii_lowercase();
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        errors.push(FieldError::new(f, "invalid_header", "not a valid HTTP header name"));
                        continue;
                    }
                    if GATEWAY_HEADERS.contains(&lower.as_str()) {
                        errors.push(FieldError::new(f, "reserved_header", format!("{name} is set by the gateway")));
                        continue;
                    }
                    if !seen.insert(lower) {
                        errors.push(FieldError::new(f, "duplicate", format!("{name} is given twice")));
                        continue;
                    }
                    if !crate::domain::is_header_value(value, MAX_VALUE) {
                        errors.push(FieldError::new(
                            f,
                            "invalid_value",
                            format!("a header value must be non-empty, at most {MAX_VALUE} bytes, with no control characters"),
                        ));
                        continue;
                    }
                    match placeholders(value) {
                        Err(why) => errors.push(FieldError::new(f, "invalid_template", why)),
                        Ok(names) if !names.is_empty() && h.auth_level == AuthLevel::Global => {
                            errors.push(FieldError::new(
                                f,
                                "placeholder_not_allowed",
                                "placeholders are filled per caller: use auth_level per_user",
                            ))
                        }
                        Ok(names) => any_placeholder |= !names.is_empty(),
                    }
                }
                if h.auth_level == AuthLevel::PerUser && !any_placeholder && errors.is_empty() {
                    errors.push(FieldError::new(
                        field("headers"),
                        "placeholder_required",
                        "per_user headers need at least one {{PLACEHOLDER}}, e.g. \"Bearer {{API_KEY}}\"",
                    ));
                }
            }
            AuthData::OAuth2(o) => {
                http_url(&mut errors, &field("token_url"), o.token_url.as_deref());
                http_url(&mut errors, &field("authorization_url"), o.authorization_url.as_deref());
                http_url(&mut errors, &field("registration_url"), o.registration_url.as_deref());
                match o.grant_type {
                    None => errors.push(FieldError::new(
                        field("grant_type"),
                        "required",
                        "client_credentials or authorization_code",
                    )),
                    Some(GrantType::ClientCredentials) => {
                        required(&mut errors, &field("client_id"), &o.client_id, "the gateway's client id there");
                        required(&mut errors, &field("client_secret"), &o.client_secret, "the client's secret");
                        forbidden(
                            &mut errors,
                            &field("authorization_url"),
                            o.authorization_url.is_some(),
                            "client_credentials has no user authorization",
                        );
                        forbidden(
                            &mut errors,
                            &field("registration_url"),
                            o.registration_url.is_some(),
                            "client_credentials needs a pre-registered client",
                        );
                    }
                    Some(GrantType::AuthorizationCode) => {
                        if o.authorization_url.is_some() != o.token_url.is_some() {
                            errors.push(FieldError::new(
                                field(if o.token_url.is_none() { "token_url" } else { "authorization_url" }),
                                "required",
                                "give both authorization_url and token_url, or neither to discover them",
                            ));
                        }
                        forbidden(
                            &mut errors,
                            &field("client_secret"),
                            o.client_secret.is_some() && o.client_id.is_none(),
                            "a client_secret belongs to a client_id",
                        );
                        forbidden(
                            &mut errors,
                            &field("registration_url"),
                            o.registration_url.is_some() && o.client_id.is_some(),
                            "with a client_id the gateway does not register itself",
                        );
                    }
                }
                if let Some(scopes) = &o.scopes {
                    if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
                        errors.push(FieldError::new(field("scopes"), "invalid", "each scope is one word"));
                    }
                }
                if let Some(params) = &o.additional_token_params {
                    const OWNED: &[&str] = &[
                        "grant_type",
                        "code",
                        "code_verifier",
                        "redirect_uri",
                        "refresh_token",
                        "client_id",
                        "client_secret",
                    ];
                    for name in params.keys().filter(|k| OWNED.contains(&k.as_str())) {
                        errors.push(FieldError::new(
                            field(&format!("additional_token_params.{name}")),
                            "reserved",
                            format!("{name} is set by the gateway"),
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(errors))
        }
    }

    /// Applies `f` to every secret in place: the `global` header values and the client secret.
    fn map_secrets(&mut self, mut f: impl FnMut(&str) -> anyhow::Result<String>) -> anyhow::Result<()> {
        match self {
            AuthData::Header(h) if h.auth_level == AuthLevel::Global => {
                for value in h.headers.values_mut() {
                    *value = f(value)?;
                }
            }
            AuthData::OAuth2(OAuth2Auth { client_secret: Some(secret), .. }) => *secret = f(secret)?,
            _ => {}
        }
        Ok(())
    }

    /// The stored form: the same document with every secret sealed.
    pub fn seal(&self, sealer: &Sealer, place: &crate::auth::seal::Place) -> anyhow::Result<Value> {
        let mut stored = self.clone();
        stored.map_secrets(|clear| sealer.seal_at(clear.as_bytes(), place))?;
        Ok(serde_json::to_value(stored)?)
    }

    /// The stored form with its secrets still sealed.
    pub fn from_stored(stored: &Value) -> Option<Self> {
        serde_json::from_value(stored.clone()).ok()
    }

    /// The stored form opened: secrets in clear, for the credential resolver only.
    pub fn open(stored: &Value, sealer: &Sealer, place: &crate::auth::seal::Place) -> anyhow::Result<Self> {
        let mut auth: AuthData = serde_json::from_value(stored.clone())?;
        auth.map_secrets(|sealed| Ok(String::from_utf8(sealer.open_at(sealed, place)?)?))?;
        Ok(auth)
    }

    /// The placeholder names callers fill in (per-user headers), sorted.
    pub fn placeholder_names(&self) -> Vec<String> {
        let AuthData::Header(h) = self else { return Vec::new() };
        if h.auth_level != AuthLevel::PerUser {
            return Vec::new();
        }
        let names: BTreeSet<String> = h.headers.values().filter_map(|v| placeholders(v).ok()).flatten().collect();
        names.into_iter().collect()
    }

    /// What the API shows: no secret, only whether it is set.
    pub fn view(&self) -> AuthDataView {
        let mut view = AuthDataView {
            kind: String::new(),
            auth_level: None,
            headers: None,
            secret_headers: None,
            placeholders: None,
            grant_type: None,
            token_url: None,
            authorization_url: None,
            registration_url: None,
            client_id: None,
            client_secret_set: None,
            scopes: None,
            additional_token_params: None,
        };
        match self {
            AuthData::Passthrough => view.kind = "passthrough".into(),
            AuthData::Header(h) => {
                view.kind = "header".into();
                view.auth_level = Some(h.auth_level);
                match h.auth_level {
                    AuthLevel::Global => view.secret_headers = Some(h.headers.keys().cloned().collect()),
                    AuthLevel::PerUser => {
                        view.headers = Some(h.headers.clone());
                        view.placeholders = Some(self.placeholder_names());
                    }
                }
            }
            AuthData::OAuth2(o) => {
                view.kind = "oauth2".into();
                view.grant_type = o.grant_type;
                view.token_url = o.token_url.clone();
                view.authorization_url = o.authorization_url.clone();
                view.registration_url = o.registration_url.clone();
                view.client_id = o.client_id.clone();
                view.client_secret_set = Some(o.client_secret.is_some());
                view.scopes = o.scopes.clone();
                view.additional_token_params = o.additional_token_params.clone();
            }
        }
        view
    }

    /// What the policy snapshot carries: the type and what the proxy needs to decide
    /// without asking for credentials — never a secret, a URL or a template.
    pub fn snapshot_entry(&self) -> OutboundAuth {
        match self {
            AuthData::Passthrough => OutboundAuth::Passthrough,
            AuthData::Header(h) => OutboundAuth::Header {
                auth_level: h.auth_level,
                placeholders: match h.auth_level {
                    AuthLevel::Global => Vec::new(),
                    AuthLevel::PerUser => self.placeholder_names(),
                },
            },
            AuthData::OAuth2(o) => OutboundAuth::Oauth2 { grant_type: o.grant_type },
        }
    }

    /// Whether a caller must do something (a key of their own, an authorization) first.
    pub fn is_per_user(&self) -> bool {
        matches!(self, AuthData::Header(HeaderAuth { auth_level: AuthLevel::PerUser, .. }))
            || matches!(self, AuthData::OAuth2(OAuth2Auth { grant_type: Some(GrantType::AuthorizationCode), .. }))
    }
}

/// The snapshot entry of a stored configuration (`{"type": "none"}` without one).
pub fn snapshot_entry_of(stored: Option<&Value>) -> OutboundAuth {
    stored.and_then(AuthData::from_stored).map(|a| a.snapshot_entry()).unwrap_or(OutboundAuth::None)
}

/// Fills a per-user template; `None` when a placeholder has no value.
pub fn fill(template: &str, values: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        out.push_str(values.get(after[..end].trim())?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn header(level: AuthLevel, pairs: &[(&str, &str)]) -> AuthData {
        AuthData::Header(HeaderAuth {
            auth_level: level,
            headers: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    }

    fn codes(result: Result<(), Error>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(Error::Validation(errors)) => errors.into_iter().map(|e| format!("{}:{}", e.field, e.code)).collect(),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn placeholders_are_parsed_and_filled() {
        assert_eq!(placeholders("Bearer {{API_KEY}} {{ TEAM }} {{API_KEY}}").unwrap(), vec!["API_KEY", "TEAM"]);
        assert!(placeholders("Bearer {{API-KEY}}").is_err());
        assert!(placeholders("Bearer {{API_KEY").is_err());
        assert!(placeholders("Bearer API_KEY}}").is_err());
        let values = BTreeMap::from([("API_KEY".to_string(), "k1".to_string())]);
        assert_eq!(fill("Bearer {{API_KEY}}", &values).as_deref(), Some("Bearer k1"));
        assert_eq!(fill("{{OTHER}}", &values), None);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(codes(header(AuthLevel::Global, &[("Authorization", "Bearer x")]).validate("auth_data")).is_empty());
        assert_eq!(
            codes(header(AuthLevel::Global, &[("Authorization", "Bearer {{K}}")]).validate("auth_data")),
            vec!["auth_data.headers.Authorization:placeholder_not_allowed"]
        );
        assert_eq!(
            codes(header(AuthLevel::PerUser, &[("X-Key", "fixed")]).validate("auth_data")),
            vec!["auth_data.headers:placeholder_required"]
        );
        assert_eq!(
            codes(header(AuthLevel::Global, &[("Host", "x")]).validate("auth_data")),
            vec!["auth_data.headers.Host:reserved_header"]
        );
        let cc = AuthData::OAuth2(OAuth2Auth {
            grant_type: Some(GrantType::ClientCredentials),
            token_url: Some("ftp://x".into()),
            ..Default::default()
        });
        assert_eq!(
            codes(cc.validate("auth_data")),
            vec!["auth_data.token_url:invalid_url", "auth_data.client_id:required", "auth_data.client_secret:required"]
        );
        let ac = AuthData::OAuth2(OAuth2Auth {
            grant_type: Some(GrantType::AuthorizationCode),
            authorization_url: Some("https://as.example/authorize".into()),
            ..Default::default()
        });
        assert_eq!(codes(ac.validate("auth_data")), vec!["auth_data.token_url:required"]);
    }

    #[test]
    fn secrets_are_sealed_and_never_viewed() {
        let sealer = Sealer::from_key([3; 32]);
        let place = crate::auth::seal::Place::server_auth(1, "github");
        let auth = header(AuthLevel::Global, &[("Authorization", "Bearer s3cret-value")]);
        let stored = auth.seal(&sealer, &place).unwrap();
        assert!(!stored.to_string().contains("s3cret-value"));
        assert_eq!(AuthData::open(&stored, &sealer, &place).unwrap(), auth);
        // Copied onto another server, it does not open.
        assert!(AuthData::open(&stored, &sealer, &crate::auth::seal::Place::server_auth(1, "other")).is_err());
        let view = serde_json::to_string(&AuthData::from_stored(&stored).unwrap().view()).unwrap();
        assert!(!view.contains("s3cret") && !view.contains("v2:"), "{view}");
        assert_eq!(
            serde_json::to_value(snapshot_entry_of(Some(&stored))).unwrap(),
            json!({"type": "header", "auth_level": "global"})
        );

        let oauth = AuthData::OAuth2(OAuth2Auth {
            grant_type: Some(GrantType::ClientCredentials),
            token_url: Some("https://as.example/token".into()),
            client_id: Some("gw".into()),
            client_secret: Some("cs-very-secret".into()),
            ..Default::default()
        });
        let stored = oauth.seal(&sealer, &place).unwrap();
        assert!(!stored.to_string().contains("cs-very-secret"));
        let view = AuthData::from_stored(&stored).unwrap().view();
        assert_eq!(view.client_secret_set, Some(true));
        assert!(!serde_json::to_string(&view).unwrap().contains("v2:"));
        assert_eq!(AuthData::open(&stored, &sealer, &place).unwrap(), oauth);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let ok: Result<AuthData, _> =
            serde_json::from_value(json!({"type": "header", "auth_level": "global", "headers": {"X-Key": "v"}}));
        assert!(ok.is_ok());
        let extra: Result<AuthData, _> = serde_json::from_value(
            json!({"type": "header", "auth_level": "global", "headers": {"X-Key": "v"}, "header": {}}),
        );
        assert!(extra.is_err(), "a misspelt field is an error, not silently ignored");
        let oauth: Result<AuthData, _> =
            serde_json::from_value(json!({"type": "oauth2", "grant_type": "client_credentials", "secret": "x"}));
        assert!(oauth.is_err());
        let unknown: Result<AuthData, _> = serde_json::from_value(json!({"type": "basic"}));
        assert!(unknown.is_err());
    }
}
