use std::time::{Duration, Instant};

use mcpgate::policy::{sign, Jwks};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::{spawn_app, Client, TestApp};

fn proxy(app: &TestApp) -> Client {
    Client::with_token(&app.base, app.state.proxy_key.expose_secret())
}

async fn fetch(client: &Client, query: &str) -> reqwest::Response {
    client.http.get(format!("{}/api/v1/policy/snapshot{query}", client.base)).send().await.unwrap()
}

async fn keys(app: &TestApp) -> Jwks {
    reqwest::get(format!("{}/api/v1/policy/keys", app.base)).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn the_signed_snapshot_is_served_to_proxies_and_admins_only() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let res = fetch(&proxy(&app), "").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/jose");
    let version: i64 = res.headers()["x-mcpgate-policy-version"].to_str().unwrap().parse().unwrap();
    let document = res.text().await.unwrap();
    let snapshot = sign::verify(&document, &keys(&app).await).expect("verifies against the published keys");
    assert_eq!(snapshot.version, version);
    assert_eq!(fetch(&admin, "").await.status(), 200);

    let ann = app.user(&admin, "ann@example.com").await;
    assert_eq!(fetch(&ann, "").await.status(), 403);
    assert_eq!(fetch(&app.client(), "").await.status(), 401);
    assert_eq!(fetch(&Client::with_token(&app.base, "mgw_proxy_wrong"), "").await.status(), 401);
}

#[tokio::test]
async fn changes_publish_a_newer_version_without_secrets() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let proxy = proxy(&app);
    let before = sign::verify(&fetch(&proxy, "").await.text().await.unwrap(), &keys(&app).await).unwrap();

    app.tenant(&admin, "acme", &[]).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "github", "display_name": "GitHub", "kind": "remote", "url": "https://e.com/mcp",
                   "additional_headers": {"X-Team": "core"}}),
        )
        .await
        .expect(201);
    let created = admin.post("/api/v1/me/tokens", json!({"name": "t"})).await.expect(201);
    let token = created["token"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();

    // Long-poll for the next version.
    let started = Instant::now();
    let res = fetch(&proxy, &format!("?after={}&wait=10", before.version)).await;
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut document = res.text().await.unwrap();
    let mut after = sign::verify(&document, &keys(&app).await).unwrap();
    // Changes close together may land in one or several snapshots; wait for the last.
    for _ in 0..20 {
        if after.tokens.len() == 1 && after.servers.len() == 1 {
            break;
        }
        let res = fetch(&proxy, &format!("?after={}&wait=5", after.version)).await;
        if res.status() == 200 {
            document = res.text().await.unwrap();
            after = sign::verify(&document, &keys(&app).await).unwrap();
        }
    }
    assert!(after.version > before.version, "strictly increasing");
    assert_eq!(after.servers[0].slug, "github");
    assert_eq!(after.servers[0].additional_headers, json!({"X-Team": "core"}));
    assert_eq!(after.tokens.len(), 1);
    assert_eq!(after.tokens[0].digest, mcpgate::auth::token::digest_bytes(&token));
    assert_eq!(after.tokens[0].subject_kind, mcpgate::policy::TokenOwner::User);
    assert_eq!(after.tokens[0].expires_at.map(|at| at.timestamp()), Some(expires.timestamp()), "expiry to the second");
    assert!(!document.contains(&token[8..]), "no token in clear");
    let payload = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, document.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(!payload.contains(&token[8..]));
    assert!(!payload.contains("argon2"), "no password hashes");

    // Nothing newer: the long-poll times out with 304, and so does a matching ETag.
    let res = fetch(&proxy, &format!("?after={}&wait=1", after.version)).await;
    assert_eq!(res.status(), 304);
    let res = proxy
        .http
        .get(format!("{}/api/v1/policy/snapshot", app.base))
        .header("if-none-match", format!("\"v{}\"", after.version))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);

    let history = proxy.get("/api/v1/policy/snapshots?limit=50").await.expect(200);
    let versions: Vec<i64> =
        history["items"].as_array().unwrap().iter().map(|s| s["version"].as_i64().unwrap()).collect();
    assert_eq!(versions[0], after.version, "newest first");
    assert!(versions.windows(2).all(|w| w[0] > w[1]));
    assert!(history["items"][0]["summary"]["changes"].as_array().is_some());
}

