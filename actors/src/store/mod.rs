//! The persistent store: device snapshots, point history, the write audit log,
//! API keys and the schema version, in one sled database behind [`Store`].
//!
//! ```text
//!  actors, HTTP API, CLI ──▶ Store (cheap clone) ──spawn_blocking + span──▶ sled::Db
//!                                                                            ├─ meta       schema_version
//!                                                                            ├─ snapshots  device ─▶ JSON
//!                                                                            ├─ history    point + time ─▶ value, quality
//!                                                                            ├─ audit      sequence ─▶ record
//!                                                                            ├─ api_keys   id ─▶ record
//!                                                                            └─ leases     network/instance/object/priority ─▶ lease
//! ```
//!
//! Nothing outside this module names sled, so the engine can be replaced
//! without touching actors or the API. Every sled call runs on tokio's
//! blocking pool inside the caller's tracing span; the async methods never
//! block a runtime thread. Key and value layouts are in [`keys`]; the backup
//! file format is in [`backup`].
//!
//! # Durability
//!
//! sled acknowledges a write before it is on disk and writes in the
//! background every [`StoreConfig::flush_every`]. [`Store::append_audit`],
//! [`Store::put_key`], [`Store::delete_key`], [`Store::put_lease`] and
//! [`Store::delete_lease`] flush before they return, so
//! an acknowledged audit record or key change survives a `kill -9`. Snapshots
//! and history are inserted without a flush (a crash loses at most the last
//! `flush_every`); call [`Store::flush`] at shutdown.
//!
//! # Space over months
//!
//! sled 0.34 amplifies space for rewrites (measured 49× for one key written
//! 100 times) and gives deleted space back slowly: freed log segments are
//! reused for new writes, the file is not shrunk. The design bounds growth by
//! what it writes, not by reclaiming:
//! - snapshots are rewritten only when the device changed, coalesced by the
//!   callers to at most one write per device every few seconds, and on
//!   shutdown; one key per device, so the live data stays small;
//! - history is append-only (a key is never rewritten) and retention removes
//!   rows older than an age with [`Store::prune_history`], in batches of at
//!   most `max_rows` so a large prune never stalls the store; the file then
//!   plateaus near the size that the retention window needs, as freed
//!   segments are reused;
//! - audit records and keys are small and rare.
//!
//! [`Store::size_on_disk`] feeds the store size metric so that growth is
//! visible, and a churn test pins an upper bound.
//!
//! # Failure to open
//!
//! An open failure is a [`StoreError`] naming the path and what to do, never a
//! panic: another process holding the store's lock ([`StoreError::Locked`]),
//! a damaged store (move it aside and `plantwatch restore --config FILE --from
//! BACKUP`), a store of another schema version, or a directory that holds
//! something that is not a plantwatch store.
//!
//! sled 0.34 reads damage in its log as a torn write: it opens what precedes
//! the damage and drops the rest *without an error* (measured: 1,000 damaged
//! bytes at offset 300 KB of a 580 KB store left 107 of 200 snapshots). The
//! store refuses the case it can see, a data file that holds bytes but no
//! schema version; for the rest, regular backups are the defence.

pub mod backup;
pub mod keys;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::ops::Bound;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info, warn};

use keys::KeyError;

/// Version of the layout of the data in the store; bumped by any change that
/// an older or newer plantwatch cannot read.
pub const SCHEMA_VERSION: u32 = 1;

const META: &str = "meta";
const SNAPSHOTS: &str = "snapshots";
const HISTORY: &str = "history";
const AUDIT: &str = "audit";
const API_KEYS: &str = "api_keys";
const LEASES: &str = "leases";
/// Every tree of the store, in backup order.
pub const TREES: [&str; 6] = [META, SNAPSHOTS, HISTORY, AUDIT, API_KEYS, LEASES];
const SCHEMA_KEY: &[u8] = b"schema_version";
/// sled's own tree, which plantwatch does not use.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

const RESTORE_HINT: &str =
    "if the store is damaged, move its directory aside and restore the last backup with `plantwatch restore --config FILE --from BACKUP`";

/// Where the store lives and how sled runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The store's directory; created if missing.
    pub path: PathBuf,
    /// sled's page cache (sled's own default is 1 GB). Default 64 MiB.
    pub cache_capacity_bytes: u64,
    /// How often sled writes to disk in the background. Default 500 ms;
    /// `Duration::ZERO` turns the background flush off (only explicit flushes
    /// write).
    pub flush_every: Duration,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig { path: path.into(), cache_capacity_bytes: 64 << 20, flush_every: Duration::from_millis(500) }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::new("data/plantwatch.db")
    }
}

