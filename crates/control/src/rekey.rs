//! `mcpgate keys rotate-master`: every value sealed under the master key, opened with the old
//! key and sealed again with the new one, in one transaction — either all of them move or none.
//! Each is sealed bound to its place (values from before places were bound become bound too).

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set, TransactionSession, TransactionTrait,
};

use crate::auth::seal::{Place, Sealer};
use crate::outbound::AuthData;
use crate::store::entities::{
    access_tokens, auth_overrides, identity_providers, idp_sessions, servers, signing_keys, upstream_auth_states,
    upstream_clients, upstream_grants, virtual_members,
};

fn reseal(value: &str, place: &Place, old: &Sealer, new: &Sealer) -> anyhow::Result<String> {
    new.seal_at(&old.open_at(value, place)?, place)
}

fn reseal_opt(value: Option<String>, place: &Place, old: &Sealer, new: &Sealer) -> anyhow::Result<Option<String>> {
    value.map(|v| reseal(&v, place, old, new)).transpose()
}

fn reseal_auth(
    stored: &serde_json::Value,
    place: &Place,
    old: &Sealer,
    new: &Sealer,
) -> anyhow::Result<serde_json::Value> {
    AuthData::open(stored, old, place)?.seal(new, place)
}

/// Re-seals everything; returns how many values moved.
pub async fn reseal_all<C: TransactionTrait>(db: &C, old: &Sealer, new: &Sealer) -> anyhow::Result<usize> {
    let txn = crate::store::begin_write(db).await?;
    let mut moved = 0;
    for row in signing_keys::Entity::find().all(&txn).await? {
        let sealed = reseal(&row.private_key, &Place::signing_key(&row.kid), old, new)?;
        let mut active = row.into_active_model();
        active.private_key = Set(sealed);
        active.update(&txn).await?;
        moved += 1;
    }
    // Rotated virtual-account tokens waiting to be claimed.
    for row in
        access_tokens::Entity::find().filter(access_tokens::Column::PendingSecret.is_not_null()).all(&txn).await?
    {
        if row.pending_secret.is_some() {
            let sealed = reseal_opt(row.pending_secret.clone(), &Place::pending_token(&row.public_id), old, new)?;
            let mut active = row.into_active_model();
            active.pending_secret = Set(sealed);
            active.update(&txn).await?;
            moved += 1;
        }
    }
    let all_servers = servers::Entity::find().all(&txn).await?;
    let by_id: HashMap<i64, (i64, String)> =
        all_servers.iter().map(|s| (s.id, (s.tenant_id, s.slug.clone()))).collect();
    for row in all_servers {
        if let Some(stored) = row.auth_data.clone() {
            let place = Place::server_auth(row.tenant_id, &row.slug);
            let mut active = row.into_active_model();
            active.auth_data = Set(Some(reseal_auth(&stored, &place, old, new)?));
            active.update(&txn).await?;
            moved += 1;
        }
    }
    for row in virtual_members::Entity::find().all(&txn).await? {
        if let Some(stored) = row.auth_data.clone() {
            let (Some((tenant, parent)), Some((_, member))) =
                (by_id.get(&row.virtual_server_id), by_id.get(&row.member_server_id))
            else {
                continue;
            };
            let place = Place::member_auth(*tenant, parent, member);
            let mut active = row.into_active_model();
            active.auth_data = Set(Some(reseal_auth(&stored, &place, old, new)?));
            active.update(&txn).await?;
            moved += 1;
        }
    }
    for row in auth_overrides::Entity::find().all(&txn).await? {
        let place = Place::override_values(row.server_id, &row.subject_kind, row.subject_id);
        let sealed = reseal(&row.values, &place, old, new)?;
        let mut active = row.into_active_model();
        active.values = Set(sealed);
        active.update(&txn).await?;
        moved += 1;
    }
    for row in upstream_grants::Entity::find().all(&txn).await? {
        let (access_place, refresh_place) = (
            Place::grant(row.server_id, row.user_id, "access_token"),
            Place::grant(row.server_id, row.user_id, "refresh_token"),
        );
        let access = reseal_opt(row.access_token.clone(), &access_place, old, new)?;
        let refresh = reseal_opt(row.refresh_token.clone(), &refresh_place, old, new)?;
        let mut active = row.into_active_model();
        active.access_token = Set(access);
        active.refresh_token = Set(refresh);
        active.update(&txn).await?;
        moved += 1;
    }
    for row in upstream_auth_states::Entity::find().all(&txn).await? {
        let sealed = reseal(&row.verifier, &Place::auth_state(&row.state_digest), old, new)?;
        let mut active = row.into_active_model();
        active.verifier = Set(sealed);
        active.update(&txn).await?;
        moved += 1;
    }
    for row in upstream_clients::Entity::find().all(&txn).await? {
        if row.client_secret.is_some() {
            let sealed = reseal_opt(row.client_secret.clone(), &Place::upstream_client(row.server_id), old, new)?;
            let mut active = row.into_active_model();
            active.client_secret = Set(sealed);
            active.update(&txn).await?;
            moved += 1;
        }
    }
    for row in identity_providers::Entity::find().all(&txn).await? {
        if row.client_secret.is_some() {
            let sealed = reseal_opt(row.client_secret.clone(), &Place::idp_secret(row.id), old, new)?;
            let mut active = row.into_active_model();
            active.client_secret = Set(sealed);
            active.update(&txn).await?;
            moved += 1;
        }
    }
    for row in idp_sessions::Entity::find().all(&txn).await? {
        let sealed = reseal(&row.refresh_token, &Place::idp_session(row.user_id, row.idp_id), old, new)?;
        let mut active = row.into_active_model();
        active.refresh_token = Set(sealed);
        active.update(&txn).await?;
        moved += 1;
    }
    txn.commit().await?;
    Ok(moved)
}
