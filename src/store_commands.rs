//! `plantwatch backup` and `plantwatch restore`: the whole store to and from
//! one file, on the store path of a configuration. Both refuse clearly when a
//! running service holds the store.

use std::collections::HashMap;

use plantwatch_actors::store::{RestoreMode, Store};

use crate::cli::{BackupArgs, RestoreArgs};
use crate::{config, service, CommandError};

pub fn backup(args: &BackupArgs, env: &HashMap<String, String>) -> Result<(), CommandError> {
    let config = config::load(&args.config, env).map_err(|e| CommandError::Usage(e.to_string()))?;
    let store = Store::open(&service::store_config(&config)).map_err(|e| CommandError::Failed(e.to_string()))?;
    let summary = store.backup(&args.out).map_err(|e| CommandError::Failed(e.to_string()))?;
    println!("backed up {} entries ({} bytes) to {}", summary.entries, summary.bytes, summary.path.display());
    for (tree, n) in &summary.trees {
        println!("  {tree:<10} {n}");
    }
    Ok(())
}

pub fn restore(args: &RestoreArgs, env: &HashMap<String, String>) -> Result<(), CommandError> {
    let config = config::load(&args.config, env).map_err(|e| CommandError::Usage(e.to_string()))?;
    let mode = if args.replace { RestoreMode::Replace } else { RestoreMode::IntoEmpty };
    let summary = Store::restore_with(&service::store_config(&config), &args.from, mode)
        .map_err(|e| CommandError::Failed(e.to_string()))?;
    println!("restored {} entries into {}", summary.entries, config.store.path.display());
    if let Some(old) = summary.moved_aside {
        println!("the previous store was moved to {}", old.display());
    }
    Ok(())
}