/// Why a store operation failed. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} is locked: another process holds it (is plantwatch already running with this store?); \
         stop that process, or use a different store path"
    )]
    Locked { path: PathBuf },
    #[error("cannot create the store directory {path}: {reason}")]
    CreateDir { path: PathBuf, reason: String },
    #[error("cannot open the store at {path}: {reason}; {RESTORE_HINT}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "the store at {path} has schema version {found}, this plantwatch expects version {expected}: run the plantwatch \
         release that wrote it, or restore a backup made with this release into a new path with \
         `plantwatch restore --config FILE --from BACKUP`"
    )]
    SchemaMismatch { path: PathBuf, found: String, expected: u32 },
    #[error(
        "the directory {path} holds data but no plantwatch schema version: it is not a plantwatch store; point \
         store.path at a plantwatch store or a new directory, or restore a backup there with \
         `plantwatch restore --config FILE --from BACKUP`"
    )]
    Foreign { path: PathBuf },
    #[error("the store at {path} failed: {reason}")]
    Storage { path: PathBuf, reason: String },
    #[error("invalid store key: {0}")]
    Key(#[from] KeyError),
    #[error("the snapshot of device {instance} on network {network} cannot be {action}: {reason}")]
    Snapshot { network: String, instance: u32, action: &'static str, reason: String },
    #[error("the store at {path} holds a malformed {tree} entry: {reason}")]
    Malformed { path: PathBuf, tree: &'static str, reason: String },
    #[error("cannot write the backup {path}: {reason}")]
    BackupWrite { path: PathBuf, reason: String },
    #[error("cannot restore from {path}: {reason}")]
    BadBackup { path: PathBuf, reason: String },
    #[error(
        "cannot restore into {path}: it is not empty; restore into a new path, or replace the store (the old one \
         is moved aside to {path}.before-restore-<time>)"
    )]
    RestoreTargetNotEmpty { path: PathBuf },
    #[error("cannot restore into {path}: {reason}")]
    RestoreInstall { path: PathBuf, reason: String },
    #[error("store task {op} failed: {reason}")]
    Task { op: &'static str, reason: String },
}

/// One point of one device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct PointKey {
    pub network: String,
    pub instance: u32,
    /// e.g. `analog-input:3`
    pub object: String,
}

impl PointKey {
    pub fn new(network: impl Into<String>, instance: u32, object: impl Into<String>) -> Self {
        PointKey { network: network.into(), instance, object: object.into() }
    }

    fn prefix(&self) -> Result<Vec<u8>, KeyError> {
        keys::point_prefix(&self.network, self.instance, &self.object)
    }
}

/// One priority slot of one point: what a lease is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseSlot {
    pub network: String,
    pub instance: u32,
    /// e.g. `analog-output:1`
    pub object: String,
    pub priority: u8,
}

impl LeaseSlot {
    fn key(&self) -> Result<Vec<u8>, KeyError> {
        keys::lease_key(&self.network, self.instance, &self.object, self.priority)
    }
}

/// A value to append to a point's history. Times are kept to the
/// millisecond; a second row for the same point and millisecond replaces the
/// first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub point: PointKey,
    pub at: SystemTime,
    /// Numbers as they are, booleans 0/1, enumerations as their number.
    pub value: f64,
    pub quality: u8,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistorySample {
    pub at: SystemTime,
    pub value: f64,
    pub quality: u8,
}

/// Counters for metrics; cheap to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StoreStats {
    pub size_on_disk_bytes: u64,
    pub snapshots: u64,
    pub api_keys: u64,
    /// The last audit sequence number (records are never removed, so also
    /// their count).
    pub audit_last_sequence: u64,
    /// History rows written and removed since the store was opened (the
    /// history tree is too large to count on every scrape).
    pub history_rows_recorded: u64,
    pub history_rows_pruned: u64,
    /// Device snapshots written since the store was opened.
    pub snapshots_written: u64,
}

/// What a backup or restore moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The backup file.
    pub path: PathBuf,
    pub schema_version: u32,
    /// Entries per tree.
    pub trees: BTreeMap<String, u64>,
    pub entries: u64,
    /// Size of the backup file.
    pub bytes: u64,
    /// The data itself: keys and values, summed (on a backup; 0 on a restore).
    pub data_bytes: u64,
    /// On a restore that replaced a store: where the old one was moved.
    pub moved_aside: Option<PathBuf>,
}

/// What a restore does with a store already at the target path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreMode {
    /// Refuse unless the target does not exist or is an empty directory.
    #[default]
    IntoEmpty,
    /// Move an existing store aside to `<path>.before-restore-<unix seconds>`
    /// once the backup has been read and verified completely.
    Replace,
}

struct Inner {
    db: sled::Db,
    meta: sled::Tree,
    snapshots: sled::Tree,
    history: sled::Tree,
    audit: sled::Tree,
    api_keys: sled::Tree,
    leases: sled::Tree,
    path: PathBuf,
    /// The last audit sequence handed out; held while a record is inserted so
    /// that sequences become visible in order.
    audit_last: Mutex<u64>,
    history_recorded: AtomicU64,
    history_pruned: AtomicU64,
    snapshots_written: AtomicU64,
}

impl Inner {
    fn storage(&self, e: sled::Error) -> StoreError {
        storage_error(&self.path, e)
    }
}

