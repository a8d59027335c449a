//! `plantwatch discover`: what answers Who-Is on the configured networks.
//!
//! ```text
//! bind every selected network's transport (its [[network]] bind address)
//!   └─ a busy address is one line with the fix, before anything is sent
//! Who-Is: to the network's broadcast address; to each configured router's
//!   remote networks; with no broadcast address, to each configured device
//! collect I-Am answers for --timeout        (progress bar on a terminal)
//! read Object_Name, Vendor_Name, Model_Name of each device found
//!   (ReadPropertyMultiple, ReadProperty if refused; one short timeout)
//! print a table (or --json, or --toml for the devices not configured yet)
//! ```
//!
//! The service's own discovery (`discover = true`, `POST /api/v1/discovery`)
//! runs inside the network supervisor that holds the network's socket; this
//! command is for the time before the service runs, or while it is stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::services::{ErrorClassCode, PropertyRef, ReadAccessSpec};
use plantwatch_actors::bacnet::types::{error, property, Address, Mac, ObjectId, Route, Segmentation};
use plantwatch_actors::transport::{BacnetError, Transport, Unsolicited};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::DiscoverArgs;
use crate::config::{self, Config, NetworkConfig};
use crate::CommandError;

/// The longest wait for I-Am answers `--timeout` takes.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// The longest a property read waits for one answer (it is tried twice).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// `plantwatch discover --config FILE... [--network NAME] [--timeout S] [--json | --toml]`.
pub fn run(args: &DiscoverArgs, env: &HashMap<String, String>) -> Result<(), CommandError> {
    let config = config::load(&args.config, env).map_err(|e| CommandError::Usage(e.to_string()))?;
    let wait = wait(args.timeout)?;
    let selected = select(&config, args.network.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(format!("cannot start the runtime: {e}")))?;
    let progress = Progress::new(std::io::stderr().is_terminal());
    let report = runtime.block_on(discover(&config, &selected, wait, &progress))?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report).map_err(|e| CommandError::Failed(e.to_string()))?;
        s.push('\n');
        s
    } else if args.toml {
        toml_snippet(&report, &config)
    } else {
        table(&report)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CommandError::Failed(format!("stdout: {e}")))?;
    drop(out);
    if !args.json {
        eprint!("{}", summary(&report, wait));
    }
    Ok(())
}

fn wait(seconds: f64) -> Result<Duration, CommandError> {
    let bad = || {
        CommandError::Usage(format!(
            "--timeout {seconds}: give seconds above 0 and at most {}, e.g. --timeout 5",
            MAX_WAIT.as_secs()
        ))
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(bad());
    }
    let d = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    if d > MAX_WAIT {
        return Err(bad());
    }
    Ok(d)
}

/// The indices of the networks to ask: every one, or the one named.
fn select(config: &Config, name: Option<&str>) -> Result<Vec<usize>, CommandError> {
    if config.networks.is_empty() {
        return Err(CommandError::Usage(
            "the configuration has no [[network]]: add one with its bind and broadcast addresses (see config/production.toml)"
                .into(),
        ));
    }
    match name {
        None => Ok((0..config.networks.len()).collect()),
        Some(name) => config.networks.iter().position(|n| n.name == name).map(|i| vec![i]).ok_or_else(|| {
            let names: Vec<&str> = config.networks.iter().map(|n| n.name.as_str()).collect();
            CommandError::Usage(format!(
                "--network {name}: no such network; the configuration has: {}",
                names.join(", ")
            ))
        }),
    }
}

// ---------------------------------------------------------------- the report

