//! Lease writes: a write that plantwatch takes back itself when its lease
//! runs out.
//!
//! ```text
//!  PUT .../points/{object} {"lease": "15m"} ──▶ device write ──▶ Leases::grant ──▶ store `leases` (flushed) ──▶ 2xx
//!                                                                     │
//!  lease task (one per service) ◀─────────────────────────────────────┘  wakes at the next expiry, and every second:
//!   ├─ a lease ran out and its device answers: WriteProperty Null at its priority, audit (actor "lease"), forget it
//!   └─ a leased device came back (it answers again, or enrolled again): read its Priority_Array; an empty
//!      leased slot is written again (a re-assert), audit (actor "lease")
//! ```
//!
//! Leases live in the store before the write is acknowledged, so they
//! survive a crash: at start, [`Leases::start`] loads them; an expired one is
//! relinquished as soon as its device answers, an unexpired one runs on.
//! Times are wall-clock (Unix milliseconds), the only clock that means the
//! same thing before and after a restart.
//!
//! A slot is one (device, object, priority). A second leased write on the
//! slot replaces its lease; a write without a lease on it, or a relinquish
//! of it, ends the lease ([`Leases::end`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::types::{property, property_name};
use plantwatch_actors::bacnet::ObjectId;
use plantwatch_actors::plant::device::{DeviceError, Write};
use plantwatch_actors::plant::model::{now_ms, DeviceStatus, Millis};
use plantwatch_actors::plant::{CallError, PlantHandle};
use plantwatch_actors::store::{LeaseSlot, Store, StoreError};
use plantwatch_actors::transport::BacnetError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::api::view;

/// How often the lease task looks for devices that came back, and the
/// longest it sleeps.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long an expiry waits before it is tried again after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// One lease, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub network: String,
    pub instance: u32,
    pub object: ObjectId,
    pub priority: u8,
    /// What was written, in BACnet terms (written again on a re-assert).
    pub value: Value,
    /// What was written, as the client sent it.
    pub shown: Json,
    /// When it was granted and when it runs out, Unix ms.
    pub since: Millis,
    pub until: Millis,
    /// The API key that wrote it.
    pub key_id: String,
    /// Times plantwatch wrote it again after the device lost it.
    #[serde(default)]
    pub reasserts: u64,
}

impl Lease {
    pub fn slot(&self) -> LeaseSlot {
        LeaseSlot {
            network: self.network.clone(),
            instance: self.instance,
            object: self.object.to_string(),
            priority: self.priority,
        }
    }

    /// The lease as the API shows it.
    pub fn view(&self) -> Json {
        json!({
            "device": self.instance,
            "network": self.network,
            "object": self.object.to_string(),
            "priority": self.priority,
            "value": self.shown,
            "since": view::time(self.since),
            "until": view::time(self.until),
            "key_id": self.key_id,
            "reasserts": self.reasserts,
        })
    }
}

type Key = (u32, ObjectId, u8);

#[derive(Debug, Default)]
struct Counters {
    expiries: AtomicU64,
    reasserts: AtomicU64,
}

struct Inner {
    store: Store,
    plant: PlantHandle,
    timeout: Duration,
    leases: Mutex<BTreeMap<Key, Lease>>,
    /// Expiries that failed, and when to try them again (Unix ms).
    retry_at: Mutex<HashMap<Key, Millis>>,
    /// Serialises changes of a slot's lease between the API and the task.
    change: tokio::sync::Mutex<()>,
    wake: Notify,
    counters: Mutex<BTreeMap<String, Arc<Counters>>>,
}

/// The leases of the service: a cheap handle shared by the API and the
/// lease task.
#[derive(Clone)]
pub struct Leases {
    inner: Arc<Inner>,
}

/// Whether a device answers requests now.
fn answers(status: DeviceStatus) -> bool {
    matches!(status, DeviceStatus::Online | DeviceStatus::Degraded)
}

impl Leases {
    /// The leases in the store, not yet run: [`Leases::spawn`] starts the task.
    pub async fn load(store: Store, plant: PlantHandle, timeout: Duration) -> Result<Leases, StoreError> {
        let mut leases = BTreeMap::new();
        for (slot, bytes) in store.list_leases().await? {
            match serde_json::from_slice::<Lease>(&bytes) {
                Ok(l) => {
                    leases.insert((l.instance, l.object, l.priority), l);
                }
                Err(e) => {
                    warn!(device = slot.instance, object = %slot.object, error = %e, "skipping a lease that does not decode")
                }
            }
        }
        if !leases.is_empty() {
            info!(leases = leases.len(), "leases loaded");
        }
        Ok(Leases {
            inner: Arc::new(Inner {
                store,
                plant,
                timeout,
                leases: Mutex::new(leases),
                retry_at: Mutex::default(),
                change: tokio::sync::Mutex::new(()),
                wake: Notify::new(),
                counters: Mutex::default(),
            }),
        })
    }

