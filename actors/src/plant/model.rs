//! What plantwatch knows about a device: its snapshot. A device actor owns
//! one, publishes a copy to the [`Directory`](super::Directory) whenever it
//! changes, and the store keeps the latest so that a restart serves
//! last-known values at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::bacnet::codec::Value;
use crate::bacnet::services::ErrorClassCode;
use crate::bacnet::types::{Address, ObjectId, Route, Segmentation, StatusFlags};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceStatus {
    /// Reading the Device object and the point list.
    Enrolling,
    /// Answering, every point good.
    Online,
    /// Answering, but some points fail, or a request just timed out.
    Degraded,
    /// N consecutive timeouts; re-probed with back-off.
    Offline,
    /// Supervision gave up restarting its actor.
    Failed,
}

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 5] = [
        DeviceStatus::Enrolling,
        DeviceStatus::Online,
        DeviceStatus::Degraded,
        DeviceStatus::Offline,
        DeviceStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolling => "enrolling",
            Self::Online => "online",
            Self::Degraded => "degraded",
            Self::Offline => "offline",
            Self::Failed => "failed",
        }
    }
}

/// How much a cached value can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quality {
    Good,
    /// Older than three poll intervals.
    Stale,
    /// The device did not answer the last read.
    CommFailure,
    /// The device answered the read with an error (see the point's `error`).
    Error,
}

/// What the Device object says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceIdentity {
    pub name: String,
    pub vendor_name: String,
    pub vendor_id: u32,
    pub model_name: String,
    pub firmware_revision: String,
    pub database_revision: Option<u64>,
    pub max_apdu: u32,
    pub segmentation: Option<Segmentation>,
    /// Protocol_Services_Supported lists ReadPropertyMultiple.
    pub rpm_listed: bool,
    /// Protocol_Services_Supported lists SubscribeCOV.
    pub cov_listed: bool,
}

/// One point (object) of a device, with its last value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub object: ObjectId,
    pub name: String,
    pub description: String,
    /// BACnetEngineeringUnits, for analog objects.
    pub units: Option<u32>,
    /// Has a priority array (Relinquish_Default answered).
    pub commandable: bool,
    pub cov_increment: Option<f32>,
    pub state_text: Vec<String>,
    /// Poll interval of this point.
    pub poll_ms: u64,
    /// COV is wanted for this point (configuration).
    pub cov_wanted: bool,
    /// Why COV is not used although wanted (the device refused).
    pub cov_refused: Option<String>,
    pub value: Option<Value>,
    pub status_flags: Option<StatusFlags>,
    pub quality: Quality,
    pub error: Option<ErrorClassCode>,
    /// When the value or its quality was last set (0: never).
    pub updated_at: Millis,
    /// A live COV subscription vouches for the value until then (0: none).
    /// A device notifies changes only, so a steady value under COV is not
    /// stale however old its last update is, while the subscription lasts.
    #[serde(default)]
    pub cov_until: Millis,
}

impl Point {
    pub fn new(object: ObjectId, poll: Duration, cov_wanted: bool) -> Self {
        Self {
            object,
            name: String::new(),
            description: String::new(),
            units: None,
            commandable: false,
            cov_increment: None,
            state_text: Vec::new(),
            poll_ms: poll.as_millis() as u64,
            cov_wanted,
            cov_refused: None,
            value: None,
            status_flags: None,
            // Not read yet: nothing to trust.
            quality: Quality::Stale,
            error: None,
            updated_at: 0,
            cov_until: 0,
        }
    }

    /// The quality as of `now`: a good value older than three intervals is
    /// stale, unless a live COV subscription vouches for it.
    pub fn quality_at(&self, now: Millis) -> Quality {
        if self.quality == Quality::Good
            && now >= self.cov_until
            && now.saturating_sub(self.updated_at) > 3 * self.poll_ms.max(1)
        {
            Quality::Stale
        } else {
            self.quality
        }
    }
}

/// Counters of one device, kept across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceCounters {
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub timeouts: u64,
    pub restarts: u64,
    pub enrolments: u64,
    /// Polls that started later than their due time plus the overrun window.
    pub overruns: u64,
    /// COV watchdog reads of a quiet device's subscribed value.
    pub cov_checks: u64,
    /// Times the watchdog found the device's COV subscriptions silent (a
    /// value moved without a notification) and subscribed again.
    pub cov_silent: u64,
}

