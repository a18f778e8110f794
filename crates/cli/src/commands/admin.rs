//! `mlgrid admin ...`: administration by someone with access to the database (its
//! files, or its PostgreSQL role) rather than an API key.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use mlgrid_core::lifecycle::validate_asset_name;
use mlgrid_server::keys::{api_key_hash, generate_api_key};
use mlgrid_store::{RecoveryTarget, StoreError, recover_owner};
use serde_json::{Value, json};

use super::migrate::cannot_use;
use super::serve::DATABASE_FILE;
use crate::args::RecoverArgs;

/// `mlgrid admin recover`: a principal with Owner on everything and a new API key,
/// written straight to the database (see [`mlgrid_store::recover_owner`]); the key is
/// printed once, and only its hash is stored.
pub async fn recover(args: RecoverArgs, data_dir: &Path) -> anyhow::Result<Value> {
    let name = args
        .name
        .unwrap_or_else(|| format!("recovered-owner-{}", Utc::now().format("%Y%m%dT%H%M%SZ")));
    validate_asset_name("principal", &name).map_err(anyhow::Error::msg)?;
    let key = generate_api_key();
    let database = data_dir.join(DATABASE_FILE);
    let recovered = match &args.database_url {
        Some(url) => recover_owner(RecoveryTarget::Postgres(url), &name, &api_key_hash(&key))
            .await
            .map_err(|e| match e {
                StoreError::Backend(_) => cannot_use(url, e),
                other => other.into(),
            })?,
        None => recover_owner(RecoveryTarget::Sqlite(&database), &name, &api_key_hash(&key))
            .await
            .with_context(|| format!("recovering an Owner in {}", database.display()))?,
    };
    eprintln!(
        "principal `{}` {} Owner on all workspaces and topics, with the new API key below. It is shown \
         only this once: use it with --api-key or MLGRID_API_KEY, then grant Owner to the people who \
         need it and revoke what should not work any more",
        recovered.principal,
        if recovered.created {
            "was created as"
        } else {
            "now holds"
        },
    );
    Ok(json!({"name": recovered.principal, "key": key, "created": recovered.created}))
}
