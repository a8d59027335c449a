//! The API's JSON shapes (DESIGN §7), as typed structs that derive both
//! `Serialize` and `utoipa::ToSchema`: what the API answers and what the
//! OpenAPI document (`super::openapi`) says it answers come from the same
//! definitions.
//!
//! Values are shown as people read them: numbers, `"active"` / `"inactive"`
//! for binary objects, the state number with its text for multi-state
//! objects.
//!
//! [`device`] and [`point`] build [`DeviceView`] and [`PointView`] from
//! snapshots. The other answers (networks, history, writes, discovery, audit,
//! health) are still assembled by the handlers; their structs here describe
//! them, and `tests/it/openapi.rs` checks the live answers against the
//! document so the two cannot drift apart unnoticed.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::types::{object_type, units_name, ObjectId, Route, Segmentation, StatusFlags};
use plantwatch_actors::plant::model::{DeviceCounters, DeviceSnapshot, DeviceStatus, Millis, Point, Quality};
use serde::Serialize;
use serde_json::{json, Value as Json};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::error::ErrorCode;

/// An RFC 3339 time with milliseconds, or null for "never" (0).
pub fn time(ms: Millis) -> Json {
    rfc3339(ms).map_or(Json::Null, Json::String)
}

fn rfc3339(ms: Millis) -> Option<String> {
    (ms != 0).then(|| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

fn is_binary(o: ObjectId) -> bool {
    matches!(o.object_type, object_type::BINARY_INPUT | object_type::BINARY_OUTPUT | object_type::BINARY_VALUE)
}

/// A value as JSON, knowing which object it belongs to.
pub fn value(object: ObjectId, v: &Value) -> Json {
    match v {
        Value::Enumerated(e) if is_binary(object) => Json::String(if *e == 0 { "inactive" } else { "active" }.into()),
        other => plain(other),
    }
}

fn plain(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Unsigned(u) => json!(u),
        Value::Signed(i) => json!(i),
        // The shortest decimal that reads back as this REAL: 21.4, not
        // 21.399999618530273 (its exact value widened to f64).
        Value::Real(f) if f.is_finite() => json!(f.to_string().parse::<f64>().unwrap_or(f64::from(*f))),
        Value::Double(f) if f.is_finite() => json!(f),
        Value::Real(f) => Json::String(f.to_string()),
        Value::Double(f) => Json::String(f.to_string()),
        Value::Enumerated(e) => json!(e),
        Value::CharacterString(s) => Json::String(s.clone()),
        Value::OctetString(b) | Value::Opaque(b) => {
            json!({"hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>()})
        }
        Value::BitString(b) => Json::Array((0..b.len()).map(|i| Json::Bool(b.get(i))).collect()),
        Value::ObjectId(o) => Json::String(o.to_string()),
        Value::Date(d) => Json::String(format!("{}-{:02}-{:02}", 1900 + u32::from(d.0[0]), d.0[1], d.0[2])),
        Value::Time(t) => Json::String(format!("{:02}:{:02}:{:02}.{:02}", t.0[0], t.0[1], t.0[2], t.0[3])),
        Value::List(items) => Json::Array(items.iter().map(plain).collect()),
    }
}

fn to_json<T: Serialize>(t: &T) -> Json {
    // Serializing these plain structs cannot fail (string keys, no maps of
    // non-string keys, no custom serializers that error).
    serde_json::to_value(t).unwrap_or(Json::Null)
}

pub fn point(p: &Point, now: Millis) -> Json {
    to_json(&PointView::new(p, now))
}

pub fn device(s: &DeviceSnapshot) -> Json {
    to_json(&DeviceView::new(s))
}

/// `analog-input` for `analog-input:3`.
pub fn type_name(o: ObjectId) -> String {
    plantwatch_actors::bacnet::types::object_type_name(o.object_type)
}

// ---------------------------------------------------------------- values

/// A point's value as people read it: a number for analog objects,
/// `"active"`/`"inactive"` for binary objects, the state number (1..N) for
/// multi-state objects, a string for character strings; `{"hex": ..}` for
/// octet strings and opaque data, an array for bit strings and lists; null
/// when there is no value yet (or, in a write, to relinquish).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PointValue(pub Json);

impl PartialSchema for PointValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "A number (analog), \"active\"/\"inactive\" (binary), a state number 1..N (multi-state), a string \
                 (characterstring-value), {\"hex\": ...} (octet string, opaque), an array (bit string, list), or \
                 null",
            ))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ArrayBuilder::new())
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property("hex", ObjectBuilder::new().schema_type(Type::String).pattern(Some("^([0-9a-f]{2})*$")))
                    .required("hex"),
            )
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .examples([json!(21.4)])
            .into()
    }
}

