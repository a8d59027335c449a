//! The command line. Every command documents itself with examples (`--help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The top-level help's closing section.
const TOP_EXAMPLES: &str = "\
Examples:
  plantwatch demo                                          # a simulated plant and the API on 127.0.0.1:8080
  plantwatch check-config --config site.toml               # is this configuration valid?
  plantwatch discover --config site.toml                   # which devices answer Who-Is?
  plantwatch serve --config site.toml                      # run it
  plantwatch keys create --config site.toml --name bms --role operator
  plantwatch backup --config site.toml --out backup.jsonl

With no command, plantwatch runs `demo`. `plantwatch <command> --help` shows each command's flags
and examples; docs/cli.md lists them all. Errors are one line on stderr: exit code 64 for a bad
command line or configuration, 1 for any other failure.";

#[derive(Debug, Parser)]
#[command(
    name = "plantwatch",
    version,
    about = "Supervises BACnet/IP devices: polling, caching, commanding, metrics",
    after_help = TOP_EXAMPLES
)]
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
        after_help = "Examples:\n  plantwatch demo\n  plantwatch demo --devices 50 --listen 127.0.0.1:9090\n  plantwatch demo --listen 127.0.0.1:0   # any free port: the `api:` line says which\n\nIt prints the API's address and one key per role (`admin key: …`, `operator key: …`,\n`read key: …`), then a `try:` line: curl with the read key. Ctrl-C stops it."
    )]
    Demo(DemoArgs),
    /// Find the devices that answer Who-Is on the configured networks, and print them as a table.
    #[command(
        after_help = "Examples:\n  plantwatch discover --config site.toml\n  plantwatch discover --config site.toml --network bldg-a --timeout 10\n  plantwatch discover --config site.toml --toml >> new-devices.toml   # entries for the devices not configured yet\n  plantwatch discover --config site.toml --json | jq '.devices[] | select(.configured | not)'\n\nIt binds each network's `bind` address (as `serve` does), so run it while the service is\nstopped, or bind it elsewhere: PLANTWATCH__NETWORK__0__BIND=0.0.0.0:0 (devices that broadcast\ntheir I-Am to port 47808 are then missed). Who-Is goes to the network's `broadcast` address and\nto the remote networks of the configured routers; without a broadcast address, to each\nconfigured device. The table (stdout) shows every device that answered, sorted by instance,\nwith CONFIG `configured` or `new`; a summary and the configured devices that stayed silent go\nto stderr. A progress bar is drawn on stderr when it is a terminal."
    )]
    Discover(DiscoverArgs),
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
pub enum ChurnReturnArg {
    /// As it was: only the network was gone.
    Same,
    /// Restarted: priority arrays and COV subscriptions cleared.
    Restart,
    /// Restarted with a new Database_Revision and a changed object list.
    NewRevision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Device k at IP+k:PORT, with a broadcast listener on 127.255.255.255:PORT.
    Ip,
    /// Device k at IP:PORT+k.
    Port,
    /// BACnet routers at IP:PORT, IP:PORT+1, ... (`--routers`), each with its
    /// share of the devices behind it on its own network.
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
    /// Exactly this many objects per device, spread over the types in turn
    /// (instead of --objects of each).
    #[arg(long)]
    pub points: Option<usize>,
    /// Address of the first device (or of the router).
    #[arg(long, default_value = "127.0.0.2:47808")]
    pub bind: SocketAddr,
    /// Where the devices live.
    #[arg(long, value_enum, default_value_t = LayoutArg::Ip)]
    pub layout: LayoutArg,
    /// Instance number of the first device.
    #[arg(long, default_value_t = 1001)]
    pub first_instance: u32,
    /// Network number behind the first router (`--layout router`); router r
    /// has network router_network+r.
    #[arg(long, default_value_t = 100)]
    pub router_network: u16,
    /// Number of routers (`--layout router`); the devices are shared out.
    #[arg(long, default_value_t = 1)]
    pub routers: usize,
    /// Fraction of requests silently dropped (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub slow_ms: u64,
    /// Vary that delay by up to plus or minus this many milliseconds, uniformly.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Fraction of answers sent garbled: malformed frames, or a right header
    /// over service data that does not decode (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub garbage_rate: f64,
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
    /// Vanish every this many seconds (each device at its own offset in the
    /// period, the first time after one period)...
    #[arg(long, requires = "churn_for")]
    pub churn_every: Option<f64>,
    /// ...for this many seconds.
    #[arg(long, requires = "churn_every")]
    pub churn_for: Option<f64>,
    /// What a vanished device is like when it comes back: as it was, restarted
    /// (priority arrays and COV subscriptions cleared), or reconfigured
    /// (restarted, with a new Database_Revision and a changed object list).
    #[arg(long, value_enum, default_value_t = ChurnReturnArg::Same)]
    pub churn_return: ChurnReturnArg,
    /// `--layout router`: each router's remote network becomes unreachable
    /// every this many seconds (requests for it get Reject-Message-To-Network)...
    #[arg(long, requires = "router_outage_for")]
    pub router_outage_every: Option<f64>,
    /// ...for this many seconds.
    #[arg(long, requires = "router_outage_every")]
    pub router_outage_for: Option<f64>,
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
    /// The read service measured.
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
pub struct DiscoverArgs {
    /// A TOML file layered over the built-in defaults; repeat it for more layers (later over earlier).
    #[arg(long = "config", value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
    /// Only this network (a `[[network]]` name); default: every network.
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// How long to wait for I-Am answers, in seconds.
    #[arg(long, value_name = "S", default_value_t = 3.0)]
    pub timeout: f64,
    /// Print one JSON document (`devices`, `silent`, `notes`, `networks`) instead of the table.
    #[arg(long, conflicts_with = "toml")]
    pub json: bool,
    /// Print `[[network.device]]` entries for the devices not in the configuration, instead of the table.
    #[arg(long)]
    pub toml: bool,
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
    #[command(
        after_help = "Examples:\n  plantwatch keys create --config site.toml --name bms --role operator\n  plantwatch keys create --config site.toml --name grafana --role read\n\nThe key is printed once (`key: pw_…`); keep it somewhere safe: only its hash is stored."
    )]
    Create {
        /// The configuration whose store holds the keys (as `serve` takes it; repeatable).
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
    #[command(after_help = "Examples:\n  plantwatch keys list --config site.toml")]
    List {
        /// The configuration whose store holds the keys (as `serve` takes it; repeatable).
        #[arg(long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
    },
    /// Revoke a key by its id.
    #[command(
        after_help = "Examples:\n  plantwatch keys revoke --config site.toml 3f2a9c01d4e5\n\nThe id is the first column of `plantwatch keys list`."
    )]
    Revoke {
        /// The configuration whose store holds the keys (as `serve` takes it; repeatable).
        #[arg(long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
        /// The key's id, as `keys list` shows it.
        id: String,
    },
}

