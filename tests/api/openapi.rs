//! The committed OpenAPI document must match the code, and must describe every route with
//! the errors it can return. `UPDATE_OPENAPI=1 cargo test --test api openapi` rewrites it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::spawn_app;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json")
}

#[test]
fn committed_openapi_document_matches_the_code() {
    let generated = mcpgate::api::openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; run `UPDATE_OPENAPI=1 cargo test --test api openapi` and commit it"
    );
}

#[test]
fn every_operation_documents_its_errors() {
    let doc: Value = serde_json::from_str(&mcpgate::api::openapi_json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            routes.insert(format!("{} {path}", method.to_uppercase()));
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} has no success response");
            if path.starts_with("/api/") {
                let errors: Vec<&String> =
                    responses.keys().filter(|s| s.starts_with('4') || s.starts_with('5')).collect();
                assert!(!errors.is_empty(), "{method} {path} documents no error response");
                for status in errors {
                    assert!(
                        responses[status]["content"].get("application/problem+json").is_some(),
                        "{method} {path} {status} is not a problem document"
                    );
                }
            }
        }
    }
    let expected = [
        "GET /healthz",
        "GET /readyz",
        "POST /api/v1/auth/login",
        "POST /api/v1/auth/logout",
        "GET /api/v1/me",
        "POST /api/v1/me/password",
        "GET /api/v1/users",
        "POST /api/v1/users",
        "GET /api/v1/users/{id}",
        "PATCH /api/v1/users/{id}",
        "GET /api/v1/tenants",
        "POST /api/v1/tenants",
        "GET /api/v1/tenants/{tenant}",
        "PATCH /api/v1/tenants/{tenant}",
        "DELETE /api/v1/tenants/{tenant}",
        "GET /api/v1/tenants/{tenant}/members",
        "POST /api/v1/tenants/{tenant}/members",
        "PATCH /api/v1/tenants/{tenant}/members/{email}",
        "DELETE /api/v1/tenants/{tenant}/members/{email}",
        "GET /api/v1/tenants/{tenant}/teams",
        "POST /api/v1/tenants/{tenant}/teams",
        "GET /api/v1/tenants/{tenant}/teams/{team}",
        "PATCH /api/v1/tenants/{tenant}/teams/{team}",
        "DELETE /api/v1/tenants/{tenant}/teams/{team}",
        "GET /api/v1/tenants/{tenant}/teams/{team}/members",
        "POST /api/v1/tenants/{tenant}/teams/{team}/members",
        "DELETE /api/v1/tenants/{tenant}/teams/{team}/members/{email}",
        "GET /api/v1/tenants/{tenant}/servers",
        "POST /api/v1/tenants/{tenant}/servers",
        "GET /api/v1/tenants/{tenant}/servers/{server}",
        "PATCH /api/v1/tenants/{tenant}/servers/{server}",
        "DELETE /api/v1/tenants/{tenant}/servers/{server}",
        "GET /api/v1/tenants/{tenant}/servers/{server}/how-to-use",
        "POST /api/v1/tenants/{tenant}/servers/{server}/probe",
        "GET /api/v1/tenants/{tenant}/servers/{server}/collaborators",
        "PUT /api/v1/tenants/{tenant}/servers/{server}/collaborators",
        "DELETE /api/v1/tenants/{tenant}/servers/{server}/collaborators/{subject}",
        "GET /api/v1/tenants/{tenant}/audit-events",
        "DELETE /api/v1/users/{id}",
        "POST /api/v1/me/tokens",
        "GET /api/v1/me/tokens",
        "DELETE /api/v1/me/tokens/{id}",
        "POST /api/v1/me/tokens/revoke-all",
        "GET /api/v1/users/{id}/tokens",
        "DELETE /api/v1/users/{id}/tokens/{token}",
        "GET /api/v1/tenants/{tenant}/virtual-accounts",
        "POST /api/v1/tenants/{tenant}/virtual-accounts",
        "GET /api/v1/tenants/{tenant}/virtual-accounts/{name}",
        "PATCH /api/v1/tenants/{tenant}/virtual-accounts/{name}",
        "DELETE /api/v1/tenants/{tenant}/virtual-accounts/{name}",
        "POST /api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens",
        "GET /api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens",
        "POST /api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens/regenerate",
        "DELETE /api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens/{id}",
        "POST /api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens/{id}/claim",
        "GET /api/v1/policy/snapshot",
        "GET /api/v1/policy/snapshots",
        "GET /api/v1/policy/keys",
        "POST /api/v1/policy/decisions",
        "POST /api/v1/policy/credentials",
        "GET /api/v1/tenants/{tenant}/servers/{server}/auth-overrides",
        "GET /api/v1/tenants/{tenant}/servers/{server}/auth-override-schema",
        "PUT /api/v1/tenants/{tenant}/servers/{server}/auth-overrides/{subject}",
        "DELETE /api/v1/tenants/{tenant}/servers/{server}/auth-overrides/{subject}",
        "GET /api/v1/me/authorizations",
        "DELETE /api/v1/me/authorizations/{id}",
        "GET /api/v1/me/connections",
        "POST /api/v1/me/connections/{tenant}/{server}",
        "DELETE /api/v1/me/connections/{tenant}/{server}",
        "GET /api/v1/auth/providers",
        "POST /api/v1/me/invitations/accept",
        "GET /api/v1/identity-providers",
        "POST /api/v1/identity-providers",
        "GET /api/v1/identity-providers/{idp}",
        "PATCH /api/v1/identity-providers/{idp}",
        "DELETE /api/v1/identity-providers/{idp}",
        "POST /api/v1/identity-providers/{idp}/test",
        "GET /api/v1/tenants/{tenant}/identity-providers",
        "POST /api/v1/tenants/{tenant}/identity-providers",
        "GET /api/v1/tenants/{tenant}/identity-providers/{idp}",
        "PATCH /api/v1/tenants/{tenant}/identity-providers/{idp}",
        "DELETE /api/v1/tenants/{tenant}/identity-providers/{idp}",
        "POST /api/v1/tenants/{tenant}/identity-providers/{idp}/test",
        "POST /api/v1/tenants/{tenant}/invitations",
        "GET /api/v1/tenants/{tenant}/invitations",
        "DELETE /api/v1/tenants/{tenant}/invitations/{id}",
        "POST /api/v1/tenants/{tenant}/servers/{server}/try-token",
        "GET /api/v1/users/{id}/authorizations",
        "DELETE /api/v1/users/{id}/authorizations/{authorization}",
    ];
    assert_eq!(routes, expected.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
}

