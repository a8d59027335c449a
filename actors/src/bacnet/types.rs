//! BACnet vocabulary: object identifiers, addresses, bit strings and the
//! names of object types, properties, units and errors. Names come from
//! bacnet-rs's enums, turned into the kebab-case spelling of the standard
//! (`analog-input`, `present-value`, `degrees-celsius`).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::OnceLock;

use bacnet_rs::object::{EngineeringUnits, ObjectType, PropertyIdentifier};

/// Object type numbers used by plantwatch and its simulator.
pub mod object_type {
    pub const ANALOG_INPUT: u16 = 0;
    pub const ANALOG_OUTPUT: u16 = 1;
    pub const ANALOG_VALUE: u16 = 2;
    pub const BINARY_INPUT: u16 = 3;
    pub const BINARY_OUTPUT: u16 = 4;
    pub const BINARY_VALUE: u16 = 5;
    pub const DEVICE: u16 = 8;
    pub const MULTI_STATE_INPUT: u16 = 13;
    pub const MULTI_STATE_OUTPUT: u16 = 14;
    pub const MULTI_STATE_VALUE: u16 = 19;
    /// `characterstring-value` in the standard's spelling.
    pub const CHARACTER_STRING_VALUE: u16 = 40;
}

/// Property identifiers used by plantwatch and its simulator.
pub mod property {
    pub const ALL: u32 = 8;
    pub const DESCRIPTION: u32 = 28;
    pub const FIRMWARE_REVISION: u32 = 44;
    pub const MAX_APDU_LENGTH_ACCEPTED: u32 = 62;
    pub const MODEL_NAME: u32 = 70;
    pub const NUMBER_OF_STATES: u32 = 74;
    pub const OBJECT_IDENTIFIER: u32 = 75;
    pub const OBJECT_LIST: u32 = 76;
    pub const OBJECT_NAME: u32 = 77;
    pub const OBJECT_TYPE: u32 = 79;
    pub const OPTIONAL: u32 = 80;
    pub const OUT_OF_SERVICE: u32 = 81;
    pub const POLARITY: u32 = 84;
    pub const PRESENT_VALUE: u32 = 85;
    pub const PRIORITY_ARRAY: u32 = 87;
    pub const PROTOCOL_SERVICES_SUPPORTED: u32 = 97;
    pub const PROTOCOL_VERSION: u32 = 98;
    pub const RELIABILITY: u32 = 103;
    pub const RELINQUISH_DEFAULT: u32 = 104;
    pub const REQUIRED: u32 = 105;
    pub const SEGMENTATION_SUPPORTED: u32 = 107;
    pub const STATE_TEXT: u32 = 110;
    pub const STATUS_FLAGS: u32 = 111;
    pub const SYSTEM_STATUS: u32 = 112;
    pub const UNITS: u32 = 117;
    pub const VENDOR_IDENTIFIER: u32 = 120;
    pub const VENDOR_NAME: u32 = 121;
    pub const COV_INCREMENT: u32 = 22;
    pub const EVENT_STATE: u32 = 36;
    pub const PROTOCOL_REVISION: u32 = 139;
    pub const DATABASE_REVISION: u32 = 155;
    pub const APDU_TIMEOUT: u32 = 11;
    pub const NUMBER_OF_APDU_RETRIES: u32 = 73;
    pub const PROTOCOL_OBJECT_TYPES_SUPPORTED: u32 = 96;
    pub const DEVICE_ADDRESS_BINDING: u32 = 30;
    pub const CURRENT_COMMAND_PRIORITY: u32 = 431;
    pub const APPLICATION_SOFTWARE_VERSION: u32 = 12;
}

/// Service choices (clause 21).
pub mod service {
    pub const CONFIRMED_COV_NOTIFICATION: u8 = 1;
    pub const SUBSCRIBE_COV: u8 = 5;
    pub const READ_PROPERTY: u8 = 12;
    pub const READ_PROPERTY_MULTIPLE: u8 = 14;
    pub const WRITE_PROPERTY: u8 = 15;

    pub const I_AM: u8 = 0;
    pub const UNCONFIRMED_COV_NOTIFICATION: u8 = 2;
    pub const WHO_IS: u8 = 8;
}