fn storage_error(path: &Path, e: sled::Error) -> StoreError {
    let reason = match e {
        sled::Error::Corruption { at, .. } => format!("the store is damaged (at {at:?}); {RESTORE_HINT}"),
        other => other.to_string(),
    };
    StoreError::Storage { path: path.to_owned(), reason }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Whether another open file description holds the lock sled takes on
/// `<path>/db`. Anything but a clear "would block" is left to sled to report.
fn lock_held(path: &Path) -> bool {
    use fs2::FileExt;
    let Ok(file) = File::open(path.join("db")) else {
        return false;
    };
    match file.try_lock_exclusive() {
        Ok(()) => {
            let _ = FileExt::unlock(&file);
            false
        }
        Err(e) => e.kind() == fs2::lock_contended_error().kind(),
    }
}

/// How long an open waits for the store's lock. sled's background IO threads
/// hold the data file for a moment after the last handle is dropped (measured
/// up to 2 ms on 2 busy cores), so a reopen in the same process can find the
/// lock still taken; a lock that another process holds stays taken.
const LOCK_GRACE: Duration = Duration::from_secs(1);

/// Waits up to [`LOCK_GRACE`] for the store's lock; `true` if it is still
/// held.
fn lock_held_after_grace(path: &Path) -> bool {
    let deadline = std::time::Instant::now() + LOCK_GRACE;
    while lock_held(path) {
        if std::time::Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Opens sled at `config.path` (which must exist), turning every failure,
/// including a panic inside sled, into a [`StoreError`].
fn open_sled(config: &StoreConfig) -> Result<sled::Db, StoreError> {
    let path = &config.path;
    let deadline = std::time::Instant::now() + LOCK_GRACE;
    loop {
        if lock_held_after_grace(path) {
            return Err(StoreError::Locked { path: path.clone() });
        }
        match try_open_sled(config) {
            // lost a race for the lock with its previous holder: try again
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

fn try_open_sled(config: &StoreConfig) -> Result<sled::Db, StoreError> {
    let path = &config.path;
    let flush_every = match config.flush_every.as_millis() {
        0 => None,
        ms => Some(u64::try_from(ms).unwrap_or(u64::MAX)),
    };
    let sled_config = sled::Config::new()
        .path(path)
        .cache_capacity(config.cache_capacity_bytes)
        .flush_every_ms(flush_every)
        .mode(sled::Mode::LowSpace);
    let open_error = |reason: String| StoreError::Open { path: path.clone(), reason };
    match panic::catch_unwind(AssertUnwindSafe(|| sled_config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
            Err(StoreError::Locked { path: path.clone() })
        }
        Ok(Err(sled::Error::Corruption { at, .. })) => Err(open_error(format!("it is damaged (at {at:?})"))),
        Ok(Err(sled::Error::Unsupported(msg))) => Err(open_error(format!("the storage engine refused it: {msg}"))),
        Ok(Err(e)) => Err(open_error(e.to_string())),
        Err(payload) => Err(open_error(format!(
            "the storage engine failed while reading it ({}); it is probably damaged",
            panic_message(payload.as_ref())
        ))),
    }
}

fn open_tree(db: &sled::Db, path: &Path, name: &str) -> Result<sled::Tree, StoreError> {
    db.open_tree(name).map_err(|e| storage_error(path, e))
}

/// Whether `path` holds anything: false if it does not exist or is an empty
/// directory; true for a file or an unreadable path.
fn is_occupied(path: &Path) -> io::Result<bool> {
    match fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        // a file, or unreadable: occupied
        Err(_) => Ok(true),
    }
}

/// `<dir>/<name><suffix>` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "store".into());
    name.push(suffix);
    path.with_file_name(name)
}

fn unix_now_ms() -> u64 {
    keys::millis(SystemTime::now())
}

/// A cloneable handle to the store. Cloning is cheap; the database closes
/// (and flushes) when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

/// First byte of a snapshot in the store's binary form (MessagePack, structs
/// as arrays). Older stores hold JSON, which starts with `{` and is still read.
const SNAPSHOT_MSGPACK: u8 = 1;

/// A snapshot as the store keeps it: a format byte, then MessagePack with
/// positional structs. A fraction of the size of JSON and faster to write and
/// read: at 10,000 devices the snapshots are most of what the store writes.
/// Self-describing, so a field added later with `#[serde(default)]` at the
/// end of a struct still decodes from an older snapshot.
fn encode_snapshot<T: Serialize + ?Sized>(snapshot: &T) -> Result<Vec<u8>, String> {
    let mut out = vec![SNAPSHOT_MSGPACK];
    rmp_serde::encode::write(&mut out, snapshot).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decodes a run of stored snapshots, skipping (and logging) those that do
/// not decode.
fn decode_snapshots<T: DeserializeOwned>(raw: &[(String, u32, sled::IVec)]) -> Vec<(String, u32, T)> {
    let mut out = Vec::with_capacity(raw.len());
    for (network, instance, value) in raw {
        match decode_snapshot(value) {
            Ok(snapshot) => out.push((network.clone(), *instance, snapshot)),
            Err(error) => warn!(network, instance, error, "skipping a snapshot that does not decode"),
        }
    }
    out
}

fn decode_snapshot<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&SNAPSHOT_MSGPACK, rest)) => rmp_serde::from_slice(rest).map_err(|e| e.to_string()),
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Some((b, _)) => Err(format!("unknown snapshot format {b:#04x}")),
        None => Err("empty snapshot".to_owned()),
    }
}

impl Store {
    /// Opens (creating if needed) the store at `config.path`. Blocking: call
    /// it at start-up or from a blocking task. Fails with a clear error if
    /// another process holds the store, if it is damaged, of another schema
    /// version, or not a plantwatch store.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let started = std::time::Instant::now();
        let path = config.path.clone();
        if path.exists() && !path.is_dir() {
            return Err(StoreError::Open { path, reason: "it is not a directory".into() });
        }
        fs::create_dir_all(&path).map_err(|e| StoreError::CreateDir { path: path.clone(), reason: e.to_string() })?;
        // sled writes nothing to its data file before the first flush, and a
        // new store flushes its schema version first: so a data file with bytes
        // in it belongs to a store that has (or had) a schema version.
        let data_bytes = fs::metadata(path.join("db")).map(|m| m.len()).unwrap_or(0);
        let db = open_sled(config)?;
        let existing: Vec<sled::IVec> = db.tree_names();
        let meta = open_tree(&db, &path, META)?;
        check_schema(&db, &meta, &existing, data_bytes, &path)?;
        let snapshots = open_tree(&db, &path, SNAPSHOTS)?;
        let history = open_tree(&db, &path, HISTORY)?;
        let audit = open_tree(&db, &path, AUDIT)?;
        let api_keys = open_tree(&db, &path, API_KEYS)?;
        let leases = open_tree(&db, &path, LEASES)?;
        let audit_last = match audit.last().map_err(|e| storage_error(&path, e))? {
            None => 0,
            Some((key, _)) => keys::parse_audit_key(&key).ok_or_else(|| StoreError::Malformed {
                path: path.clone(),
                tree: AUDIT,
                reason: format!("key of {} bytes, expected 8", key.len()),
            })?,
        };
        info!(
            path = %path.display(),
            recovered = db.was_recovered(),
            audit_last,
            open_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                meta,
                snapshots,
                history,
                audit,
                api_keys,
                leases,
                path,
                audit_last: Mutex::new(audit_last),
                history_recorded: AtomicU64::new(0),
                history_pruned: AtomicU64::new(0),
                snapshots_written: AtomicU64::new(0),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking pool in the caller's span.
    async fn run<R, F>(&self, op: &'static str, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Inner) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| f(&inner))).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(StoreError::Task { op, reason: panic_message(e.into_panic().as_ref()) }),
            Err(e) => Err(StoreError::Task { op, reason: e.to_string() }),
        }
    }

    // ----- snapshots -----

    /// Stores the last state of a device as JSON, replacing the previous one.
    /// Not flushed: callers coalesce snapshots (on change, at most every few
    /// seconds) and the background flush or [`Store::flush`] writes them.
    pub async fn save_snapshot<T: Serialize + ?Sized>(
        &self,
        network: &str,
        instance: u32,
        snapshot: &T,
    ) -> Result<(), StoreError> {
        let key = keys::snapshot_key(network, instance)?;
        let value = encode_snapshot(snapshot).map_err(|reason| StoreError::Snapshot {
            network: network.to_owned(),
            instance,
            action: "encoded",
            reason,
        })?;
        self.run("save_snapshot", move |s| {
            s.snapshots.insert(key, value).map_err(|e| s.storage(e))?;
            s.snapshots_written.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    pub async fn load_snapshot<T: DeserializeOwned + Send + 'static>(
        &self,
        network: &str,
        instance: u32,
    ) -> Result<Option<T>, StoreError> {
        let key = keys::snapshot_key(network, instance)?;
        let network = network.to_owned();
        self.run("load_snapshot", move |s| {
            let Some(bytes) = s.snapshots.get(key).map_err(|e| s.storage(e))? else {
                return Ok(None);
            };
            decode_snapshot(&bytes).map(Some).map_err(|reason| StoreError::Snapshot {
                network,
                instance,
                action: "decoded",
                reason,
            })
        })
        .await
    }

    /// Every stored snapshot, ordered by network and instance, for a service
    /// restart. A snapshot that does not decode as `T` (e.g. written by a
    /// different snapshot shape) is skipped with a warning: the device then
    /// starts empty and fills from its first poll.
    pub async fn load_snapshots<T: DeserializeOwned + Send + 'static>(
        &self,
    ) -> Result<Vec<(String, u32, T)>, StoreError> {
        self.run("load_snapshots", |s| {
            let started = std::time::Instant::now();
            let mut raw = Vec::new();
            for item in s.snapshots.iter() {
                let (key, value) = item.map_err(|e| s.storage(e))?;
                match keys::parse_snapshot_key(&key) {
                    Some((network, instance)) => raw.push((network, instance, value)),
                    None => warn!(key = ?key, "skipping a snapshot with a malformed key"),
                }
            }
            let read = started.elapsed();
            // Decoding is most of a restart's work at 10,000 devices: spread
            // it over the cores, keeping the store's order.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
            let chunk = raw.len().div_ceil(threads).max(1);
            let out: Vec<(String, u32, T)> = std::thread::scope(|scope| {
                let workers: Vec<_> =
                    raw.chunks(chunk).map(|part| scope.spawn(move || decode_snapshots::<T>(part))).collect();
                // a decoder's panic goes on to the caller, as it would on one thread
                workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|e| panic::resume_unwind(e))).collect()
            });
            debug!(
                snapshots = out.len(),
                read_ms = read.as_millis() as u64,
                decode_ms = (started.elapsed() - read).as_millis() as u64,
                threads,
                "snapshots loaded"
            );
            Ok(out)
        })
        .await
    }

    pub async fn delete_snapshot(&self, network: &str, instance: u32) -> Result<(), StoreError> {
        let key = keys::snapshot_key(network, instance)?;
        self.run("delete_snapshot", move |s| {
            s.snapshots.remove(key).map_err(|e| s.storage(e))?;
            Ok(())
        })
        .await
    }

    // ----- history -----

    /// Appends rows in one sled batch (all or nothing). Not flushed.
    pub async fn record_history(&self, rows: Vec<HistoryRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let count = rows.len() as u64;
        for row in &rows {
            let key = keys::history_key(&row.point.prefix()?, keys::millis(row.at));
            batch.insert(key, &keys::history_value(row.value, row.quality)[..]);
        }
        self.run("record_history", move |s| {
            s.history.apply_batch(batch).map_err(|e| s.storage(e))?;
            s.history_recorded.fetch_add(count, Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    /// Samples of one point with `from <= at < to`, oldest first, at most
    /// `limit`. `after` is a paging cursor: the `at` of the last sample of
    /// the previous page; only later samples are returned.
    pub async fn history(
        &self,
        point: &PointKey,
        from: SystemTime,
        to: SystemTime,
        limit: usize,
        after: Option<SystemTime>,
    ) -> Result<Vec<HistorySample>, StoreError> {
        let prefix = point.prefix()?;
        let mut start = keys::millis(from);
        if let Some(after) = after {
            start = start.max(keys::millis(after).saturating_add(1));
        }
        let end = keys::millis(to);
        if limit == 0 || start >= end {
            return Ok(Vec::new());
        }
        self.run("history", move |s| {
            let range = keys::history_key(&prefix, start)..keys::history_key(&prefix, end);
            let mut out = Vec::with_capacity(limit.min(1024));
            for item in s.history.range(range).take(limit) {
                let (key, value) = item.map_err(|e| s.storage(e))?;
                let malformed = |reason: String| StoreError::Malformed { path: s.path.clone(), tree: HISTORY, reason };
                let (_, ms) = keys::split_history_key(&key).ok_or_else(|| malformed(format!("key {key:?}")))?;
                let (value, quality) = keys::parse_history_value(&value)
                    .ok_or_else(|| malformed(format!("value of {} bytes, expected 9", value.len())))?;
                out.push(HistorySample { at: keys::from_millis(ms), value, quality });
            }
            Ok(out)
        })
        .await
    }

    /// Removes history rows older than `older_than`, at most `max_rows` in
    /// one batch, and returns how many it removed; call it again while it
    /// returns `max_rows`. Each point's rows are time-ordered, so the walk
    /// deletes from the front of every point and seeks past a point at its
    /// first recent row: the cost is the rows removed plus one seek per point.
    pub async fn prune_history(&self, older_than: SystemTime, max_rows: usize) -> Result<usize, StoreError> {
        let cutoff = keys::millis(older_than);
        if max_rows == 0 {
            return Ok(0);
        }
        self.run("prune_history", move |s| {
            let mut batch = sled::Batch::default();
            let mut removed = 0;
            let mut from: Bound<Vec<u8>> = Bound::Unbounded;
            'seek: loop {
                for item in s.history.range::<Vec<u8>, _>((from.clone(), Bound::Unbounded)) {
                    let (key, _) = item.map_err(|e| s.storage(e))?;
                    let Some((prefix, ms)) = keys::split_history_key(&key) else {
                        warn!(key = ?key, "history holds a malformed key; leaving it");
                        continue;
                    };
                    if ms < cutoff {
                        batch.remove(key.clone());
                        removed += 1;
                        if removed == max_rows {
                            break 'seek;
                        }
                    } else {
                        from = Bound::Excluded(keys::point_end(prefix));
                        continue 'seek;
                    }
                }
                break;
            }
            if removed > 0 {
                s.history.apply_batch(batch).map_err(|e| s.storage(e))?;
                s.history_pruned.fetch_add(removed as u64, Ordering::Relaxed);
            }
            debug!(removed, cutoff_ms = cutoff, "history pruned");
            Ok(removed)
        })
        .await
    }

    // ----- audit log -----

    /// Appends a record and flushes it to disk before returning its sequence
    /// number (1, 2, 3, … across restarts). If the flush fails the error is
    /// returned, but the record may still reach the disk later.
    pub async fn append_audit(&self, record: Vec<u8>) -> Result<u64, StoreError> {
        self.run("append_audit", move |s| {
            let sequence = {
                let mut last = s.audit_last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let sequence = *last + 1;
                s.audit.insert(keys::audit_key(sequence), record).map_err(|e| s.storage(e))?;
                *last = sequence;
                sequence
            };
            s.db.flush().map_err(|e| s.storage(e))?;
            Ok(sequence)
        })
        .await
    }

    /// Records with a sequence greater than `after`, oldest first, at most
    /// `limit`.
    pub async fn audit_page(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(after) => after + 1,
            None => 0,
        };
        self.run("audit_page", move |s| {
            let mut out = Vec::with_capacity(limit.min(1024));
            for item in s.audit.range(keys::audit_key(start)..).take(limit) {
                let (key, value) = item.map_err(|e| s.storage(e))?;
                let sequence = keys::parse_audit_key(&key).ok_or_else(|| StoreError::Malformed {
                    path: s.path.clone(),
                    tree: AUDIT,
                    reason: format!("key of {} bytes, expected 8", key.len()),
                })?;
                out.push((sequence, value.to_vec()));
            }
            Ok(out)
        })
        .await
    }

    // ----- API keys -----

    /// Inserts or replaces a key record and flushes it before returning.
    pub async fn put_key(&self, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        let id = key_id(id)?;
        self.run("put_key", move |s| {
            s.api_keys.insert(id, record).map_err(|e| s.storage(e))?;
            s.db.flush().map_err(|e| s.storage(e))?;
            Ok(())
        })
        .await
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = key_id(id)?;
        self.run("get_key", move |s| Ok(s.api_keys.get(id).map_err(|e| s.storage(e))?.map(|v| v.to_vec()))).await
    }

    /// Every key record, ordered by id.
    pub async fn list_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.run("list_keys", |s| {
            let mut out = Vec::new();
            for item in s.api_keys.iter() {
                let (id, value) = item.map_err(|e| s.storage(e))?;
                match String::from_utf8(id.to_vec()) {
                    Ok(id) => out.push((id, value.to_vec())),
                    Err(_) => warn!(id = ?id, "skipping an api key with a non-UTF-8 id"),
                }
            }
            Ok(out)
        })
        .await
    }

    /// Removes a key record (flushed); `false` if there was none.
    pub async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = key_id(id)?;
        self.run("delete_key", move |s| {
            let existed = s.api_keys.remove(id).map_err(|e| s.storage(e))?.is_some();
            s.db.flush().map_err(|e| s.storage(e))?;
            Ok(existed)
        })
        .await
    }

    // ----- leases -----

    /// Inserts or replaces the lease of one priority slot and flushes it
    /// before returning.
    pub async fn put_lease(&self, slot: &LeaseSlot, record: Vec<u8>) -> Result<(), StoreError> {
        let key = slot.key()?;
        self.run("put_lease", move |s| {
            s.leases.insert(key, record).map_err(|e| s.storage(e))?;
            s.db.flush().map_err(|e| s.storage(e))?;
            Ok(())
        })
        .await
    }

    /// Removes the lease of one slot (flushed); `false` if there was none.
    pub async fn delete_lease(&self, slot: &LeaseSlot) -> Result<bool, StoreError> {
        let key = slot.key()?;
        self.run("delete_lease", move |s| {
            let existed = s.leases.remove(key).map_err(|e| s.storage(e))?.is_some();
            s.db.flush().map_err(|e| s.storage(e))?;
            Ok(existed)
        })
        .await
    }

    /// Every lease record, by slot.
    pub async fn list_leases(&self) -> Result<Vec<(LeaseSlot, Vec<u8>)>, StoreError> {
        self.run("list_leases", |s| {
            let mut out = Vec::new();
            for item in s.leases.iter() {
                let (key, value) = item.map_err(|e| s.storage(e))?;
                match keys::parse_lease_key(&key) {
                    Some((network, instance, object, priority)) => {
                        out.push((LeaseSlot { network, instance, object, priority }, value.to_vec()))
                    }
                    None => warn!(key = ?key, "skipping a lease with a malformed key"),
                }
            }
            Ok(out)
        })
        .await
    }

    // ----- whole store -----

    /// Writes everything inserted so far to disk: at shutdown and wherever a
    /// write must survive a crash.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.run("flush", |s| {
            s.db.flush().map_err(|e| s.storage(e))?;
            Ok(())
        })
        .await
    }

    /// Bytes the store takes on disk (sled's data file and blobs); 0 (with a
    /// warning) if the files cannot be read. Reads file metadata: cheap, but
    /// not free.
    pub fn size_on_disk(&self) -> u64 {
        match self.inner.db.size_on_disk() {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(path = %self.inner.path.display(), error = %e, "cannot read the store size");
                0
            }
        }
    }

    /// Counters for metrics. Counts the snapshot and key trees (one entry per
    /// device and per key), so call it from a blocking context or at scrape
    /// rate, not per request.
    pub fn stats(&self) -> StoreStats {
        let s = &self.inner;
        StoreStats {
            size_on_disk_bytes: self.size_on_disk(),
            snapshots: s.snapshots.len() as u64,
            api_keys: s.api_keys.len() as u64,
            audit_last_sequence: *s.audit_last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            history_rows_recorded: s.history_recorded.load(Ordering::Relaxed),
            history_rows_pruned: s.history_pruned.load(Ordering::Relaxed),
            snapshots_written: s.snapshots_written.load(Ordering::Relaxed),
        }
    }

    /// Exports every tree (meta included) to one file in the [`backup`]
    /// format. Blocking: run it from a blocking task. The file is written
    /// beside `out` under a temporary name, synced, then renamed, so `out` is
    /// either the previous file or a complete backup. Writes that happen
    /// while it runs may or may not be included (sled has no point-in-time
    /// snapshot across trees); each key is exported whole.
    pub fn backup(&self, out: &Path) -> Result<BackupSummary, StoreError> {
        let write_error = |reason: String| StoreError::BackupWrite { path: out.to_owned(), reason };
        let tmp = sibling(out, &format!(".tmp-{}", std::process::id()));
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.write_backup(out, &tmp)))
            .unwrap_or_else(|payload| Err(write_error(panic_message(payload.as_ref()))));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_backup(&self, out: &Path, tmp: &Path) -> Result<BackupSummary, StoreError> {
        let s = &self.inner;
        let write_error = |e: io::Error| StoreError::BackupWrite { path: out.to_owned(), reason: e.to_string() };
        let header = backup::Header {
            format: backup::FORMAT.to_owned(),
            format_version: backup::FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            created_at_ms: unix_now_ms(),
            producer: concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")).to_owned(),
            trees: TREES.iter().map(|t| (*t).to_owned()).collect(),
        };
        let file = File::create(tmp).map_err(write_error)?;
        let mut writer =
            backup::Writer::start(BufWriter::with_capacity(1 << 16, file), &header).map_err(write_error)?;
        let trees = [
            (META, &s.meta),
            (SNAPSHOTS, &s.snapshots),
            (HISTORY, &s.history),
            (AUDIT, &s.audit),
            (API_KEYS, &s.api_keys),
            (LEASES, &s.leases),
        ];
        let mut data_bytes = 0u64;
        for (name, tree) in trees {
            for item in tree.iter() {
                let (key, value) = item.map_err(|e| s.storage(e))?;
                data_bytes += (key.len() + value.len()) as u64;
                writer.entry(name, &key, &value).map_err(write_error)?;
            }
        }
        let (buffered, trees, bytes) = writer.finish().map_err(write_error)?;
        let file = buffered.into_inner().map_err(|e| write_error(e.into_error()))?;
        file.sync_all().map_err(write_error)?;
        drop(file);
        fs::rename(tmp, out).map_err(write_error)?;
        sync_parent(out);
        let entries = trees.values().sum();
        info!(path = %out.display(), entries, bytes, "store backed up");
        Ok(BackupSummary {
            path: out.to_owned(),
            schema_version: SCHEMA_VERSION,
            trees,
            entries,
            bytes,
            data_bytes,
            moved_aside: None,
        })
    }

    /// Imports a backup into a new store at `config.path`, which must not
    /// exist or be an empty directory. See [`Store::restore_with`].
    pub fn restore(config: &StoreConfig, from: &Path) -> Result<BackupSummary, StoreError> {
        Store::restore_with(config, from, RestoreMode::IntoEmpty)
    }

    /// Imports a backup into a store at `config.path`. Blocking. The backup
    /// is read completely into a staging store beside the target
    /// (`<path>.restoring`) and verified (format, schema version, every line,
    /// checksum, counts) before anything at the target changes; then the
    /// staging store is renamed into place. With [`RestoreMode::Replace`] an
    /// existing store is first moved aside to
    /// `<path>.before-restore-<unix seconds>`; a store that a running
    /// plantwatch holds is refused. The service must not be running.
    pub fn restore_with(config: &StoreConfig, from: &Path, mode: RestoreMode) -> Result<BackupSummary, StoreError> {
        let target = &config.path;
        let install_error = |reason: String| StoreError::RestoreInstall { path: target.clone(), reason };
        let occupied = is_occupied(target).map_err(|e| install_error(e.to_string()))?;
        if occupied {
            if mode == RestoreMode::IntoEmpty {
                return Err(StoreError::RestoreTargetNotEmpty { path: target.clone() });
            }
            if lock_held_after_grace(target) {
                return Err(StoreError::Locked { path: target.clone() });
            }
        }
        let staging = sibling(target, ".restoring");
        if staging.exists() {
            fs::remove_dir_all(&staging)
                .map_err(|e| install_error(format!("cannot remove the leftover {}: {e}", staging.display())))?;
        }
        fs::create_dir_all(&staging)
            .map_err(|e| StoreError::CreateDir { path: staging.clone(), reason: e.to_string() })?;
        let staged = panic::catch_unwind(AssertUnwindSafe(|| {
            import(&StoreConfig { path: staging.clone(), ..config.clone() }, from)
        }))
        .unwrap_or_else(|payload| {
            Err(StoreError::BadBackup { path: from.to_owned(), reason: panic_message(payload.as_ref()) })
        });
        let mut summary = match staged {
            Ok(summary) => summary,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let mut moved_aside = None;
        if occupied {
            let aside = sibling(target, &format!(".before-restore-{}", unix_now_ms() / 1000));
            if let Err(e) = fs::rename(target, &aside) {
                let _ = fs::remove_dir_all(&staging);
                return Err(install_error(format!("cannot move the old store aside to {}: {e}", aside.display())));
            }
            moved_aside = Some(aside);
        } else if target.exists() {
            let _ = fs::remove_dir(target);
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = fs::create_dir_all(parent);
        }
        if let Err(e) = fs::rename(&staging, target) {
            if let Some(aside) = &moved_aside {
                let _ = fs::rename(aside, target);
            }
            return Err(install_error(format!("cannot move the restored store into place: {e}")));
        }
        sync_parent(target);
        info!(from = %from.display(), path = %target.display(), entries = summary.entries, moved_aside = ?moved_aside, "store restored");
        summary.moved_aside = moved_aside;
        Ok(summary)
    }
}