impl ToSchema for PointValue {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PointValue")
    }
}

// ---------------------------------------------------------------- enums

/// How much a cached value can be trusted: `stale` when older than three
/// poll intervals, `comm-failure` when the device did not answer the last
/// read, `error` when it answered with an error (see the point's `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QualityView {
    Good,
    Stale,
    CommFailure,
    Error,
}

impl From<Quality> for QualityView {
    fn from(q: Quality) -> Self {
        match q {
            Quality::Good => Self::Good,
            Quality::Stale => Self::Stale,
            Quality::CommFailure => Self::CommFailure,
            Quality::Error => Self::Error,
        }
    }
}

/// Where a device is in its life: `enrolling` (reading its Device object and
/// point list), `online`, `degraded` (some points fail), `offline` (N
/// consecutive timeouts; re-probed with back-off), `failed` (supervision gave
/// up restarting it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceStatusView {
    Enrolling,
    Online,
    Degraded,
    Offline,
    Failed,
}

impl From<DeviceStatus> for DeviceStatusView {
    fn from(s: DeviceStatus) -> Self {
        match s {
            DeviceStatus::Enrolling => Self::Enrolling,
            DeviceStatus::Online => Self::Online,
            DeviceStatus::Degraded => Self::Degraded,
            DeviceStatus::Offline => Self::Offline,
            DeviceStatus::Failed => Self::Failed,
        }
    }
}

/// Segmentation support the device announces (BACnetSegmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SegmentationView {
    Both,
    Transmit,
    Receive,
    None,
}

impl From<Segmentation> for SegmentationView {
    fn from(s: Segmentation) -> Self {
        match s {
            Segmentation::Both => Self::Both,
            Segmentation::Transmit => Self::Transmit,
            Segmentation::Receive => Self::Receive,
            Segmentation::None => Self::None,
        }
    }
}

// ---------------------------------------------------------------- points

/// BACnet Status_Flags of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusFlagsView {
    pub in_alarm: bool,
    pub fault: bool,
    pub overridden: bool,
    pub out_of_service: bool,
}

impl From<StatusFlags> for StatusFlagsView {
    fn from(f: StatusFlags) -> Self {
        Self { in_alarm: f.in_alarm, fault: f.fault, overridden: f.overridden, out_of_service: f.out_of_service }
    }
}

/// The BACnet error a device answered the last read of this point with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"class": 2, "code": 32, "text": "property:unknown-property"}))]
pub struct PointErrorView {
    /// BACnetErrorClass.
    pub class: u32,
    /// BACnetErrorCode.
    pub code: u32,
    /// Class and code by name.
    pub text: String,
}