/// What `discover` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every device that answered, sorted by instance, then network.
    pub devices: Vec<FoundDevice>,
    /// Configured devices that did not answer Who-Is.
    pub silent: Vec<SilentDevice>,
    /// Who-Is that could not be sent, and networks asked only in part.
    pub notes: Vec<String>,
    /// Networks asked.
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FoundDevice {
    pub network: String,
    pub instance: u32,
    /// The device's address, or its router's.
    pub address: SocketAddr,
    /// `{"network": 100, "mac": "05"}` behind a router, else null.
    pub route: Option<RouteView>,
    pub name: Option<String>,
    pub vendor: Option<String>,
    pub vendor_id: u32,
    pub model: Option<String>,
    pub max_apdu: u32,
    pub segmentation: &'static str,
    /// Whether the configuration lists this device on this network.
    pub configured: bool,
    /// Why the name, vendor and model are missing, if they are.
    pub read_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RouteView {
    pub network: u16,
    #[serde(serialize_with = "mac_hex")]
    pub mac: Mac,
}

fn mac_hex<S: serde::Serializer>(mac: &Mac, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(mac)
}

#[derive(Debug, Clone, Serialize)]
pub struct SilentDevice {
    pub network: String,
    pub instance: u32,
    pub address: SocketAddr,
    pub route: Option<RouteView>,
}

fn route_view(r: Option<Route>) -> Option<RouteView> {
    r.map(|r| RouteView { network: r.network, mac: r.mac })
}

fn segmentation_name(s: Segmentation) -> &'static str {
    match s {
        Segmentation::Both => "both",
        Segmentation::Transmit => "transmit",
        Segmentation::Receive => "receive",
        Segmentation::None => "none",
    }
}

// ---------------------------------------------------------------- progress

/// The progress bars on stderr, one per phase; nothing at all when stderr
/// is not a terminal.
pub struct Progress {
    draw: bool,
    waiting: OnceLock<ProgressBar>,
    reading: OnceLock<ProgressBar>,
}

impl Progress {
    pub fn new(draw: bool) -> Self {
        Self { draw, waiting: OnceLock::new(), reading: OnceLock::new() }
    }

    /// A bar configured while hidden, then shown: no frame in a half-made style.
    fn bar(&self, template: &str, len: u64) -> Option<ProgressBar> {
        if !self.draw {
            return None;
        }
        let bar = ProgressBar::hidden();
        bar.set_length(len);
        let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        Some(bar)
    }

    /// Phase one: waiting `wait` for I-Am answers.
    fn waiting(&self, networks: &str, wait: Duration) {
        let Some(bar) = self.bar("{spinner} Who-Is on {prefix} [{bar:30}] {msg}", wait.as_millis() as u64) else {
            return;
        };
        bar.set_prefix(networks.to_string());
        bar.set_message(format!("0.0s/{:.1}s, 0 found", wait.as_secs_f64()));
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(100));
        let _ = self.waiting.set(bar);
    }

    fn tick(&self, elapsed: Duration, wait: Duration, found: usize) {
        if let Some(bar) = self.waiting.get() {
            let elapsed = elapsed.min(wait);
            bar.set_position(elapsed.as_millis() as u64);
            bar.set_message(format!("{:.1}s/{:.1}s, {found} found", elapsed.as_secs_f64(), wait.as_secs_f64()));
        }
    }

    /// Phase two: reading `n` devices' names.
    fn reading(&self, n: usize) {
        if let Some(bar) = self.waiting.get() {
            bar.finish_and_clear();
        }
        let Some(bar) = self.bar("{spinner} reading names [{bar:30}] {pos}/{len} devices", n as u64) else {
            return;
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(100));
        let _ = self.reading.set(bar);
    }

    fn read_one(&self) {
        if let Some(bar) = self.reading.get() {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        for bar in [self.waiting.get(), self.reading.get()].into_iter().flatten() {
            bar.finish_and_clear();
        }
    }
}

// ---------------------------------------------------------------- discovery

struct Bound {
    index: usize,
    transport: Transport,
}