    /// Loads the leases and starts their task (it ends with the runtime).
    pub async fn start(store: Store, plant: PlantHandle, timeout: Duration) -> Result<Leases, StoreError> {
        let leases = Leases::load(store, plant, timeout).await?;
        leases.spawn();
        Ok(leases)
    }

    /// Starts the lease task.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run().await })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Lease>> {
        self.inner.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn counters(&self, network: &str) -> Arc<Counters> {
        let mut map = self.inner.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(network.to_string()).or_default().clone()
    }

    /// Every lease, by device, object and priority.
    pub fn list(&self) -> Vec<Lease> {
        self.map().values().cloned().collect()
    }

    /// The leases on one point, by priority.
    pub fn on_point(&self, instance: u32, object: ObjectId) -> Vec<Lease> {
        self.map().range((instance, object, 0)..=(instance, object, u8::MAX)).map(|(_, l)| l.clone()).collect()
    }

    /// Active leases, expiries and re-asserts of one network (metrics).
    pub fn stats(&self, network: &str) -> (u64, u64, u64) {
        let active = self.map().values().filter(|l| l.network == network).count() as u64;
        let c = self.counters(network);
        (active, c.expiries.load(Ordering::Relaxed), c.reasserts.load(Ordering::Relaxed))
    }

    /// Grants (or renews, or replaces) the lease of a slot: stored and
    /// flushed before it returns.
    pub async fn grant(&self, lease: Lease) -> Result<(), StoreError> {
        let _g = self.inner.change.lock().await;
        let bytes =
            serde_json::to_vec(&lease).map_err(|e| StoreError::Task { op: "put_lease", reason: e.to_string() })?;
        self.inner.store.put_lease(&lease.slot(), bytes).await?;
        let key = (lease.instance, lease.object, lease.priority);
        self.inner.retry_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
        self.map().insert(key, lease);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Ends the lease of a slot, if there is one (the write on it is now
    /// permanent, or relinquished). Returns the lease that ended.
    pub async fn end(&self, instance: u32, object: ObjectId, priority: u8) -> Result<Option<Lease>, StoreError> {
        let _g = self.inner.change.lock().await;
        let key = (instance, object, priority);
        let Some(lease) = self.map().get(&key).cloned() else { return Ok(None) };
        self.inner.store.delete_lease(&lease.slot()).await?;
        self.map().remove(&key);
        self.inner.wake.notify_one();
        Ok(Some(lease))
    }

    async fn run(self) {
        // Devices seen answering, with their enrolment count: a device that
        // was not (or enrolled again) has its leased slots checked.
        let mut seen: HashMap<u32, (bool, u64)> = HashMap::new();
        loop {
            let now = now_ms();
            let next = {
                let retry = self.inner.retry_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                self.map().iter().map(|(k, l)| l.until.max(retry.get(k).copied().unwrap_or(0))).min()
            };
            let wait = next.map_or(CHECK_EVERY, |at| Duration::from_millis(at.saturating_sub(now)).min(CHECK_EVERY));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.wake.notified() => {}
            }
            self.expire_due().await;
            self.check_returns(&mut seen).await;
        }
    }

    /// Relinquishes every lease that ran out, on devices that answer.
    async fn expire_due(&self) {
        let now = now_ms();
        let due: Vec<Lease> = {
            let retry = self.inner.retry_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.map()
                .iter()
                .filter(|(k, l)| l.until <= now && retry.get(*k).is_none_or(|&at| at <= now))
                .map(|(_, l)| l.clone())
                .collect()
        };
        for lease in due {
            let key = (lease.instance, lease.object, lease.priority);
            let up = self.inner.plant.directory.get(lease.instance).is_some_and(|s| answers(s.status));
            if !up {
                // Relinquished once the device answers again.
                self.retry_later(key);
                continue;
            }
            if let Err(e) = self.expire(&lease).await {
                warn!(device = lease.instance, object = %lease.object, priority = lease.priority, error = %e, "lease expiry failed; trying again");
                self.retry_later(key);
            }
        }
    }

    fn retry_later(&self, key: Key) {
        let at = now_ms() + RETRY_AFTER.as_millis() as u64;
        self.inner.retry_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, at);
    }

    /// One expiry: WriteProperty Null at the lease's priority, the audit
    /// record, then the lease is forgotten (in that order: a crash in
    /// between relinquishes again at start, which is harmless).
    async fn expire(&self, lease: &Lease) -> Result<(), String> {
        let write = Write {
            object: lease.object,
            property: property::PRESENT_VALUE,
            value: Value::Null,
            priority: Some(lease.priority),
        };
        let result = self.inner.plant.write(lease.instance, write, self.inner.timeout).await;
        let (outcome, error, done) = match result {
            Ok(done) => ("accepted", None, Some(done)),
            // The device refuses the relinquish (the point is gone...): said once, then the lease is dropped.
            Err(CallError::Device(DeviceError::Bacnet(b))) if !matches!(b, BacnetError::Timeout { .. }) => {
                ("refused", Some(crate::api::error::bacnet_details(&b)), None)
            }
            Err(e) => return Err(e.to_string()),
        };
        let _g = self.inner.change.lock().await;
        let key = (lease.instance, lease.object, lease.priority);
        // A renewal that came in meanwhile wins: it wrote after us.
        if self.map().get(&key) != Some(lease) {
            return Ok(());
        }
        let record = record(
            lease,
            "expired",
            outcome,
            &Json::Null,
            done.as_ref().and_then(|d| d.active_priority),
            done.as_ref().and_then(|d| d.present_value.as_ref()),
            error,
        );
        self.inner.store.append_audit(record).await.map_err(|e| e.to_string())?;
        self.inner.store.delete_lease(&lease.slot()).await.map_err(|e| e.to_string())?;
        self.map().remove(&key);
        self.inner.retry_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
        self.counters(&lease.network).expiries.fetch_add(1, Ordering::Relaxed);
        info!(device = lease.instance, object = %lease.object, priority = lease.priority, outcome, "lease expired; slot relinquished");
        Ok(())
    }

