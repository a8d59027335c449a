//! Configuration: typed settings, loaded in layers and checked at start.
//!
//! [`load`] builds a [`Config`] from, in order, later over earlier:
//!
//! 1. the built-in defaults, `config/default.toml`, compiled in ([`DEFAULT_TOML`]);
//! 2. each `--config` file, in the order given;
//! 3. environment variables `PLANTWATCH__SECTION__KEY`, passed in as a map.
//!
//! Tables merge key by key; a list (`[[network]]`, `[[network.device]]`,
//! `points`) is replaced as a whole by a later layer. An environment variable
//! names one key: `__` separates levels, names are case-insensitive, and a
//! number addresses an entry of a list (`PLANTWATCH__NETWORK__0__POLL=30s`).
//!
//! The loader remembers which layer set each key, so a [`ConfigError`] names
//! the file and line, the environment variable or the built-in defaults that
//! set the bad value, the key path (`network[1].device[0].points[2]`) and the
//! reason. Everything is checked at load: unknown keys, types, durations,
//! addresses, object references, ranges, duplicates.
//!
//! A device's `poll` and `cov` default to its network's, and a point's to its
//! device's: the config keeps what was written (`None` when unset) and
//! [`DeviceConfig::effective_poll`], [`PointConfig::effective_poll`] and their
//! `effective_cov` siblings resolve it (a device's `cov_quiet` likewise, with
//! [`DeviceConfig::effective_cov_quiet`]). Every other default is written in
//! `config/default.toml`; the per-network ones, which cannot be layered under a
//! list, are in [`NetworkConfig`]'s serde defaults, and a test holds them equal
//! to the example network documented in `config/default.toml`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use plantwatch_actors::bacnet::types::{Address, Mac, ObjectId, Route, MAX_INSTANCE};
use plantwatch_actors::transport::TransportConfig;
use serde::{Deserialize, Deserializer, Serialize};
use toml::Value;

/// The built-in defaults: the first layer of every configuration.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variables with this prefix (any case) override settings.
pub const ENV_PREFIX: &str = "PLANTWATCH__";

/// The whole configuration. Field names are the TOML keys, except that the
/// lists `networks` and `devices` are spelled `[[network]]` and
/// `[[network.device]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub history: HistoryConfig,
    pub supervision: SupervisionConfig,
    pub cors: CorsConfig,
    pub metrics: MetricsConfig,
    /// Testing aids, off unless set: never on a site.
    #[serde(default)]
    pub testing: TestingConfig,
    #[serde(rename = "network", default)]
    pub networks: Vec<NetworkConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP API.
    #[serde(with = "socket_addr")]
    pub listen: SocketAddr,
    /// Time budget of one HTTP request.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// The longest `lease` a write may take.
    #[serde(with = "duration")]
    pub max_lease: Duration,
    /// `production` refuses plain HTTP on a non-loopback address unless `allow_plain_http`.
    pub profile: Profile,
    /// In production: allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    pub allow_plain_http: bool,
    /// PEM certificate chain: with `tls_key`, the API is served over HTTPS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// The site this instance watches: a `site` label on every metric at
    /// `/metrics`, so that a fleet Prometheus tells sites apart. Unset: no label.
    #[serde(default)]
    pub site: Option<String>,
}

/// How strict the server is about its exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Development,
    Production,
}

/// Cross-origin access from browsers (`[cors]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins like `https://ops.example.com`; empty: no cross-origin access.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    #[serde(with = "duration")]
    pub max_age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the database.
    pub path: PathBuf,
    /// Page cache of the database, in MiB.
    pub cache_capacity_mb: u64,
    /// A device's snapshot is written on change, at most this often.
    #[serde(with = "duration")]
    pub snapshot_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `info,plantwatch_actors=debug`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// Also log to this file, rotated daily.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Rotated log files kept.
    pub keep_files: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Point values exported as `plantwatch_point_value` at most; the rest are counted.
    pub max_points: usize,
}

/// Testing aids for soak and chaos runs (docs/configuration.md#testing).
/// Every one is off unless set, and none belongs in a site's configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    /// A write through the API of exactly this number panics the device
    /// actor that takes it (the supervisor restarts it from its snapshot).
    #[serde(default)]
    pub poison_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Require an API key on `/api/v1`.
    pub enabled: bool,
    /// `/metrics` needs no key.
    pub metrics_public: bool,
    /// `enabled = false` is allowed with a listen address that is not loopback.
    pub allow_disabled_on_network: bool,
    /// A file holding the secret of an admin key made at the first start
    /// (when the store has no keys).
    #[serde(default)]
    pub bootstrap_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub read_per_s: u32,
    pub write_per_s: u32,
    pub auth_failures_per_min: u32,
    /// Bucket size as a multiple of the per-second rate (at least 1.0).
    pub burst: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// A value is recorded on change beyond its COV increment, and at least this often.
    #[serde(with = "duration")]
    pub max_interval: Duration,
    #[serde(with = "duration")]
    pub retention: Duration,
    #[serde(with = "duration")]
    pub prune_every: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    /// Restarts within `restart_window` before a device is marked failed.
    pub restart_intensity: u32,
    #[serde(with = "duration")]
    pub restart_window: Duration,
    #[serde(with = "duration")]
    pub backoff_initial: Duration,
    #[serde(with = "duration")]
    pub backoff_max: Duration,
    /// A device actor silent for this long is considered frozen and restarted.
    #[serde(with = "duration")]
    pub heartbeat_timeout: Duration,
}

/// One BACnet/IP network (`[[network]]`): one UDP socket and its devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Unique; used in the API, in metrics and in actor names.
    pub name: String,
    #[serde(default = "defaults::bind", with = "socket_addr")]
    pub bind: SocketAddr,
    /// Where a global Who-Is goes; `None`: no global Who-Is.
    #[serde(default, with = "socket_addr::option")]
    pub broadcast: Option<SocketAddr>,
    #[serde(default = "defaults::apdu_timeout", with = "duration")]
    pub apdu_timeout: Duration,
    #[serde(default = "defaults::apdu_retries")]
    pub apdu_retries: u32,
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: u32,
    /// Poll interval of devices and points that do not set one.
    #[serde(default = "defaults::poll", with = "duration")]
    pub poll: Duration,
    /// Who-Is at start; devices that answer are enrolled.
    #[serde(default)]
    pub discover: bool,
    /// Consecutive timeouts before a device is offline.
    #[serde(default = "defaults::offline_after")]
    pub offline_after: u32,
    /// Cap of the exponential re-probe back-off of an offline device.
    #[serde(default = "defaults::reprobe_max", with = "duration")]
    pub reprobe_max: Duration,
    /// COV instead of polling for devices and points that do not say.
    #[serde(default)]
    pub cov: bool,
    /// Lifetime asked for in SubscribeCOV (whole seconds).
    #[serde(default = "defaults::cov_lifetime", with = "duration")]
    pub cov_lifetime: Duration,
    /// COV watchdog: a subscribed device silent this long has one subscribed
    /// value read to check that its subscriptions still live.
    #[serde(default = "defaults::cov_quiet", with = "duration")]
    pub cov_quiet: Duration,
    #[serde(rename = "device", default)]
    pub devices: Vec<DeviceConfig>,
}

/// One device (`[[network.device]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub instance: u32,
    /// The device, or the BACnet router in front of it.
    #[serde(with = "socket_addr")]
    pub address: SocketAddr,
    /// For a device behind a BACnet router.
    #[serde(default)]
    pub route: Option<RouteConfig>,
    /// `None`: the network's.
    #[serde(default, with = "duration::option")]
    pub poll: Option<Duration>,
    /// `None`: the network's.
    #[serde(default)]
    pub cov: Option<bool>,
    /// `None`: the network's.
    #[serde(default, with = "duration::option")]
    pub cov_quiet: Option<Duration>,
    /// A label for people.
    #[serde(default)]
    pub name: Option<String>,
    /// `None`: every object in the device's Object_List.
    #[serde(default)]
    pub points: Option<Vec<PointConfig>>,
}

/// A remote network and MAC address behind a BACnet router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub network: u16,
    #[serde(with = "mac")]
    pub mac: Mac,
}

/// A point: written as `"analog-input:1"`, or as a table
/// `{ object = "analog-input:1", poll = "1s", cov = true }`. Serialized as the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointConfig {
    pub object: ObjectId,
    /// `None`: the device's.
    #[serde(serialize_with = "duration::option::serialize")]
    pub poll: Option<Duration>,
    /// `None`: the device's.
    pub cov: Option<bool>,
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn bind() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 47808))
    }
    pub fn apdu_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub fn apdu_retries() -> u32 {
        3
    }
    pub fn max_in_flight() -> u32 {
        32
    }
    pub fn poll() -> Duration {
        Duration::from_secs(10)
    }
    pub fn offline_after() -> u32 {
        3
    }
    pub fn reprobe_max() -> Duration {
        Duration::from_secs(300)
    }
    pub fn cov_lifetime() -> Duration {
        Duration::from_secs(300)
    }
    /// Shorter than two thirds of the default lifetime: a renewal, which
    /// brings a forgotten subscription back, comes every 200 s.
    pub fn cov_quiet() -> Duration {
        Duration::from_secs(60)
    }
}

/// A duration as it is written in the configuration, in its largest exact
/// unit: "30d", "90s", "250ms". [`load`] parses it back to the same value.
pub fn format_duration(d: Duration) -> String {
    duration::format(d)
}

impl Config {
    /// Every configured device with its network, in file order.
    pub fn devices(&self) -> impl Iterator<Item = (&NetworkConfig, &DeviceConfig)> {
        self.networks.iter().flat_map(|n| n.devices.iter().map(move |d| (n, d)))
    }

    pub fn device_count(&self) -> usize {
        self.networks.iter().map(|n| n.devices.len()).sum()
    }

    pub fn network(&self, name: &str) -> Option<&NetworkConfig> {
        self.networks.iter().find(|n| n.name == name)
    }
}

impl NetworkConfig {
    /// A network with the documented defaults and no devices.
    pub fn new(name: impl Into<String>, bind: SocketAddr) -> Self {
        Self {
            name: name.into(),
            bind,
            broadcast: None,
            apdu_timeout: defaults::apdu_timeout(),
            apdu_retries: defaults::apdu_retries(),
            max_in_flight: defaults::max_in_flight(),
            poll: defaults::poll(),
            discover: false,
            offline_after: defaults::offline_after(),
            reprobe_max: defaults::reprobe_max(),
            cov: false,
            cov_lifetime: defaults::cov_lifetime(),
            cov_quiet: defaults::cov_quiet(),
            devices: Vec::new(),
        }
    }

