//! The supervision tree: a plant supervisor, one network supervisor per
//! BACnet/IP network (owning that network's transport), one device actor per
//! device.
//!
//! ```text
//! PlantSupervisor                                         restarts networks (back-off, intensity)
//!  ├─ NetworkSupervisor "bldg-a"      "network/bldg-a"    owns the Transport; routes I-Am and COV;
//!  │    │                                                 restarts devices; kills frozen ones
//!  │    ├─ DeviceActor 1001           "device/1001"       polls, caches, retries, COV, writes
//!  │    └─ DeviceActor 1002           "device/1002"
//!  └─ NetworkSupervisor "bldg-b"
//! ```
//!
//! - A device actor that panics, returns an error from a handler, or stops
//!   beating (frozen: no heartbeat for `heartbeat_timeout`, then killed) is
//!   restarted by its network supervisor under the same name after an
//!   exponential back-off; past the restart intensity (default 5 in 60 s) the
//!   device is marked `failed`, stays visible, and its neighbours go on.
//! - A restarted device actor starts from its last snapshot (the
//!   [`Directory`] copy, which the store writer persists), so the API never
//!   shows an empty device.
//! - If a network's transport dies, its supervisor fails; the plant
//!   supervisor restarts it with a new transport and its devices come back
//!   bound to it.
//! - Callers (the HTTP API) hold a [`PlantHandle`]: they read cached state
//!   from the directory and reach a device actor by its registered name on
//!   each call, so restarts are invisible to them.

pub mod census;
pub mod device;
pub mod model;
pub mod network;
pub mod persist;
pub mod restart;
pub mod schedule;
pub mod supervisor;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};

use crate::bacnet::codec::Value;
use crate::bacnet::ObjectId;
use device::{DeviceError, DeviceMessage, Write, WriteOutcome};
use model::{DeviceSnapshot, DeviceStatus, Millis, Quality};

/// The registered name of a device actor.
pub fn device_name(instance: u32) -> String {
    format!("device/{instance}")
}

/// The registered name of a network supervisor.
pub fn network_name(network: &str) -> String {
    format!("network/{network}")
}

/// A history row on its way to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    pub network: String,
    pub instance: u32,
    pub object: ObjectId,
    pub at: Millis,
    pub value: f64,
    pub quality: Quality,
}

#[derive(Debug, Clone)]
struct Entry {
    snapshot: Arc<DeviceSnapshot>,
    version: u64,
}

/// The latest snapshot of every device, readable without messaging an actor.
/// Device actors publish into it; the API and the store writer read it.
#[derive(Debug, Clone)]
pub struct Directory {
    inner: Arc<RwLock<BTreeMap<u32, Entry>>>,
    versions: Arc<AtomicU64>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Directory {
    fn default() -> Self {
        Self { inner: Arc::default(), versions: Arc::default(), changes: Arc::new(tokio::sync::watch::Sender::new(0)) }
    }
}

impl Directory {
    pub fn publish(&self, snapshot: DeviceSnapshot) {
        let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut map = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.insert(snapshot.instance, Entry { snapshot: Arc::new(snapshot), version });
        }
        self.changes.send_replace(version);
    }

    /// Waits until `done` holds (checked after every change), at most `timeout`.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&Directory) -> bool) -> bool {
        let mut rx = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return done(self),
            }
        }
    }

    pub fn get(&self, instance: u32) -> Option<Arc<DeviceSnapshot>> {
        let map = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&instance).map(|e| e.snapshot.clone())
    }

    /// Every device, by instance.
    pub fn list(&self) -> Vec<Arc<DeviceSnapshot>> {
        let map = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().map(|e| e.snapshot.clone()).collect()
    }

    /// Devices whose snapshot changed after `since`, and the newest version.
    pub fn changed_since(&self, since: u64) -> (Vec<Arc<DeviceSnapshot>>, u64) {
        let map = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let newest = map.values().map(|e| e.version).max().unwrap_or(since).max(since);
        (map.values().filter(|e| e.version > since).map(|e| e.snapshot.clone()).collect(), newest)
    }

    /// Marks a device's status (e.g. `failed` when supervision gives up).
    pub fn set_status(&self, instance: u32, status: DeviceStatus) {
        if let Some(snap) = self.get(instance) {
            let mut s = (*snap).clone();
            s.status = status;
            self.publish(s);
        }
    }
}

/// Why a supervisor saw a child fail; a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A device actor panicked.
    Panic,
    /// A device actor's handler returned an error.
    Error,
    /// A device actor stopped beating and was killed.
    Frozen,
    /// A network supervisor failed (its transport stopped).
    Failed,
    /// A network supervisor did not start (e.g. its address is in use).
    Start,
}

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::Panic,
        FailureReason::Error,
        FailureReason::Frozen,
        FailureReason::Failed,
        FailureReason::Start,
    ];

    /// `device` or `network`.
    pub fn kind(self) -> &'static str {
        match self {
            FailureReason::Panic | FailureReason::Error | FailureReason::Frozen => "device",
            FailureReason::Failed | FailureReason::Start => "network",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Panic => "panic",
            FailureReason::Error => "error",
            FailureReason::Frozen => "frozen",
            FailureReason::Failed => "failed",
            FailureReason::Start => "start",
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    restarts: AtomicU64,
    give_ups: AtomicU64,
}

/// What the supervisors count for metrics: restarts and give-ups by reason,
/// and per network the transport's counters and the heartbeat lag. Shared
/// by the whole tree and kept across restarts, so counters only go up.
#[derive(Debug, Default)]
pub struct SupervisionStats {
    tallies: [Tally; 5],
    networks: RwLock<BTreeMap<String, Arc<NetworkStats>>>,
}

