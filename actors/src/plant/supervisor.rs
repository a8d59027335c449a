//! The plant supervisor: the root of the tree. It spawns one network
//! supervisor per configured network and restarts a failed one (a dead
//! transport, a bind that failed) with back-off, up to the restart
//! intensity; past it, every device of that network is marked `failed`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::model::DeviceStatus;
use super::network::{Found, NetworkArgs, NetworkMessage, NetworkSettings, NetworkSupervisor};
use super::restart::{Decision, RestartPolicy, RestartTracker};
use super::{network_name, Directory, FailureReason, HistoryRecord, PlantHandle, SupervisionStats};

pub struct PlantArgs {
    pub networks: Vec<Arc<NetworkSettings>>,
    pub directory: Directory,
    pub history: mpsc::Sender<HistoryRecord>,
    pub stats: Arc<SupervisionStats>,
    pub restart: RestartPolicy,
}

#[derive(Debug)]
pub enum PlantMessage {
    #[doc(hidden)]
    Respawn(String),
}

struct NetworkChild {
    settings: Arc<NetworkSettings>,
    actor: Option<ActorRef<NetworkMessage>>,
    tracker: RestartTracker,
}

pub struct PlantState {
    args: PlantArgs,
    networks: BTreeMap<String, NetworkChild>,
    by_id: HashMap<ActorId, String>,
}

pub struct PlantSupervisor;

impl Actor for PlantSupervisor {
    type Msg = PlantMessage;
    type State = PlantState;
    type Arguments = PlantArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PlantMessage>,
        args: PlantArgs,
    ) -> Result<PlantState, ActorProcessingErr> {
        let networks = args
            .networks
            .iter()
            .map(|n| {
                (n.name.clone(), NetworkChild { settings: n.clone(), actor: None, tracker: RestartTracker::default() })
            })
            .collect();
        Ok(PlantState { args, networks, by_id: HashMap::new() })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PlantMessage>,
        state: &mut PlantState,
    ) -> Result<(), ActorProcessingErr> {
        let names: Vec<String> = state.networks.keys().cloned().collect();
        for name in names {
            state.spawn_network(&myself, &name).await;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<PlantMessage>,
        _state: &mut PlantState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(None, Some(Duration::from_secs(10))).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PlantMessage>,
        msg: PlantMessage,
        state: &mut PlantState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PlantMessage::Respawn(name) => state.spawn_network(&myself, &name).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PlantMessage>,
        evt: SupervisionEvent,
        state: &mut PlantState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(name) = state.by_id.remove(&cell.get_id()) else { return Ok(()) };
        let stats = state.args.stats.clone();
        let Some(child) = state.networks.get_mut(&name) else { return Ok(()) };
        child.actor = None;
        match child.tracker.on_failure(&state.args.restart, Instant::now()) {
            Decision::RestartAfter(delay) => {
                warn!(network = %name, %reason, ?delay, "network supervisor failed; restarting");
                stats.record(FailureReason::Failed, true);
                let n = name.clone();
                myself.send_after(delay, move || PlantMessage::Respawn(n));
            }
            Decision::GiveUp => {
                error!(network = %name, %reason, "network failed too often; giving up");
                stats.record(FailureReason::Failed, false);
                for snap in state.args.directory.list() {
                    if snap.network == name {
                        state.args.directory.set_status(snap.instance, DeviceStatus::Failed);
                    }
                }
            }
        }
        Ok(())
    }
}

impl PlantState {
    async fn spawn_network(&mut self, myself: &ActorRef<PlantMessage>, name: &str) {
        let Some(child) = self.networks.get_mut(name) else { return };
        let args = NetworkArgs {
            settings: child.settings.clone(),
            directory: self.args.directory.clone(),
            history: self.args.history.clone(),
            stats: self.args.stats.clone(),
        };
        match Actor::spawn_linked(Some(network_name(name)), NetworkSupervisor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.by_id.insert(actor.get_id(), name.to_string());
                child.actor = Some(actor);
            }
            Err(e) => {
                // A failed start (e.g. the address is in use) counts as a failure.
                warn!(network = %name, error = %e, "network supervisor did not start");
                match child.tracker.on_failure(&self.args.restart, Instant::now()) {
                    Decision::RestartAfter(delay) => {
                        self.args.stats.record(FailureReason::Start, true);
                        let n = name.to_string();
                        myself.send_after(delay, move || PlantMessage::Respawn(n));
                    }
                    Decision::GiveUp => {
                        error!(network = %name, "network did not start; giving up");
                        self.args.stats.record(FailureReason::Start, false);
                    }
                }
            }
        }
    }
}

/// A running plant: the supervision tree and the handle to it.
pub struct Plant {
    root: ActorRef<PlantMessage>,
    join: ractor::concurrency::JoinHandle<()>,
    pub handle: PlantHandle,
    /// Actors and tasks alive, as gauges (a leak shows as a count that grows).
    _census: super::census::Sampler,
}

impl Plant {
    /// Starts the tree. Snapshots already in `directory` (loaded from the
    /// store) are where device actors start from.
    pub async fn start(args: PlantArgs) -> Result<Plant, String> {
        let handle = PlantHandle { directory: args.directory.clone(), stats: args.stats.clone() };
        let (root, join) =
            Actor::spawn(None, PlantSupervisor, args).await.map_err(|e| format!("cannot start the plant: {e}"))?;
        info!("plant started");
        let census = super::census::spawn_sampler(Duration::from_secs(1));
        Ok(Plant { root, join, handle, _census: census })
    }

    /// Who-Is on one network; the devices that answered within `wait`.
    pub async fn discover(
        &self,
        network: &str,
        range: Option<(u32, u32)>,
        wait: Duration,
    ) -> Result<Vec<Found>, String> {
        self.handle.discover(network, range, wait).await
    }

    /// Stops every actor (polling stops) and waits for them.
    pub async fn shutdown(self) {
        self.root.stop(Some("shutdown".into()));
        let _ = self.join.await;
    }
}
