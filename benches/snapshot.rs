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
                kind: "remote".into(),
                url: Some(format!("https://upstream-{i}.example.com/mcp")),
                transport: Some("streamable_http".into()),
                additional_headers: json!({"X-Team": "platform"}),
                tls_reject_unauthorized: true,
                tls_ca_certificate: None,
                tool_settings: vec![],
                members: vec![],
                outbound_auth: json!({"type": "none"}),
            })
            .collect(),
        access: vec![],
        tokens: (0..100_000)
            .map(|i| TokenEntry {
                digest: token::generate(TokenKind::PersonalAccess).digest,
                subject_kind: "user".into(),
                subject: i,
                expires_at: None,
            })
            .collect(),
        revoked_gateway_tokens: vec![],
        identity_providers: vec![],
        gateway_keys: Jwks::default(),
    }
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
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