/// One network's counters, kept across restarts of its supervisor.
#[derive(Debug, Default)]
pub struct NetworkStats {
    pub transport: Arc<crate::transport::Stats>,
    /// The longest a running device actor of this network has not beaten
    /// its heartbeat, at the last check: how far behind its mailbox is.
    pub heartbeat_age_ms: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SupervisionSnapshot {
    pub device_panics: u64,
    pub device_errors: u64,
    pub device_frozen: u64,
    pub device_restarts: u64,
    pub device_give_ups: u64,
    pub network_restarts: u64,
    pub network_give_ups: u64,
}

impl SupervisionStats {
    /// Counts a failure and what the supervisor did about it.
    pub fn record(&self, reason: FailureReason, restarted: bool) {
        let t = &self.tallies[reason as usize];
        let counter = if restarted { &t.restarts } else { &t.give_ups };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (reason, restarts, give-ups) for every reason.
    pub fn by_reason(&self) -> [(FailureReason, u64, u64); 5] {
        FailureReason::ALL.map(|r| {
            let t = &self.tallies[r as usize];
            (r, t.restarts.load(Ordering::Relaxed), t.give_ups.load(Ordering::Relaxed))
        })
    }

    /// The counters of network `name`, made on first use.
    pub fn network(&self, name: &str) -> Arc<NetworkStats> {
        if let Some(n) = self.networks.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name) {
            return n.clone();
        }
        let mut map = self.networks.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.to_string()).or_default().clone()
    }

    /// Every network's counters, by name.
    pub fn networks(&self) -> Vec<(String, Arc<NetworkStats>)> {
        let map = self.networks.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn snapshot(&self) -> SupervisionSnapshot {
        let by = self.by_reason();
        let total = |r: FailureReason| by[r as usize].1 + by[r as usize].2;
        let sum = |kind: &str, pick: fn(&(FailureReason, u64, u64)) -> u64| {
            by.iter().filter(|t| t.0.kind() == kind).map(pick).sum()
        };
        SupervisionSnapshot {
            device_panics: total(FailureReason::Panic),
            device_errors: total(FailureReason::Error),
            device_frozen: total(FailureReason::Frozen),
            device_restarts: sum("device", |t| t.1),
            device_give_ups: sum("device", |t| t.2),
            network_restarts: sum("network", |t| t.1),
            network_give_ups: sum("network", |t| t.2),
        }
    }
}

/// What the HTTP layer holds: cached state, and messages to device actors
/// resolved by name on every call.
#[derive(Clone)]
pub struct PlantHandle {
    pub directory: Directory,
    pub stats: Arc<SupervisionStats>,
}

/// Why a call to a device actor failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("no device {0}")]
    UnknownDevice(u32),
    #[error("device {0} has failed and is not running")]
    NotRunning(u32),
    #[error("device {0} did not answer within {1:?}")]
    Timeout(u32, Duration),
    #[error(transparent)]
    Device(#[from] DeviceError),
}

impl PlantHandle {
    fn actor(&self, instance: u32) -> Result<ActorRef<DeviceMessage>, CallError> {
        match ractor::registry::where_is(device_name(instance)) {
            Some(cell) => Ok(cell.into()),
            None if self.directory.get(instance).is_some() => Err(CallError::NotRunning(instance)),
            None => Err(CallError::UnknownDevice(instance)),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        instance: u32,
        timeout: Duration,
        msg: impl FnOnce(RpcReplyPort<T>) -> DeviceMessage + Send,
    ) -> Result<T, CallError> {
        let actor = self.actor(instance)?;
        match actor.call(msg, Some(timeout)).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            Ok(ractor::rpc::CallResult::Timeout) => Err(CallError::Timeout(instance, timeout)),
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(CallError::NotRunning(instance)),
        }
    }

    /// Reads a property through the device's actor; `live` asks the device now.
    pub async fn read(
        &self,
        instance: u32,
        object: ObjectId,
        property: u32,
        live: bool,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        self.call(instance, timeout, |reply| DeviceMessage::Read { object, property, live, reply })
            .await?
            .map_err(CallError::from)
    }

    /// Writes through the device's actor (queued behind earlier writes).
    pub async fn write(&self, instance: u32, write: Write, timeout: Duration) -> Result<WriteOutcome, CallError> {
        self.call(instance, timeout, |reply| DeviceMessage::Write { write, reply }).await?.map_err(CallError::from)
    }

    /// Who-Is on one network; the devices that answered within `wait`.
    pub async fn discover(
        &self,
        network: &str,
        range: Option<(u32, u32)>,
        wait: Duration,
    ) -> Result<Vec<network::Found>, String> {
        let cell = ractor::registry::where_is(network_name(network))
            .ok_or_else(|| format!("network {network} is not running"))?;
        let actor: ActorRef<network::NetworkMessage> = cell.into();
        let call = actor.call(
            |reply| network::NetworkMessage::Discover { range, wait, reply },
            Some(wait + Duration::from_secs(5)),
        );
        match call.await {
            Ok(ractor::rpc::CallResult::Success(found)) => Ok(found),
            _ => Err(format!("network {network} did not answer")),
        }
    }

    /// Sends a message to a device actor without waiting (tests, drills).
    pub fn tell(&self, instance: u32, msg: DeviceMessage) -> Result<(), CallError> {
        self.actor(instance)?.send_message(msg).map_err(|_| CallError::NotRunning(instance))
    }
}
