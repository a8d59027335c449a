//! The network supervisor: one per BACnet/IP network. It owns the network's
//! transport, spawns one device actor per device (linked, registered as
//! `device/<instance>`), routes I-Am and COV notifications, discovers
//! devices, restarts failed device actors with back-off, kills frozen ones,
//! and gives up on a device past the restart intensity.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::device::{DeviceActor, DeviceArgs, DeviceMessage, DeviceSettings, HandlerError, Heartbeat};
use super::model::DeviceStatus;
use super::restart::{Decision, RestartPolicy, RestartTracker};
use super::{device_name, Directory, FailureReason, HistoryRecord, NetworkStats, SupervisionStats};
use crate::bacnet::types::Address;
use crate::transport::{Transport, TransportConfig, Unsolicited};

/// Defaults for devices found by discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDefaults {
    pub poll: Duration,
    pub cov: bool,
    pub cov_lifetime: Duration,
    pub cov_quiet: Duration,
    pub offline_after: u32,
    pub reprobe_max: Duration,
    pub history_max_interval: Duration,
    /// Testing aid: see [`DeviceSettings::poison_value`].
    pub poison_value: Option<f64>,
}

/// One network, resolved from configuration.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    pub name: String,
    pub transport: TransportConfig,
    /// Who-Is at start; devices found are enrolled with `defaults`.
    pub discover: bool,
    pub devices: Vec<Arc<DeviceSettings>>,
    pub defaults: DeviceDefaults,
    pub restart: RestartPolicy,
    pub heartbeat_timeout: Duration,
}

pub struct NetworkArgs {
    pub settings: Arc<NetworkSettings>,
    pub directory: Directory,
    pub history: mpsc::Sender<HistoryRecord>,
    pub stats: Arc<SupervisionStats>,
}

/// A device found by Who-Is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    pub instance: u32,
    pub address: Address,
    pub max_apdu: u32,
    pub vendor_id: u32,
}

#[derive(Debug)]
pub enum NetworkMessage {
    /// Who-Is on this network; answers with the devices found within `wait`.
    Discover { range: Option<(u32, u32)>, wait: Duration, reply: RpcReplyPort<Vec<Found>> },
    #[doc(hidden)]
    Unsolicited(Unsolicited),
    #[doc(hidden)]
    Respawn(u32),
    #[doc(hidden)]
    CheckHeartbeats,
    #[doc(hidden)]
    TransportClosed,
    #[doc(hidden)]
    DiscoveryDone(u64),
}

struct Child {
    settings: Arc<DeviceSettings>,
    actor: Option<ActorRef<DeviceMessage>>,
    tracker: RestartTracker,
    heartbeat: Heartbeat,
    frozen: bool,
}

struct Discovery {
    range: Option<(u32, u32)>,
    found: Vec<Found>,
    reply: RpcReplyPort<Vec<Found>>,
}

pub struct NetworkState {
    args: NetworkArgs,
    transport: Transport,
    counters: Arc<NetworkStats>,
    children: BTreeMap<u32, Child>,
    by_id: HashMap<ActorId, u32>,
    discoveries: HashMap<u64, Discovery>,
    next_discovery: u64,
    tasks: Vec<JoinHandle<()>>,
}

pub struct NetworkSupervisor;