/// Everything about one device that survives a restart. The store keeps it
/// in MessagePack with positional structs: add new fields at the end of a
/// struct with `#[serde(default)]` so older snapshots still decode; a field
/// removed or reordered needs a new snapshot format byte in the store, or
/// the old snapshots are skipped at the next start (the devices then enrol
/// again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    pub instance: u32,
    pub network: String,
    pub address: SocketAddr,
    pub route: Option<Route>,
    /// A configured label; else the device's Object_Name.
    pub label: Option<String>,
    pub status: DeviceStatus,
    pub identity: Option<DeviceIdentity>,
    /// Polls use ReadPropertyMultiple.
    pub use_rpm: bool,
    /// Why polls fell back to ReadProperty.
    pub rpm_fallback_reason: Option<String>,
    /// Sorted by object.
    pub points: Vec<Point>,
    pub last_seen: Option<Millis>,
    pub last_error: Option<String>,
    pub consecutive_timeouts: u32,
    pub counters: DeviceCounters,
    pub cov_subscriptions: u32,
    /// When the device last delivered values: a poll round without a failed
    /// request, or a COV notification (a device whose points are all on COV
    /// is not polled).
    #[serde(default)]
    pub last_success_at: Option<Millis>,
    /// How long the last poll round took, in microseconds.
    #[serde(default)]
    pub last_poll_us: Option<u64>,
    /// Failed requests and point reads that answered an error, by BACnet
    /// error class or `timeout`, `reject`, `abort`, `malformed`, `local`.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// The COV watchdog found the subscriptions silent, and the device is
    /// being subscribed again (its points are polled meanwhile).
    #[serde(default)]
    pub cov_silent: bool,
}

impl DeviceSnapshot {
    pub fn new(instance: u32, network: &str, address: Address, label: Option<String>) -> Self {
        Self {
            instance,
            network: network.to_string(),
            address: address.ip,
            route: address.route,
            label,
            status: DeviceStatus::Enrolling,
            identity: None,
            use_rpm: true,
            rpm_fallback_reason: None,
            points: Vec::new(),
            last_seen: None,
            last_error: None,
            consecutive_timeouts: 0,
            counters: DeviceCounters::default(),
            cov_subscriptions: 0,
            last_success_at: None,
            last_poll_us: None,
            errors: BTreeMap::new(),
            cov_silent: false,
        }
    }

    pub fn address(&self) -> Address {
        Address { ip: self.address, route: self.route }
    }

    pub fn point(&self, object: ObjectId) -> Option<&Point> {
        self.points.binary_search_by_key(&object, |p| p.object).ok().map(|i| &self.points[i])
    }

    pub fn point_mut(&mut self, object: ObjectId) -> Option<&mut Point> {
        self.points.binary_search_by_key(&object, |p| p.object).ok().map(move |i| &mut self.points[i])
    }

    /// Counts an error under `label` (see [`DeviceSnapshot::errors`]).
    pub fn count_error(&mut self, label: &str) {
        match self.errors.get_mut(label) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(label.to_string(), 1);
            }
        }
    }

    /// The device's name: the configured label, else its Object_Name.
    pub fn name(&self) -> &str {
        self.label.as_deref().or(self.identity.as_ref().map(|i| i.name.as_str())).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_through_json() {
        let mut s = DeviceSnapshot::new(1001, "a", Address::direct("127.0.0.2:47808".parse().unwrap()), None);
        let mut p = Point::new(ObjectId::new(0, 1), Duration::from_secs(10), false);
        p.value = Some(Value::Real(21.5));
        p.quality = Quality::Good;
        p.status_flags = Some(StatusFlags::default());
        s.points.push(p);
        s.identity =
            Some(DeviceIdentity { name: "AHU".into(), segmentation: Some(Segmentation::Both), ..Default::default() });
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DeviceSnapshot>(&json).unwrap(), s);
        assert!(json.contains(r#""value":{"type":"real","value":21.5}"#), "{json}");
    }

    #[test]
    fn counters_stored_before_the_cov_watchdog_still_decode() {
        // DeviceCounters as stored (positional MessagePack) before cov_checks and cov_silent.
        #[derive(Serialize)]
        struct Before(u64, u64, u64, u64, u64, u64);
        let mut old = Vec::new();
        rmp_serde::encode::write(&mut old, &Before(5, 1, 1, 0, 2, 3)).unwrap();
        let c: DeviceCounters = rmp_serde::from_slice(&old).unwrap();
        assert_eq!((c.polls_ok, c.enrolments, c.overruns, c.cov_checks, c.cov_silent), (5, 2, 3, 0, 0));
    }

    #[test]
    fn good_values_go_stale_after_three_intervals() {
        let mut p = Point::new(ObjectId::new(0, 1), Duration::from_secs(10), false);
        p.quality = Quality::Good;
        p.updated_at = 1_000_000;
        assert_eq!(p.quality_at(1_000_000 + 30_000), Quality::Good);
        assert_eq!(p.quality_at(1_000_000 + 30_001), Quality::Stale);
        p.quality = Quality::CommFailure;
        assert_eq!(p.quality_at(1_000_000 + 60_000), Quality::CommFailure);
    }

    #[test]
    fn a_live_cov_subscription_keeps_a_steady_value_good_until_it_lapses() {
        let mut p = Point::new(ObjectId::new(0, 1), Duration::from_secs(10), true);
        p.quality = Quality::Good;
        p.updated_at = 1_000_000;
        p.cov_until = 1_000_000 + 300_000;
        assert_eq!(p.quality_at(1_000_000 + 299_999), Quality::Good);
        assert_eq!(p.quality_at(1_000_000 + 300_000), Quality::Stale);
        // it vouches for a good value only
        p.quality = Quality::CommFailure;
        assert_eq!(p.quality_at(1_000_000 + 1), Quality::CommFailure);
    }
}