/// One point (BACnet object) of a device with its cached value.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PointView {
    /// The object, `type:instance`.
    #[schema(example = "analog-input:1")]
    pub object: String,
    /// Object_Name.
    #[schema(example = "Zone Temp")]
    pub name: String,
    pub description: String,
    #[schema(required = true)]
    pub value: PointValue,
    /// Engineering units by name (analog objects), else null.
    #[schema(required = true, example = "degrees-celsius")]
    pub units: Option<String>,
    /// The quality now (a good value goes stale after three poll intervals).
    pub quality: QualityView,
    #[schema(required = true)]
    pub status_flags: Option<StatusFlagsView>,
    /// When the value or its quality last changed (RFC 3339 with
    /// milliseconds), null if never.
    #[schema(required = true, format = DateTime, example = "2026-11-26T02:10:03.120Z")]
    pub updated_at: Option<String>,
    /// Has a priority array: writes take a priority and null relinquishes.
    pub commandable: bool,
    #[schema(example = 10000)]
    pub poll_interval_ms: u64,
    /// Updated by COV notifications between polls.
    pub cov: bool,
    /// Only when the last read failed with a BACnet error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<PointErrorView>,
    /// Multi-state objects only: the text of the current state (null when
    /// the value is out of range).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    pub state_text: Option<Option<String>>,
    /// Multi-state objects only: State_Text, state 1 first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_texts: Vec<String>,
    /// Why COV is not used although configured (the device refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cov_refused: Option<String>,
    /// `true` when the value was just read from the device (`?live=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// The lease on the point (null: none); with several leased slots, the
    /// one of the highest priority.
    pub lease: Option<PointLease>,
}

/// The lease on a point, as the point shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PointLease {
    #[schema(minimum = 1, maximum = 16, example = 8)]
    pub priority: u8,
    /// The value the lease holds.
    #[schema(required = true)]
    pub value: PointValue,
    /// When plantwatch relinquishes the slot.
    #[schema(format = DateTime, example = "2026-11-26T02:25:00.000Z")]
    pub until: String,
}

/// A leased write: plantwatch relinquishes its priority slot at `until`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LeaseView {
    #[schema(example = 1001)]
    pub device: u32,
    #[schema(example = "bldg-a")]
    pub network: String,
    #[schema(example = "analog-output:1")]
    pub object: String,
    #[schema(minimum = 1, maximum = 16, example = 8)]
    pub priority: u8,
    /// The value written, as given.
    #[schema(required = true)]
    pub value: PointValue,
    /// When the lease was granted (or last renewed).
    #[schema(format = DateTime, example = "2026-11-26T02:10:00.000Z")]
    pub since: String,
    /// When plantwatch relinquishes the slot.
    #[schema(format = DateTime, example = "2026-11-26T02:25:00.000Z")]
    pub until: String,
    /// The API key that wrote it.
    #[schema(example = "anonymous")]
    pub key_id: String,
    /// Times the slot was written again because the device lost it.
    pub reasserts: u64,
}

impl PointView {
    pub fn new(p: &Point, now: Millis) -> Self {
        let multi_state = !p.state_text.is_empty();
        Self {
            object: p.object.to_string(),
            name: p.name.clone(),
            description: p.description.clone(),
            value: PointValue(p.value.as_ref().map_or(Json::Null, |v| value(p.object, v))),
            units: p.units.map(units_name),
            quality: p.quality_at(now).into(),
            status_flags: p.status_flags.map(Into::into),
            updated_at: rfc3339(p.updated_at),
            commandable: p.commandable,
            poll_interval_ms: p.poll_ms,
            cov: p.cov_wanted && p.cov_refused.is_none(),
            error: p.error.map(|e| PointErrorView { class: e.class, code: e.code, text: e.to_string() }),
            state_text: multi_state.then(|| {
                p.value
                    .as_ref()
                    .and_then(Value::as_unsigned)
                    .and_then(|n| p.state_text.get((n as usize).checked_sub(1)?))
                    .cloned()
            }),
            state_texts: p.state_text.clone(),
            cov_refused: p.cov_refused.clone(),
            live: None,
            lease: None,
        }
    }
}

// ---------------------------------------------------------------- devices

/// Where a routed device sits behind a BACnet router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"network": 5, "mac": "0a"}))]
pub struct RouteView {
    /// The remote network number.
    pub network: u16,
    /// The device's MAC on that network, hex.
    pub mac: String,
}

impl From<Route> for RouteView {
    fn from(r: Route) -> Self {
        Self { network: r.network, mac: r.mac.to_string() }
    }
}

/// What the device can do, as learned at enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CapabilitiesView {
    /// Polls use ReadPropertyMultiple.
    pub rpm: bool,
    /// Why polls fell back to ReadProperty.
    #[schema(required = true)]
    pub rpm_fallback_reason: Option<String>,
    #[schema(required = true)]
    pub segmentation: Option<SegmentationView>,
    /// Max_APDU_Length_Accepted (null until enrolled).
    #[schema(required = true, example = 1476)]
    pub max_apdu: Option<u32>,
    /// Protocol_Services_Supported lists SubscribeCOV.
    pub cov: bool,
}

