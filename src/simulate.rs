//! `plantwatch simulate`: simulated BACnet/IP devices on loopback until
//! SIGINT or SIGTERM. One JSON line per device on stdout once all are bound.

use std::io::Write;
use std::time::Duration;

use plantwatch_actors::sim::{self, Faults, Layout, SimConfig};

use crate::cli::{LayoutArg, SimulateArgs};
use crate::CommandError;

/// The simulator's settings from the command line, checked.
pub fn config(args: &SimulateArgs) -> Result<SimConfig, CommandError> {
    let usage = |m: String| Err(CommandError::Usage(m));
    if !(0.0..=1.0).contains(&args.drop_rate) {
        return usage(format!("--drop-rate {} is not between 0 and 1", args.drop_rate));
    }
    let seconds = |flag: &str, v: Option<f64>| -> Result<Option<Duration>, CommandError> {
        match v {
            None => Ok(None),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(s) => Err(CommandError::Usage(format!("{flag} {s} is not a number of seconds"))),
        }
    };
    Ok(SimConfig {
        devices: args.devices,
        objects: args.objects,
        bind: args.bind,
        layout: match args.layout {
            LayoutArg::Ip => Layout::Ip,
            LayoutArg::Port => Layout::Port,
            LayoutArg::Router => Layout::Router,
        },
        first_instance: args.first_instance,
        router_network: args.router_network,
        faults: Faults {
            drop_rate: args.drop_rate,
            slow: Duration::from_millis(args.slow_ms),
            no_rpm: args.no_rpm,
            max_apdu: args.max_apdu,
            no_segmentation: args.no_segmentation,
            offline_after: seconds("--offline-after", args.offline_after)?,
            online_after: seconds("--online-after", args.online_after)?,
        },
        fault_devices: args.fault_devices.clone(),
    })
}

pub fn run(args: SimulateArgs) -> Result<(), CommandError> {
    let config = config(&args)?;
    // One thread serves thousands of devices; more only add wake-ups.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let simulator = sim::start(config).await.map_err(|e| match e {
            sim::SimError::Config(m) => CommandError::Usage(m),
            other => CommandError::Failed(other.to_string()),
        })?;
        let mut out = std::io::stdout().lock();
        for d in simulator.devices() {
            let line = serde_json::to_string(d).map_err(|e| CommandError::Failed(e.to_string()))?;
            writeln!(out, "{line}").map_err(|e| CommandError::Failed(format!("stdout: {e}")))?;
        }
        out.flush().map_err(|e| CommandError::Failed(format!("stdout: {e}")))?;
        drop(out);
        tracing::info!(devices = simulator.devices().len(), "simulator ready");
        crate::shutdown_signal().await;
        simulator.shutdown().await;
        Ok(())
    })
}
