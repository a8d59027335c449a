//! `plantwatch serve`: the service. Opens the store, loads every device's
//! last snapshot, starts the supervision tree and the persistence task,
//! serves the API, and on SIGINT/SIGTERM drains: stop taking requests, stop
//! polling, write the last snapshots and history, flush, exit 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plantwatch_actors::plant::device::{DeviceSettings, PointSettings};
use plantwatch_actors::plant::network::{DeviceDefaults, NetworkSettings};
use plantwatch_actors::plant::persist::{self, PersistSettings};
use plantwatch_actors::plant::restart::RestartPolicy;
use plantwatch_actors::plant::supervisor::{Plant, PlantArgs};
use plantwatch_actors::plant::{Directory, SupervisionStats};
use plantwatch_actors::store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::api::{self, ApiState};
use crate::config::{Config, NetworkConfig};
use crate::CommandError;

/// History rows buffered between the actors and the store.
const HISTORY_QUEUE: usize = 100_000;

/// The supervision tree's settings from the configuration.
pub fn networks(config: &Config) -> Vec<Arc<NetworkSettings>> {
    config.networks.iter().map(|n| Arc::new(network(config, n))).collect()
}

fn restart_policy(config: &Config) -> RestartPolicy {
    let s = &config.supervision;
    RestartPolicy {
        intensity: s.restart_intensity,
        window: s.restart_window,
        backoff_initial: s.backoff_initial,
        backoff_max: s.backoff_max,
    }
}

fn network(config: &Config, n: &NetworkConfig) -> NetworkSettings {
    let history_max_interval = config.history.max_interval;
    let devices = n
        .devices
        .iter()
        .map(|d| {
            Arc::new(DeviceSettings {
                instance: d.instance,
                network: n.name.clone(),
                address: d.bacnet_address(),
                label: d.name.clone(),
                poll: d.effective_poll(n),
                points: d.points.as_ref().map(|ps| {
                    ps.iter().map(|p| PointSettings { object: p.object, poll: p.poll, cov: p.cov }).collect()
                }),
                cov: d.effective_cov(n),
                cov_lifetime: n.cov_lifetime,
                cov_quiet: d.effective_cov_quiet(n),
                offline_after: n.offline_after,
                reprobe_max: n.reprobe_max,
                history_max_interval,
                poison_value: config.testing.poison_value,
            })
        })
        .collect();
    NetworkSettings {
        name: n.name.clone(),
        transport: n.transport_config(),
        discover: n.discover,
        devices,
        defaults: DeviceDefaults {
            poll: n.poll,
            cov: n.cov,
            cov_lifetime: n.cov_lifetime,
            cov_quiet: n.cov_quiet,
            offline_after: n.offline_after,
            reprobe_max: n.reprobe_max,
            history_max_interval,
            poison_value: config.testing.poison_value,
        },
        restart: restart_policy(config),
        heartbeat_timeout: config.supervision.heartbeat_timeout,
    }
}

pub fn store_config(config: &Config) -> StoreConfig {
    StoreConfig {
        path: config.store.path.clone(),
        cache_capacity_bytes: config.store.cache_capacity_mb.saturating_mul(1 << 20),
        flush_every: Duration::from_millis(500),
    }
}

/// Opens the store off the async threads.
pub async fn open_store(config: &Config) -> Result<Store, CommandError> {
    let sc = store_config(config);
    tokio::task::spawn_blocking(move || Store::open(&sc))
        .await
        .map_err(|e| CommandError::Failed(format!("opening the store: {e}")))?
        .map_err(crate::store_error)
}

/// Binds the API's address first, so a busy port is a clear error at once.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, CommandError> {
    let fix = |a| format!("set server.listen, e.g. PLANTWATCH__SERVER__LISTEN={a}");
    api::bind(addr).await.map_err(|e| crate::listen_error(addr, &e, fix))
}

/// TLS (the certificate and key loaded now: a bad file stops the start,
/// naming it), CORS and trusted proxies of the API.
pub fn http_settings(config: &Config) -> Result<api::HttpSettings, CommandError> {
    let s = &config.server;
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => Some(
            api::tls::acceptor(cert, key)
                .map_err(|e| CommandError::Usage(format!("server.tls_cert/server.tls_key: {e}")))?,
        ),
        _ => None,
    };
    Ok(api::HttpSettings {
        tls,
        cors: api::headers::Cors::from_config(&config.cors),
        trusted_proxies: Arc::new(s.trusted_proxies.clone()),
    })
}