/// Counters of one device, kept across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeviceCountersView {
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub timeouts: u64,
    /// Restarts of the device's actor by its supervisor.
    pub restarts: u64,
    pub enrolments: u64,
    /// Polls that started later than their due time plus the overrun window.
    pub overruns: u64,
    /// COV watchdog reads of a subscribed value after a quiet time.
    pub cov_checks: u64,
    /// Times the COV watchdog found the subscriptions silent and subscribed again.
    pub cov_silent: u64,
}

impl From<DeviceCounters> for DeviceCountersView {
    fn from(c: DeviceCounters) -> Self {
        Self {
            polls_ok: c.polls_ok,
            polls_failed: c.polls_failed,
            timeouts: c.timeouts,
            restarts: c.restarts,
            enrolments: c.enrolments,
            overruns: c.overruns,
            cov_checks: c.cov_checks,
            cov_silent: c.cov_silent,
        }
    }
}

/// A device: identity, status, capabilities, counters, last error.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeviceView {
    /// The BACnet device instance, 0..4194302.
    #[schema(example = 1001, maximum = 4194302)]
    pub instance: u32,
    /// The configured network it is on.
    #[schema(example = "bldg-a")]
    pub network: String,
    /// The configured label, else the device's Object_Name.
    #[schema(example = "AHU-1")]
    pub name: String,
    /// The IP address and UDP port it (or its router) answers on.
    #[schema(example = "192.168.1.20:47808")]
    pub address: String,
    /// Null for a device on the local network.
    #[schema(required = true)]
    pub route: Option<RouteView>,
    pub status: DeviceStatusView,
    /// Vendor_Name (null until enrolled).
    #[schema(required = true)]
    pub vendor: Option<String>,
    #[schema(required = true)]
    pub vendor_id: Option<u32>,
    /// Model_Name.
    #[schema(required = true)]
    pub model: Option<String>,
    /// Firmware_Revision.
    #[schema(required = true)]
    pub firmware: Option<String>,
    /// Database_Revision, when the device has it.
    #[schema(required = true)]
    pub database_revision: Option<u64>,
    /// When the device last answered (RFC 3339), null if never.
    #[schema(required = true, format = DateTime, example = "2026-11-26T02:10:00.000Z")]
    pub last_seen: Option<String>,
    /// The last failure talking to it.
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub capabilities: CapabilitiesView,
    /// How many points it has.
    #[schema(example = 21)]
    pub points: usize,
    /// Active COV subscriptions.
    pub cov_subscriptions: u32,
    /// The COV watchdog found the subscriptions silent (a value moved without
    /// a notification): the device is being subscribed again, its points
    /// polled meanwhile.
    pub cov_silent: bool,
    pub counters: DeviceCountersView,
}

impl DeviceView {
    pub fn new(s: &DeviceSnapshot) -> Self {
        let id = s.identity.as_ref();
        Self {
            instance: s.instance,
            network: s.network.clone(),
            name: s.name().to_string(),
            address: s.address.to_string(),
            route: s.route.map(Into::into),
            status: s.status.into(),
            vendor: id.map(|i| i.vendor_name.clone()),
            vendor_id: id.map(|i| i.vendor_id),
            model: id.map(|i| i.model_name.clone()),
            firmware: id.map(|i| i.firmware_revision.clone()),
            database_revision: id.and_then(|i| i.database_revision),
            last_seen: s.last_seen.and_then(rfc3339),
            last_error: s.last_error.clone(),
            capabilities: CapabilitiesView {
                rpm: s.use_rpm,
                rpm_fallback_reason: s.rpm_fallback_reason.clone(),
                segmentation: id.and_then(|i| i.segmentation).map(Into::into),
                max_apdu: id.map(|i| i.max_apdu),
                cov: id.is_some_and(|i| i.cov_listed),
            },
            points: s.points.len(),
            cov_subscriptions: s.cov_subscriptions,
            cov_silent: s.cov_silent,
            counters: s.counters.into(),
        }
    }
}