/// The name of a confirmed service choice (clause 21), for metrics and logs.
pub fn confirmed_service_name(choice: u8) -> &'static str {
    match choice {
        0 => "acknowledge-alarm",
        1 => "confirmed-cov-notification",
        2 => "confirmed-event-notification",
        3 => "get-alarm-summary",
        4 => "get-enrollment-summary",
        5 => "subscribe-cov",
        6 => "atomic-read-file",
        7 => "atomic-write-file",
        8 => "add-list-element",
        9 => "remove-list-element",
        10 => "create-object",
        11 => "delete-object",
        12 => "read-property",
        14 => "read-property-multiple",
        15 => "write-property",
        16 => "write-property-multiple",
        17 => "device-communication-control",
        18 => "confirmed-private-transfer",
        19 => "confirmed-text-message",
        20 => "reinitialize-device",
        26 => "read-range",
        28 => "subscribe-cov-property",
        29 => "get-event-information",
        _ => "other",
    }
}

/// Bit positions in Protocol_Services_Supported (BACnetServicesSupported).
pub mod services_supported {
    pub const CONFIRMED_COV_NOTIFICATION: usize = 1;
    pub const SUBSCRIBE_COV: usize = 5;
    pub const READ_PROPERTY: usize = 12;
    pub const READ_PROPERTY_MULTIPLE: usize = 14;
    pub const WRITE_PROPERTY: usize = 15;
    pub const I_AM: usize = 26;
    pub const UNCONFIRMED_COV_NOTIFICATION: usize = 28;
    pub const WHO_IS: usize = 34;
    /// Number of bits in BACnetServicesSupported (protocol revision 14+).
    pub const LEN: usize = 44;
}

/// Object identifier: a 10-bit type and a 22-bit instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub object_type: u16,
    pub instance: u32,
}

/// The largest instance number; 4194303 means "unspecified".
pub const MAX_INSTANCE: u32 = 4_194_302;

impl ObjectId {
    pub const fn new(object_type: u16, instance: u32) -> Self {
        Self { object_type, instance }
    }

    pub const fn from_raw(raw: u32) -> Self {
        Self { object_type: (raw >> 22) as u16, instance: raw & 0x3F_FFFF }
    }

    pub const fn raw(self) -> u32 {
        ((self.object_type as u32 & 0x3FF) << 22) | (self.instance & 0x3F_FFFF)
    }