fn key_id(id: &str) -> Result<Vec<u8>, KeyError> {
    if id.is_empty() {
        return Err(KeyError::Empty { what: "api key id" });
    }
    Ok(id.as_bytes().to_vec())
}

/// Makes a rename durable; best effort (not every platform can sync a
/// directory).
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
}

/// Checks the schema version of a just-opened store; writes it into a new
/// one. `existing` are the tree names before `meta` was opened; `data_bytes`
/// the size of sled's data file before it was opened.
fn check_schema(
    db: &sled::Db,
    meta: &sled::Tree,
    existing: &[sled::IVec],
    data_bytes: u64,
    path: &Path,
) -> Result<(), StoreError> {
    match meta.get(SCHEMA_KEY).map_err(|e| storage_error(path, e))? {
        Some(found) => {
            let found_text = String::from_utf8_lossy(&found).into_owned();
            if found_text.parse::<u32>().ok() != Some(SCHEMA_VERSION) {
                return Err(StoreError::SchemaMismatch {
                    path: path.to_owned(),
                    found: found_text,
                    expected: SCHEMA_VERSION,
                });
            }
            Ok(())
        }
        None => {
            // The version is written (and flushed) before any other tree is
            // created, so a store without it must be empty.
            let foreign_tree =
                existing.iter().any(|name| &name[..] != SLED_DEFAULT_TREE && &name[..] != META.as_bytes());
            let default_used = !db.is_empty();
            if foreign_tree || default_used || !meta.is_empty() {
                return Err(StoreError::Foreign { path: path.to_owned() });
            }
            if data_bytes > 0 {
                // sled reads a log it cannot parse as a torn write and opens
                // what precedes the damage: here, nothing at all.
                return Err(StoreError::Open {
                    path: path.to_owned(),
                    reason: format!(
                        "its data file holds {data_bytes} bytes but no readable plantwatch data: it is damaged"
                    ),
                });
            }
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes()).map_err(|e| storage_error(path, e))?;
            db.flush().map_err(|e| storage_error(path, e))?;
            info!(path = %path.display(), schema_version = SCHEMA_VERSION, "new store created");
            Ok(())
        }
    }
}

