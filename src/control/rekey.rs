//! `mcpgate keys rotate-master`: every value sealed under the master key, opened with the old
//! key and sealed again with the new one, in one transaction — either all of them move or none.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set, TransactionTrait};

use crate::auth::seal::Sealer;
use crate::control::outbound::AuthData;
use crate::store::entities::{
    access_tokens, auth_overrides, servers, signing_keys, upstream_auth_states, upstream_clients, upstream_grants,
    virtual_members,
};

fn reseal(value: &str, old: &Sealer, new: &Sealer) -> anyhow::Result<String> {
    new.seal(&old.open(value)?)
}

fn reseal_opt(value: Option<String>, old: &Sealer, new: &Sealer) -> anyhow::Result<Option<String>> {
    value.map(|v| reseal(&v, old, new)).transpose()
}

fn reseal_auth(stored: &serde_json::Value, old: &Sealer, new: &Sealer) -> anyhow::Result<serde_json::Value> {
    AuthData::open(stored, old)?.seal(new)
}

/// Re-seals everything; returns how many values moved.
pub async fn reseal_all<C: TransactionTrait>(db: &C, old: &Sealer, new: &Sealer) -> anyhow::Result<usize> {
    let txn = db.begin().await?;
    let mut moved = 0;
    for row in signing_keys::Entity::find().all(&txn).await? {
        let sealed = reseal(&row.private_key, old, new)?;
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
            let sealed = reseal_opt(row.pending_secret.clone(), old, new)?;
            let mut active = row.into_active_model();
            active.pending_secret = Set(sealed);
            active.update(&txn).await?;
            moved += 1;
        }
    }
    for row in servers::Entity::find().all(&txn).await? {
        if let Some(stored) = row.auth_data.clone() {
            let mut active = row.into_active_model();
            active.auth_data = Set(Some(reseal_auth(&stored, old, new)?));
            active.update(&txn).await?;
            moved += 1;
        }
    }
    for row in virtual_members::Entity::find().all(&txn).await? {
        if let Some(stored) = row.auth_data.clone() {
            let mut active = row.into_active_model();
            active.auth_data = Set(Some(reseal_auth(&stored, old, new)?));
            active.update(&txn).await?;
            moved += 1;
        }
    }
    for row in auth_overrides::Entity::find().all(&txn).await? {
        let sealed = reseal(&row.values, old, new)?;
        let mut active = row.into_active_model();
        active.values = Set(sealed);
        active.update(&txn).await?;
        moved += 1;
    }
    for row in upstream_grants::Entity::find().all(&txn).await? {
        let (access, refresh) =
            (reseal_opt(row.access_token.clone(), old, new)?, reseal_opt(row.refresh_token.clone(), old, new)?);
        let mut active = row.into_active_model();
        active.access_token = Set(access);
        active.refresh_token = Set(refresh);
        active.update(&txn).await?;
        moved += 1;
    }
    for row in upstream_auth_states::Entity::find().all(&txn).await? {
        let sealed = reseal(&row.verifier, old, new)?;
        let mut active = row.into_active_model();
        active.verifier = Set(sealed);
        active.update(&txn).await?;
        moved += 1;
    }
    for row in upstream_clients::Entity::find().all(&txn).await? {
        if row.client_secret.is_some() {
            let sealed = reseal_opt(row.client_secret.clone(), old, new)?;
            let mut active = row.into_active_model();
            active.client_secret = Set(sealed);
            active.update(&txn).await?;
            moved += 1;
        }
    }
    txn.commit().await?;
    Ok(moved)
}