#[tokio::test]
async fn rotated_keys_sign_new_snapshots_and_old_keys_stay_published() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let proxy = proxy(&app);
    let first = sign::verify(&fetch(&proxy, "").await.text().await.unwrap(), &keys(&app).await).unwrap();
    let new_kid =
        mcpgate::policy::publish::rotate_key(&app.state.db, &app.state.sealer, app.clock.now()).await.unwrap();
    app.state.publisher.poke();
    let res = fetch(&proxy, &format!("?after={}&wait=10", first.version)).await;
    assert_eq!(res.status(), 200);
    let jwks = keys(&app).await;
    let second = sign::verify(&res.text().await.unwrap(), &jwks).unwrap();
    assert_eq!(second.kid, new_kid);
    assert_ne!(second.kid, first.kid);
    assert!(jwks.keys.iter().any(|k| k.kid == first.kid), "the previous key stays published");
    assert_eq!(second.gateway_keys, jwks);
    // A verifier that only knows the old key refuses the new snapshot.
    let old_only = Jwks { keys: jwks.keys.iter().filter(|k| k.kid == first.kid).cloned().collect() };
    let document = fetch(&admin, "").await.text().await.unwrap();
    assert!(matches!(sign::verify(&document, &old_only), Err(sign::VerifyError::UnknownKey(_))));
}

#[tokio::test]
async fn a_replica_follows_a_signing_key_rotation() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let key = app.state.proxy_key.expose_secret();
    let replica = crate::process::replica(&app.base, key, &dir.path().join("replica.log"));
    let first = crate::ha::wait_ready(&replica.base, Duration::from_secs(10), |_| true).await;
    let first = first["policy_version"].as_i64().unwrap();
    // The next snapshot is signed by a key the replica has not read: it reads the keys again
    // and installs it.
    mcpgate::policy::publish::rotate_key(&app.state.db, &app.state.sealer, app.clock.now()).await.unwrap();
    app.state.publisher.poke();
    let ready = crate::ha::wait_ready(&replica.base, Duration::from_secs(15), |r| {
        r["policy_version"].as_i64().is_some_and(|v| v > first)
    })
    .await;
    let newest = sign::verify(&fetch(&proxy(&app), "").await.text().await.unwrap(), &keys(&app).await).unwrap();
    assert_eq!(ready["policy_version"].as_i64(), Some(newest.version), "{ready}");
}