/// Binds, asks, waits, reads: the whole command without its output.
pub async fn discover(
    config: &Config,
    selected: &[usize],
    wait: Duration,
    progress: &Progress,
) -> Result<Report, CommandError> {
    // Bind every network first: a busy address fails before anything waits.
    let (merged_tx, mut merged) = mpsc::channel::<(usize, Unsolicited)>(4096);
    let mut bound = Vec::with_capacity(selected.len());
    for &index in selected {
        let n = &config.networks[index];
        let mut tc = n.transport_config();
        tc.apdu_timeout = n.apdu_timeout.min(READ_TIMEOUT);
        tc.apdu_retries = 1;
        let (transport, mut unsolicited) = Transport::bind(tc).await.map_err(|e| bind_error(index, n, &e))?;
        let tx = merged_tx.clone();
        tokio::spawn(async move {
            while let Some(u) = unsolicited.recv().await {
                if tx.send((index, u)).await.is_err() {
                    return;
                }
            }
        });
        bound.push(Bound { index, transport });
    }
    drop(merged_tx);

    let mut notes = Vec::new();
    for b in &bound {
        ask(config, b, &mut notes).await;
    }

    // Collect I-Am answers until the deadline.
    let names: Vec<&str> = selected.iter().map(|&i| config.networks[i].name.as_str()).collect();
    progress.waiting(&names.join(", "), wait);
    let started = Instant::now();
    let deadline = started + wait;
    let mut found: BTreeMap<(usize, u32), (Address, u32, Segmentation, u32)> = BTreeMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = ticker.tick() => progress.tick(started.elapsed(), wait, found.len()),
            got = merged.recv() => match got {
                Some((index, Unsolicited::IAm { from, iam })) => {
                    found.entry((index, iam.device.instance)).or_insert((from, iam.max_apdu, iam.segmentation, iam.vendor_id));
                    progress.tick(started.elapsed(), wait, found.len());
                }
                Some((_, Unsolicited::Cov { .. })) => {}
                None => break,
            },
        }
    }

    // Read each device's names, all at once (the transport caps requests in flight).
    progress.reading(found.len());
    let transports: HashMap<usize, Transport> = bound.iter().map(|b| (b.index, b.transport.clone())).collect();
    let mut reads = tokio::task::JoinSet::new();
    for (&(index, instance), &(address, ..)) in &found {
        let Some(t) = transports.get(&index).cloned() else { continue };
        reads.spawn(async move { ((index, instance), identify(&t, address, instance).await) });
    }
    let mut identities = HashMap::new();
    while let Some(joined) = reads.join_next().await {
        if let Ok((key, identity)) = joined {
            identities.insert(key, identity);
        }
        progress.read_one();
    }
    progress.finish();

    let mut devices: Vec<FoundDevice> = found
        .iter()
        .map(|(&(index, instance), &(address, max_apdu, segmentation, vendor_id))| {
            let n = &config.networks[index];
            let id = identities.remove(&(index, instance)).unwrap_or_default();
            FoundDevice {
                network: n.name.clone(),
                instance,
                address: address.ip,
                route: route_view(address.route),
                name: id.name,
                vendor: id.vendor,
                vendor_id,
                model: id.model,
                max_apdu,
                segmentation: segmentation_name(segmentation),
                configured: n.devices.iter().any(|d| d.instance == instance),
                read_error: id.error,
            }
        })
        .collect();
    devices.sort_by(|a, b| (a.instance, &a.network).cmp(&(b.instance, &b.network)));
    let answered = &found;
    let silent = selected
        .iter()
        .flat_map(|&index| {
            let n = &config.networks[index];
            n.devices.iter().filter(move |d| !answered.contains_key(&(index, d.instance))).map(move |d| SilentDevice {
                network: n.name.clone(),
                instance: d.instance,
                address: d.address,
                route: route_view(d.route.map(Route::from)),
            })
        })
        .collect();
    Ok(Report { devices, silent, notes, networks: names.iter().map(|s| s.to_string()).collect() })
}

