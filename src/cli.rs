//! The command line. Every command documents itself with examples (`--help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "plantwatch", version, about = "Supervises BACnet/IP devices: polling, caching, commanding, metrics")]
pub struct Cli {
    /// Log filter (e.g. `info`, `plantwatch_actors=debug`); default from RUST_LOG, else `warn`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run simulated BACnet/IP devices on loopback (for demos, tests, benchmarks).
    #[command(
        after_help = "Examples:\n  plantwatch simulate --devices 50\n  plantwatch simulate --devices 10 --layout port --bind 127.0.0.1:47900\n  plantwatch simulate --devices 5 --layout router --bind 127.0.0.1:47808 --router-network 100\n  plantwatch simulate --devices 3 --no-rpm --max-apdu 480 --drop-rate 0.1"
    )]
    Simulate(SimulateArgs),
    /// Measure the transport: ReadProperty Present_Value reads with K requests in flight.
    #[command(
        after_help = "Examples:\n  plantwatch bench --target 127.0.0.2:47808 --in-flight 1 --seconds 5\n  plantwatch bench --target 127.0.0.1:47900,127.0.0.1:47901 --in-flight 64 --seconds 10\n\nThe last line is `reads_per_s=… p50_us=… p99_us=…`."
    )]
    Bench(BenchArgs),
    /// Check the configuration as `serve` would load it, and print a summary.
    #[command(
        after_help = "Examples:\n  plantwatch check-config --config /etc/plantwatch/plantwatch.toml\n  plantwatch check-config --config config/production.toml --config /etc/plantwatch/site.toml\n  PLANTWATCH__SERVER__LISTEN=0.0.0.0:8080 plantwatch check-config --config site.toml\n\nLayers, later over earlier: the built-in defaults (config/default.toml), each --config file in\norder, then PLANTWATCH__SECTION__KEY environment variables (e.g. PLANTWATCH__NETWORK__0__POLL=30s).\nExit code 0 when valid; 64 with `plantwatch: <file>:<line>: <key>: <reason>` when not."
    )]
    CheckConfig(CheckConfigArgs),
    /// Run plantwatch: poll the configured devices, serve the API.
    #[command(
        after_help = "Examples:\n  plantwatch serve --config /etc/plantwatch/plantwatch.toml\n  PLANTWATCH__SERVER__LISTEN=0.0.0.0:8080 plantwatch serve --config site.toml\n\nSIGINT or SIGTERM drains: stop taking requests, stop polling, write the last snapshots, exit 0."
    )]
    Serve(ServeArgs),
    /// The embedded default: a simulated plant on loopback and the service watching it.
    #[command(
        after_help = "Examples:\n  plantwatch demo\n  plantwatch demo --devices 50 --listen 127.0.0.1:9090\n\nThen: curl http://127.0.0.1:8080/api/v1/devices"
    )]
    Demo(DemoArgs),
    /// Make, list and revoke API keys (on the store; while the service is stopped).
    #[command(
        subcommand,
        after_help = "Examples:\n  plantwatch keys create --config site.toml --name bms --role operator   # prints the key once\n  plantwatch keys list --config site.toml\n  plantwatch keys revoke --config site.toml 3f2a9c01d4e5\n\nWhile the service runs it holds the store: use the API (/api/v1/keys) instead."
    )]
    Keys(KeysCommand),
    /// Export the whole store (snapshots, history, audit, keys) to one file.
    #[command(
        after_help = "Examples:\n  plantwatch backup --config /etc/plantwatch/plantwatch.toml --out /var/backups/plantwatch-$(date +%F).jsonl\n\nRun it while the service is stopped: the store is locked by a running service."
    )]
    Backup(BackupArgs),
    /// Import a backup into the store path of the configuration.
    #[command(
        after_help = "Examples:\n  plantwatch restore --config /etc/plantwatch/plantwatch.toml --from plantwatch-2026-11-25.jsonl\n  plantwatch restore --config site.toml --from backup.jsonl --replace   # the old store is moved aside\n\nRun it while the service is stopped."
    )]
    Restore(RestoreArgs),
}

impl Default for Command {
    /// With no command, plantwatch runs its embedded default.
    fn default() -> Self {
        Cli::parse_from(["plantwatch", "demo"]).command.unwrap_or_else(|| unreachable!("parsed a command"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Device k at IP+k:PORT, with a broadcast listener on 127.255.255.255:PORT.
    Ip,
    /// Device k at IP:PORT+k.
    Port,
    /// A BACnet router at IP:PORT with the devices behind it on one network.
    Router,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Number of devices.
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// Objects of each type per device.
    #[arg(long, default_value_t = 2)]
    pub objects: usize,
    /// Address of the first device (or of the router).
    #[arg(long, default_value = "127.0.0.2:47808")]
    pub bind: SocketAddr,
    #[arg(long, value_enum, default_value_t = LayoutArg::Ip)]
    pub layout: LayoutArg,
    /// Instance number of the first device.
    #[arg(long, default_value_t = 1001)]
    pub first_instance: u32,
    /// Network number behind the router (`--layout router`).
    #[arg(long, default_value_t = 100)]
    pub router_network: u16,
    /// Fraction of requests silently dropped (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub slow_ms: u64,
    /// Reject ReadPropertyMultiple with unrecognized-service.
    #[arg(long)]
    pub no_rpm: bool,
    /// Max_APDU_Length_Accepted of the devices; larger answers are segmented.
    #[arg(long, default_value_t = 1476)]
    pub max_apdu: u16,
    /// Devices cannot segment: answers too large for one APDU are aborted.
    #[arg(long)]
    pub no_segmentation: bool,
    /// Stop answering this many seconds after start.
    #[arg(long)]
    pub offline_after: Option<f64>,
    /// Answer again this many seconds after going offline.
    #[arg(long)]
    pub online_after: Option<f64>,
    /// Apply the faults above only to these device instances (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub fault_devices: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// A TOML file layered over the built-in defaults; repeat it for more layers (later over earlier).
    #[arg(long = "config", value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchService {
    /// ReadProperty of one Present_Value per request.
    Rp,
    /// ReadPropertyMultiple of up to 20 Present_Values per request.
    Rpm,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Devices (or routers) to read, comma-separated IP:PORT.
    #[arg(long, value_delimiter = ',', required = true)]
    pub target: Vec<SocketAddr>,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// How long to measure.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, value_enum, default_value_t = BenchService::Rp)]
    pub service: BenchService,
    /// Local address of the benchmark's socket.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Runtime worker threads (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A TOML file layered over the built-in defaults; repeat it for more layers (later over earlier).
    #[arg(long = "config", value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Simulated devices (one behind a BACnet router, one that rejects ReadPropertyMultiple).
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// Address of the API (default: config/demo.toml's, 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The configuration whose store is backed up.
    #[arg(long = "config", value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
    /// The backup file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The configuration whose store path is restored into.
    #[arg(long = "config", value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
    /// The backup file to read.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// Replace an existing store (it is moved aside, not deleted).
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Make a key; it is printed once and only its hash is kept.
    Create {
        #[arg(long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
        /// Who or what uses the key.
        #[arg(long)]
        name: String,
        /// read, operator or admin.
        #[arg(long)]
        role: String,
    },
    /// List the keys (never the keys themselves).
    List {
        #[arg(long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
    },
    /// Revoke a key by its id.
    Revoke {
        #[arg(long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
        id: String,
    },
}