// ---------------------------------------------------------------- lists

macro_rules! list_page {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        ///
        /// One page: the items and the cursor of the next page (null on the
        /// last page). Pass `next_cursor` as `cursor`, with the same `sort`.
        #[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            /// Opaque; null on the last page.
            #[schema(required = true)]
            pub next_cursor: Option<String>,
        }
    };
}

list_page!(
    /// Devices.
    DeviceList,
    DeviceView
);
list_page!(
    /// Points of a device.
    PointList,
    PointView
);
list_page!(
    /// Networks (one page: there are few).
    NetworkList,
    NetworkView
);
list_page!(
    /// Leased writes, by device, object and priority.
    LeaseList,
    LeaseView
);
list_page!(
    /// Audited write attempts, oldest first.
    AuditList,
    AuditRecordView
);

/// Device counts of a network by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusCounts {
    pub enrolling: usize,
    pub online: usize,
    pub degraded: usize,
    pub offline: usize,
    pub failed: usize,
}

/// A configured BACnet/IP network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NetworkView {
    #[schema(example = "bldg-a")]
    pub name: String,
    /// The local address its transport is bound to.
    #[schema(example = "192.168.1.10:47808")]
    pub bind: String,
    /// Whether Who-Is discovery runs at start.
    pub discover: bool,
    /// Its devices.
    pub devices: usize,
    pub by_status: StatusCounts,
}

// ---------------------------------------------------------------- history

/// One recorded value of a point.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistorySample {
    #[schema(format = DateTime, example = "2026-11-26T02:10:03.120Z")]
    pub time: String,
    /// A number, or `"active"`/`"inactive"` for binary objects.
    pub value: PointValue,
    pub quality: QualityView,
}

/// A page of a point's history, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryPage {
    #[schema(example = "analog-input:1")]
    pub object: String,
    #[schema(required = true, example = "degrees-celsius")]
    pub units: Option<String>,
    pub items: Vec<HistorySample>,
    /// Opaque; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------- writes

/// A write to a point. Validated against the object type: analog objects take
/// a number, binary objects `"active"`/`"inactive"` (or `true`/`false`,
/// `1`/`0`), multi-state objects a state number 1..N, characterstring-value a
/// string of at most 1000 bytes. Every attempt, valid or not, is audited.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"value": 42.0, "priority": 8}))]
pub struct WriteBody {
    /// The value to write; null relinquishes the command at `priority`.
    #[schema(required = true)]
    pub value: PointValue,
    /// The BACnet priority 1..16 (1 highest); omitted: the device's default.
    #[schema(minimum = 1, maximum = 16, example = 8)]
    pub priority: Option<u8>,
    /// Hold the write this long (e.g. `"15m"`, at most `server.max_lease`),
    /// then relinquish it; needs a priority. Omitted: the write is permanent
    /// (and ends a lease on the same slot).
    #[schema(nullable = false, example = "15m")]
    pub lease: Option<String>,
    /// The property to write, by name; default `present-value`.
    #[schema(nullable = false, example = "present-value")]
    pub property: Option<String>,
}

/// The outcome of a write that the device accepted, with a read-back of the
/// point's Priority_Array and Present_Value.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WriteAnswer {
    #[schema(example = "analog-output:1")]
    pub object: String,
    #[schema(example = "present-value")]
    pub property: String,
    /// The priority written at (null: none given).
    #[schema(required = true, minimum = 1, maximum = 16, example = 8)]
    pub priority: Option<u8>,
    /// The value as given in the request (null: relinquished).
    #[schema(required = true)]
    pub value: PointValue,
    /// Always `accepted` in a 200 answer; refusals are errors.
    #[schema(example = "accepted")]
    pub outcome: String,
    /// The highest priority now commanding the point, from the read-back
    /// (null: none, the relinquish default applies; or not commandable).
    #[schema(required = true, minimum = 1, maximum = 16, example = 8)]
    pub active_priority: Option<u8>,
    /// Present_Value read back after the write.
    #[schema(required = true)]
    pub present_value: PointValue,
    #[schema(example = "0f6c2d8e4b1a4f7e9c3d5a6b7c8d9e0f")]
    pub request_id: String,
    /// The lease the write took (null: none; the write is permanent).
    #[schema(required = true)]
    pub lease: Option<LeaseView>,
}