    pub const fn device(instance: u32) -> Self {
        Self::new(object_type::DEVICE, instance)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", object_type_name(self.object_type), self.instance)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl FromStr for ObjectId {
    type Err = ParseError;

    /// Parses `analog-input:3` (or `0:3`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ty, inst) = s
            .split_once(':')
            .ok_or_else(|| ParseError(format!("'{s}' is not an object reference like 'analog-input:3'")))?;
        let object_type = parse_object_type(ty)?;
        let instance: u32 = inst.parse().map_err(|_| ParseError(format!("instance '{inst}' is not a number")))?;
        if instance > MAX_INSTANCE {
            return Err(ParseError(format!("instance {instance} is above {MAX_INSTANCE}")));
        }
        Ok(Self::new(object_type, instance))
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `PresentValue` → `present-value`.
fn kebab(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn named(display: String) -> Option<String> {
    (!display.starts_with("Custom(") && !display.starts_with("Reserved(")).then(|| kebab(&display))
}

pub fn object_type_name(t: u16) -> String {
    named(ObjectType::from(u32::from(t)).to_string()).unwrap_or_else(|| t.to_string())
}

pub fn property_name(p: u32) -> String {
    named(PropertyIdentifier::from(p).to_string()).unwrap_or_else(|| p.to_string())
}

/// Engineering units by their standard name (`degrees-celsius`).
pub fn units_name(u: u32) -> String {
    let name = EngineeringUnits::from(u).bacnet_name();
    if name.starts_with("Custom(") || name.starts_with("Reserved(") {
        u.to_string()
    } else {
        name
    }
}

fn lookup(table: &'static OnceLock<HashMap<String, u32>>, build: fn() -> HashMap<String, u32>, s: &str) -> Option<u32> {
    table.get_or_init(build).get(s).copied().or_else(|| s.parse().ok())
}

pub fn parse_object_type(s: &str) -> Result<u16, ParseError> {
    static TABLE: OnceLock<HashMap<String, u32>> = OnceLock::new();
    lookup(&TABLE, || (0..128u32).filter_map(|t| Some((named(ObjectType::from(t).to_string())?, t))).collect(), s)
        .and_then(|t| u16::try_from(t).ok())
        .filter(|&t| t <= 1023)
        .ok_or_else(|| ParseError(format!("unknown object type '{s}'")))
}

pub fn parse_property(s: &str) -> Result<u32, ParseError> {
    static TABLE: OnceLock<HashMap<String, u32>> = OnceLock::new();
    lookup(
        &TABLE,
        || (0..1024u32).filter_map(|p| Some((named(PropertyIdentifier::from(p).to_string())?, p))).collect(),
        s,
    )
    .filter(|&p| p <= 4_194_303)
    .ok_or_else(|| ParseError(format!("unknown property '{s}'")))
}

/// The standard error classes (BACnetErrorClass), by number.
pub const ERROR_CLASSES: [&str; 8] =
    ["device", "object", "property", "resources", "security", "services", "vt", "communication"];

/// Error classes (BACnetErrorClass).
pub fn error_class_name(class: u32) -> String {
    ERROR_CLASSES.get(class as usize).map_or_else(|| class.to_string(), |s| (*s).to_string())
}

/// Error codes (BACnetErrorCode) that devices commonly send.
pub fn error_code_name(code: u32) -> String {
    let name = match code {
        0 => "other",
        2 => "configuration-in-progress",
        3 => "device-busy",
        4 => "dynamic-creation-not-supported",
        5 => "file-access-denied",
        7 => "inconsistent-parameters",
        8 => "inconsistent-selection-criterion",
        9 => "invalid-data-type",
        10 => "invalid-file-access-method",
        11 => "invalid-file-start-position",
        13 => "invalid-parameter-data-type",
        14 => "invalid-time-stamp",
        16 => "missing-required-parameter",
        17 => "no-objects-of-specified-type",
        18 => "no-space-for-object",
        19 => "no-space-to-add-list-element",
        20 => "no-space-to-write-property",
        21 => "no-vt-sessions-available",
        22 => "property-is-not-a-list",
        23 => "object-deletion-not-permitted",
        24 => "object-identifier-already-exists",
        25 => "operational-problem",
        26 => "password-failure",
        27 => "read-access-denied",
        29 => "service-request-denied",
        30 => "timeout",
        31 => "unknown-object",
        32 => "unknown-property",
        34 => "unknown-vt-class",
        35 => "unknown-vt-session",
        36 => "unsupported-object-type",
        37 => "value-out-of-range",
        38 => "vt-session-already-closed",
        39 => "vt-session-termination-failure",
        40 => "write-access-denied",
        41 => "character-set-not-supported",
        42 => "invalid-array-index",
        43 => "cov-subscription-failed",
        44 => "not-cov-property",
        45 => "optional-functionality-not-supported",
        46 => "invalid-configuration-data",
        47 => "datatype-not-supported",
        48 => "duplicate-name",
        49 => "duplicate-object-id",
        50 => "property-is-not-an-array",
        73 => "abort-buffer-overflow",
        74 => "abort-invalid-apdu-in-this-state",
        75 => "abort-preempted-by-higher-priority-task",
        76 => "abort-segmentation-not-supported",
        77 => "abort-proprietary",
        78 => "abort-other",
        79 => "invalid-tag",
        80 => "network-down",
        81 => "reject-buffer-overflow",
        82 => "reject-inconsistent-parameters",
        83 => "reject-invalid-parameter-data-type",
        84 => "reject-invalid-tag",
        85 => "reject-missing-required-parameter",
        86 => "reject-parameter-out-of-range",
        87 => "reject-too-many-arguments",
        88 => "reject-undefined-enumeration",
        89 => "reject-unrecognized-service",
        90 => "reject-proprietary",
        91 => "reject-other",
        92 => "unknown-device",
        93 => "unknown-route",
        94 => "value-not-initialized",
        123 => "not-configured",
        _ => return code.to_string(),
    };
    name.to_string()
}

pub fn reject_reason_name(reason: u8) -> String {
    named(bacnet_rs::service::RejectReason::from(reason).to_string()).unwrap_or_else(|| reason.to_string())
}

pub fn abort_reason_name(reason: u8) -> String {
    named(bacnet_rs::service::AbortReason::from(reason).to_string()).unwrap_or_else(|| reason.to_string())
}

/// Error classes and codes the simulator sends.
pub mod error {
    pub const CLASS_DEVICE: u32 = 0;
    pub const CLASS_OBJECT: u32 = 1;
    pub const CLASS_PROPERTY: u32 = 2;
    pub const CLASS_RESOURCES: u32 = 3;
    pub const CLASS_SERVICES: u32 = 5;
    pub const CODE_OTHER: u32 = 0;
    pub const CODE_INVALID_DATA_TYPE: u32 = 9;
    pub const CODE_SERVICE_REQUEST_DENIED: u32 = 29;
    pub const CODE_UNKNOWN_OBJECT: u32 = 31;
    pub const CODE_UNKNOWN_PROPERTY: u32 = 32;
    pub const CODE_VALUE_OUT_OF_RANGE: u32 = 37;
    pub const CODE_WRITE_ACCESS_DENIED: u32 = 40;
    pub const CODE_INVALID_ARRAY_INDEX: u32 = 42;
    pub const CODE_PROPERTY_IS_NOT_AN_ARRAY: u32 = 50;
    pub const CODE_COV_SUBSCRIPTION_FAILED: u32 = 43;
    pub const CODE_OPTIONAL_FUNCTIONALITY_NOT_SUPPORTED: u32 = 45;

    pub const REJECT_OTHER: u8 = 0;
    pub const REJECT_INVALID_PARAMETER_DATA_TYPE: u8 = 3;
    pub const REJECT_UNRECOGNIZED_SERVICE: u8 = 9;
    pub const REJECT_INVALID_TAG: u8 = 4;
    pub const REJECT_MISSING_REQUIRED_PARAMETER: u8 = 5;
    pub const ABORT_OTHER: u8 = 0;
    pub const ABORT_BUFFER_OVERFLOW: u8 = 1;
    pub const ABORT_SEGMENTATION_NOT_SUPPORTED: u8 = 4;
    pub const ABORT_WINDOW_SIZE_OUT_OF_RANGE: u8 = 7;
    pub const ABORT_OUT_OF_RESOURCES: u8 = 9;
}

/// Segmentation support of a device (BACnetSegmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Segmentation {
    Both,
    Transmit,
    Receive,
    None,
}

impl Segmentation {
    pub fn from_enumerated(v: u32) -> Self {
        match v {
            0 => Self::Both,
            1 => Self::Transmit,
            2 => Self::Receive,
            _ => Self::None,
        }
    }

    pub fn to_enumerated(self) -> u32 {
        match self {
            Self::Both => 0,
            Self::Transmit => 1,
            Self::Receive => 2,
            Self::None => 3,
        }
    }

    /// Whether the device can send segmented answers.
    pub fn can_transmit(self) -> bool {
        matches!(self, Self::Both | Self::Transmit)
    }
}

/// A BACnet bit string (Status_Flags, Protocol_Services_Supported...).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct BitString {
    bits: Vec<bool>,
}

impl BitString {
    pub fn new(bits: Vec<bool>) -> Self {
        Self { bits }
    }