/// Sends the Who-Is of one network: a global Who-Is to its broadcast address
/// (routers on the subnet pass it on), one to the remote networks of each
/// configured router (also those the broadcast does not reach, e.g. on
/// another subnet), and with no broadcast address, to each configured device.
async fn ask(config: &Config, b: &Bound, notes: &mut Vec<String>) {
    let n = &config.networks[b.index];
    let mut targets: Vec<Option<Address>> = Vec::new();
    if n.broadcast.is_some() {
        targets.push(None);
    }
    let mut remote = BTreeSet::new();
    let mut direct = BTreeSet::new();
    for d in &n.devices {
        match d.route {
            Some(r) => {
                remote.insert((d.address, r.network));
            }
            None => {
                direct.insert(d.address);
            }
        }
    }
    targets.extend(remote.iter().map(|&(ip, network)| Some(Address::routed(ip, network, Mac::default()))));
    if n.broadcast.is_none() {
        targets.extend(direct.iter().map(|&ip| Some(Address::direct(ip))));
        let key = format!("network[{}].broadcast", b.index);
        notes.push(if n.devices.is_empty() {
            format!(
                "network {}: no broadcast address and no devices configured: nothing to ask; set {key} (e.g. 192.168.1.255:47808)",
                n.name
            )
        } else {
            format!(
                "network {}: no broadcast address: only the configured devices were asked; set {key} (e.g. 192.168.1.255:47808) to find new ones",
                n.name
            )
        });
    }
    for to in targets {
        if let Err(e) = b.transport.who_is(to, None).await {
            let where_to = match (to, n.broadcast) {
                (Some(a), _) => a.to_string(),
                (None, Some(bc)) => bc.to_string(),
                (None, None) => "the broadcast address".into(),
            };
            notes.push(format!("network {}: Who-Is to {where_to} failed: {e}", n.name));
        }
    }
}

/// One line with the fix for a network whose address cannot be bound.
fn bind_error(index: usize, n: &NetworkConfig, e: &std::io::Error) -> CommandError {
    use std::io::ErrorKind;
    let (name, bind) = (&n.name, n.bind);
    let env = format!("PLANTWATCH__NETWORK__{index}__BIND");
    CommandError::Failed(match e.kind() {
        ErrorKind::AddrInUse => format!(
            "network {name}: cannot bind {bind}: address in use (is plantwatch serve running?); stop it, or bind \
             discover elsewhere with {env}={}:0 (devices that broadcast their I-Am to port {} are then missed)",
            bind.ip(),
            bind.port()
        ),
        ErrorKind::AddrNotAvailable => format!(
            "network {name}: cannot bind {bind}: not an address of this machine; set network[{index}].bind (or {env}) \
             to one of its addresses, or 0.0.0.0:{}",
            bind.port()
        ),
        ErrorKind::PermissionDenied => format!(
            "network {name}: cannot bind {bind}: permission denied; ports below 1024 need root or \
             CAP_NET_BIND_SERVICE: use a port above 1023 in network[{index}].bind (or {env})"
        ),
        _ => format!("network {name}: cannot bind {bind}: {e}; check network[{index}].bind (or {env})"),
    })
}

#[derive(Debug, Default)]
struct Identity {
    name: Option<String>,
    vendor: Option<String>,
    model: Option<String>,
    error: Option<String>,
}

const IDENTITY: [u32; 3] = [property::OBJECT_NAME, property::VENDOR_NAME, property::MODEL_NAME];

/// Object_Name, Vendor_Name and Model_Name of a device: one
/// ReadPropertyMultiple, or a ReadProperty each if the device refuses it.
async fn identify(t: &Transport, to: Address, instance: u32) -> Identity {
    let device = ObjectId::device(instance);
    let spec = ReadAccessSpec { object: device, properties: IDENTITY.iter().map(|&p| PropertyRef::new(p)).collect() };
    let values: Vec<(u32, Value)> = match t.read_property_multiple(to, vec![spec]).await {
        Ok(results) => results.into_iter().filter_map(|r| Some((r.property.property, r.value.ok()?))).collect(),
        Err(e) if refuses_rpm(&e) => {
            let mut values = Vec::new();
            for p in IDENTITY {
                match t.read_property(to, device, PropertyRef::new(p)).await {
                    Ok(v) => values.push((p, v)),
                    Err(BacnetError::Error(_)) => {}
                    Err(e) => return Identity { error: Some(e.to_string()), ..Identity::default() },
                }
            }
            values
        }
        Err(e) => return Identity { error: Some(e.to_string()), ..Identity::default() },
    };
    let text = |p: u32| match values.iter().find(|(q, _)| *q == p) {
        Some((_, Value::CharacterString(s))) => Some(printable(s)),
        _ => None,
    };
    Identity {
        name: text(property::OBJECT_NAME),
        vendor: text(property::VENDOR_NAME),
        model: text(property::MODEL_NAME),
        error: None,
    }
}