// ---------------------------------------------------------------- discovery

/// Who-Is on a network. All fields optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"network": "bldg-a", "low": 1000, "high": 1999, "wait_ms": 2000}))]
pub struct DiscoveryBody {
    /// The configured network; required when there is more than one.
    pub network: Option<String>,
    /// Lowest device instance to ask for (with `high`).
    #[schema(maximum = 4194302)]
    pub low: Option<u32>,
    /// Highest device instance to ask for (with `low`), low <= high.
    #[schema(maximum = 4194302)]
    pub high: Option<u32>,
    /// How long to collect I-Am answers, 100..10000 ms and shorter than the
    /// request timeout; default 2000.
    #[schema(minimum = 100, maximum = 10000)]
    pub wait_ms: Option<u64>,
}

/// A device that answered Who-Is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FoundDevice {
    #[schema(example = 1001)]
    pub instance: u32,
    /// The IP address and port the I-Am came from.
    #[schema(example = "192.168.1.20:47808")]
    pub address: String,
    #[schema(required = true)]
    pub route: Option<RouteView>,
    #[schema(example = 1476)]
    pub max_apdu: u32,
    pub vendor_id: u32,
    /// Already configured or enrolled.
    pub known: bool,
}

/// The devices that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DiscoveryAnswer {
    #[schema(example = "bldg-a")]
    pub network: String,
    pub items: Vec<FoundDevice>,
}

// ---------------------------------------------------------------- audit

/// One audited write attempt.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditRecordView {
    /// Its place in the log, increasing.
    pub sequence: u64,
    #[schema(format = DateTime, example = "2026-11-26T02:11:40.512Z")]
    pub time: String,
    /// The API key that made the request.
    #[schema(example = "anonymous")]
    pub key_id: String,
    pub request_id: String,
    #[schema(example = 1001)]
    pub device: u32,
    #[schema(example = "analog-output:1")]
    pub object: String,
    #[schema(example = "present-value")]
    pub property: String,
    #[schema(required = true, minimum = 1, maximum = 16)]
    pub priority: Option<u8>,
    /// The cached value before the write.
    #[schema(required = true)]
    pub old_value: PointValue,
    /// The value as given in the request.
    #[schema(required = true)]
    pub new_value: PointValue,
    /// `accepted`, `refused` (the device said no), `failed` (no answer,
    /// device unavailable) or `invalid` (refused by validation).
    pub outcome: AuditOutcome,
    /// What went wrong: `{"message": ..}` or the BACnet error in `bacnet`.
    #[schema(required = true, value_type = Option<Object>)]
    pub error: Option<Json>,
    /// Who wrote: `api` (a request), `lease` (plantwatch itself, for a lease).
    #[schema(example = "api")]
    pub actor: Option<String>,
    /// What plantwatch did for a lease (actor `lease`): `expired` (the slot
    /// relinquished) or `reasserted` (written again after the device lost it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The lease the write took, e.g. `"15m"` (null: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// When the lease runs (ran) out.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub lease_until: Option<String>,
    /// The priority in control after a lease action (read back).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 16)]
    pub active_priority: Option<u8>,
    /// Present_Value after a lease action (read back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present_value: Option<PointValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuditOutcome {
    Accepted,
    Refused,
    Failed,
    Invalid,
}

// ---------------------------------------------------------------- keys

/// An API key as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct KeyView {
    #[schema(example = "3f2a9c01d4e5")]
    pub id: String,
    #[schema(example = "building-management")]
    pub name: String,
    /// `read`, `operator` or `admin`.
    #[schema(example = "operator")]
    pub role: String,
    #[schema(format = DateTime, example = "2026-11-26T02:11:40.512Z")]
    pub created: String,
    #[schema(required = true, format = DateTime)]
    pub last_used: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub revoked: Option<String>,
}