    pub fn with_len(len: usize) -> Self {
        Self { bits: vec![false; len] }
    }

    pub fn from_wire(unused: u8, bytes: &[u8]) -> Self {
        let len = (bytes.len() * 8).saturating_sub(usize::from(unused));
        Self { bits: (0..len).map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0).collect() }
    }

    pub fn to_wire(&self) -> (u8, Vec<u8>) {
        let mut bytes = vec![0u8; self.bits.len().div_ceil(8)];
        for (i, _) in self.bits.iter().enumerate().filter(|(_, b)| **b) {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
        let unused = (bytes.len() * 8 - self.bits.len()) as u8;
        (unused, bytes)
    }

    pub fn get(&self, i: usize) -> bool {
        self.bits.get(i).copied().unwrap_or(false)
    }

    pub fn set(&mut self, i: usize, v: bool) {
        if i >= self.bits.len() {
            self.bits.resize(i + 1, false);
        }
        self.bits[i] = v;
    }

    pub fn len(&self) -> usize {
        self.bits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }
}

/// Status_Flags: in-alarm, fault, overridden, out-of-service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct StatusFlags {
    pub in_alarm: bool,
    pub fault: bool,
    pub overridden: bool,
    pub out_of_service: bool,
}

impl StatusFlags {
    pub fn from_bits(b: &BitString) -> Self {
        Self { in_alarm: b.get(0), fault: b.get(1), overridden: b.get(2), out_of_service: b.get(3) }
    }