#[tokio::test]
async fn a_replica_behind_gets_signed_deltas_that_rebuild_the_newest_snapshot() {
    use mcpgate::policy::delta;
    let app = spawn_app().await;
    let admin = app.admin().await;
    let proxy = proxy(&app);
    let trusted = keys(&app).await;
    // A snapshot of some size (deltas are sent only while smaller than the snapshot, and the
    // changes below may be published as up to four snapshots of their own).
    app.tenant(&admin, "acme", &[]).await;
    let headers: serde_json::Map<String, serde_json::Value> =
        (0..4).map(|i| (format!("X-Padding-{i}"), json!("p".repeat(4000)))).collect();
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "big", "display_name": "Big", "kind": "remote", "url": "https://e.com/mcp",
                   "additional_headers": headers}),
        )
        .await
        .expect(201);
    let mut base = sign::verify(&fetch(&proxy, "").await.text().await.unwrap(), &trusted).unwrap();
    for _ in 0..50 {
        if base.servers.len() == 1 {
            break;
        }
        let res = fetch(&proxy, &format!("?after={}&wait=2", base.version)).await;
        if res.status() == 200 {
            base = sign::verify(&res.text().await.unwrap(), &trusted).unwrap();
        }
    }
    assert_eq!(base.servers.len(), 1);

    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "github", "display_name": "GitHub", "kind": "remote", "url": "https://e.com/mcp"}),
        )
        .await
        .expect(201);
    let created = admin.post("/api/v1/me/tokens", json!({"name": "t"})).await.expect(201);
    admin.delete(&format!("/api/v1/me/tokens/{}", created["id"].as_str().unwrap())).await.expect(204);
    admin.post("/api/v1/me/tokens", json!({"name": "kept"})).await.expect(201);

    // Wait until the newest snapshot has every change (and nothing newer follows: the
    // snapshot with the first token and both servers looks the same), then ask for the way
    // there from `base`.
    let mut newest = base.clone();
    for _ in 0..50 {
        let res = fetch(&proxy, &format!("?after={}&wait=2", newest.version)).await;
        if res.status() == 200 {
            newest = sign::verify(&res.text().await.unwrap(), &trusted).unwrap();
        } else if newest.tokens.len() == 1 && newest.servers.len() == 2 {
            break;
        }
    }
    let full = fetch(&proxy, "").await.text().await.unwrap();
    let res = fetch(&proxy, &format!("?after={}&deltas=true", base.version)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["x-mcpgate-policy-version"].to_str().unwrap(), newest.version.to_string());
    let body: serde_json::Value = res.json().await.unwrap();
    let deltas: Vec<String> = serde_json::from_value(body["deltas"].clone()).unwrap();
    assert!(!deltas.is_empty());
    let bytes: usize = deltas.iter().map(String::len).sum();
    assert!(bytes < full.len(), "the deltas ({bytes} bytes) are smaller than the snapshot ({} bytes)", full.len());

    // Applied in order to the verified base, they give exactly the newest snapshot's content.
    let (mut held, mut digest) = (base.clone(), delta::content_digest(&base));
    for d in &deltas {
        let verified = sign::verify_delta(d, &trusted).expect("each delta verifies");
        (held, digest) = delta::apply(&held, digest, &verified).expect("each delta applies to the one before");
    }
    assert_eq!(held.version, newest.version);
    assert_eq!(digest, delta::content_digest(&newest));
    assert_eq!(held.tokens, newest.tokens);
    assert!(held.servers.iter().any(|s| s.slug == "github"));

    // No chain from before the first snapshot, and none unless asked: the full document.
    let res = fetch(&proxy, "?after=0&deltas=true").await;
    assert_eq!(res.headers()["content-type"], "application/jose");
    let res = fetch(&proxy, &format!("?after={}", base.version)).await;
    assert_eq!(res.headers()["content-type"], "application/jose");
    // Up to date: nothing to send.
    assert_eq!(fetch(&proxy, &format!("?after={}&deltas=true&wait=1", newest.version)).await.status(), 304);
}

#[tokio::test]
async fn old_snapshots_keep_their_history_but_not_their_full_documents() {
    use mcpgate::store::entities::policy_snapshots;
    use sea_orm::{EntityTrait, QueryOrder};
    let app = spawn_app().await;
    let first = mcpgate::policy::publish::latest_stored(&app.state.db).await.unwrap().unwrap();
    for _ in 0..120 {
        mcpgate::policy::publish::bump(&app.state.db).await.unwrap();
    }
    app.state.current_policy().await.unwrap();
    let rows = policy_snapshots::Entity::find()
        .order_by_asc(policy_snapshots::Column::Version)
        .all(&app.state.db)
        .await
        .unwrap();
    let (oldest, newest) = (rows.first().unwrap(), rows.last().unwrap());
    assert_eq!(oldest.version, first.version);
    assert!(newest.version >= first.version + 120);
    assert_eq!(oldest.document, "", "an old document is not kept at full size");
    assert!(oldest.size > 0, "its size stays in the history");
    sign::verify(&newest.document, &keys(&app).await).expect("the newest document is whole");
    let history = proxy(&app).get("/api/v1/policy/snapshots?limit=50").await.expect(200);
    assert!(history["items"].as_array().unwrap().iter().any(|i| i["version"] == oldest.version));
}