/// Every API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
    /// Always null: the list is not paginated.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A new key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyCreateBody {
    /// A label: who or what uses the key (1 to 100 characters).
    #[schema(example = "building-management")]
    pub name: String,
    /// `read`, `operator` or `admin`.
    #[schema(example = "operator")]
    pub role: String,
}

/// The key just made: `key` is shown this once and cannot be read again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyCreated {
    #[schema(example = "3f2a9c01d4e5")]
    pub id: String,
    pub name: String,
    #[schema(example = "operator")]
    pub role: String,
    #[schema(format = DateTime)]
    pub created: String,
    #[schema(example = "pw_9d4c0b8e3a1f...")]
    pub key: String,
}

impl KeyCreated {
    pub fn new(view: KeyView, key: String) -> Self {
        Self { id: view.id, name: view.name, role: view.role, created: view.created, key }
    }
}

pub fn key(r: &crate::api::auth::KeyRecord) -> KeyView {
    let t = |ms: u64| time(ms).as_str().map(str::to_string);
    KeyView {
        id: r.id.clone(),
        name: r.name.clone(),
        role: r.role.as_str().to_string(),
        created: t(r.created).unwrap_or_default(),
        last_used: r.last_used.and_then(t),
        revoked: r.revoked.and_then(t),
    }
}

// ---------------------------------------------------------------- health

/// Liveness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct HealthView {
    #[schema(example = "ok")]
    pub status: String,
}

/// Device counts by status (not counting enrolling devices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReadyCounts {
    pub online: usize,
    pub degraded: usize,
    pub offline: usize,
    pub failed: usize,
}

/// Readiness: the store is open and the supervisors are up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReadyView {
    #[schema(example = "ready")]
    pub status: String,
    pub devices: usize,
    pub by_status: ReadyCounts,
}

// ---------------------------------------------------------------- errors

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    #[schema(example = "limit")]
    pub field: String,
    #[schema(example = "must be 1..1000")]
    pub reason: String,
}

/// Every non-2xx answer, including unknown routes (404), wrong methods (405)
/// and bodies that are too large (413).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code (see docs/errors.md); each maps to one HTTP status.
    #[schema(schema_with = error_code_schema)]
    pub code: String,
    /// For people; may change.
    pub message: String,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// The request's id, also in the `X-Request-Id` header.
    pub request_id: String,
    /// `fields` for validation errors (each bad field and why); `bacnet` when
    /// a device refused (kind, error class and code, or reject/abort reason).
    pub details: ErrorDetails,
}

/// Details of an error; more keys may be added.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
    /// What the device said: `{"kind": "error", "class", "code", "text"}`,
    /// `{"kind": "reject"|"abort", "reason", "text"}`, `{"kind": "timeout",
    /// "attempts"}` or `{"kind": "local", "text"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub bacnet: Option<Json>,
}

