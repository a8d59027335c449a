//! `plantwatch simulate`: simulated BACnet/IP devices on loopback until
//! SIGINT or SIGTERM. One JSON line per device on stdout once all are bound.

use std::io::Write;
use std::time::Duration;

use plantwatch_actors::sim::{self, Churn, Faults, Layout, OnReturn, Outage, SimConfig};

use crate::cli::{ChurnReturnArg, LayoutArg, SimulateArgs};
use crate::CommandError;

/// The simulator's settings from the command line, checked.
pub fn config(args: &SimulateArgs) -> Result<SimConfig, CommandError> {
    let usage = |m: String| Err(CommandError::Usage(m));
    if !(0.0..=1.0).contains(&args.drop_rate) {
        return usage(format!("--drop-rate {} is not between 0 and 1", args.drop_rate));
    }
    if !(0.0..=1.0).contains(&args.garbage_rate) {
        return usage(format!("--garbage-rate {} is not between 0 and 1", args.garbage_rate));
    }
    let seconds = |flag: &str, v: Option<f64>| -> Result<Option<Duration>, CommandError> {
        match v {
            None => Ok(None),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(s) => Err(CommandError::Usage(format!("{flag} {s} is not a number of seconds"))),
        }
    };
    // clap makes sure the flags of a pair come together.
    let outage = |(every_flag, every): (&str, Option<f64>), (for_flag, length): (&str, Option<f64>)| match (
        seconds(every_flag, every)?,
        seconds(for_flag, length)?,
    ) {
        (Some(every), Some(length)) => {
            let o = Outage { every, length };
            o.check(&format!("{every_flag} and {for_flag}")).map_err(CommandError::Usage)?;
            Ok::<_, CommandError>(Some(o))
        }
        _ => Ok(None),
    };
    let churn = outage(("--churn-every", args.churn_every), ("--churn-for", args.churn_for))?.map(|outage| Churn {
        outage,
        on_return: match args.churn_return {
            ChurnReturnArg::Same => OnReturn::Same,
            ChurnReturnArg::Restart => OnReturn::Restart,
            ChurnReturnArg::NewRevision => OnReturn::NewRevision,
        },
    });
    let router_outage =
        outage(("--router-outage-every", args.router_outage_every), ("--router-outage-for", args.router_outage_for))?;
    if router_outage.is_some() && args.layout != LayoutArg::Router {
        return usage("--router-outage-every needs --layout router".into());
    }
    Ok(SimConfig {
        devices: args.devices,
        objects: args.objects,
        points: args.points,
        bind: args.bind,
        layout: match args.layout {
            LayoutArg::Ip => Layout::Ip,
            LayoutArg::Port => Layout::Port,
            LayoutArg::Router => Layout::Router,
        },
        first_instance: args.first_instance,
        router_network: args.router_network,
        routers: args.routers,
        faults: Faults {
            drop_rate: args.drop_rate,
            slow: Duration::from_millis(args.slow_ms),
            no_rpm: args.no_rpm,
            max_apdu: args.max_apdu,
            no_segmentation: args.no_segmentation,
            offline_after: seconds("--offline-after", args.offline_after)?,
            online_after: seconds("--online-after", args.online_after)?,
            jitter: Duration::from_millis(args.jitter_ms),
            garbage_rate: args.garbage_rate,
            churn,
            router_outage,
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
        let shutdown = crate::shutdown_signal();
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
        shutdown.await;
        simulator.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(line: &[&str]) -> SimulateArgs {
        match Cli::try_parse_from(line).expect("parses").command.unwrap_or_default() {
            Command::Simulate(a) => a,
            other => panic!("not simulate: {other:?}"),
        }
    }

    #[test]
    fn the_simulator_defaults() {
        let a = args(&["plantwatch", "simulate"]);
        assert_eq!((a.devices, a.bind.to_string()), (20, "127.0.0.2:47808".to_string()));
    }

    #[test]
    fn no_command_runs_the_demo() {
        let c = Cli::try_parse_from(["plantwatch"]).expect("parses").command.unwrap_or_default();
        assert!(matches!(c, Command::Demo(ref d) if d.devices == 20), "{c:?}");
    }

    #[test]
    fn flags_map_onto_the_simulator() {
        let a = args(&[
            "plantwatch",
            "simulate",
            "--devices",
            "7",
            "--layout",
            "router",
            "--no-rpm",
            "--max-apdu",
            "480",
            "--slow-ms",
            "20",
            "--offline-after",
            "1.5",
            "--fault-devices",
            "1001,1003",
        ]);
        let c = config(&a).expect("valid");
        assert_eq!((c.devices, c.layout, c.faults.no_rpm, c.faults.max_apdu), (7, Layout::Router, true, 480));
        assert_eq!(c.faults.slow, Duration::from_millis(20));
        assert_eq!(c.faults.offline_after, Some(Duration::from_millis(1500)));
        assert_eq!(c.fault_devices, Some(vec![1001, 1003]));
    }

    #[test]
    fn fault_flags_map_onto_the_simulator() {
        let a = args(&[
            "plantwatch",
            "simulate",
            "--layout",
            "router",
            "--slow-ms",
            "200",
            "--jitter-ms",
            "100",
            "--garbage-rate",
            "0.2",
            "--churn-every",
            "180",
            "--churn-for",
            "40",
            "--churn-return",
            "new-revision",
            "--router-outage-every",
            "300",
            "--router-outage-for",
            "30",
        ]);
        let f = config(&a).expect("valid").faults;
        assert_eq!((f.slow, f.jitter, f.garbage_rate), (Duration::from_millis(200), Duration::from_millis(100), 0.2));
        let secs = Duration::from_secs;
        assert_eq!(
            f.churn,
            Some(Churn { outage: Outage { every: secs(180), length: secs(40) }, on_return: OnReturn::NewRevision })
        );
        assert_eq!(f.router_outage, Some(Outage { every: secs(300), length: secs(30) }));
        assert_eq!(config(&args(&["plantwatch", "simulate"])).expect("valid").faults.churn, None);
    }

    #[test]
    fn bad_fault_flags_are_usage_errors() {
        for line in [
            &["plantwatch", "simulate", "--garbage-rate", "2"][..],
            &["plantwatch", "simulate", "--churn-every", "10", "--churn-for", "10"],
            &["plantwatch", "simulate", "--router-outage-every", "10", "--router-outage-for", "2"],
        ] {
            let e = config(&args(line)).expect_err("refused");
            assert_eq!(e.exit_code(), crate::EXIT_USAGE, "{line:?}");
        }
        // one of a pair alone does not parse
        assert!(Cli::try_parse_from(["plantwatch", "simulate", "--churn-every", "10"]).is_err());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let e = config(&args(&["plantwatch", "simulate", "--drop-rate", "1.5"])).expect_err("refused");
        assert_eq!(e.exit_code(), crate::EXIT_USAGE);
        let e = config(&args(&["plantwatch", "simulate", "--online-after=-1"])).expect_err("refused");
        assert_eq!(e.exit_code(), crate::EXIT_USAGE);
    }
}