    pub fn to_bits(self) -> BitString {
        BitString::new(vec![self.in_alarm, self.fault, self.overridden, self.out_of_service])
    }
}

/// A BACnet Date: year-1900, month, day, weekday (255 = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Date(pub [u8; 4]);

/// A BACnet Time: hour, minute, second, hundredths (255 = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Time(pub [u8; 4]);

/// A MAC address on a remote BACnet network (DADR/SADR), up to 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac {
    len: u8,
    bytes: [u8; 8],
}

impl Mac {
    /// No address: a broadcast on the destination network.
    pub const EMPTY: Mac = Mac { len: 0, bytes: [0; 8] };

    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 8 {
            return None;
        }
        let mut m = Self { len: bytes.len() as u8, bytes: [0; 8] };
        m.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(m)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_bytes().iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for Mac {
    type Err = ParseError;

    /// Hex digits, e.g. `0a` or `c0a8010abac0`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError(format!("'{s}' is not a MAC address in hex (1 to 8 bytes)"));
        if s.is_empty() || !s.len().is_multiple_of(2) || s.len() > 16 {
            return Err(bad());
        }
        let bytes: Result<Vec<u8>, _> =
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or(""), 16)).collect();
        Mac::new(&bytes.map_err(|_| bad())?).ok_or_else(bad)
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(Mac::default());
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A remote network and MAC: where a routed device lives behind a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub network: u16,
    pub mac: Mac,
}

/// Where a BACnet device is: the IP address it (or its router) answers on,
/// and the remote network and MAC when it sits behind a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Address {
    pub ip: SocketAddr,
    pub route: Option<Route>,
}

impl Address {
    pub fn direct(ip: SocketAddr) -> Self {
        Self { ip, route: None }
    }

    pub fn routed(ip: SocketAddr, network: u16, mac: Mac) -> Self {
        Self { ip, route: Some(Route { network, mac }) }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.route {
            None => write!(f, "{}", self.ip),
            Some(r) => write!(f, "{} via {}", r.network, self.ip).and_then(|_| write!(f, " mac {}", r.mac)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_parse_and_print() {
        let id: ObjectId = "analog-input:3".parse().unwrap();
        assert_eq!(id, ObjectId::new(0, 3));
        assert_eq!(id.to_string(), "analog-input:3");
        assert_eq!("multi-state-value:1".parse::<ObjectId>().unwrap().object_type, 19);
        assert_eq!("characterstring-value:1".parse::<ObjectId>().unwrap().object_type, 40);
        assert_eq!("device:4194302".parse::<ObjectId>().unwrap(), ObjectId::device(4_194_302));
        assert!("device:4194303".parse::<ObjectId>().is_err());
        assert!("analog-inptu:1".parse::<ObjectId>().is_err());
        assert!("analog-input".parse::<ObjectId>().is_err());
        assert_eq!(ObjectId::from_raw(ObjectId::new(8, 1001).raw()), ObjectId::new(8, 1001));
    }

    #[test]
    fn names_are_kebab_case() {
        assert_eq!(property_name(85), "present-value");
        assert_eq!(property_name(76), "object-list");
        assert_eq!(parse_property("protocol-services-supported").unwrap(), 97);
        assert_eq!(units_name(62), "degrees-celsius");
        assert_eq!(error_code_name(32), "unknown-property");
        assert_eq!(reject_reason_name(9), "unrecognized-service");
        assert_eq!(abort_reason_name(4), "segmentation-not-supported");
        assert_eq!(property_name(3_999_999), "3999999");
    }

    #[test]
    fn bit_strings_round_trip() {
        let mut b = BitString::with_len(10);
        b.set(0, true);
        b.set(9, true);
        let (unused, bytes) = b.to_wire();
        assert_eq!((unused, bytes.as_slice()), (6, &[0x80, 0x40][..]));
        assert_eq!(BitString::from_wire(unused, &bytes), b);
    }

    #[test]
    fn macs_parse() {
        assert_eq!("0a".parse::<Mac>().unwrap().as_bytes(), &[10]);
        assert!("0".parse::<Mac>().is_err());
        assert!("zz".parse::<Mac>().is_err());
        assert!("".parse::<Mac>().is_err());
    }
}