#[tokio::test]
async fn document_and_explorer_are_served() {
    let app = spawn_app().await;
    let served = reqwest::get(format!("{}/api/openapi.json", app.base)).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.unwrap(), mcpgate::api::openapi_json());
    let docs = reqwest::get(format!("{}/api/docs", app.base)).await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(docs.text().await.unwrap().contains("mcpgate API"), "the explorer embeds the document");
}

/// utoipa names a schema after its type, and two types of one name silently become one
/// schema in the document (one of them then documented wrongly): every name is used once.
#[test]
fn no_two_types_share_a_schema_name() {
    fn scan(dir: &std::path::Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                scan(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let mut derives_schema = false;
                for line in text.lines().map(str::trim) {
                    if line.starts_with("#[derive(") || line.starts_with("#[cfg_attr(") {
                        derives_schema |= line.contains("ToSchema");
                    } else if line.starts_with("#[") || line.starts_with("///") {
                    } else if let Some(rest) =
                        line.strip_prefix("pub struct ").or_else(|| line.strip_prefix("pub enum "))
                    {
                        if derives_schema && !text.contains("#[schema(as") {
                            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                            found.push((name, path.display().to_string()));
                        }
                        derives_schema = false;
                    } else {
                        derives_schema = false;
                    }
                }
            }
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    scan(&root.join("src"), &mut found);
    scan(&root.join("crates"), &mut found);
    assert!(found.len() > 50, "the scan finds the API's types: {}", found.len());
    found.sort();
    let doubles: Vec<_> = found.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| (&w[0], &w[1])).collect();
    assert!(doubles.is_empty(), "schema names used by two types: {doubles:?}");
}