/// Reads and verifies a backup into a new sled database at `config.path`.
fn import(config: &StoreConfig, from: &Path) -> Result<BackupSummary, StoreError> {
    let bad = |reason: String| StoreError::BadBackup { path: from.to_owned(), reason };
    let file = File::open(from).map_err(|e| bad(e.to_string()))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = backup::Reader::open(BufReader::with_capacity(1 << 16, file)).map_err(|e| bad(e.to_string()))?;
    let header = reader.header().clone();
    if header.schema_version != SCHEMA_VERSION {
        return Err(bad(format!(
            "it was made from a store with schema version {}, this plantwatch uses version {SCHEMA_VERSION}: restore \
             it with the plantwatch release that made it",
            header.schema_version
        )));
    }
    if let Some(unknown) = header.trees.iter().find(|t| !TREES.contains(&t.as_str())) {
        return Err(bad(format!("it holds a tree {unknown:?} that this plantwatch does not know")));
    }
    let db = open_sled(config)?;
    let path = &config.path;
    let mut trees = BTreeMap::new();
    for name in &header.trees {
        trees.insert(name.clone(), open_tree(&db, path, name)?);
    }
    const BATCH: usize = 4096;
    let mut batch = sled::Batch::default();
    let mut batch_tree: Option<String> = None;
    let mut batch_len = 0;
    let apply = |tree: &Option<String>, batch: sled::Batch| -> Result<(), StoreError> {
        match tree.as_ref().and_then(|t| trees.get(t)) {
            Some(tree) => tree.apply_batch(batch).map_err(|e| storage_error(path, e)),
            None => Ok(()),
        }
    };
    while let Some((tree, key, value)) = reader.next_entry().map_err(|e| bad(e.to_string()))? {
        if batch_tree.as_deref() != Some(tree.as_str()) || batch_len == BATCH {
            apply(&batch_tree, std::mem::take(&mut batch))?;
            batch_len = 0;
            batch_tree = Some(tree);
        }
        batch.insert(key, value);
        batch_len += 1;
    }
    apply(&batch_tree, batch)?;
    let schema = trees.get(META).map(|meta| meta.get(SCHEMA_KEY)).transpose().map_err(|e| storage_error(path, e))?;
    if schema.flatten().as_deref() != Some(SCHEMA_VERSION.to_string().as_bytes()) {
        return Err(bad(format!("its meta tree does not hold schema version {SCHEMA_VERSION}")));
    }
    db.flush().map_err(|e| storage_error(path, e))?;
    drop(trees);
    drop(db);
    let counts = reader.counts().clone();
    let entries = counts.values().sum();
    Ok(BackupSummary {
        path: from.to_owned(),
        schema_version: header.schema_version,
        trees: counts,
        entries,
        bytes,
        data_bytes: 0,
        moved_aside: None,
    })
}