/// A command-line error (unknown command or flag, missing or bad value) as
/// one line with the fix: clap's message, its tip, the commands there are
/// (for an unknown one) and the usage of the command. `--help` and
/// `--version` are not errors and are not passed here.
pub fn one_line(e: &clap::Error) -> String {
    // clap's plain rendering: `error: ...` (maybe with indented lines under
    // it), blank, `  tip: ...`, blank, `Usage: ...`, blank, `For more ...`
    let text = e.render().to_string();
    let mut message: Option<String> = None;
    let mut in_message = false;
    let mut tips = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("error: ") {
            message.get_or_insert_with(|| m.to_string());
            in_message = true;
        } else if line.is_empty() {
            in_message = false;
        } else if let Some(t) = line.strip_prefix("tip: ") {
            tips.push(t.to_string());
        } else if let Some(u) = line.strip_prefix("Usage: ") {
            usage.get_or_insert_with(|| u.to_string());
        } else if in_message {
            if let Some(m) = message.as_mut() {
                m.push(' ');
                m.push_str(line);
            }
        }
    }
    let mut out = message.unwrap_or_else(|| text.lines().next().unwrap_or("invalid command line").to_string());
    for t in tips {
        out.push_str("; ");
        out.push_str(&t);
    }
    if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
        if let Some(names) = usage.as_deref().and_then(subcommands_at) {
            out.push_str("; the commands are: ");
            out.push_str(&names.join(", "));
        }
    }
    if let Some(u) = usage {
        out.push_str("; usage: ");
        out.push_str(&u);
    }
    out
}

