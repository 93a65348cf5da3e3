//! Token authentication cost: format check, SHA-256 digest, and the digest lookup in SQLite;
//! and the proxy's verification of a gateway OAuth access token (EdDSA JWT).
//! `cargo bench --bench tokens`; figures go to bench/RESULTS.md.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly on broken setup

use std::hint::black_box;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use mcpgate::auth::token::{self, TokenKind};
use mcpgate::control::audit::Actor;
use mcpgate::control::{tokens, users};
use mcpgate::domain::{DisplayName, Email};
use mcpgate::store;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    let (db, secrets) = runtime.block_on(async {
        let db = store::connect(&url, 4).await.unwrap();
        store::migrate(&db).await.unwrap();
        let user = users::create(
            &db,
            &Actor::system(),
            users::NewUser {
                email: Email::parse("email", "bench@example.com").unwrap(),
                display_name: DisplayName::parse("name", "Bench").unwrap(),
                password: None,
                is_platform_admin: false,
            },
            Utc::now(),
        )
        .await
        .unwrap();
        // A realistic table: many tokens, the lookup must find one by digest.
        let mut secrets = Vec::new();
        for i in 0..1000 {
            let issued =
                tokens::issue_pat(&db, &Actor::system(), &user, format!("t{i}"), None, Utc::now()).await.unwrap();
            secrets.push(issued.secret);
        }
        (db, secrets)
    });
    let valid = secrets[500].clone();
    let mut mangled = valid.clone();
    mangled.replace_range(20..21, if &valid[20..21] == "a" { "b" } else { "a" });

    c.bench_function("token parse + digest", |b| {
        b.iter(|| {
            let kind = token::parse(black_box(&valid));
            assert_eq!(kind, Some(TokenKind::PersonalAccess));
            black_box(token::digest(&valid))
        })
    });
    c.bench_function("token reject malformed (no lookup)", |b| {
        b.iter(|| runtime.block_on(async { tokens::authenticate(&db, black_box(&mangled), Utc::now()).await.unwrap() }))
    });
    c.bench_function("token parse + digest + lookup (SQLite, 1000 tokens)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let found = tokens::authenticate(&db, black_box(&valid), Utc::now()).await.unwrap();
                assert!(found.is_some());
            })
        })
    });
}

/// What the proxy pays for a gateway OAuth access token: header, Ed25519 signature, claims.
fn bench_jwt(c: &mut Criterion) {
    use mcpgate::auth::access_token::{mint, AccessClaims, Verifier};
    use mcpgate::policy::sign::KeyMaterial;
    use mcpgate::policy::Jwks;
    let key = KeyMaterial::generate().unwrap();
    let verifier = Verifier::new(&Jwks { keys: vec![key.jwk()] });
    let url = "https://gw.example/acme/mcp/github/server";
    let now = Utc::now().timestamp();
    let claims = AccessClaims {
        iss: "https://gw.example".into(),
        sub: "u42".into(),
        aud: url.into(),
        exp: now + 3600,
        iat: now,
        jti: "0123456789abcdef0123456789abcdef".into(),
        client_id: "mcpgate_client_0123456789abcdef0123456789abcdef".into(),
        grant_id: Some("fedcba9876543210fedcba9876543210".into()),
        scope: Some("offline_access".into()),
    };
    let jwt = mint(&key, &claims).unwrap();
    c.bench_function("gateway access token verify (EdDSA JWT)", |b| {
        b.iter(|| assert!(verifier.verify(black_box(&jwt), "https://gw.example", url, now).is_some()))
    });
}

criterion_group!(benches, bench, bench_jwt);
criterion_main!(benches);
