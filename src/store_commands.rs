//! `plantwatch keys`, `plantwatch backup` and `plantwatch restore`: on the
//! store of a configuration, while the service is stopped. Each refuses
//! clearly when a running service holds the store.

use std::collections::HashMap;

use plantwatch_actors::store::{RestoreMode, Store};

use crate::api::auth::{self, KeyRecord, Role};
use crate::cli::{BackupArgs, KeysCommand, RestoreArgs};
use crate::{config, service, CommandError};

pub fn backup(args: &BackupArgs, env: &HashMap<String, String>) -> Result<(), CommandError> {
    let config = config::load(&args.config, env).map_err(|e| CommandError::Usage(e.to_string()))?;
    let store = Store::open(&service::store_config(&config)).map_err(crate::store_error)?;
    let summary = store.backup(&args.out).map_err(|e| CommandError::Failed(e.to_string()))?;
    println!("backed up {} entries ({} bytes) to {}", summary.entries, summary.bytes, summary.path.display());
    // The store's space amplification: what sled takes on disk for the data.
    let on_disk = store.size_on_disk();
    println!(
        "data {} bytes (keys and values); store on disk {on_disk} bytes, {:.1}x the data",
        summary.data_bytes,
        on_disk as f64 / summary.data_bytes.max(1) as f64
    );
    for (tree, n) in &summary.trees {
        println!("  {tree:<10} {n}");
    }
    Ok(())
}

pub fn restore(args: &RestoreArgs, env: &HashMap<String, String>) -> Result<(), CommandError> {
    let config = config::load(&args.config, env).map_err(|e| CommandError::Usage(e.to_string()))?;
    let mode = if args.replace { RestoreMode::Replace } else { RestoreMode::IntoEmpty };
    let summary = Store::restore_with(&service::store_config(&config), &args.from, mode).map_err(crate::store_error)?;
    println!("restored {} entries into {}", summary.entries, config.store.path.display());
    if let Some(old) = summary.moved_aside {
        println!("the previous store was moved to {}", old.display());
    }
    Ok(())
}

fn open(config: &[std::path::PathBuf], env: &HashMap<String, String>) -> Result<Store, CommandError> {
    let config = config::load(config, env).map_err(|e| CommandError::Usage(e.to_string()))?;
    Store::open(&service::store_config(&config)).map_err(crate::store_error)
}

pub fn keys(cmd: &KeysCommand, env: &HashMap<String, String>) -> Result<(), CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the runtime: {e}")))?;
    let failed = |e: plantwatch_actors::store::StoreError| CommandError::Failed(e.to_string());
    runtime.block_on(async {
        match cmd {
            KeysCommand::Create { config, name, role } => {
                let role: Role = role.parse().map_err(CommandError::Usage)?;
                if name.trim().is_empty() || name.chars().count() > 100 {
                    return Err(CommandError::Usage("--name must be 1 to 100 characters".into()));
                }
                let store = open(config, env)?;
                let (key, record) = auth::generate(name.trim(), role);
                let bytes = serde_json::to_vec(&record).map_err(|e| CommandError::Failed(e.to_string()))?;
                store.put_key(&record.id, bytes).await.map_err(failed)?;
                println!("id: {}", record.id);
                println!("role: {}", role.as_str());
                println!("key: {key}");
                eprintln!("the key is shown only now: keep it somewhere safe");
                Ok(())
            }
            KeysCommand::List { config } => {
                let store = open(config, env)?;
                println!("{:<14} {:<9} {:<24} {:<10} name", "id", "role", "created", "state");
                for (_, bytes) in store.list_keys().await.map_err(failed)? {
                    let r: KeyRecord =
                        serde_json::from_slice(&bytes).map_err(|e| CommandError::Failed(e.to_string()))?;
                    let v = crate::api::view::key(&r);
                    let state = if r.revoked.is_some() { "revoked" } else { "active" };
                    println!("{:<14} {:<9} {:<24} {:<10} {}", v.id, v.role, v.created, state, v.name);
                }
                Ok(())
            }
            KeysCommand::Revoke { config, id } => {
                let store = open(config, env)?;
                let bytes = store
                    .get_key(id)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| CommandError::Failed(format!("no API key {id}")))?;
                let mut r: KeyRecord =
                    serde_json::from_slice(&bytes).map_err(|e| CommandError::Failed(e.to_string()))?;
                if r.revoked.is_none() {
                    r.revoked = Some(plantwatch_actors::plant::model::now_ms());
                    let bytes = serde_json::to_vec(&r).map_err(|e| CommandError::Failed(e.to_string()))?;
                    store.put_key(&r.id, bytes).await.map_err(failed)?;
                }
                println!("revoked {}", r.id);
                Ok(())
            }
        }
    })
}