    /// The transport settings of this network; the rest keep the transport's defaults.
    pub fn transport_config(&self) -> TransportConfig {
        TransportConfig {
            bind: self.bind,
            broadcast: self.broadcast,
            apdu_timeout: self.apdu_timeout,
            apdu_retries: self.apdu_retries,
            max_in_flight: self.max_in_flight as usize,
            ..TransportConfig::default()
        }
    }

    /// How long a confirmed request to a silent device takes to fail:
    /// `apdu_timeout × (apdu_retries + 1)`.
    pub fn request_budget(&self) -> Duration {
        self.apdu_timeout.saturating_mul(self.apdu_retries.saturating_add(1))
    }
}

impl DeviceConfig {
    /// A device with nothing but its instance and address set.
    pub fn new(instance: u32, address: SocketAddr) -> Self {
        Self { instance, address, route: None, poll: None, cov: None, cov_quiet: None, name: None, points: None }
    }

    /// The device's poll interval, else its network's.
    pub fn effective_poll(&self, network: &NetworkConfig) -> Duration {
        self.poll.unwrap_or(network.poll)
    }

    /// Whether the device's points use COV by default: the device's setting, else its network's.
    pub fn effective_cov(&self, network: &NetworkConfig) -> bool {
        self.cov.unwrap_or(network.cov)
    }

    /// The device's COV watchdog quiet time, else its network's.
    pub fn effective_cov_quiet(&self, network: &NetworkConfig) -> Duration {
        self.cov_quiet.unwrap_or(network.cov_quiet)
    }

    /// Where the transport sends to reach this device.
    pub fn bacnet_address(&self) -> Address {
        Address { ip: self.address, route: self.route.map(Route::from) }
    }
}

impl PointConfig {
    pub fn new(object: ObjectId) -> Self {
        Self { object, poll: None, cov: None }
    }

    /// The point's poll interval, else its device's, else its network's.
    pub fn effective_poll(&self, device: &DeviceConfig, network: &NetworkConfig) -> Duration {
        self.poll.unwrap_or_else(|| device.effective_poll(network))
    }

    /// Whether to subscribe to COV for the point: its setting, else its device's, else its network's.
    pub fn effective_cov(&self, device: &DeviceConfig, network: &NetworkConfig) -> bool {
        self.cov.unwrap_or_else(|| device.effective_cov(network))
    }
}

impl From<RouteConfig> for Route {
    fn from(r: RouteConfig) -> Self {
        Route { network: r.network, mac: r.mac }
    }
}

impl<'de> Deserialize<'de> for PointConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            #[serde(deserialize_with = "object_id::deserialize")]
            object: ObjectId,
            #[serde(default, with = "duration::option")]
            poll: Option<Duration>,
            #[serde(default)]
            cov: Option<bool>,
        }

        struct PointVisitor;
        impl<'de> serde::de::Visitor<'de> for PointVisitor {
            type Value = PointConfig;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an object reference like "analog-input:1" or a table like { object = "analog-input:1", poll = "1s" }"#)
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PointConfig, E> {
                object_id::parse(s).map(PointConfig::new).map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<PointConfig, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(PointConfig { object: t.object, poll: t.poll, cov: t.cov })
            }
        }

        d.deserialize_any(PointVisitor)
    }
}

/// Parses a duration the way the config does: a humantime string ("250ms",
/// "3s", "15m", "30d") without spaces, never zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