/// The subcommands of the command a usage line is for
/// (`plantwatch keys [OPTIONS] <COMMAND>`: create, list, revoke).
fn subcommands_at(usage: &str) -> Option<Vec<String>> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    for word in usage.split_whitespace().skip(1).take_while(|w| !w.starts_with(['[', '<', '-'])) {
        cmd = cmd.find_subcommand(word)?.clone();
    }
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).filter(|n| n != "help").collect();
    (!names.is_empty()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command and subcommand, with its path (`keys create`).
    fn all(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let p = format!("{path} {}", sub.get_name()).trim().to_string();
            out.push((p.clone(), sub.clone()));
            all(sub, &p, out);
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        let mut top = Cli::command();
        let help = top.render_long_help().to_string();
        assert!(help.contains("Examples:"), "{help}");
        let mut commands = Vec::new();
        all(&Cli::command(), "", &mut commands);
        let names: Vec<&str> = commands.iter().map(|(p, _)| p.as_str()).collect();
        for expected in [
            "simulate",
            "bench",
            "check-config",
            "serve",
            "demo",
            "discover",
            "keys",
            "keys create",
            "keys list",
            "keys revoke",
            "backup",
            "restore",
        ] {
            assert!(names.contains(&expected), "{expected} is not a command: {names:?}");
        }
        for (path, mut cmd) in commands {
            let help = cmd.render_long_help().to_string();
            assert!(help.contains("Examples:"), "`plantwatch {path} --help` has no examples:\n{help}");
            // each example is a command line of this command
            assert!(help.contains(&format!("  plantwatch {path}")), "`plantwatch {path} --help`:\n{help}");
            // the top-level help lists it with one line
            let first = path.split(' ').next().unwrap_or_default();
            let listed = Cli::command().render_long_help().to_string();
            assert!(listed.lines().any(|l| l.trim_start().starts_with(first)), "{first} not listed:\n{listed}");
        }
    }

    #[test]
    fn a_bad_command_line_is_one_line_with_the_fix() {
        let err = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => one_line(&e),
        };
        let e = err(&["plantwatch", "serve", "--cofig", "x.toml"]);
        assert!(e.starts_with("unexpected argument '--cofig' found"), "{e}");
        assert!(e.contains("'--config'") && e.contains("usage: plantwatch serve --config <FILE>"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err(&["plantwatch", "serv"]);
        assert!(e.starts_with("unrecognized subcommand 'serv'") && e.contains("'serve'"), "{e}");
        let e = err(&["plantwatch", "frobnicate"]);
        assert!(e.contains("the commands are: simulate, bench, check-config, serve, demo, discover, keys"), "{e}");
        let e = err(&["plantwatch", "keys", "rotate"]);
        assert!(e.contains("the commands are: create, list, revoke;"), "{e}");
        let e = err(&["plantwatch", "discover"]);
        assert!(e.starts_with("the following required arguments were not provided: --config <FILE>;"), "{e}");
        let e = err(&["plantwatch", "keys", "create", "--config", "x.toml", "--name", "a"]);
        assert!(e.contains("--role <ROLE>") && !e.contains('\n'), "{e}");
        let e = err(&["plantwatch", "simulate", "--devices", "many"]);
        assert!(e.starts_with("invalid value 'many' for '--devices <DEVICES>'"), "{e}");
    }
}
