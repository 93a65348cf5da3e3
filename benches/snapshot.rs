//! Snapshot cost at scale: compile + sign, and verify, for 1,000 servers and 100,000 tokens.
//! `cargo bench --bench snapshot`; figures go to bench/RESULTS.md.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly on broken setup

use std::hint::black_box;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use mcpgate::auth::token::{self, TokenKind};
use mcpgate::policy::sign::{self, KeyMaterial};
use mcpgate::policy::{Jwks, ServerEntry, Snapshot, TokenEntry};
use serde_json::json;

fn snapshot(kid: &str) -> Snapshot {
    Snapshot {
        version: 1,
        issued_at: Utc::now(),
        kid: kid.into(),
        tenants: vec![],
        users: vec![],
        members: vec![],
        teams: vec![],
        virtual_accounts: vec![],
        servers: (0..1_000)
            .map(|i| ServerEntry {
                id: i,
                tenant: i % 10,
                slug: format!("server-{i}"),
                kind: mcpgate::policy::ServerKind::Remote,
                url: Some(format!("https://upstream-{i}.example.com/mcp")),
                transport: Some(mcpgate::policy::Transport::StreamableHttp),
                additional_headers: json!({"X-Team": "platform"}),
                tls_reject_unauthorized: true,
                tls_ca_certificate: None,
                tool_settings: vec![],
                members: vec![],
                outbound_auth: mcpgate::policy::OutboundAuth::None,
                metrics_tools: vec![],
            })
            .collect(),
        access: vec![],
        tokens: (0..100_000)
            .map(|i| TokenEntry {
                digest: token::digest_bytes(&token::generate(TokenKind::PersonalAccess).secret),
                subject_kind: mcpgate::policy::TokenOwner::User,
                subject: i,
                expires_at: None,
            })
            .collect(),
        revoked_gateway_tokens: vec![],
        identity_providers: vec![],
        gateway_keys: Jwks::default(),
    }
}

/// A SQLite store holding 10 tenants, 1,000 users, 1,000 servers and 100,000 live tokens.
async fn populated_store(dir: &std::path::Path) -> sea_orm::DatabaseConnection {
    use mcpgate::store::entities::{access_tokens, servers, tenants, users};
    use sea_orm::{EntityTrait, Set};
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let db = mcpgate::store::connect(&url, 1).await.unwrap();
    mcpgate::store::migrate(&db).await.unwrap();
    let now = Utc::now();
    tenants::Entity::insert_many((1..=10).map(|i| tenants::ActiveModel {
        id: Set(i),
        slug: Set(format!("tenant-{i}")),
        display_name: Set(format!("Tenant {i}")),
        logo_url: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }))
    .exec(&db)
    .await
    .unwrap();
    for chunk in (1..=1_000i64).collect::<Vec<_>>().chunks(500) {
        users::Entity::insert_many(chunk.iter().map(|&i| users::ActiveModel {
            id: Set(i),
            email: Set(format!("user{i}@example.com")),
            display_name: Set(format!("User {i}")),
            password_hash: Set(None),
            is_platform_admin: Set(false),
            disabled: Set(false),
            identity_tenant_id: Set(None),
            identity_issuer: Set(None),
            identity_subject: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }))
        .exec(&db)
        .await
        .unwrap();
        servers::Entity::insert_many(chunk.iter().map(|&i| {
            servers::ActiveModel {
            id: Set(i),
            tenant_id: Set(i % 10 + 1),
            slug: Set(format!("server-{i}")),
            display_name: Set(format!("Server {i}")),
            description: Set(None),
            kind: Set("remote".into()),
            url: Set(Some(format!("https://upstream-{i}.example.com/mcp"))),
            transport: Set(Some("streamable_http".into())),
            additional_headers: Set(json!({"X-Team": "platform"})),
            tls_reject_unauthorized: Set(true),
            tls_ca_certificate: Set(None),
            tool_settings: Set(json!([])),
            metrics_tool_names: Set(false),
            tags: Set(json!([])),
            probed_tools: Set(None),
            probed_at: Set(None),
            probe_protocol_version: Set(None),
            // A third of the servers take each caller's own key.
            auth_data: Set((i % 3 == 0).then(|| {
                json!({"type": "header", "auth_level": "per_user", "headers": {"Authorization": "Bearer {{API_KEY}}"}})
            })),
            created_at: Set(now),
            updated_at: Set(now),
        }
        }))
        .exec(&db)
        .await
        .unwrap();
    }
    for chunk in (1..=100_000i64).collect::<Vec<_>>().chunks(1_000) {
        access_tokens::Entity::insert_many(chunk.iter().map(|&i| {
            let t = token::generate(TokenKind::PersonalAccess);
            access_tokens::ActiveModel {
                id: Set(i),
                public_id: Set(uuid::Uuid::new_v4().to_string()),
                kind: Set("pat".into()),
                user_id: Set(Some(i % 1_000 + 1)),
                virtual_account_id: Set(None),
                name: Set(format!("token {i}")),
                digest: Set(t.digest),
                prefix: Set(t.display_prefix),
                created_at: Set(now),
                expires_at: Set(None),
                last_used_at: Set(None),
                revoked_at: Set(None),
                pending_secret: Set(None),
            }
        }))
        .exec(&db)
        .await
        .unwrap();
    }
    db
}

fn bench(c: &mut Criterion) {
    let key = KeyMaterial::generate().unwrap();
    let jwks = Jwks { keys: vec![key.jwk()] };
    let snap = snapshot(&key.kid);
    let signed = sign::sign(&snap, &key).unwrap();
    println!("signed snapshot: {} bytes", signed.len());
    let mut group = c.benchmark_group("snapshot 1k servers 100k tokens");
    group.sample_size(10);
    group.bench_function("serialize + sign", |b| b.iter(|| sign::sign(black_box(&snap), &key).unwrap()));
    group.bench_function("verify + parse", |b| b.iter(|| sign::verify(black_box(&signed), &jwks).unwrap()));
    // Where verification time goes.
    let payload_b64 = signed.split('.').nth(1).unwrap();
    let payload = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload_b64).unwrap();
    group.bench_function("part: base64 decode", |b| {
        b.iter(|| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, black_box(payload_b64)).unwrap()
        })
    });
    group.bench_function("part: JSON parse", |b| {
        b.iter(|| serde_json::from_slice::<Snapshot>(black_box(&payload)).unwrap())
    });
    group.bench_function("part: SHA-512 of the signing input", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA512, black_box(signed.as_bytes())))
    });

    // The whole publication path from the store: one read transaction, compile, sign.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = rt.block_on(populated_store(dir.path()));
    group.bench_function("compile from SQLite + sign", |b| {
        b.iter(|| {
            rt.block_on(async {
                use sea_orm::TransactionTrait;
                let txn = db.begin().await.unwrap();
                let snap =
                    mcpgate::policy::compile::compile(&txn, 1, &key.kid, jwks.clone(), Utc::now()).await.unwrap();
                txn.commit().await.unwrap();
                assert_eq!(snap.tokens.len(), 100_000);
                sign::sign(&snap, &key).unwrap()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