/// Durations: humantime strings ("250ms", "3s", "15m", "30d"), never zero.
mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn parse(s: &str) -> Result<Duration, String> {
        if s.contains(char::is_whitespace) {
            return Err(format!(r#"invalid duration {s:?}: write it without spaces, e.g. "3s", "250ms", "1h30m""#));
        }
        let d = humantime::parse_duration(s).map_err(|e| {
            format!(r#"invalid duration {s:?} ({e}): write a number and a unit, e.g. "3s", "250ms", "15m", "30d""#)
        })?;
        if d.is_zero() {
            return Err(format!("duration {s:?} is zero; it must be more than zero"));
        }
        Ok(d)
    }

    struct DurationVisitor;

    impl serde::de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(r#"a duration in quotes like "3s", "250ms", "15m" or "30d""#)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
            parse(s).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format(*d))
    }

    /// `d` in its largest exact unit, as it would be written: "30d", "90s", "250ms".
    pub fn format(d: Duration) -> String {
        let secs = d.as_secs();
        if d.subsec_nanos() == 0 {
            for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
                if secs > 0 && secs.is_multiple_of(size) {
                    return format!("{}{unit}", secs / size);
                }
            }
            format!("{secs}s")
        } else if d.subsec_nanos().is_multiple_of(1_000_000) {
            format!("{}ms", d.as_millis())
        } else {
            humantime::format_duration(d).to_string().replace(' ', "")
        }
    }

    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        /// Only called when the key is present (the fields are `#[serde(default)]`).
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// Object references: `analog-input:1`, with a suggestion for a misspelt type.
mod object_id {
    use plantwatch_actors::bacnet::types::{object_type_name, ObjectId};
    use serde::{Deserialize, Deserializer};

    pub fn parse(s: &str) -> Result<ObjectId, String> {
        s.parse::<ObjectId>().map_err(|e| {
            let ty = s.split_once(':').map_or(s, |(ty, _)| ty);
            let names: Vec<String> =
                (0..64).map(object_type_name).filter(|n| !n.starts_with(|c: char| c.is_ascii_digit())).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            match super::closest(ty, &names) {
                Some(near) if e.0.starts_with("unknown object type") => format!("{e} (did you mean {near:?}?)"),
                _ => e.0,
            }
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectId, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Socket addresses: `IP:PORT` strings, with a hint for the usual mistakes.
mod socket_addr {
    use std::fmt;
    use std::net::{IpAddr, SocketAddr};

    use serde::{Deserializer, Serializer};

    pub fn parse(s: &str) -> Result<SocketAddr, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(a);
        }
        Err(if s.parse::<IpAddr>().is_ok() {
            format!(r#"{s:?} has no port: write IP:PORT, e.g. "{s}:47808""#)
        } else if s.chars().any(|c| c.is_ascii_alphabetic()) && !s.contains('[') {
            format!(
                r#"{s:?} is not an IP address and port: host names are not resolved, write e.g. "192.168.1.20:47808""#
            )
        } else {
            format!(r#"{s:?} is not an IP address and port like "192.168.1.20:47808""#)
        })
    }

    struct AddrVisitor;

    impl serde::de::Visitor<'_> for AddrVisitor {
        type Value = SocketAddr;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(r#"an IP address and port in quotes like "192.168.1.20:47808""#)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<SocketAddr, E> {
            parse(s).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        d.deserialize_str(AddrVisitor)
    }

    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub mod option {
        use std::net::SocketAddr;

        use serde::{Deserializer, Serializer};

        /// Only called when the key is present (the fields are `#[serde(default)]`).
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
            super::deserialize(d).map(Some)
        }

        pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
            match a {
                Some(a) => super::serialize(a, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// MAC addresses on a remote network: hex strings ("0a", "c0a8010abac0").
mod mac {
    use plantwatch_actors::bacnet::types::Mac;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(m: &Mac, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }
}

// ---------------------------------------------------------------------------
// Errors

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `config/default.toml`, compiled in.
    Defaults,
    /// A `--config` file.
    File(PathBuf),
    /// An environment variable, by its name as given.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("built-in defaults"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// Why a configuration was refused. Displays as one line,
/// `<origin>[:<line>]: <key>: <reason>`, e.g.
/// `site.toml:12: network[0].poll: invalid duration "3 s" (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    /// 1-based line in the file, when the origin is a file and the key was found in it.
    pub line: Option<usize>,
    /// Key path like `network[1].device[0].points[2]`; `None` for a file that
    /// cannot be read or parsed.
    pub key: Option<String>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.origin, self.line) {
            (Origin::File(p), Some(line)) => write!(f, "{}:{line}", p.display())?,
            (origin, _) => write!(f, "{origin}")?,
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A key path: `network[1].device[0].points[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KeyPath(Vec<Seg>);

impl KeyPath {
    fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl From<&serde_path_to_error::Path> for KeyPath {
    fn from(p: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        KeyPath(
            p.iter()
                .filter_map(|s| match s {
                    Segment::Seq { index } => Some(Seg::Index(*index)),
                    Segment::Map { key } => Some(Seg::Key(key.clone())),
                    Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                    Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

/// A check that failed, before it is told where the key came from.
#[derive(Debug)]
struct Problem {
    key: KeyPath,
    reason: String,
    also: Option<Also>,
}

/// Another key a problem involves, named in the message with where it was set.
#[derive(Debug)]
enum Also {
    /// The first of two entries that must differ.
    Duplicate(KeyPath),
    /// A key this one is checked against.
    Related(KeyPath),
}

fn problem(key: KeyPath, reason: impl Into<String>) -> Problem {
    Problem { key, reason: reason.into(), also: None }
}

// ---------------------------------------------------------------------------
// Loading

/// Loads the configuration: the built-in defaults, then each file in order,
/// then the `PLANTWATCH__*` variables of `env`. Reads the files and nothing
/// else: the caller passes the environment (see [`process_env`]).
pub fn load(files: &[PathBuf], env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            origin: Origin::File(file.clone()),
            line: None,
            key: None,
            reason: format!("cannot read the file: {e}"),
        })?;
        texts.push((file.clone(), text));
    }
    load_texts(&texts, env)
}

/// [`load`] with the files' contents given: `(path, text)` in layer order.
pub fn load_texts(files: &[(PathBuf, String)], env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let mut layers = Layers::default();
    layers.add_toml(Origin::Defaults, DEFAULT_TOML)?;
    for (path, text) in files {
        layers.add_toml(Origin::File(path.clone()), text)?;
    }
    layers.add_env(env)?;
    layers.build()
}

/// The process environment as a map, for [`load`]. Variables whose name is
/// not UTF-8 are left out (none of them can be plantwatch's); a value that is
/// not UTF-8 is kept with its bad bytes replaced, so it fails visibly.
pub fn process_env() -> HashMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned()))).collect()
}

/// The names of the variables in `env` that [`load`] applies, sorted.
pub fn env_overrides(env: &HashMap<String, String>) -> Vec<String> {
    let mut names: Vec<String> = env.keys().filter(|k| is_ours(k)).cloned().collect();
    names.sort();
    names
}

fn is_ours(name: &str) -> bool {
    name.get(..ENV_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
}

/// The merged layers and where each key came from.
#[derive(Default)]
struct Layers {
    root: toml::Table,
    /// The layer that last set each key. A key without an entry inherits its
    /// nearest ancestor's (lists are replaced whole, so their entries are the list's).
    origins: BTreeMap<KeyPath, Origin>,
    /// Files' texts, to find the line of a key.
    texts: Vec<(PathBuf, String)>,
}

impl Layers {
    fn add_toml(&mut self, origin: Origin, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: e.span().map(|s| line_at(text, s.start)),
            key: None,
            reason: format!("not valid TOML: {}", one_line(e.message())),
        })?;
        if let Origin::File(path) = &origin {
            self.texts.push((path.clone(), text.to_string()));
        }
        merge(&mut self.root, table, &KeyPath::default(), &origin, &mut self.origins);
        Ok(())
    }

    fn add_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        let names = env_overrides(env);
        let mut seen: HashMap<String, &str> = HashMap::new();
        for name in &names {
            if let Some(other) = seen.insert(name.to_ascii_uppercase(), name) {
                return Err(ConfigError {
                    origin: Origin::Env(name.clone()),
                    line: None,
                    key: None,
                    reason: format!("{other} is set too, and names differ only in case: set one"),
                });
            }
        }
        for name in &names {
            let raw = env.get(name).map(String::as_str).unwrap_or_default();
            self.set_env(name, raw).map_err(|(key, reason)| ConfigError {
                origin: Origin::Env(name.clone()),
                line: None,
                key: key.map(|k| k.to_string()),
                reason,
            })?;
        }
        Ok(())
    }

    /// Applies one variable: walks to its key (creating missing tables,
    /// indexing lists by number) and sets the value, typed like the value it replaces.
    fn set_env(&mut self, name: &str, raw: &str) -> Result<(), (Option<KeyPath>, String)> {
        let origin = Origin::Env(name.to_string());
        let parts: Vec<String> =
            name.get(ENV_PREFIX.len()..).unwrap_or_default().split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(String::is_empty) {
            return Err((
                None,
                "does not name a setting: write PLANTWATCH__SECTION__KEY, e.g. PLANTWATCH__SERVER__LISTEN".into(),
            ));
        }
        let mut path = KeyPath::default();
        // The container of the current step and the step into it.
        let mut table: Option<&mut toml::Table> = Some(&mut self.root);
        let mut array: Option<&mut Vec<Value>> = None;
        for (n, part) in parts.iter().enumerate() {
            let last = n + 1 == parts.len();
            let slot: &mut Value = if let Some(t) = table.take() {
                path = path.key(part);
                if last {
                    let value = env_value(t.get(part.as_str()), raw).map_err(|r| (Some(path.clone()), r))?;
                    set(t, part, value, &path, &origin, &mut self.origins);
                    return Ok(());
                }
                if !t.contains_key(part.as_str()) {
                    if let Some(i) = parts.get(n + 1).and_then(|next| next.parse::<usize>().ok()) {
                        let reason = format!("there is no {path}[{i}]: {path} entries are added in a config file");
                        return Err((Some(path), reason));
                    }
                    self.origins.insert(path.clone(), origin.clone());
                }
                t.entry(part.clone()).or_insert_with(|| Value::Table(toml::Table::new()))
            } else if let Some(a) = array.take() {
                let len = a.len();
                let Some(i) = part.parse::<usize>().ok().filter(|i| *i < len) else {
                    let reason = match part.parse::<usize>() {
                        Ok(i) => format!(
                            "{path} has {len} {}, numbered from 0: there is no {path}[{i}]",
                            if len == 1 { "entry" } else { "entries" }
                        ),
                        Err(_) => format!(
                            "{path} is a list: name an entry by its number, e.g. {}",
                            env_name(&path.index(0).key(part))
                        ),
                    };
                    return Err((Some(path), reason));
                };
                path = path.index(i);
                if last {
                    let value = env_value(a.get(i), raw).map_err(|r| (Some(path.clone()), r))?;
                    set_origin(&mut self.origins, &path, &origin);
                    if let Some(slot) = a.get_mut(i) {
                        *slot = value;
                    }
                    return Ok(());
                }
                match a.get_mut(i) {
                    Some(v) => v,
                    None => return Err((Some(path), "no such entry".into())),
                }
            } else {
                return Err((Some(path), "is not a section".into()));
            };
            match slot {
                Value::Table(t) => table = Some(t),
                Value::Array(a) => array = Some(a),
                _ => return Err((Some(path.clone()), format!("{path} is a single value, not a section"))),
            }
        }
        Ok(())
    }

    /// Types the tree, then checks it.
    fn build(mut self) -> Result<Config, ConfigError> {
        let root = Value::Table(std::mem::take(&mut self.root));
        let config: Config = serde_path_to_error::deserialize(root).map_err(|e| {
            let mut path = KeyPath::from(e.path());
            let reason = explain(&mut path, e.inner().message());
            self.error_at(&path, reason)
        })?;
        validate(&config).map_err(|p| {
            let reason = match &p.also {
                Some(Also::Duplicate(other)) => format!("{}; the other is {other} in {}", p.reason, self.place(other)),
                Some(Also::Related(other)) => format!("{}; {other} is set in {}", p.reason, self.place(other)),
                None => p.reason,
            };
            self.error_at(&p.key, reason)
        })?;
        Ok(config)
    }

    fn origin_of(&self, path: &KeyPath) -> Origin {
        let mut p = path.clone();
        loop {
            if let Some(o) = self.origins.get(&p) {
                return o.clone();
            }
            if p.0.pop().is_none() {
                return Origin::Defaults;
            }
        }
    }

    fn line_of(&self, origin: &Origin, path: &KeyPath) -> Option<usize> {
        let Origin::File(file) = origin else { return None };
        let (_, text) = self.texts.iter().rev().find(|(p, _)| p == file)?;
        line_of(text, path)
    }

    /// `config/a.toml:14`, `environment variable X` or `built-in defaults`.
    fn place(&self, path: &KeyPath) -> String {
        let origin = self.origin_of(path);
        match self.line_of(&origin, path) {
            Some(line) => format!("{origin}:{line}"),
            None => origin.to_string(),
        }
    }

    fn error_at(&self, path: &KeyPath, reason: String) -> ConfigError {
        let origin = self.origin_of(path);
        ConfigError {
            line: self.line_of(&origin, path),
            origin,
            key: (!path.0.is_empty()).then(|| path.to_string()),
            reason: one_line(&reason),
        }
    }
}

/// Merges `src` into `dst`: tables key by key, anything else replaced.
fn merge(
    dst: &mut toml::Table,
    src: toml::Table,
    path: &KeyPath,
    origin: &Origin,
    origins: &mut BTreeMap<KeyPath, Origin>,
) {
    for (k, v) in src {
        let p = path.key(&k);
        match (dst.get_mut(&k), v) {
            (Some(Value::Table(d)), Value::Table(s)) => {
                origins.insert(p.clone(), origin.clone());
                merge(d, s, &p, origin, origins);
            }
            // A new table: record each of its keys.
            (None, Value::Table(s)) => {
                set_origin(origins, &p, origin);
                let mut d = toml::Table::new();
                merge(&mut d, s, &p, origin, origins);
                dst.insert(k, Value::Table(d));
            }
            (_, v) => {
                set_origin(origins, &p, origin);
                dst.insert(k, v);
            }
        }
    }
}

/// Sets one key of a table: a table merges into a table, anything else replaces.
fn set(
    t: &mut toml::Table,
    key: &str,
    value: Value,
    path: &KeyPath,
    origin: &Origin,
    origins: &mut BTreeMap<KeyPath, Origin>,
) {
    match (t.get_mut(key), value) {
        (Some(Value::Table(d)), Value::Table(s)) => {
            origins.insert(path.clone(), origin.clone());
            merge(d, s, path, origin, origins);
        }
        (_, value) => {
            set_origin(origins, path, origin);
            t.insert(key.to_string(), value);
        }
    }
}

fn set_origin(origins: &mut BTreeMap<KeyPath, Origin>, path: &KeyPath, origin: &Origin) {
    origins.retain(|k, _| !k.starts_with(path));
    origins.insert(path.clone(), origin.clone());
}

/// The variable that sets `path`, e.g. `PLANTWATCH__NETWORK__0__POLL`.
fn env_name(path: &KeyPath) -> String {
    let parts: Vec<String> = path
        .0
        .iter()
        .map(|s| match s {
            Seg::Key(k) => k.to_ascii_uppercase(),
            Seg::Index(i) => i.to_string(),
        })
        .collect();
    format!("{ENV_PREFIX}{}", parts.join("__"))
}

/// An environment variable's text as a TOML value, typed like the value it
/// replaces. Where there is none: `true`/`false`, a whole number, a decimal
/// number, else a string. Text starting with `[`, `{` or `"` is TOML (a list,
/// a table, a quoted string), except where a string is replaced.
fn env_value(existing: Option<&Value>, raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    let toml_syntax = || -> Result<Value, String> {
        let doc: toml::Table = toml::from_str(&format!("v = {trimmed}"))
            .map_err(|e| format!("{trimmed:?} is not a TOML value: {}", one_line(e.message())))?;
        doc.get("v").cloned().ok_or_else(|| format!("{trimmed:?} is not a TOML value"))
    };
    let integer = || trimmed.replace('_', "").parse::<i64>().ok();
    let boolean = || match trimmed.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    match existing {
        Some(Value::String(_)) => Ok(Value::String(raw.to_string())),
        Some(Value::Integer(_)) => {
            integer().map(Value::Integer).ok_or_else(|| format!("expected a whole number, got {raw:?}"))
        }
        Some(Value::Float(_)) => integer()
            .map(|i| i as f64)
            .or_else(|| trimmed.replace('_', "").parse::<f64>().ok())
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| format!("expected a number, got {raw:?}")),
        Some(Value::Boolean(_)) => {
            boolean().map(Value::Boolean).ok_or_else(|| format!("expected true or false, got {raw:?}"))
        }
        Some(Value::Array(_)) if trimmed.starts_with('[') => toml_syntax(),
        Some(Value::Array(_)) => {
            Err(r#"is a list: write it in TOML syntax, e.g. ["analog-input:1", "analog-input:2"]"#.to_string())
        }
        Some(Value::Table(_)) if trimmed.starts_with('{') => toml_syntax(),
        Some(Value::Table(_)) => {
            Err("is a section: set one of its keys with one more __KEY, or write a TOML table { key = value }".into())
        }
        Some(Value::Datetime(_)) | None => {
            if trimmed.starts_with(['[', '{', '"']) {
                toml_syntax()
            } else if let Some(b) = boolean() {
                Ok(Value::Boolean(b))
            } else if let Some(i) = integer() {
                Ok(Value::Integer(i))
            } else if let Some(f) = trimmed.parse::<f64>().ok().filter(|f| f.is_finite() && trimmed.contains('.')) {
                Ok(Value::Float(f))
            } else {
                Ok(Value::String(raw.to_string()))
            }
        }
    }
}

/// A serde message made into a reason, moving the key of an unknown or
/// missing field into the path.
fn explain(path: &mut KeyPath, message: &str) -> String {
    let names: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if let (true, Some(field)) = (message.starts_with("unknown field `"), names.first()) {
        if path.0.last() != Some(&Seg::Key((*field).to_string())) {
            *path = path.key(field);
        }
        let allowed = &names[1..];
        let hint = closest(field, allowed).map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default();
        return if allowed.is_empty() {
            format!("unknown key{hint}")
        } else {
            format!("unknown key{hint}; the keys here are: {}", allowed.join(", "))
        };
    }
    if let (true, Some(field)) = (message.starts_with("missing field `"), names.first()) {
        *path = path.key(field);
        return "is required but missing".to_string();
    }
    let mut reason = message.to_string();
    for (ty, words) in [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number from 0 up"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: sequence", "invalid type: list"),
    ] {
        reason = reason.replace(ty, words);
    }
    reason
}

/// The allowed key nearest to a misspelt one, if it is near enough.
fn closest<'a>(wrong: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let wrong = wrong.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| (edit_distance(&wrong, a), *a))
        .filter(|(d, a)| {
            *d <= 2.max(a.len() / 4)
                || (wrong.len().min(a.len()) >= 3 && (wrong.starts_with(a) || a.starts_with(&wrong)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// The line of the deepest part of `path` found in `text`.
fn line_of(text: &str, path: &KeyPath) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table: Option<&DeTable> = Some(doc.get_ref());
    let mut value: Option<&DeValue> = None;
    let mut offset = None;
    for seg in &path.0 {
        let table_here = table.or(match value {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        });
        let found = match seg {
            Seg::Key(k) => table_here
                .and_then(|t| t.iter().find(|(key, _)| key.get_ref().as_ref() == k.as_str()))
                .map(|(key, v)| (key.span().start, v.get_ref())),
            Seg::Index(i) => match value {
                Some(DeValue::Array(a)) => a.get(*i).map(|v| (v.span().start, v.get_ref())),
                _ => None,
            },
        };
        let Some((start, v)) = found else { break };
        offset = Some(start);
        table = None;
        value = Some(v);
    }
    offset.map(|o| line_at(text, o))
}

// ---------------------------------------------------------------------------
// Checks

fn validate(c: &Config) -> Result<(), Problem> {
    if !c.auth.enabled && !c.server.listen.ip().is_loopback() && !c.auth.allow_disabled_on_network {
        return Err(problem(
            KeyPath::default().key("auth").key("enabled"),
            format!(
                "authentication is off while the API listens on {}, beyond this host: anyone who reaches it could \
                 command equipment; turn it on, listen on 127.0.0.1, or set auth.allow_disabled_on_network = true",
                c.server.listen
            ),
        ));
    }
    let root = KeyPath::default();

    validate_server(c, &root)?;

    if c.testing.poison_value.is_some_and(|v| !v.is_finite()) {
        return Err(problem(root.key("testing").key("poison_value"), "must be a finite number"));
    }

    let store = root.key("store");
    if c.store.path.as_os_str().is_empty() {
        return Err(problem(store.key("path"), "is empty: give the directory of the database"));
    }
    if c.store.cache_capacity_mb == 0 {
        return Err(problem(store.key("cache_capacity_mb"), "must be at least 1 (MiB)"));
    }

    let log = root.key("log");
    if c.log.level.trim().is_empty() || tracing_subscriber::EnvFilter::try_new(&c.log.level).is_err() {
        return Err(problem(
            log.key("level"),
            format!(
                r#"{:?} is not a log filter: use error, warn, info, debug or trace, or per module like "info,plantwatch_actors=debug""#,
                c.log.level
            ),
        ));
    }
    if c.log.file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
        return Err(problem(log.key("file"), "is empty: remove the key to log to stderr only"));
    }
    if c.log.keep_files == 0 {
        return Err(problem(log.key("keep_files"), "must be at least 1"));
    }

    let limits = root.key("rate_limit");
    for (key, v) in [
        ("read_per_s", c.rate_limit.read_per_s),
        ("write_per_s", c.rate_limit.write_per_s),
        ("auth_failures_per_min", c.rate_limit.auth_failures_per_min),
    ] {
        if v == 0 {
            return Err(problem(limits.key(key), "must be at least 1"));
        }
    }
    let burst = c.rate_limit.burst;
    if !burst.is_finite() || burst < 1.0 {
        return Err(problem(
            limits.key("burst"),
            format!("{burst} is below 1.0: the bucket must hold at least one second's worth of requests"),
        ));
    }

    let history = root.key("history");
    if c.history.retention <= c.history.max_interval {
        return Err(Problem {
            key: history.key("retention"),
            reason: format!(
                "{} is not longer than max_interval ({}): a value that does not change would have no history",
                duration::format(c.history.retention),
                duration::format(c.history.max_interval)
            ),
            also: Some(Also::Related(history.key("max_interval"))),
        });
    }

    let supervision = root.key("supervision");
    if c.supervision.backoff_initial > c.supervision.backoff_max {
        return Err(Problem {
            key: supervision.key("backoff_initial"),
            reason: format!(
                "{} is longer than backoff_max ({})",
                duration::format(c.supervision.backoff_initial),
                duration::format(c.supervision.backoff_max)
            ),
            also: Some(Also::Related(supervision.key("backoff_max"))),
        });
    }

    let mut instances: HashMap<u32, KeyPath> = HashMap::new();
    for (i, n) in c.networks.iter().enumerate() {
        let np = root.key("network").index(i);
        validate_network(c, i, n, &np)?;
        for (j, d) in n.devices.iter().enumerate() {
            let dp = np.key("device").index(j);
            validate_device(d, &dp)?;
            if let Some(other) = instances.insert(d.instance, dp.clone()) {
                return Err(Problem {
                    key: dp.key("instance"),
                    reason: format!("device instance {} is configured twice", d.instance),
                    also: Some(Also::Duplicate(other)),
                });
            }
        }
    }
    Ok(())
}

fn validate_server(c: &Config, root: &KeyPath) -> Result<(), Problem> {
    let server = root.key("server");
    let s = &c.server;
    for (key, value) in [("tls_cert", &s.tls_cert), ("tls_key", &s.tls_key)] {
        if value.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            return Err(problem(server.key(key), "is empty: remove the key to serve plain HTTP"));
        }
    }
    match (&s.tls_cert, &s.tls_key) {
        (Some(_), None) => {
            return Err(problem(server.key("tls_key"), "is missing: tls_cert is set, so give the PEM private key too"))
        }
        (None, Some(_)) => {
            return Err(problem(server.key("tls_cert"), "is missing: tls_key is set, so give the PEM certificate too"))
        }
        _ => {}
    }
    if s.profile == Profile::Production && s.tls_cert.is_none() && !s.allow_plain_http && !s.listen.ip().is_loopback() {
        return Err(Problem {
            key: server.key("listen"),
            reason: format!(
                "{} is not a loopback address and the production profile refuses plain HTTP there: set \
                 server.tls_cert and server.tls_key, or server.allow_plain_http = true behind a TLS-terminating proxy",
                s.listen
            ),
            also: Some(Also::Related(server.key("profile"))),
        });
    }

    if let Some(site) = &s.site {
        if !valid_site(site) {
            return Err(problem(
                server.key("site"),
                format!(
                    "{site:?} is not a site name: use 1 to 63 lower-case letters, digits and '-', starting with a \
                     letter or digit (it becomes a metric label value and fits Kubernetes names)"
                ),
            ));
        }
    }

    let cors = root.key("cors");
    for (i, o) in c.cors.allowed_origins.iter().enumerate() {
        if !valid_origin(o) {
            return Err(problem(
                cors.key("allowed_origins").index(i),
                format!(
                    "{o:?} is not an origin: write the scheme, host and optional port, like \"https://ops.example.com\" \
                     (no path, no trailing slash, no \"*\")"
                ),
            ));
        }
    }
    const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];
    for (i, m) in c.cors.allowed_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            return Err(problem(
                cors.key("allowed_methods").index(i),
                format!("{m:?} is not a method: use upper case names from {}", METHODS.join(", ")),
            ));
        }
    }
    for (i, h) in c.cors.allowed_headers.iter().enumerate() {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(problem(
                cors.key("allowed_headers").index(i),
                format!("{h:?} is not a header name: use letters, digits and '-'"),
            ));
        }
    }
    if c.cors.max_age.as_secs() > 86_400 {
        return Err(problem(cors.key("max_age"), "is longer than browsers keep a preflight (1d at most)"));
    }
    Ok(())
}

/// A site name: a DNS label (RFC 1123), so it is a safe label value for
/// Prometheus and part of a Kubernetes object name.
pub fn valid_site(site: &str) -> bool {
    (1..=63).contains(&site.len())
        && site.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !site.starts_with('-')
        && !site.ends_with('-')
}

/// `http(s)://host[:port]`, nothing else.
fn valid_origin(o: &str) -> bool {
    let Some(rest) = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")) else { return false };
    let (host, port) = if rest.starts_with('[') {
        let Some(end) = rest.find(']') else { return false };
        let tail = &rest[end + 1..];
        if !tail.is_empty() && !tail.starts_with(':') {
            return false;
        }
        (&rest[..=end], tail.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

fn validate_network(c: &Config, i: usize, n: &NetworkConfig, np: &KeyPath) -> Result<(), Problem> {
    let valid_char = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.');
    if n.name.is_empty() || n.name.len() > 64 || !n.name.chars().all(valid_char) {
        return Err(problem(
            np.key("name"),
            format!(
                "{:?} is not a network name: use 1 to 64 letters, digits, '-', '_' or '.' (it appears in URLs and metric labels)",
                n.name
            ),
        ));
    }
    for (j, other) in c.networks.iter().enumerate().take(i) {
        let op = KeyPath::default().key("network").index(j);
        if other.name == n.name {
            return Err(Problem {
                key: np.key("name"),
                reason: format!("network name {:?} is used twice", n.name),
                also: Some(Also::Duplicate(op.key("name"))),
            });
        }
        if binds_overlap(n.bind, other.bind) {
            let reason = if n.bind == other.bind {
                format!("{} is bound by two networks; give each network its own address or port", n.bind)
            } else {
                format!(
                    "{} overlaps {} (0.0.0.0 and :: take the port on every address); give each network its own port",
                    n.bind, other.bind
                )
            };
            return Err(Problem { key: np.key("bind"), reason, also: Some(Also::Duplicate(op.key("bind"))) });
        }
    }
    if let Some(b) = n.broadcast {
        if b.ip().is_unspecified() || b.port() == 0 {
            return Err(problem(
                np.key("broadcast"),
                format!("{b} is not an address to send a Who-Is to: give the subnet's broadcast address and port, e.g. 192.168.1.255:47808"),
            ));
        }
    }
    if n.apdu_retries > 10 {
        return Err(problem(
            np.key("apdu_retries"),
            format!(
                "{} is above 10 (a request to a silent device would take {} to fail)",
                n.apdu_retries,
                duration::format(n.request_budget())
            ),
        ));
    }
    if n.max_in_flight == 0 {
        return Err(problem(np.key("max_in_flight"), "must be at least 1: with 0 no request would ever be sent"));
    }
    // A write or live read must be able to finish within the HTTP request:
    // otherwise the client gets a timeout for a write the device may still apply.
    if n.request_budget() + Duration::from_secs(1) > c.server.request_timeout {
        return Err(problem(
            np.key("apdu_timeout"),
            format!(
                "a request to a silent device takes apdu_timeout x (apdu_retries + 1) = {} to fail, which does not fit \
                 in server.request_timeout = {} with a second to spare: lower apdu_timeout or apdu_retries, or raise \
                 server.request_timeout",
                duration::format(n.request_budget()),
                duration::format(c.server.request_timeout)
            ),
        ));
    }
    if n.offline_after == 0 {
        return Err(problem(np.key("offline_after"), "must be at least 1 (consecutive timeouts)"));
    }
    if n.cov_lifetime.subsec_nanos() != 0 || n.cov_lifetime.as_secs() > u64::from(u32::MAX) {
        return Err(problem(
            np.key("cov_lifetime"),
            format!(
                "{} is not a whole number of seconds up to 4294967295 (BACnet lifetimes are in seconds)",
                duration::format(n.cov_lifetime)
            ),
        ));
    }
    validate_cov_quiet(n.cov_quiet, np)
}

/// A COV watchdog check reads the device once per quiet time: under a
/// second that would be polling.
fn validate_cov_quiet(quiet: Duration, at: &KeyPath) -> Result<(), Problem> {
    if quiet < Duration::from_secs(1) {
        return Err(problem(
            at.key("cov_quiet"),
            format!(
                "{} is under 1s: the COV watchdog reads the device once per quiet time; poll the points instead",
                duration::format(quiet)
            ),
        ));
    }
    Ok(())
}

fn validate_device(d: &DeviceConfig, dp: &KeyPath) -> Result<(), Problem> {
    if d.instance > MAX_INSTANCE {
        return Err(problem(
            dp.key("instance"),
            format!("{} is above {MAX_INSTANCE}, the largest device instance", d.instance),
        ));
    }
    if d.address.ip().is_unspecified() || d.address.port() == 0 {
        return Err(problem(
            dp.key("address"),
            format!(
                "{} is not an address to send to: give the device's (or its router's) IP address and port",
                d.address
            ),
        ));
    }
    if let Some(route) = d.route {
        if route.network == 0 || route.network == u16::MAX {
            return Err(problem(
                dp.key("route").key("network"),
                format!(
                    "{} is not a remote network number: use 1 to 65534 (0 is the local network, 65535 means every network)",
                    route.network
                ),
            ));
        }
    }
    if let Some(quiet) = d.cov_quiet {
        validate_cov_quiet(quiet, dp)?;
    }
    if let Some(name) = &d.name {
        if name.trim().is_empty() {
            return Err(problem(dp.key("name"), "is empty: remove the key or give a label"));
        }
    }
    if let Some(points) = &d.points {
        if points.is_empty() {
            return Err(problem(
                dp.key("points"),
                "is empty, which would watch nothing: remove the key to watch every object, or list some",
            ));
        }
        let mut seen: HashMap<ObjectId, usize> = HashMap::new();
        for (k, p) in points.iter().enumerate() {
            if let Some(first) = seen.insert(p.object, k) {
                return Err(Problem {
                    key: dp.key("points").index(k),
                    reason: format!("{} is listed twice", p.object),
                    also: Some(Also::Duplicate(dp.key("points").index(first))),
                });
            }
        }
    }
    Ok(())
}

/// Whether two sockets could not both be bound: the same port (not 0, which
/// picks a free one) on the same address, or on the wildcard address.
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let wildcard = |ip: IpAddr| ip.is_unspecified();
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || wildcard(a.ip()) || wildcard(b.ip()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    fn files(texts: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        texts.iter().map(|(p, t)| (PathBuf::from(p), (*t).to_string())).collect()
    }

    fn site(text: &str) -> Result<Config, ConfigError> {
        load_texts(&files(&[("site.toml", text)]), &HashMap::new())
    }

    fn site_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        load_texts(&files(&[("site.toml", text)]), &env(vars))
    }

    #[track_caller]
    fn refused(result: Result<Config, ConfigError>) -> ConfigError {
        match result {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e,
        }
    }

    const NET: &str = "[[network]]\nname = \"bldg-a\"\nbind = \"127.0.0.1:47808\"\n";

    /// A network with one device, plus extra device lines.
    fn device(lines: &str) -> String {
        format!("{NET}[[network.device]]\ninstance = 1001\naddress = \"10.0.0.1:47808\"\n{lines}")
    }

    fn repo_file(name: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name)
    }

    #[test]
    fn default_toml_loads_alone() {
        let c = load(&[], &HashMap::new()).expect("the built-in defaults are valid");
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.server.request_timeout, Duration::from_secs(15));
        assert_eq!(c.store.path, PathBuf::from("data/plantwatch.db"));
        assert_eq!((c.store.cache_capacity_mb, c.store.snapshot_interval), (64, Duration::from_secs(5)));
        assert_eq!(
            (c.log.level.as_str(), c.log.format, c.log.file.as_ref(), c.log.keep_files),
            ("info", LogFormat::Text, None, 14)
        );
        assert!(c.auth.enabled);
        assert_eq!(
            c.rate_limit,
            RateLimitConfig { read_per_s: 200, write_per_s: 5, auth_failures_per_min: 20, burst: 2.0 }
        );
        assert_eq!(
            c.history,
            HistoryConfig {
                max_interval: Duration::from_secs(15 * 60),
                retention: Duration::from_secs(30 * 86400),
                prune_every: Duration::from_secs(3600)
            }
        );
        assert_eq!(
            c.supervision,
            SupervisionConfig {
                restart_intensity: 5,
                restart_window: Duration::from_secs(60),
                backoff_initial: Duration::from_millis(200),
                backoff_max: Duration::from_secs(30),
                heartbeat_timeout: Duration::from_secs(30),
            }
        );
        assert!(c.networks.is_empty());
    }

    #[test]
    fn demo_toml_validates() {
        let c = load(&[repo_file("demo.toml")], &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
        let demo = c.network("demo").expect("a network named demo");
        assert_eq!(demo.bind, "127.0.0.1:0".parse().expect("addr"));
        assert!(demo.devices.is_empty() && c.auth.enabled);
        assert!(c.store.path.starts_with("data/demo"));
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn production_toml_validates() {
        let c = load(&[repo_file("production.toml")], &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.networks.len(), 2);
        assert_eq!(c.server.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert!(c.log.file.is_some());
        assert!(c.devices().any(|(_, d)| d.route.is_some()), "a routed device");
        assert!(c.devices().any(|(_, d)| d.points.as_ref().is_some_and(|p| p.iter().any(|p| p.poll.is_some()))));
        assert!(c.networks.iter().any(|n| n.cov));
    }

    /// default.toml with its optional settings and its example network
    /// uncommented: `# key = ...` and `# [table]` lines lose their `# `.
    fn default_toml_uncommented() -> String {
        let is_example = |rest: &str| {
            rest.starts_with('[')
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        };
        DEFAULT_TOML
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if is_example(rest) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Key paths of a document, list entries as `[]`: `network[].device[].points[].object`.
    fn toml_keys(v: &Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Table(t) => {
                for (k, v) in t {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    out.insert(p.clone());
                    toml_keys(v, &p, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| toml_keys(v, &format!("{path}[]"), out)),
            _ => {}
        }
    }

    fn json_keys(v: &serde_json::Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(t) => {
                for (k, v) in t {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    out.insert(p.clone());
                    json_keys(v, &p, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| json_keys(v, &format!("{path}[]"), out)),
            _ => {}
        }
    }

    /// Every field of `Config` (optional ones included, as JSON nulls) is a
    /// key written in default.toml, and every key there is a field.
    #[test]
    fn every_setting_is_documented_in_default_toml() {
        let text = default_toml_uncommented();
        assert!(text.contains("[[network.device]]") && text.contains("\nfile = "), "examples uncommented");
        let doc: Value = toml::from_str(&text).expect("uncommented default.toml is TOML");
        let config = load_texts(&files(&[("uncommented default.toml", &text)]), &HashMap::new())
            .unwrap_or_else(|e| panic!("the documented example is valid: {e}"));
        let mut documented = BTreeSet::new();
        toml_keys(&doc, "", &mut documented);
        let mut fields = BTreeSet::new();
        json_keys(&serde_json::to_value(&config).expect("serializes"), "", &mut fields);
        let missing: Vec<_> = fields.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&fields).collect();
        assert!(missing.is_empty(), "settings not written in config/default.toml: {missing:?}");
        assert!(extra.is_empty(), "keys in config/default.toml that are no setting: {extra:?}");
    }

    /// docs/configuration.md has a row `| `key` | `default` |` for every
    /// setting of default.toml with a default (the example network's too).
    #[test]
    fn docs_list_every_setting_with_its_default() {
        let docs = include_str!("../docs/configuration.md");
        let doc: Value = toml::from_str(&default_toml_uncommented()).expect("TOML");
        let Value::Table(root) = doc else { panic!("a table") };
        let mut rows = Vec::new();
        for (section, v) in &root {
            let table = match v {
                Value::Table(t) => t,
                Value::Array(a) => match a.first() {
                    Some(Value::Table(t)) => t,
                    _ => panic!("{section}"),
                },
                _ => panic!("{section}"),
            };
            for (key, value) in table {
                let unset = matches!(
                    (section.as_str(), key.as_str()),
                    ("log", "file")
                        | ("network", "broadcast")
                        | ("auth", "bootstrap_key_file")
                        | ("server", "tls_cert")
                        | ("server", "tls_key")
                        | ("server", "site")
                        | ("testing", "poison_value")
                );
                match (section.as_str(), key.as_str(), value) {
                    ("network", _, Value::Array(_)) | ("network", "name", _) => {
                        rows.push(format!("| `{key}` | required |"))
                    }
                    _ if unset => rows.push(format!("| `{key}` | unset |")),
                    _ => rows.push(format!("| `{key}` | `{value}` |")),
                }
            }
        }
        rows.retain(|r| r != "| `device` | required |");
        let missing: Vec<_> = rows.iter().filter(|r| !docs.contains(r.as_str())).collect();
        assert!(missing.is_empty(), "docs/configuration.md lacks {missing:?}");
        for key in ["instance", "address", "route", "poll", "cov", "cov_quiet", "name", "points"] {
            assert!(docs.contains(&format!("| `{key}` |")), "docs/configuration.md lacks the device key {key}");
        }
    }

    /// The network defaults live in code (a list cannot be layered); the
    /// example network in default.toml must show exactly those values.
    #[test]
    fn network_defaults_match_the_documented_example() {
        let text = default_toml_uncommented();
        let documented = load_texts(&files(&[("uncommented default.toml", &text)]), &HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"))
            .networks
            .remove(0);
        let minimal = site("[[network]]\nname = \"bldg-a\"\n").unwrap_or_else(|e| panic!("{e}")).networks.remove(0);
        let expected =
            NetworkConfig { broadcast: documented.broadcast, devices: documented.devices.clone(), ..minimal.clone() };
        assert_eq!(documented, expected, "default.toml's example network differs from the code's defaults");
        assert_eq!(minimal, NetworkConfig::new("bldg-a", defaults::bind()));
        assert_eq!(minimal.broadcast, None, "broadcast is documented as unset by default");
    }

    #[test]
    fn a_file_overrides_the_defaults_and_keeps_the_rest() {
        let c = site("[rate_limit]\nread_per_s = 50\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.rate_limit.read_per_s, c.rate_limit.write_per_s), (50, 5));
        assert_eq!(c.server.listen.port(), 8080);
    }

    #[test]
    fn later_files_override_earlier_ones_and_lists_are_replaced_whole() {
        let a = format!("[rate_limit]\nread_per_s = 50\nwrite_per_s = 9\n{NET}");
        let b = "[rate_limit]\nread_per_s = 70\n[[network]]\nname = \"bldg-b\"\n";
        let c = load_texts(&files(&[("a.toml", &a), ("b.toml", b)]), &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.rate_limit.read_per_s, c.rate_limit.write_per_s), (70, 9));
        let names: Vec<_> = c.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["bldg-b"]);
    }

    #[test]
    fn a_bad_value_overridden_by_a_later_layer_is_no_error() {
        let a = "[server]\nlisten = \"nonsense\"\n";
        let b = "[server]\nlisten = \"127.0.0.1:9000\"\n";
        let c = load_texts(&files(&[("a.toml", a), ("b.toml", b)]), &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.listen.port(), 9000);
        let c = site_env(a, &[("PLANTWATCH__SERVER__LISTEN", "127.0.0.1:9001")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.listen.port(), 9001);
    }

    #[test]
    fn an_error_names_the_file_that_set_the_key() {
        let a = "[server]\nlisten = \"nonsense\"\n";
        let b = "[store]\npath = \"/tmp/x\"\n";
        let e = refused(load_texts(&files(&[("a.toml", a), ("b.toml", b)]), &HashMap::new()));
        assert_eq!(
            (e.origin.clone(), e.line, e.key.as_deref()),
            (Origin::File("a.toml".into()), Some(2), Some("server.listen"))
        );
    }

    #[test]
    fn environment_overrides_files_and_defaults() {
        let text = format!("[server]\nlisten = \"127.0.0.1:9000\"\n{NET}");
        let c = site_env(
            &text,
            &[
                ("PLANTWATCH__SERVER__LISTEN", "0.0.0.0:8080"),
                ("PLANTWATCH__RATE_LIMIT__READ_PER_S", "100000"),
                ("PLANTWATCH__STORE__PATH", "/var/lib/plantwatch"),
                ("plantwatch__Auth__ENABLED", "FALSE"),
                ("PLANTWATCH__AUTH__ALLOW_DISABLED_ON_NETWORK", "true"),
                ("PLANTWATCH__RATE_LIMIT__BURST", "3"),
                ("PLANTWATCH__HISTORY__RETENTION", "90d"),
                ("PLANTWATCH__LOG__FILE", "/var/log/plantwatch/plantwatch.log"),
                ("PLANTWATCH__LOG__KEEP_FILES", "30"),
                ("PLANTWATCH__NETWORK__0__POLL", "30s"),
                ("PLANTWATCH__NETWORK__0__APDU_RETRIES", "5"),
                ("PLANTWATCH__SERVER__REQUEST_TIMEOUT", "30s"),
                ("PLANTWATCH__NETWORK__0__DISCOVER", "true"),
                ("PATH", "/usr/bin"),
                ("PLANTWATCH_PYTHON", "python3"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.rate_limit.read_per_s, 100_000);
        assert_eq!(c.store.path, PathBuf::from("/var/lib/plantwatch"));
        assert!(!c.auth.enabled);
        assert_eq!(c.rate_limit.burst, 3.0);
        assert_eq!(c.history.retention, Duration::from_secs(90 * 86400));
        assert_eq!(c.log.file, Some(PathBuf::from("/var/log/plantwatch/plantwatch.log")));
        assert_eq!(c.log.keep_files, 30);
        let n = &c.networks[0];
        assert_eq!((n.poll, n.apdu_retries, n.discover), (Duration::from_secs(30), 5, true));
    }

    #[test]
    fn environment_reaches_into_devices_and_takes_toml_lists() {
        let c = site_env(
            &device("points = [\"analog-input:1\"]\n"),
            &[
                ("PLANTWATCH__NETWORK__0__DEVICE__0__COV", "true"),
                ("PLANTWATCH__NETWORK__0__DEVICE__0__POLL", "2s"),
                ("PLANTWATCH__NETWORK__0__DEVICE__0__NAME", "\"1234\""),
                (
                    "PLANTWATCH__NETWORK__0__DEVICE__0__POINTS",
                    r#"["analog-input:7", { object = "binary-input:1", poll = "1s" }]"#,
                ),
                ("PLANTWATCH__NETWORK__0__DEVICE__0__ROUTE", r#"{ network = 5, mac = "0a" }"#),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let d = &c.networks[0].devices[0];
        assert_eq!((d.cov, d.poll, d.name.as_deref()), (Some(true), Some(Duration::from_secs(2)), Some("1234")));
        let points: Vec<String> = d.points.iter().flatten().map(|p| p.object.to_string()).collect();
        assert_eq!(points, ["analog-input:7", "binary-input:1"]);
        assert_eq!(d.route.map(|r| (r.network, r.mac.to_string())), Some((5, "0a".to_string())));
    }

    #[track_caller]
    fn env_refused(text: &str, var: &str, value: &str, key: Option<&str>, reason: &str) {
        let e = refused(site_env(text, &[(var, value)]));
        let line = e.to_string();
        assert_eq!(e.origin, Origin::Env(var.to_string()), "{line}");
        assert!(line.starts_with(&format!("environment variable {var}: ")), "{line}");
        assert_eq!(e.key.as_deref(), key, "{line}");
        assert!(line.contains(reason), "{line:?} lacks {reason:?}");
    }

    #[test]
    fn bad_environment_variables_are_named() {
        let n = NET;
        env_refused(
            "",
            "PLANTWATCH__RATE_LIMIT__READ_PER_S",
            "fast",
            Some("rate_limit.read_per_s"),
            "expected a whole number",
        );
        env_refused("", "PLANTWATCH__RATE_LIMIT__BURST", "lots", Some("rate_limit.burst"), "expected a number");
        env_refused("", "PLANTWATCH__AUTH__ENABLED", "yes", Some("auth.enabled"), "expected true or false");
        env_refused("", "PLANTWATCH__SERVER__LISTEN", "nonsense", Some("server.listen"), "not an IP address and port");
        env_refused(
            "",
            "PLANTWATCH__SERVER__REQUEST_TIMEOUT",
            "3 s",
            Some("server.request_timeout"),
            "invalid duration",
        );
        env_refused(
            "",
            "PLANTWATCH__SERVER__LISTN",
            "x",
            Some("server.listn"),
            "unknown key (did you mean \"listen\"?)",
        );
        env_refused("", "PLANTWATCH__SERVERR__LISTEN", "x", Some("serverr"), "unknown key");
        env_refused("", "PLANTWATCH__SERVER", "x", Some("server"), "is a section");
        env_refused("", "PLANTWATCH__SERVER__LISTEN__PORT", "1", Some("server.listen"), "single value, not a section");
        env_refused("", "PLANTWATCH__", "x", None, "does not name a setting");
        env_refused("", "PLANTWATCH__SERVER____LISTEN", "x", None, "does not name a setting");
        env_refused("", "PLANTWATCH__NETWORK__0__POLL", "1s", Some("network"), "there is no network[0]");
        env_refused(
            n,
            "PLANTWATCH__NETWORK__3__POLL",
            "1s",
            Some("network"),
            "network has 1 entry, numbered from 0: there is no network[3]",
        );
        env_refused("", "PLANTWATCH__NETWORK__2__POLL", "1s", Some("network"), "there is no network[2]");
        env_refused(n, "PLANTWATCH__NETWORK__POLL", "1s", Some("network"), "PLANTWATCH__NETWORK__0__POLL");
        env_refused(n, "PLANTWATCH__NETWORK__0__POLL", "0s", Some("network[0].poll"), "zero");
        env_refused(n, "PLANTWATCH__NETWORK__0__APDU_RETRIES", "11", Some("network[0].apdu_retries"), "above 10");
        let with_points = device("points = [\"analog-input:2\"]\n");
        env_refused(
            &with_points,
            "PLANTWATCH__NETWORK__0__DEVICE__0__POINTS",
            "analog-input:1",
            Some("network[0].device[0].points"),
            "TOML syntax",
        );
        env_refused(
            &device(""),
            "PLANTWATCH__NETWORK__0__DEVICE__0__POINTS",
            "analog-input:1",
            Some("network[0].device[0].points"),
            "expected a list",
        );
        env_refused(
            &device(""),
            "PLANTWATCH__NETWORK__0__DEVICE__0__POINTS",
            "[\"analog-input:1\"",
            Some("network[0].device[0].points"),
            "not a TOML value",
        );
    }

    #[test]
    fn a_variable_set_twice_in_different_case_is_refused() {
        let e = refused(site_env(
            "",
            &[("PLANTWATCH__SERVER__LISTEN", "0.0.0.0:1"), ("plantwatch__server__listen", "0.0.0.0:2")],
        ));
        assert!(e.to_string().contains("differ only in case"), "{e}");
    }

    /// `(file, key, reason)` for one bad setting.
    #[track_caller]
    fn check_refused(text: &str, key: &str, reason: &str) {
        let e = refused(site(text));
        let line = e.to_string();
        assert!(line.starts_with("site.toml:"), "{line}");
        assert_eq!(e.key.as_deref(), Some(key), "{line}");
        assert!(line.contains(&format!(": {key}: ")), "{line}");
        assert!(line.contains(reason), "{line:?} lacks {reason:?}");
        assert!(!line.contains('\n'), "one line: {line:?}");
    }

    #[test]
    fn the_production_profile_refuses_plain_http_off_loopback() {
        let prod = "[server]\nprofile = \"production\"\nlisten = \"0.0.0.0:8080\"\n";
        check_refused(prod, "server.listen", "the production profile refuses plain HTTP");
        let e = refused(site(prod));
        assert!(e.to_string().contains("server.profile"), "{e}");
        // behind a terminating proxy, with TLS, on loopback, or in development: accepted
        for ok in [
            format!("{prod}allow_plain_http = true\n"),
            format!("{prod}tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n"),
            "[server]\nprofile = \"production\"\nlisten = \"127.0.0.1:8080\"\n".to_string(),
            "[server]\nlisten = \"0.0.0.0:8080\"\n".to_string(),
        ] {
            site(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        check_refused("[server]\nprofile = \"prod\"\n", "server.profile", "unknown variant");
    }

    #[test]
    fn tls_needs_both_files_and_proxies_are_addresses() {
        check_refused("[server]\ntls_cert = \"c.pem\"\n", "server.tls_key", "is missing");
        check_refused("[server]\ntls_key = \"k.pem\"\n", "server.tls_cert", "is missing");
        check_refused("[server]\ntrusted_proxies = [\"proxy.local\"]\n", "server.trusted_proxies[0]", "");
        let c = site("[server]\ntrusted_proxies = [\"10.0.0.5\", \"::1\"]\n").expect("accepted");
        assert_eq!(c.server.trusted_proxies.len(), 2);
    }

    #[test]
    fn a_site_is_a_label_value_and_a_dns_label() {
        assert_eq!(site("").expect("accepted").server.site, None);
        let c = site("[server]\nsite = \"bldg-a\"\n").expect("accepted");
        assert_eq!(c.server.site.as_deref(), Some("bldg-a"));
        let c = site_env("", &[("PLANTWATCH__SERVER__SITE", "plant-7")]).expect("accepted");
        assert_eq!(c.server.site.as_deref(), Some("plant-7"));
        for bad in ["", "Bldg-A", "bldg a", "-a", "a-", "a\\\"b", "bldg_a", &"x".repeat(64)] {
            check_refused(&format!("[server]\nsite = {bad:?}\n"), "server.site", "is not a site name");
        }
        site(&format!("[server]\nsite = \"{}\"\n", "x".repeat(63))).expect("63 characters");
    }

    #[test]
    fn cors_settings_are_checked() {
        let c =
            site("[cors]\nallowed_origins = [\"https://ops.example.com\", \"http://[::1]:8080\"]\n").expect("accepted");
        assert_eq!(c.cors.allowed_origins.len(), 2);
        assert_eq!(c.cors.max_age, Duration::from_secs(600));
        for bad in ["*", "https://ops.example.com/", "ops.example.com", "https://x:99999", "ftp://x"] {
            check_refused(
                &format!("[cors]\nallowed_origins = [\"{bad}\"]\n"),
                "cors.allowed_origins[0]",
                "is not an origin",
            );
        }
        check_refused("[cors]\nallowed_methods = [\"get\"]\n", "cors.allowed_methods[0]", "is not a method");
        check_refused("[cors]\nallowed_headers = [\"x y\"]\n", "cors.allowed_headers[0]", "is not a header");
        check_refused("[cors]\nmax_age = \"2d\"\n", "cors.max_age", "1d at most");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        check_refused("[server]\nlisten_addr = \"0.0.0.0:80\"\n", "server.listen_addr", "unknown key");
        check_refused("[serverr]\n", "serverr", "did you mean \"server\"");
        check_refused("[log]\nfiles = \"x\"\n", "log.files", "did you mean \"file\"");
        check_refused(&format!("{NET}polling = \"1s\"\n"), "network[0].polling", "did you mean \"poll\"");
        check_refused(
            &device("adress = \"10.0.0.2:47808\"\n"),
            "network[0].device[0].adress",
            "did you mean \"address\"",
        );
        check_refused(
            &device("route = { network = 5, mac = \"0a\", port = 1 }\n"),
            "network[0].device[0].route.port",
            "unknown key",
        );
        check_refused(
            &device("points = [{ object = \"analog-input:1\", intervl = \"1s\" }]\n"),
            "network[0].device[0].points[0].intervl",
            "unknown key",
        );
    }

    #[test]
    fn bad_durations_are_refused() {
        check_refused("[server]\nrequest_timeout = \"3 s\"\n", "server.request_timeout", "without spaces");
        check_refused("[server]\nrequest_timeout = \"fast\"\n", "server.request_timeout", "invalid duration \"fast\"");
        check_refused("[server]\nrequest_timeout = \"0s\"\n", "server.request_timeout", "is zero");
        check_refused(
            "[server]\nrequest_timeout = \"5s\"\n[[network]]\nname = \"a\"\n",
            "network[0].apdu_timeout",
            "does not fit in server.request_timeout",
        );
        check_refused("[server]\nrequest_timeout = 10\n", "server.request_timeout", "expected a duration in quotes");
        check_refused("[history]\nprune_every = \"3x\"\n", "history.prune_every", "invalid duration");
        check_refused(&format!("{NET}apdu_timeout = \"0ms\"\n"), "network[0].apdu_timeout", "is zero");
        check_refused(&device("poll = \"soon\"\n"), "network[0].device[0].poll", "invalid duration");
        check_refused(
            &device("points = [{ object = \"analog-input:1\", poll = \"0s\" }]\n"),
            "network[0].device[0].points[0].poll",
            "is zero",
        );
        check_refused(
            &format!("{NET}cov_lifetime = \"1500ms\"\n"),
            "network[0].cov_lifetime",
            "whole number of seconds",
        );
        check_refused(&format!("{NET}cov_quiet = \"500ms\"\n"), "network[0].cov_quiet", "under 1s");
        check_refused(&device("cov_quiet = \"0s\"\n"), "network[0].device[0].cov_quiet", "is zero");
        check_refused(&device("cov_quiet = \"999ms\"\n"), "network[0].device[0].cov_quiet", "under 1s");
    }

    #[test]
    fn a_device_s_cov_quiet_falls_back_to_its_network_s() {
        let c = site(&format!("{NET}cov_quiet = \"2m\"\n[[network.device]]\ninstance = 1\naddress = \"10.0.0.1:47808\"\n[[network.device]]\ninstance = 2\naddress = \"10.0.0.2:47808\"\ncov_quiet = \"30s\"\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let n = &c.networks[0];
        assert_eq!(n.devices[0].effective_cov_quiet(n), Duration::from_secs(120));
        assert_eq!(n.devices[1].effective_cov_quiet(n), Duration::from_secs(30));
        let d = site(NET).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.networks[0].cov_quiet, Duration::from_secs(60));
    }

    #[test]
    fn durations_take_humantime_units() {
        let c = site("[history]\nmax_interval = \"250ms\"\nretention = \"30d\"\nprune_every = \"1h30m\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.history.max_interval, Duration::from_millis(250));
        assert_eq!(c.history.prune_every, Duration::from_secs(5400));
        let c = site("[supervision]\nbackoff_max = \"15m\"\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.supervision.backoff_max, Duration::from_secs(900));
    }

    #[test]
    fn bad_socket_addresses_are_refused() {
        check_refused("[server]\nlisten = \"127.0.0.1\"\n", "server.listen", "has no port");
        check_refused("[server]\nlisten = \"localhost:8080\"\n", "server.listen", "host names are not resolved");
        check_refused(
            &format!("{NET}broadcast = \"192.168.1.255:99999\"\n"),
            "network[0].broadcast",
            "not an IP address and port",
        );
        check_refused(
            &format!("{NET}broadcast = \"0.0.0.0:47808\"\n"),
            "network[0].broadcast",
            "not an address to send a Who-Is to",
        );
        check_refused(
            "[[network]]\nname = \"a\"\nbind = \"192.168.1:47808\"\n",
            "network[0].bind",
            "not an IP address and port",
        );
        check_refused(
            "[[network]]\nname = \"a\"\n[[network.device]]\ninstance = 1\naddress = \"192.168.1.300:47808\"\n",
            "network[0].device[0].address",
            "not an IP address and port",
        );
        check_refused(
            "[[network]]\nname = \"a\"\n[[network.device]]\ninstance = 1\naddress = \"0.0.0.0:47808\"\n",
            "network[0].device[0].address",
            "not an address to send to",
        );
    }

    #[test]
    fn bad_object_references_are_refused() {
        check_refused(
            &device("points = [\"analog-inptu:1\"]\n"),
            "network[0].device[0].points[0]",
            "did you mean \"analog-input\"",
        );
        check_refused(
            &device("points = [\"analog-input:4194303\"]\n"),
            "network[0].device[0].points[0]",
            "above 4194302",
        );
        check_refused(
            &device("points = [\"analog-input\"]\n"),
            "network[0].device[0].points[0]",
            "not an object reference",
        );
        check_refused(
            &device("points = [\"analog-input:1\", \"analog-input:2\", { object = \"binary-outptu:2\" }]\n"),
            "network[0].device[0].points[2].object",
            "did you mean \"binary-output\"",
        );
        check_refused(&device("points = [3]\n"), "network[0].device[0].points[0]", "an object reference like");
        check_refused(&device("points = []\n"), "network[0].device[0].points", "watch nothing");
        check_refused(
            &device("points = [\"analog-input:1\", { object = \"analog-input:1\", poll = \"1s\" }]\n"),
            "network[0].device[0].points[1]",
            "analog-input:1 is listed twice; the other is network[0].device[0].points[0] in site.toml:7",
        );
    }

    #[test]
    fn bad_routes_and_instances_are_refused() {
        check_refused(
            &device("route = { network = 5, mac = \"0g\" }\n"),
            "network[0].device[0].route.mac",
            "not a MAC address in hex",
        );
        check_refused(
            &device("route = { network = 5, mac = \"abc\" }\n"),
            "network[0].device[0].route.mac",
            "not a MAC address in hex",
        );
        check_refused(
            &device("route = { network = 0, mac = \"0a\" }\n"),
            "network[0].device[0].route.network",
            "1 to 65534",
        );
        check_refused(
            &device("route = { network = 65535, mac = \"0a\" }\n"),
            "network[0].device[0].route.network",
            "1 to 65534",
        );
        check_refused(
            &device("route = { network = 70000, mac = \"0a\" }\n"),
            "network[0].device[0].route.network",
            "0 to 65535",
        );
        check_refused(
            &format!("{NET}[[network.device]]\ninstance = 4194303\naddress = \"10.0.0.1:47808\"\n"),
            "network[0].device[0].instance",
            "above 4194302",
        );
        check_refused(
            &format!("{NET}[[network.device]]\naddress = \"10.0.0.1:47808\"\n"),
            "network[0].device[0].instance",
            "required but missing",
        );
        check_refused(&device("name = \"\"\n"), "network[0].device[0].name", "empty");
    }

    #[test]
    fn duplicate_devices_are_refused_naming_both_places() {
        let a = format!("{NET}[[network.device]]\ninstance = 1001\naddress = \"10.0.0.1:47808\"\n");
        let b = "[[network]]\nname = \"bldg-b\"\nbind = \"127.0.0.2:47808\"\n[[network.device]]\ninstance = 1001\naddress = \"10.0.0.9:47808\"\n";
        let e = refused(site(&format!("{a}{b}")));
        assert_eq!(
            e.to_string(),
            "site.toml:11: network[1].device[0].instance: device instance 1001 is configured twice; \
             the other is network[0].device[0] in site.toml:4"
        );
        // The second set by the environment: both places named.
        let two = format!("{a}[[network.device]]\ninstance = 1002\naddress = \"10.0.0.2:47808\"\n");
        let e = refused(load_texts(
            &files(&[("a.toml", &two)]),
            &env(&[("PLANTWATCH__NETWORK__0__DEVICE__1__INSTANCE", "1001")]),
        ));
        assert_eq!(
            e.to_string(),
            "environment variable PLANTWATCH__NETWORK__0__DEVICE__1__INSTANCE: network[0].device[1].instance: \
             device instance 1001 is configured twice; the other is network[0].device[0] in a.toml:4"
        );
        let e = refused(site(&device("[[network.device]]\ninstance = 1001\naddress = \"10.0.0.2:47808\"\n")));
        assert_eq!(e.key.as_deref(), Some("network[0].device[1].instance"), "{e}");
    }

    #[test]
    fn duplicate_network_names_and_binds_are_refused() {
        check_refused(
            "[[network]]\nname = \"a\"\nbind = \"10.0.0.1:47808\"\n[[network]]\nname = \"a\"\nbind = \"10.0.0.2:47808\"\n",
            "network[1].name",
            "network name \"a\" is used twice; the other is network[0].name in site.toml:2",
        );
        check_refused(
            "[[network]]\nname = \"a\"\nbind = \"10.0.0.1:47808\"\n[[network]]\nname = \"b\"\nbind = \"10.0.0.1:47808\"\n",
            "network[1].bind",
            "10.0.0.1:47808 is bound by two networks",
        );
        check_refused(
            "[[network]]\nname = \"a\"\n[[network]]\nname = \"b\"\n",
            "network[1].bind",
            "is bound by two networks",
        );
        check_refused(
            "[[network]]\nname = \"a\"\nbind = \"10.0.0.1:47808\"\n[[network]]\nname = \"b\"\nbind = \"0.0.0.0:47808\"\n",
            "network[1].bind",
            "overlaps 10.0.0.1:47808",
        );
        // Port 0 picks a free port: no clash. Different ports: no clash.
        site("[[network]]\nname = \"a\"\nbind = \"127.0.0.1:0\"\n[[network]]\nname = \"b\"\nbind = \"127.0.0.1:0\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        site("[[network]]\nname = \"a\"\n[[network]]\nname = \"b\"\nbind = \"0.0.0.0:47809\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        check_refused("[[network]]\nname = \"bldg a\"\n", "network[0].name", "not a network name");
        check_refused("[[network]]\nbind = \"10.0.0.1:47808\"\n", "network[0].name", "required but missing");
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        check_refused(&format!("{NET}apdu_retries = 11\n"), "network[0].apdu_retries", "is above 10");
        check_refused(
            &format!("{NET}apdu_retries = -1\n"),
            "network[0].apdu_retries",
            "expected a whole number from 0 to 4294967295",
        );
        check_refused(&format!("{NET}max_in_flight = 0\n"), "network[0].max_in_flight", "at least 1");
        check_refused(&format!("{NET}offline_after = 0\n"), "network[0].offline_after", "at least 1");
        check_refused("[rate_limit]\nburst = 0.5\n", "rate_limit.burst", "below 1.0");
        check_refused("[rate_limit]\nburst = nan\n", "rate_limit.burst", "below 1.0");
        check_refused("[rate_limit]\nwrite_per_s = 0\n", "rate_limit.write_per_s", "at least 1");
        check_refused("[store]\ncache_capacity_mb = 0\n", "store.cache_capacity_mb", "at least 1");
        check_refused("[store]\npath = \"\"\n", "store.path", "empty");
        check_refused("[log]\nkeep_files = 0\n", "log.keep_files", "at least 1");
        check_refused("[log]\nfile = \"\"\n", "log.file", "empty");
        site("[rate_limit]\nburst = 1\n").unwrap_or_else(|e| panic!("an integer burst is a number: {e}"));
        site("[supervision]\nrestart_intensity = 0\n").unwrap_or_else(|e| panic!("0 restarts is meaningful: {e}"));
    }

    #[test]
    fn log_settings_are_checked() {
        check_refused("[log]\nformat = \"xml\"\n", "log.format", "expected `text` or `json`");
        check_refused("[log]\nlevel = \"\"\n", "log.level", "not a log filter");
        check_refused("[log]\nlevel = \"info,[\"\n", "log.level", "not a log filter");
        let c = site("[log]\nformat = \"json\"\nlevel = \"info,plantwatch_actors=debug\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn related_settings_are_checked_against_each_other() {
        let e = refused(site("[history]\nmax_interval = \"60d\"\n"));
        assert_eq!(e.origin, Origin::Defaults, "the retention that is too short is the default one");
        assert_eq!(
            e.to_string(),
            "built-in defaults: history.retention: 30d is not longer than max_interval (60d): a value that \
             does not change would have no history; history.max_interval is set in site.toml:2"
        );
        check_refused(
            "[supervision]\nbackoff_initial = \"1m\"\nbackoff_max = \"30s\"\n",
            "supervision.backoff_initial",
            "1m is longer than backoff_max (30s); supervision.backoff_max is set in site.toml:3",
        );
    }

    #[test]
    fn unreadable_and_malformed_files_are_named() {
        let missing = PathBuf::from("/nonexistent/plantwatch.toml");
        let e = refused(load(std::slice::from_ref(&missing), &HashMap::new()));
        assert_eq!((e.origin, e.key), (Origin::File(missing), None));
        assert!(e.reason.starts_with("cannot read the file"), "{}", e.reason);
        let e = refused(site("[server]\nlisten = \"127.0.0.1:80\"\n[store\n"));
        assert_eq!((e.line, e.key.as_deref()), (Some(3), None));
        assert!(e.to_string().starts_with("site.toml:3: not valid TOML: "), "{e}");
        let e = refused(site("[server]\nlisten = \"a\"\nlisten = \"b\"\n"));
        assert!(e.to_string().contains("not valid TOML"), "{e}");
    }

    #[test]
    fn lines_point_into_the_file_that_set_the_key() {
        let text = "# a comment\n\n[[network]]\nname = \"a\"\n\n[[network.device]]\ninstance = 1\naddress = \"10.0.0.1:47808\"\npoints = [\n  \"analog-input:1\",\n  \"analog-inptu:2\",\n]\n";
        let e = refused(site(text));
        assert_eq!((e.line, e.key.as_deref()), (Some(11), Some("network[0].device[0].points[1]")));
    }

    #[test]
    fn effective_settings_fall_back_from_point_to_device_to_network() {
        let text = device("poll = \"5s\"\npoints = [\"analog-input:1\", { object = \"analog-input:2\", poll = \"1s\", cov = true }]\n")
            + "[[network.device]]\ninstance = 1002\naddress = \"10.0.0.2:47808\"\ncov = true\n";
        let c = site(&format!("{text}\n")).unwrap_or_else(|e| panic!("{e}"));
        let n = &c.networks[0];
        let (d1, d2) = (&n.devices[0], &n.devices[1]);
        let points = d1.points.as_deref().unwrap_or_default();
        assert_eq!(d1.effective_poll(n), Duration::from_secs(5));
        assert_eq!(d2.effective_poll(n), Duration::from_secs(10), "the network's");
        assert_eq!(points[0].effective_poll(d1, n), Duration::from_secs(5), "the device's");
        assert_eq!(points[1].effective_poll(d1, n), Duration::from_secs(1));
        assert!(!d1.effective_cov(n) && d2.effective_cov(n));
        assert!(!points[0].effective_cov(d1, n) && points[1].effective_cov(d1, n));
        assert!(points[1].effective_cov(d2, n), "the point's own setting");
        assert_eq!(c.device_count(), 2);
        assert_eq!(n.request_budget(), Duration::from_secs(12));
        let t = n.transport_config();
        assert_eq!((t.bind, t.apdu_retries, t.max_in_flight), (n.bind, 3, 32));
    }

    #[test]
    fn a_routed_device_addresses_its_router() {
        let c = site(&device("route = { network = 5, mac = \"0A\" }\n")).unwrap_or_else(|e| panic!("{e}"));
        let a = c.networks[0].devices[0].bacnet_address();
        assert_eq!(a.ip, "10.0.0.1:47808".parse().expect("addr"));
        assert_eq!(a.route.map(|r| (r.network, r.mac.as_bytes().to_vec())), Some((5, vec![0x0a])));
    }

    #[test]
    fn config_errors_display_as_one_line() {
        let e = ConfigError {
            origin: Origin::Defaults,
            line: None,
            key: Some("server.listen".into()),
            reason: "bad".into(),
        };
        assert_eq!(e.to_string(), "built-in defaults: server.listen: bad");
        let e = ConfigError {
            origin: Origin::File("/etc/p.toml".into()),
            line: None,
            key: None,
            reason: "cannot read".into(),
        };
        assert_eq!(e.to_string(), "/etc/p.toml: cannot read");
        let e = ConfigError {
            origin: Origin::Env("PLANTWATCH__X".into()),
            line: Some(3),
            key: Some("x".into()),
            reason: "r".into(),
        };
        assert_eq!(e.to_string(), "environment variable PLANTWATCH__X: x: r");
    }

    #[test]
    fn only_prefixed_variables_are_overrides() {
        let vars =
            env(&[("PLANTWATCH__A", "1"), ("plantwatch__b", "2"), ("PLANTWATCH_PYTHON", "x"), ("HOME", "/root")]);
        assert_eq!(env_overrides(&vars), ["PLANTWATCH__A", "plantwatch__b"]);
    }
}