impl Actor for NetworkSupervisor {
    type Msg = NetworkMessage;
    type State = NetworkState;
    type Arguments = NetworkArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NetworkMessage>,
        args: NetworkArgs,
    ) -> Result<NetworkState, ActorProcessingErr> {
        let s = &args.settings;
        let counters = args.stats.network(&s.name);
        let (transport, mut unsolicited) =
            Transport::bind_metered(s.transport.clone(), counters.transport.clone(), &s.name)
                .await
                .map_err(|e| format!("network {}: cannot bind {}: {e}", s.name, s.transport.bind))?;
        info!(network = %s.name, local = %transport.local_addr(), devices = s.devices.len(), "network up");
        let me = myself.clone();
        // The pump ends when the transport task does: then the network restarts.
        let pump = tokio::spawn(async move {
            while let Some(u) = unsolicited.recv().await {
                if me.send_message(NetworkMessage::Unsolicited(u)).is_err() {
                    return;
                }
            }
            let _ = me.send_message(NetworkMessage::TransportClosed);
        });
        let check_every = (s.heartbeat_timeout / 3).max(Duration::from_millis(50));
        let checker = myself.send_interval(check_every, || NetworkMessage::CheckHeartbeats);
        let children = s
            .devices
            .iter()
            .map(|d| {
                let child = Child {
                    settings: d.clone(),
                    actor: None,
                    tracker: RestartTracker::default(),
                    heartbeat: Heartbeat::new(),
                    frozen: false,
                };
                (d.instance, child)
            })
            .collect();
        Ok(NetworkState {
            transport,
            counters,
            children,
            by_id: HashMap::new(),
            discoveries: HashMap::new(),
            next_discovery: 0,
            tasks: vec![pump, checker],
            args,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<NetworkMessage>,
        state: &mut NetworkState,
    ) -> Result<(), ActorProcessingErr> {
        let instances: Vec<u32> = state.children.keys().copied().collect();
        for instance in instances {
            state.spawn_device(&myself, instance).await;
        }
        if state.args.settings.discover && state.args.settings.transport.broadcast.is_some() {
            if let Err(e) = state.transport.who_is(None, None).await {
                warn!(network = %state.args.settings.name, error = %e, "discovery Who-Is failed");
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<NetworkMessage>,
        state: &mut NetworkState,
    ) -> Result<(), ActorProcessingErr> {
        for t in state.tasks.drain(..) {
            t.abort();
        }
        myself.stop_children_and_wait(None, Some(Duration::from_secs(5))).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<NetworkMessage>,
        msg: NetworkMessage,
        state: &mut NetworkState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NetworkMessage::Unsolicited(Unsolicited::Cov { notification, .. }) => {
                if let Some(actor) = state.children.get(&notification.device.instance).and_then(|c| c.actor.as_ref()) {
                    let _ = actor.send_message(DeviceMessage::Cov(notification));
                }
            }
            NetworkMessage::Unsolicited(Unsolicited::IAm { from, iam }) => {
                let found = Found {
                    instance: iam.device.instance,
                    address: from,
                    max_apdu: iam.max_apdu,
                    vendor_id: iam.vendor_id,
                };
                for d in state.discoveries.values_mut() {
                    if d.range.is_none_or(|(lo, hi)| (lo..=hi).contains(&found.instance))
                        && !d.found.iter().any(|f| f.instance == found.instance)
                    {
                        d.found.push(found);
                    }
                }
                if state.args.settings.discover && !state.children.contains_key(&found.instance) {
                    state.adopt(&myself, found).await;
                }
            }
            NetworkMessage::Discover { range, wait, reply } => {
                let id = state.next_discovery;
                state.next_discovery += 1;
                if let Err(e) = state.transport.who_is(None, range).await {
                    warn!(network = %state.args.settings.name, error = %e, "Who-Is failed");
                }
                state.discoveries.insert(id, Discovery { range, found: Vec::new(), reply });
                myself.send_after(wait, move || NetworkMessage::DiscoveryDone(id));
            }
            NetworkMessage::DiscoveryDone(id) => {
                if let Some(mut d) = state.discoveries.remove(&id) {
                    d.found.sort_by_key(|f| f.instance);
                    let _ = d.reply.send(d.found);
                }
            }
            NetworkMessage::Respawn(instance) => state.spawn_device(&myself, instance).await,
            NetworkMessage::CheckHeartbeats => state.check_heartbeats(),
            NetworkMessage::TransportClosed => {
                return Err(format!("network {}: the transport stopped", state.args.settings.name).into());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NetworkMessage>,
        evt: SupervisionEvent,
        state: &mut NetworkState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                // A returned error is a HandlerError; anything else is a
                // panic's message (whatever it says).
                let why = if err.downcast_ref::<HandlerError>().is_some() { "error" } else { "panic" };
                (cell, format!("{why}: {err}"))
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, format!("stopped: {}", reason.as_deref().unwrap_or("no reason")))
            }
            _ => return Ok(()),
        };
        let Some(instance) = state.by_id.remove(&cell.get_id()) else { return Ok(()) };
        let stats = state.args.stats.clone();
        let Some(child) = state.children.get_mut(&instance) else { return Ok(()) };
        child.actor = None;
        let failure = if child.frozen {
            FailureReason::Frozen
        } else if why.starts_with("panic") {
            FailureReason::Panic
        } else {
            FailureReason::Error
        };
        let reason = if child.frozen { "frozen: no heartbeat".to_string() } else { why };
        child.frozen = false;
        match child.tracker.on_failure(&state.args.settings.restart, Instant::now()) {
            Decision::RestartAfter(delay) => {
                warn!(device = instance, %reason, ?delay, "device actor failed; restarting");
                stats.record(failure, true);
                if let Some(snap) = state.args.directory.get(instance) {
                    let mut s = (*snap).clone();
                    s.counters.restarts += 1;
                    s.last_error = Some(format!("actor restarted after {reason}"));
                    state.args.directory.publish(s);
                }
                myself.send_after(delay, move || NetworkMessage::Respawn(instance));
            }
            Decision::GiveUp => {
                error!(device = instance, %reason, "device actor failed too often; giving up");
                stats.record(failure, false);
                state.args.directory.set_status(instance, DeviceStatus::Failed);
            }
        }
        Ok(())
    }
}

impl NetworkState {
    async fn spawn_device(&mut self, myself: &ActorRef<NetworkMessage>, instance: u32) {
        let Some(child) = self.children.get_mut(&instance) else { return };
        if child.actor.is_some() {
            return;
        }
        child.heartbeat = Heartbeat::new();
        let args = DeviceArgs {
            settings: child.settings.clone(),
            transport: self.transport.clone(),
            directory: self.args.directory.clone(),
            history: self.args.history.clone(),
            heartbeat: child.heartbeat.clone(),
        };
        match Actor::spawn_linked(Some(device_name(instance)), DeviceActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.by_id.insert(actor.get_id(), instance);
                child.actor = Some(actor);
            }
            Err(e) => {
                // e.g. the name is still taken by the dying actor: try again shortly.
                warn!(device = instance, error = %e, "cannot spawn device actor; retrying");
                myself.send_after(Duration::from_millis(100), move || NetworkMessage::Respawn(instance));
            }
        }
    }

    /// Adds a device found by discovery, with the network's defaults.
    async fn adopt(&mut self, myself: &ActorRef<NetworkMessage>, found: Found) {
        let d = &self.args.settings.defaults;
        let settings = Arc::new(DeviceSettings {
            instance: found.instance,
            network: self.args.settings.name.clone(),
            address: found.address,
            label: None,
            poll: d.poll,
            points: None,
            cov: d.cov,
            cov_lifetime: d.cov_lifetime,
            cov_quiet: d.cov_quiet,
            offline_after: d.offline_after,
            reprobe_max: d.reprobe_max,
            history_max_interval: d.history_max_interval,
            poison_value: d.poison_value,
        });
        info!(network = %self.args.settings.name, device = found.instance, address = %found.address, "device discovered");
        let child = Child {
            settings,
            actor: None,
            tracker: RestartTracker::default(),
            heartbeat: Heartbeat::new(),
            frozen: false,
        };
        self.children.insert(found.instance, child);
        self.spawn_device(myself, found.instance).await;
    }

    fn check_heartbeats(&mut self) {
        let timeout = self.args.settings.heartbeat_timeout;
        let mut lag = Duration::ZERO;
        for (instance, child) in &mut self.children {
            if let Some(actor) = &child.actor {
                let silence = child.heartbeat.silence();
                lag = lag.max(silence);
                if !child.frozen && silence > timeout {
                    warn!(device = instance, ?timeout, "device actor frozen; killing it");
                    child.frozen = true;
                    actor.kill();
                }
            }
        }
        let lag_ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.counters.heartbeat_age_ms.store(lag_ms, std::sync::atomic::Ordering::Relaxed);
    }
}
