//! `plantwatch demo`, the embedded default: a simulated plant on loopback
//! (most devices on their own ports, one behind a BACnet router, one that
//! rejects ReadPropertyMultiple) and the service watching it, configured by
//! `config/demo.toml`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;

use plantwatch_actors::sim::{self, Faults, Layout, SimConfig, Simulator};

use crate::cli::DemoArgs;
use crate::config::{self, Config, DeviceConfig, RouteConfig};
use crate::{service, CommandError};

pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// The demo's configuration: the built-in defaults, config/demo.toml, then
/// the environment.
pub fn config(env: &HashMap<String, String>) -> Result<Config, CommandError> {
    config::load_texts(&[(PathBuf::from("config/demo.toml"), DEMO_TOML.to_string())], env)
        .map_err(|e| CommandError::Usage(e.to_string()))
}

/// Starts the simulated plant: `devices` in all, first instance 1001.
pub async fn plant(devices: usize) -> Result<Vec<Simulator>, CommandError> {
    if devices < 3 {
        return Err(CommandError::Usage("--devices must be at least 3 (one routed, one without RPM)".into()));
    }
    let start = |config: SimConfig| async move {
        sim::start(config).await.map_err(|e| CommandError::Failed(format!("cannot start the simulated plant: {e}")))
    };
    let local = |ip: [u8; 4]| std::net::SocketAddr::from((ip, 0));
    let plain = start(SimConfig {
        devices: devices - 2,
        objects: 2,
        bind: local([127, 0, 0, 2]),
        layout: Layout::Port,
        first_instance: 1001,
        ..SimConfig::default()
    })
    .await?;
    let routed = start(SimConfig {
        devices: 1,
        objects: 2,
        bind: local([127, 0, 0, 3]),
        layout: Layout::Router,
        first_instance: 1001 + devices as u32 - 2,
        router_network: 100,
        ..SimConfig::default()
    })
    .await?;
    let no_rpm = start(SimConfig {
        devices: 1,
        objects: 2,
        bind: local([127, 0, 0, 4]),
        layout: Layout::Port,
        first_instance: 1001 + devices as u32 - 1,
        faults: Faults { no_rpm: true, ..Faults::default() },
        ..SimConfig::default()
    })
    .await?;
    Ok(vec![plain, routed, no_rpm])
}

/// Lists the simulated devices in the demo network of `config`.
pub fn add_devices(config: &mut Config, sims: &[Simulator]) -> Result<(), CommandError> {
    let network = config
        .networks
        .first_mut()
        .ok_or_else(|| CommandError::Usage("the demo configuration has no [[network]]".into()))?;
    network.devices = sims
        .iter()
        .flat_map(|s| s.devices())
        .map(|d| {
            let mut dc = DeviceConfig::new(d.instance, d.address);
            dc.route = d.route.map(|r| RouteConfig { network: r.network, mac: r.mac });
            dc.name = Some(format!("Demo device {}", d.instance));
            dc
        })
        .collect();
    Ok(())
}

pub fn run(args: &DemoArgs, env: &HashMap<String, String>, level: Option<&str>) -> Result<(), CommandError> {
    let mut config = config(env)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let _logs = crate::telemetry::init_service(level, &config.log)?;
    service::runtime()?.block_on(async {
        let shutdown = crate::shutdown_signal();
        let listen = config.server.listen;
        let fix = |a| format!("choose another address with --listen {a} (port 0 picks a free one)");
        let listener = crate::api::bind(listen).await.map_err(|e| crate::listen_error(listen, &e, fix))?;
        let addr = listener.local_addr().map_err(|e| CommandError::Failed(e.to_string()))?;
        let sims = plant(args.devices).await?;
        add_devices(&mut config, &sims)?;
        let keys = demo_keys(&config).await?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "plantwatch demo: {} simulated devices on loopback", args.devices);
        let _ = writeln!(out, "api: http://{addr}/api/v1/devices");
        let _ = writeln!(out, "health: http://{addr}/health");
        let _ = writeln!(out, "docs: http://{addr}/docs");
        let _ = writeln!(out, "store: {}", config.store.path.display());
        for (role, key) in &keys {
            let _ = writeln!(out, "{role} key: {key}");
        }
        let _ = writeln!(out, "try: curl -H 'Authorization: Bearer {}' http://{addr}/api/v1/devices", keys[2].1);
        let _ = out.flush();
        drop(out);
        let result = service::run(config, listener, shutdown).await;
        for s in sims {
            s.shutdown().await;
        }
        result
    })
}

/// Fresh demo keys, one per role (the previous run's are deleted), printed so
/// that a person or a script can use them.
async fn demo_keys(config: &Config) -> Result<Vec<(&'static str, String)>, CommandError> {
    use crate::api::auth::{self, KeyRecord, Role};
    let store = service::open_store(config).await?;
    let failed = |e: plantwatch_actors::store::StoreError| CommandError::Failed(e.to_string());
    for (id, bytes) in store.list_keys().await.map_err(failed)? {
        if serde_json::from_slice::<KeyRecord>(&bytes).is_ok_and(|r| r.name.starts_with("demo ")) {
            store.delete_key(&id).await.map_err(failed)?;
        }
    }
    let mut keys = Vec::new();
    for role in [Role::Admin, Role::Operator, Role::Read] {
        let (key, record) = auth::generate(&format!("demo {}", role.as_str()), role);
        let bytes = serde_json::to_vec(&record).map_err(|e| CommandError::Failed(e.to_string()))?;
        store.put_key(&record.id, bytes).await.map_err(failed)?;
        keys.push((role.as_str(), key));
    }
    Ok(keys)
}