/// Whether an answer to ReadPropertyMultiple means "not this service".
fn refuses_rpm(e: &BacnetError) -> bool {
    match e {
        BacnetError::Reject { .. } => true,
        BacnetError::Abort { by_server: true, reason } => {
            !matches!(*reason, error::ABORT_SEGMENTATION_NOT_SUPPORTED | error::ABORT_BUFFER_OVERFLOW)
        }
        BacnetError::Error(ErrorClassCode { class, .. }) => *class == error::CLASS_SERVICES,
        _ => false,
    }
}

/// A name from the network, safe for a terminal and a table: control
/// characters (escape sequences, newlines, tabs) become `?`, and runs of
/// spaces at the ends are trimmed.
fn printable(s: &str) -> String {
    s.trim().chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

// ---------------------------------------------------------------- output

fn route_text(r: Option<RouteView>) -> String {
    r.map(|r| format!("{}:{}", r.network, r.mac)).unwrap_or_else(|| "-".into())
}

/// The table on stdout: one device per line, sorted by instance.
pub fn table(report: &Report) -> String {
    const HEAD: [&str; 10] =
        ["NETWORK", "INSTANCE", "ADDRESS", "ROUTE", "NAME", "VENDOR", "MODEL", "MAX-APDU", "SEGMENTATION", "CONFIG"];
    let dash = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).unwrap_or("-").to_string();
    let rows: Vec<[String; 10]> = report
        .devices
        .iter()
        .map(|d| {
            [
                d.network.clone(),
                d.instance.to_string(),
                d.address.to_string(),
                route_text(d.route),
                dash(&d.name),
                d.vendor.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| format!("vendor {}", d.vendor_id)),
                dash(&d.model),
                d.max_apdu.to_string(),
                d.segmentation.to_string(),
                if d.configured { "configured" } else { "new" }.to_string(),
            ]
        })
        .collect();
    let mut widths = HEAD.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{cell:<w$}");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut HEAD.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `[[network.device]]` entries for the devices found that the configuration
/// does not list, grouped by network, ready to paste under its `[[network]]`.
pub fn toml_snippet(report: &Report, config: &Config) -> String {
    let mut out = String::new();
    for (index, n) in config.networks.iter().enumerate() {
        let new: Vec<&FoundDevice> = report.devices.iter().filter(|d| d.network == n.name && !d.configured).collect();
        if new.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "# {} new device(s) on network {:?} (network[{index}]): paste under its [[network]]",
            new.len(),
            n.name
        );
        for d in new {
            out.push_str("[[network.device]]\n");
            let _ = writeln!(out, "instance = {}", d.instance);
            let _ = writeln!(out, "address = {}", toml::Value::String(d.address.to_string()));
            if let Some(r) = d.route {
                let _ = writeln!(
                    out,
                    "route = {{ network = {}, mac = {} }}",
                    r.network,
                    toml::Value::String(r.mac.to_string())
                );
            }
            if let Some(name) = d.name.as_deref().filter(|s| !s.is_empty()) {
                let _ = writeln!(out, "name = {}", toml::Value::String(name.to_string()));
            }
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("# no new devices: every device that answered is in the configuration\n");
    }
    out
}