/// Runs the service on an already bound listener until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CommandError> {
    let http = http_settings(&config)?;
    if let Some(v) = config.testing.poison_value {
        tracing::warn!(poison_value = v, "testing aid on: a write of this value panics the device actor that takes it");
    }
    // Before any transport starts, so that their request metrics are recorded.
    crate::metrics::install();
    crate::metrics::register_networks(config.networks.iter().map(|n| n.name.as_str()));
    let store = open_store(&config).await?;
    let directory = Directory::default();
    let started = std::time::Instant::now();
    let loaded =
        persist::load(&store, &directory).await.map_err(|e| CommandError::Failed(format!("loading snapshots: {e}")))?;
    let load_ms = started.elapsed().as_millis() as u64;
    info!(devices = loaded, load_ms, path = %config.store.path.display(), "last snapshots loaded");
    let ready = Arc::new(AtomicBool::new(false));
    let plant_handle = plantwatch_actors::plant::PlantHandle {
        directory: directory.clone(),
        stats: Arc::new(SupervisionStats::default()),
    };
    let leases = crate::lease::Leases::start(store.clone(), plant_handle.clone(), config.server.request_timeout)
        .await
        .map_err(|e| CommandError::Failed(format!("loading leases: {e}")))?;
    let state = ApiState {
        plant: plant_handle,
        store: store.clone(),
        networks: Arc::new(
            config
                .networks
                .iter()
                .map(|n| api::NetworkInfo { name: n.name.clone(), bind: n.bind, discover: n.discover })
                .collect(),
        ),
        request_timeout: config.server.request_timeout,
        ready: ready.clone(),
        security: security(&config, &store).await?,
        http,
        max_points: config.metrics.max_points,
        site: config.server.site.clone(),
        leases,
        max_lease: config.server.max_lease,
    };
    let (stop_api, api_stopped) = watch::channel(());
    let api = tokio::spawn(api::serve(listener, state.clone(), wait(api_stopped)));

    let (history, history_rx) = mpsc::channel(HISTORY_QUEUE);
    let (stop_persist, persist_stopped) = watch::channel(());
    let persist = persist::spawn(
        store,
        directory.clone(),
        history_rx,
        PersistSettings {
            snapshot_interval: config.store.snapshot_interval,
            history_flush: Duration::from_secs(1),
            retention: config.history.retention,
            prune_every: config.history.prune_every,
        },
        persist_stopped,
    );
    let plant = Plant::start(PlantArgs {
        networks: networks(&config),
        directory,
        history,
        stats: state.plant.stats.clone(),
        restart: restart_policy(&config),
    })
    .await
    .map_err(CommandError::Failed)?;
    ready.store(true, Ordering::Relaxed);
    info!(networks = config.networks.len(), devices = config.device_count(), "plantwatch running");

    shutdown.await;
    info!("shutting down: draining");
    ready.store(false, Ordering::Relaxed);
    let _ = stop_api.send(());
    let _ = api.await;
    plant.shutdown().await;
    let _ = stop_persist.send(());
    let _ = persist.await;
    info!("stopped");
    Ok(())
}

async fn wait(mut rx: watch::Receiver<()>) {
    let _ = rx.changed().await;
}

/// `plantwatch serve --config FILE...`.
pub fn serve(
    args: &crate::cli::ServeArgs,
    env: &std::collections::HashMap<String, String>,
    level: Option<&str>,
) -> Result<(), CommandError> {
    let config = crate::config::load(&args.config, env).map_err(|e| CommandError::Usage(e.to_string()))?;
    let _logs = crate::telemetry::init_service(level, &config.log)?;
    runtime()?.block_on(async {
        let shutdown = crate::shutdown_signal();
        let listener = bind(config.server.listen).await?;
        let addr = listener.local_addr().map_err(|e| CommandError::Failed(e.to_string()))?;
        info!(%addr, "API listening");
        run(config, listener, shutdown).await
    })
}

pub fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the runtime: {e}")))
}

/// The API's keys (with the bootstrap admin key on a first start) and rate limits.
pub async fn security(config: &Config, store: &Store) -> Result<api::Security, CommandError> {
    let keys = api::auth::KeyRing::load(store).await.map_err(CommandError::Failed)?;
    if keys.is_empty() {
        let secret = match (&config.auth.bootstrap_key_file, std::env::var("PLANTWATCH_BOOTSTRAP_ADMIN_KEY")) {
            (_, Ok(s)) => Some(s),
            (Some(path), Err(_)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| CommandError::Failed(format!("auth.bootstrap_key_file {}: {e}", path.display())))?,
            ),
            (None, Err(_)) => None,
        };
        if let Some(secret) = secret {
            let secret = secret.trim();
            if secret.len() < api::auth::MIN_SECRET_LEN || secret.len() > api::auth::MAX_KEY_LEN {
                return Err(CommandError::Usage(format!(
                    "the bootstrap admin key must be {} to {} characters",
                    api::auth::MIN_SECRET_LEN,
                    api::auth::MAX_KEY_LEN
                )));
            }
            let record = api::auth::record_for(secret, "bootstrap", "bootstrap admin", api::auth::Role::Admin);
            let bytes = serde_json::to_vec(&record).map_err(|e| CommandError::Failed(e.to_string()))?;
            store.put_key(&record.id, bytes).await.map_err(|e| CommandError::Failed(e.to_string()))?;
            keys.insert(record);
            info!("bootstrap admin key installed");
        }
    }
    let r = &config.rate_limit;
    Ok(api::Security {
        auth_enabled: config.auth.enabled,
        metrics_public: config.auth.metrics_public,
        keys,
        limits: Arc::new(api::limits::Limits::new(
            r.read_per_s as f64,
            r.write_per_s as f64,
            r.auth_failures_per_min as f64,
            r.burst,
        )),
        stats: Arc::default(),
    })
}