/// The `code` enum: every stable code of [`ErrorCode::ALL`].
pub fn error_code_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
        .examples([json!("DEVICE_NOT_FOUND")])
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plantwatch_actors::bacnet::types::Address;
    use plantwatch_actors::plant::model::DeviceIdentity;

    #[test]
    fn reals_are_shown_as_their_shortest_decimal() {
        let ai = ObjectId::new(object_type::ANALOG_INPUT, 1);
        assert_eq!(value(ai, &Value::Real(21.4)).to_string(), "21.4");
        assert_eq!(value(ai, &Value::Real(42.0)).to_string(), "42.0");
        assert_eq!(value(ai, &Value::Real(-0.1)).to_string(), "-0.1");
        assert_eq!(value(ai, &Value::Real(3.4e38)).as_f64(), Some(3.4e38));
        assert_eq!(value(ai, &Value::Real(1e-45)).as_f64(), Some(1e-45));
        assert_eq!(value(ai, &Value::Real(f32::NAN)), json!("NaN"));
        assert_eq!(value(ai, &Value::Double(21.4)).to_string(), "21.4");
    }

    /// The JSON of the typed views is what the `json!` views produced before
    /// them, field for field.
    #[test]
    fn typed_views_keep_the_json_shapes() {
        let mut p = Point::new(ObjectId::new(object_type::MULTI_STATE_VALUE, 2), Duration::from_secs(10), true);
        p.name = "Mode".into();
        p.value = Some(Value::Unsigned(2));
        p.state_text = vec!["off".into(), "heat".into(), "cool".into()];
        p.quality = Quality::Good;
        p.updated_at = 1_795_000_000_123;
        p.cov_refused = Some("refused".into());
        let j = point(&p, p.updated_at + 1);
        assert_eq!(j["object"], "multi-state-value:2");
        assert_eq!(j["value"], 2);
        assert_eq!(j["state_text"], "heat");
        assert_eq!(j["state_texts"], json!(["off", "heat", "cool"]));
        assert_eq!(j["quality"], "good");
        assert_eq!(j["units"], Json::Null);
        assert_eq!(j["status_flags"], Json::Null);
        assert_eq!(j["cov"], false);
        assert_eq!(j["cov_refused"], "refused");
        assert_eq!(j["updated_at"], "2026-11-18T11:06:40.123Z");
        assert!(j.get("error").is_none() && j.get("live").is_none());

        // out of range: state_text is there, and null
        p.value = Some(Value::Unsigned(9));
        assert_eq!(point(&p, p.updated_at)["state_text"], Json::Null);
        assert!(point(&p, p.updated_at).as_object().is_some_and(|m| m.contains_key("state_text")));

        let mut b = Point::new(ObjectId::new(object_type::BINARY_OUTPUT, 1), Duration::from_secs(10), false);
        b.value = Some(Value::Enumerated(1));
        b.status_flags = Some(StatusFlags::default());
        let j = point(&b, 0);
        assert_eq!(j["value"], "active");
        assert_eq!(j["updated_at"], Json::Null);
        assert_eq!(
            j["status_flags"],
            json!({"in_alarm": false, "fault": false, "overridden": false, "out_of_service": false})
        );
        assert!(j.get("state_text").is_none() && j.get("state_texts").is_none());

        let mut s = DeviceSnapshot::new(1001, "bldg-a", Address::direct("192.168.1.20:47808".parse().unwrap()), None);
        let j = device(&s);
        assert_eq!(j["name"], "");
        assert_eq!(j["route"], Json::Null);
        assert_eq!(j["last_seen"], Json::Null);
        assert_eq!(
            j["capabilities"],
            json!({"rpm": true, "rpm_fallback_reason": null, "segmentation": null, "max_apdu": null, "cov": false})
        );
        s.identity = Some(DeviceIdentity {
            name: "AHU-1".into(),
            segmentation: Some(Segmentation::Both),
            max_apdu: 1476,
            cov_listed: true,
            ..Default::default()
        });
        s.last_seen = Some(1_795_000_000_000);
        let j = device(&s);
        assert_eq!(j["name"], "AHU-1");
        assert_eq!(j["status"], "enrolling");
        assert_eq!(j["address"], "192.168.1.20:47808");
        assert_eq!(j["last_seen"], "2026-11-18T11:06:40.000Z");
        assert_eq!(j["capabilities"]["segmentation"], "both");
        assert_eq!(j["capabilities"]["max_apdu"], 1476);
        assert_eq!(j["points"], 0);
        assert_eq!(
            j["counters"],
            json!({"polls_ok": 0, "polls_failed": 0, "timeouts": 0, "restarts": 0, "enrolments": 0, "overruns": 0,
                   "cov_checks": 0, "cov_silent": 0})
        );
        let keys: Vec<&str> = j.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
        for k in [
            "instance",
            "network",
            "name",
            "address",
            "route",
            "status",
            "vendor",
            "vendor_id",
            "model",
            "firmware",
            "database_revision",
            "last_seen",
            "last_error",
            "capabilities",
            "points",
            "cov_subscriptions",
            "cov_silent",
            "counters",
        ] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        assert_eq!(keys.len(), 18);
    }
}