/// A few lines for stderr: how many, which configured devices were silent, notes.
pub fn summary(report: &Report, wait: Duration) -> String {
    let mut s = String::new();
    let new = report.devices.iter().filter(|d| !d.configured).count();
    let unread = report.devices.iter().filter(|d| d.read_error.is_some()).count();
    let _ = write!(
        s,
        "{} device(s) answered on {} in {:.1}s: {} configured, {new} new",
        report.devices.len(),
        report.networks.join(", "),
        wait.as_secs_f64(),
        report.devices.len() - new
    );
    if unread > 0 {
        let _ = write!(s, "; {unread} did not answer the name read");
    }
    s.push('\n');
    if !report.silent.is_empty() {
        let list: Vec<String> = report
            .silent
            .iter()
            .map(|d| match d.route {
                Some(r) => format!("{} ({}, {} via {})", d.instance, d.network, route_text(Some(r)), d.address),
                None => format!("{} ({}, {})", d.instance, d.network, d.address),
            })
            .collect();
        let _ = writeln!(s, "configured but silent: {}", list.join(", "));
    }
    for note in &report.notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(instance: u32, configured: bool) -> FoundDevice {
        FoundDevice {
            network: "site".into(),
            instance,
            address: "127.0.0.2:47808".parse().unwrap_or_else(|e| panic!("{e}")),
            route: None,
            name: Some(format!("AHU-{instance}")),
            vendor: Some("Acme".into()),
            vendor_id: 7,
            model: None,
            max_apdu: 1476,
            segmentation: "both",
            configured,
            read_error: None,
        }
    }

    #[test]
    fn the_table_aligns_columns_and_marks_new_devices() {
        let mut routed = device(12, false);
        routed.route = Some(RouteView { network: 100, mac: Mac::new(&[5]).unwrap_or_default() });
        routed.vendor = None;
        routed.name = Some("Boiler\x1b[31m plant".into());
        let report = Report {
            devices: vec![device(3, true), routed],
            silent: vec![],
            notes: vec![],
            networks: vec!["site".into()],
        };
        let t = table(&report);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("NETWORK  INSTANCE  ADDRESS"), "{t}");
        assert!(lines[1].contains("AHU-3") && lines[1].ends_with("configured"), "{t}");
        assert!(lines[2].contains("100:05") && lines[2].contains("vendor 7") && lines[2].ends_with("new"), "{t}");
        // every column starts at the same place on every line
        let col = |l: &str, s: &str| l.find(s).unwrap_or(usize::MAX);
        assert_eq!(col(lines[0], "NAME"), col(lines[1], "AHU-3"), "{t}");
        assert_eq!(col(lines[0], "MAX-APDU"), col(lines[2], "1476"), "{t}");
    }

    #[test]
    fn names_from_the_network_cannot_drive_the_terminal() {
        assert_eq!(printable(" Boiler\x1b[2J\nroom\t "), "Boiler?[2J?room");
    }

    #[test]
    fn the_toml_snippet_lists_only_new_devices_and_loads() {
        let text = "[[network]]\nname = \"site\"\nbind = \"127.0.0.1:0\"\n\n[[network.device]]\ninstance = 3\naddress = \"127.0.0.2:47808\"\n";
        let file = std::path::PathBuf::from("site.toml");
        let config =
            config::load_texts(&[(file.clone(), text.into())], &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
        let mut routed = device(12, false);
        routed.route = Some(RouteView { network: 100, mac: Mac::new(&[5]).unwrap_or_default() });
        routed.name = Some("Boiler \"B\"".into());
        let report = Report {
            devices: vec![device(3, true), routed],
            silent: vec![],
            notes: vec![],
            networks: vec!["site".into()],
        };
        let snippet = toml_snippet(&report, &config);
        assert!(!snippet.contains("instance = 3"), "{snippet}");
        let merged = format!("{text}\n{snippet}");
        let config =
            config::load_texts(&[(file, merged)], &HashMap::new()).unwrap_or_else(|e| panic!("{e}\n{snippet}"));
        let d = &config.networks[0].devices[1];
        assert_eq!((d.instance, d.name.as_deref()), (12, Some("Boiler \"B\"")));
        assert_eq!(d.route.map(|r| (r.network, r.mac.to_string())), Some((100, "05".into())));
    }

    #[test]
    fn a_busy_address_is_one_line_with_the_fix() {
        let n = NetworkConfig::new("bldg-a", "0.0.0.0:47808".parse().unwrap_or_else(|e| panic!("{e}")));
        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let msg = bind_error(2, &n, &e).to_string();
        assert!(msg.starts_with("network bldg-a: cannot bind 0.0.0.0:47808: address in use"), "{msg}");
        assert!(msg.contains("PLANTWATCH__NETWORK__2__BIND=0.0.0.0:0"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn the_timeout_is_checked() {
        assert!(wait(0.0).is_err() && wait(-1.0).is_err() && wait(f64::NAN).is_err() && wait(601.0).is_err());
        assert_eq!(wait(2.5).ok(), Some(Duration::from_millis(2500)));
    }
}