    /// Checks the leased slots of devices that came back.
    async fn check_returns(&self, seen: &mut HashMap<u32, (bool, u64)>) {
        let devices: Vec<u32> = {
            let mut d: Vec<u32> = self.map().keys().map(|k| k.0).collect();
            d.dedup();
            d
        };
        seen.retain(|i, _| devices.contains(i));
        for instance in devices {
            let Some(s) = self.inner.plant.directory.get(instance) else { continue };
            let now = (answers(s.status), s.counters.enrolments);
            let before = seen.insert(instance, now);
            let back = now.0 && before.is_none_or(|(up, enrolments)| !up || enrolments != now.1);
            if back && !self.reassert(instance).await {
                // Its actor is not running yet (a service start): look again.
                seen.remove(&instance);
            }
        }
    }

    /// Reads the Priority_Array of each leased point of a device that came
    /// back, and writes an empty leased slot again. `false` if the device's
    /// actor is not running (yet).
    async fn reassert(&self, instance: u32) -> bool {
        let now = now_ms();
        let leases: Vec<Lease> =
            self.map().values().filter(|l| l.instance == instance && l.until > now).cloned().collect();
        for lease in leases {
            let slots = match self
                .inner
                .plant
                .read(instance, lease.object, property::PRIORITY_ARRAY, true, self.inner.timeout)
                .await
            {
                Ok(v) => v,
                Err(CallError::NotRunning(_) | CallError::UnknownDevice(_)) => return false,
                Err(e) => {
                    info!(device = instance, object = %lease.object, error = %e, "cannot check a leased slot");
                    continue;
                }
            };
            let empty = slots.elements().get(usize::from(lease.priority) - 1).is_none_or(|v| *v == Value::Null);
            if !empty {
                continue;
            }
            warn!(device = instance, object = %lease.object, priority = lease.priority, "leased slot lost by the device; writing it again");
            let write = Write {
                object: lease.object,
                property: property::PRESENT_VALUE,
                value: lease.value.clone(),
                priority: Some(lease.priority),
            };
            let result = self.inner.plant.write(instance, write, self.inner.timeout).await;
            let _g = self.inner.change.lock().await;
            let key = (lease.instance, lease.object, lease.priority);
            if self.map().get(&key) != Some(&lease) {
                continue;
            }
            let (outcome, error, done) = match result {
                Ok(done) => ("accepted", None, Some(done)),
                Err(e) => ("failed", Some(json!({"message": e.to_string()})), None),
            };
            let record = record(
                &lease,
                "reasserted",
                outcome,
                &lease.shown,
                done.as_ref().and_then(|d| d.active_priority),
                done.as_ref().and_then(|d| d.present_value.as_ref()),
                error,
            );
            if let Err(e) = self.inner.store.append_audit(record).await {
                warn!(error = %e, "cannot record a lease re-assert");
            }
            if done.is_some() {
                let mut again = lease.clone();
                again.reasserts += 1;
                if let Ok(bytes) = serde_json::to_vec(&again) {
                    if let Err(e) = self.inner.store.put_lease(&again.slot(), bytes).await {
                        warn!(error = %e, "cannot store a lease re-assert");
                    }
                }
                self.map().insert(key, again);
                self.counters(&lease.network).reasserts.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }
}

/// An audit record of something the lease task did (actor `lease`).
fn record(
    lease: &Lease,
    action: &str,
    outcome: &str,
    new: &Json,
    active_priority: Option<u8>,
    present_value: Option<&Value>,
    error: Option<Json>,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "time": view::time(now_ms()),
        "actor": "lease",
        "action": action,
        "key_id": lease.key_id,
        "request_id": "",
        "device": lease.instance,
        "object": lease.object.to_string(),
        "property": property_name(property::PRESENT_VALUE),
        "priority": lease.priority,
        "old_value": lease.shown,
        "new_value": new,
        "outcome": outcome,
        "active_priority": active_priority,
        "present_value": present_value.map(|v| view::value(lease.object, v)),
        "lease_until": view::time(lease.until),
        "error": error,
    }))
    .unwrap_or_default()
}
