//! Service parameters (clauses 13, 15, 16): what goes inside a confirmed or
//! unconfirmed request and its acknowledgement.
//!
//! Decoders are plantwatch's own and walk untrusted bytes with [`Reader`].
//! Request encoders use bacnet-rs where it is right (ReadProperty,
//! ReadPropertyMultiple, SubscribeCOV, Who-Is) and plantwatch's writer where
//! it is not (WriteProperty: bacnet-rs writes property ids as one byte) or
//! where bacnet-rs has none (acknowledgements, I-Am, COV notifications).

use bacnet_rs::object::{ObjectIdentifier, ObjectType, PropertyIdentifier};
use bacnet_rs::service as bs;

use super::codec::{self, DecodeError, DecodeResult, Reader, Value};
use super::types::{ObjectId, Segmentation};

/// An encoder refused its input (out-of-range identifiers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode request: {0}")]
pub struct EncodeError(pub String);

fn bacnet_rs_object(id: ObjectId) -> ObjectIdentifier {
    ObjectIdentifier::new(ObjectType::from(u32::from(id.object_type)), id.instance)
}

fn encode_err(e: bacnet_rs::EncodingError) -> EncodeError {
    EncodeError(e.to_string())
}

/// An error class and code (from an Error PDU or an RPM access error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ErrorClassCode {
    pub class: u32,
    pub code: u32,
}

impl std::fmt::Display for ErrorClassCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", super::types::error_class_name(self.class), super::types::error_code_name(self.code))
    }
}

/// A property and optional array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PropertyRef {
    pub property: u32,
    pub index: Option<u32>,
}

impl PropertyRef {
    pub const fn new(property: u32) -> Self {
        Self { property, index: None }
    }

    pub const fn indexed(property: u32, index: u32) -> Self {
        Self { property, index: Some(index) }
    }
}

/// `[0] object [1] property [2] index? [3] { value }`: the head shared by
/// ReadProperty-ACK and WriteProperty.
fn write_object_property_value(buf: &mut Vec<u8>, object: ObjectId, property: PropertyRef, value: &Value) {
    codec::write_context_object_id(buf, 0, object);
    codec::write_context_enumerated(buf, 1, property.property);
    if let Some(i) = property.index {
        codec::write_context_unsigned(buf, 2, u64::from(i));
    }
    codec::write_opening(buf, 3);
    codec::write_application(buf, value);
    codec::write_closing(buf, 3);
}

fn read_object_property_value(r: &mut Reader<'_>) -> DecodeResult<(ObjectId, PropertyRef, Value)> {
    let object = r.context_object_id(0)?;
    let property = r.context_enumerated(1)?;
    let index = r.optional_context_u32(2)?;
    let value = r.enclosed_value(3)?;
    Ok((object, PropertyRef { property, index }, value))
}

// ---------------------------------------------------------------- ReadProperty

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPropertyRequest {
    pub object: ObjectId,
    pub property: PropertyRef,
}

impl ReadPropertyRequest {
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        let object = bacnet_rs_object(self.object);
        let property = PropertyIdentifier::from(self.property.property);
        let req = match self.property.index {
            None => bs::ReadPropertyRequest::new(object, property),
            Some(i) => bs::ReadPropertyRequest::with_array_index(object, property, i),
        };
        req.encode(buf).map_err(encode_err)
    }

    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(data);
        let object = r.context_object_id(0)?;
        let property = r.context_enumerated(1)?;
        let index = r.optional_context_u32(2)?;
        end(&r)?;
        Ok(Self { object, property: PropertyRef { property, index } })
    }
}

fn end(r: &Reader<'_>) -> DecodeResult<()> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Invalid("trailing bytes after the service parameters"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReadPropertyAck {
    pub object: ObjectId,
    pub property: PropertyRef,
    pub value: Value,
}

impl ReadPropertyAck {
    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(data);
        let (object, property, value) = read_object_property_value(&mut r)?;
        end(&r)?;
        Ok(Self { object, property, value })
    }

    pub fn encode(&self, buf: &mut Vec<u8>) {
        write_object_property_value(buf, self.object, self.property, &self.value);
    }
}

// ---------------------------------------------------------------- ReadPropertyMultiple

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAccessSpec {
    pub object: ObjectId,
    pub properties: Vec<PropertyRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPropertyMultipleRequest {
    pub specs: Vec<ReadAccessSpec>,
}

impl ReadPropertyMultipleRequest {
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        let specs = self
            .specs
            .iter()
            .map(|s| {
                let refs = s
                    .properties
                    .iter()
                    .map(|p| match p.index {
                        None => bs::PropertyReference::new(PropertyIdentifier::from(p.property)),
                        Some(i) => bs::PropertyReference::with_array_index(PropertyIdentifier::from(p.property), i),
                    })
                    .collect();
                bs::ReadAccessSpecification::new(bacnet_rs_object(s.object), refs)
            })
            .collect();
        bs::ReadPropertyMultipleRequest::new(specs).encode(buf).map_err(encode_err)
    }

    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(data);
        let mut specs = Vec::new();
        while !r.is_empty() {
            let object = r.context_object_id(0)?;
            r.expect_opening(1)?;
            let mut properties = Vec::new();
            while !r.at_closing(1) {
                let property = r.context_enumerated(0)?;
                let index = r.optional_context_u32(1)?;
                properties.push(PropertyRef { property, index });
            }
            r.expect_closing(1)?;
            if properties.is_empty() {
                return Err(DecodeError::Invalid("read access specification without properties"));
            }
            specs.push(ReadAccessSpec { object, properties });
        }
        if specs.is_empty() {
            return Err(DecodeError::Invalid("ReadPropertyMultiple without specifications"));
        }
        Ok(Self { specs })
    }
}

/// One property of a ReadPropertyMultiple answer: its value or its error.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyResult {
    pub object: ObjectId,
    pub property: PropertyRef,
    pub value: Result<Value, ErrorClassCode>,
}

/// Decodes a ReadPropertyMultiple-ACK into a flat list of results.
pub fn decode_rpm_ack(data: &[u8]) -> DecodeResult<Vec<PropertyResult>> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while !r.is_empty() {
        let object = r.context_object_id(0)?;
        r.expect_opening(1)?;
        while !r.at_closing(1) {
            let property = r.context_enumerated(2)?;
            let index = r.optional_context_u32(3)?;
            let value = if r.at_opening(4) {
                Ok(r.enclosed_value(4)?)
            } else {
                r.expect_opening(5)?;
                let class = r.application_enumerated()?;
                let code = r.application_enumerated()?;
                r.expect_closing(5)?;
                Err(ErrorClassCode { class, code })
            };
            out.push(PropertyResult { object, property: PropertyRef { property, index }, value });
        }
        r.expect_closing(1)?;
    }
    Ok(out)
}

/// Encodes a ReadPropertyMultiple-ACK; consecutive results for one object
/// share its list of results.
pub fn encode_rpm_ack(buf: &mut Vec<u8>, results: &[PropertyResult]) {
    let mut current: Option<ObjectId> = None;
    for res in results {
        if current != Some(res.object) {
            if current.is_some() {
                codec::write_closing(buf, 1);
            }
            codec::write_context_object_id(buf, 0, res.object);
            codec::write_opening(buf, 1);
            current = Some(res.object);
        }
        codec::write_context_enumerated(buf, 2, res.property.property);
        if let Some(i) = res.property.index {
            codec::write_context_unsigned(buf, 3, u64::from(i));
        }
        match &res.value {
            Ok(v) => {
                codec::write_opening(buf, 4);
                codec::write_application(buf, v);
                codec::write_closing(buf, 4);
            }
            Err(e) => {
                codec::write_opening(buf, 5);
                codec::write_application(buf, &Value::Enumerated(e.class));
                codec::write_application(buf, &Value::Enumerated(e.code));
                codec::write_closing(buf, 5);
            }
        }
    }
    if current.is_some() {
        codec::write_closing(buf, 1);
    }
}

// ---------------------------------------------------------------- WriteProperty

#[derive(Debug, Clone, PartialEq)]
pub struct WritePropertyRequest {
    pub object: ObjectId,
    pub property: PropertyRef,
    /// `Value::Null` relinquishes the command at `priority`.
    pub value: Value,
    /// 1..=16. [`WritePropertyRequest::decode`] keeps any priority that fits
    /// in a byte, so that a server can refuse one outside 1..=16 with
    /// value-out-of-range instead of rejecting the whole request.
    pub priority: Option<u8>,
}

impl WritePropertyRequest {
    /// plantwatch's own encoder: bacnet-rs truncates property ids above 255.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Some(p) = self.priority {
            if !(1..=16).contains(&p) {
                return Err(EncodeError(format!("priority {p} is not in 1..=16")));
            }
        }
        write_object_property_value(buf, self.object, self.property, &self.value);
        if let Some(p) = self.priority {
            codec::write_context_unsigned(buf, 4, u64::from(p));
        }
        Ok(())
    }

    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(data);
        let (object, property, value) = read_object_property_value(&mut r)?;
        let priority = match r.optional_context_u32(4)? {
            None => None,
            Some(p) => Some(u8::try_from(p).map_err(|_| DecodeError::Invalid("priority above 255"))?),
        };
        end(&r)?;
        Ok(Self { object, property, value, priority })
    }
}

// ---------------------------------------------------------------- SubscribeCOV

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CovSubscription {
    pub confirmed: bool,
    /// Seconds; `None` asks for an indefinite subscription.
    pub lifetime: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeCovRequest {
    pub process_id: u32,
    pub object: ObjectId,
    /// `None` cancels the subscription.
    pub subscription: Option<CovSubscription>,
}

impl SubscribeCovRequest {
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        let object = bacnet_rs_object(self.object);
        let req = match self.subscription {
            None => bs::SubscribeCovRequest::new(self.process_id, object),
            Some(CovSubscription { confirmed, lifetime: None }) => {
                bs::SubscribeCovRequest::with_confirmation(self.process_id, object, confirmed)
            }
            Some(CovSubscription { confirmed, lifetime: Some(l) }) => {
                bs::SubscribeCovRequest::with_lifetime(self.process_id, object, confirmed, l)
            }
        };
        req.encode(buf).map_err(encode_err)
    }

    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(data);
        let process_id = r.context_u32(0)?;
        let object = r.context_object_id(1)?;
        let subscription = if r.at_context(2) {
            let confirmed = r.context_bool(2)?;
            let lifetime = r.optional_context_u32(3)?;
            Some(CovSubscription { confirmed, lifetime })
        } else {
            None
        };
        end(&r)?;
        Ok(Self { process_id, object, subscription })
    }
}

/// A COV notification (confirmed or unconfirmed; same parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct CovNotification {
    pub process_id: u32,
    pub device: ObjectId,
    pub object: ObjectId,
    pub time_remaining: u32,
    pub values: Vec<(PropertyRef, Value)>,
}

impl CovNotification {
    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(data);
        let process_id = r.context_u32(0)?;
        let device = r.context_object_id(1)?;
        let object = r.context_object_id(2)?;
        let time_remaining = r.context_u32(3)?;
        r.expect_opening(4)?;
        let mut values = Vec::new();
        while !r.at_closing(4) {
            let property = r.context_enumerated(0)?;
            let index = r.optional_context_u32(1)?;
            let value = r.enclosed_value(2)?;
            // an optional priority
            r.optional_context_u32(3)?;
            values.push((PropertyRef { property, index }, value));
        }
        r.expect_closing(4)?;
        end(&r)?;
        Ok(Self { process_id, device, object, time_remaining, values })
    }

    pub fn encode(&self, buf: &mut Vec<u8>) {
        codec::write_context_unsigned(buf, 0, u64::from(self.process_id));
        codec::write_context_object_id(buf, 1, self.device);
        codec::write_context_object_id(buf, 2, self.object);
        codec::write_context_unsigned(buf, 3, u64::from(self.time_remaining));
        codec::write_opening(buf, 4);
        for (p, v) in &self.values {
            codec::write_context_enumerated(buf, 0, p.property);
            if let Some(i) = p.index {
                codec::write_context_unsigned(buf, 1, u64::from(i));
            }
            codec::write_opening(buf, 2);
            codec::write_application(buf, v);
            codec::write_closing(buf, 2);
        }
        codec::write_closing(buf, 4);
    }
}

// ---------------------------------------------------------------- Who-Is / I-Am

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WhoIs {
    /// Inclusive device instance range; `None` asks every device.
    pub range: Option<(u32, u32)>,
}

impl WhoIs {
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        let req = match self.range {
            None => bs::WhoIsRequest::new(),
            Some((lo, hi)) => bs::WhoIsRequest::for_range(lo, hi),
        };
        req.encode(buf).map_err(encode_err)
    }

    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        if data.is_empty() {
            return Ok(Self { range: None });
        }
        let mut r = Reader::new(data);
        let lo = r.context_u32(0)?;
        let hi = r.context_u32(1)?;
        end(&r)?;
        Ok(Self { range: Some((lo, hi)) })
    }

    pub fn matches(&self, instance: u32) -> bool {
        self.range.is_none_or(|(lo, hi)| (lo..=hi).contains(&instance))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IAm {
    pub device: ObjectId,
    pub max_apdu: u32,
    pub segmentation: Segmentation,
    pub vendor_id: u32,
}

impl IAm {
    pub fn encode(&self, buf: &mut Vec<u8>) {
        codec::write_application(buf, &Value::ObjectId(self.device));
        codec::write_application(buf, &Value::Unsigned(u64::from(self.max_apdu)));
        codec::write_application(buf, &Value::Enumerated(self.segmentation.to_enumerated()));
        codec::write_application(buf, &Value::Unsigned(u64::from(self.vendor_id)));
    }

    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(data);
        let device = r.application_object_id()?;
        if device.object_type != super::types::object_type::DEVICE {
            return Err(DecodeError::Invalid("I-Am for an object that is not a device"));
        }
        let max_apdu = u32::try_from(r.application_unsigned()?).map_err(|_| DecodeError::Invalid("max APDU"))?;
        let segmentation = Segmentation::from_enumerated(r.application_enumerated()?);
        let vendor_id = u32::try_from(r.application_unsigned()?).map_err(|_| DecodeError::Invalid("vendor id"))?;
        Ok(Self { device, max_apdu, segmentation, vendor_id })
    }
}

// ---------------------------------------------------------------- Error PDU

/// Decodes the parameters of an Error PDU: an error class and code, bare or
/// (for some services) inside context tag 0.
pub fn decode_error(data: &[u8]) -> DecodeResult<ErrorClassCode> {
    let mut r = Reader::new(data);
    let wrapped = r.at_opening(0);
    if wrapped {
        r.expect_opening(0)?;
    }
    let class = r.application_enumerated()?;
    let code = r.application_enumerated()?;
    Ok(ErrorClassCode { class, code })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bacnet::types::{object_type, property};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn write_property_keeps_property_ids_above_255() {
        let req = WritePropertyRequest {
            object: ObjectId::new(object_type::ANALOG_VALUE, 1),
            property: PropertyRef::new(1000),
            value: Value::Unsigned(7),
            priority: Some(16),
        };
        let mut buf = Vec::new();
        req.encode(&mut buf).unwrap();
        assert_eq!(buf, hex("0c008000011a03e83e21073f4910"));
        assert_eq!(WritePropertyRequest::decode(&buf).unwrap(), req);
    }

    #[test]
    fn write_property_decode_keeps_an_out_of_range_priority_for_the_server() {
        let mut buf = hex("0c008000011955");
        buf.extend_from_slice(&hex("3e4441ac00003f4911"));
        assert_eq!(WritePropertyRequest::decode(&buf).unwrap().priority, Some(17));
        buf.truncate(buf.len() - 2);
        buf.extend_from_slice(&hex("4a0100"));
        assert!(WritePropertyRequest::decode(&buf).is_err());
    }

    #[test]
    fn read_property_request_round_trips() {
        let req = ReadPropertyRequest {
            object: ObjectId::device(1001),
            property: PropertyRef::indexed(property::OBJECT_LIST, 0),
        };
        let mut buf = Vec::new();
        req.encode(&mut buf).unwrap();
        assert_eq!(buf, hex("0c020003e9194c2900"));
        assert_eq!(ReadPropertyRequest::decode(&buf).unwrap(), req);
    }

    #[test]
    fn rpm_ack_keeps_good_values_beside_errors_and_constructed_data() {
        let ai = ObjectId::new(object_type::ANALOG_INPUT, 1);
        let results = vec![
            PropertyResult { object: ai, property: PropertyRef::new(85), value: Ok(Value::Real(21.5)) },
            PropertyResult {
                object: ai,
                property: PropertyRef::new(9999),
                value: Err(ErrorClassCode { class: 2, code: 32 }),
            },
            PropertyResult {
                object: ai,
                property: PropertyRef::new(130),
                value: Ok(Value::Opaque(hex("0ea47e0b1a04b40c1e00000f"))),
            },
        ];
        let mut buf = Vec::new();
        encode_rpm_ack(&mut buf, &results);
        assert_eq!(decode_rpm_ack(&buf).unwrap(), results);
    }

    #[test]
    fn cov_notification_round_trips() {
        let n = CovNotification {
            process_id: 7,
            device: ObjectId::device(3001),
            object: ObjectId::new(0, 1),
            time_remaining: 299,
            values: vec![
                (PropertyRef::new(85), Value::Real(25.5)),
                (PropertyRef::new(111), Value::BitString(crate::bacnet::types::BitString::with_len(4))),
            ],
        };
        let mut buf = Vec::new();
        n.encode(&mut buf);
        assert_eq!(CovNotification::decode(&buf).unwrap(), n);
    }

    #[test]
    fn who_is_and_i_am_round_trip() {
        let mut buf = Vec::new();
        WhoIs { range: Some((1000, 2000)) }.encode(&mut buf).unwrap();
        assert_eq!(WhoIs::decode(&buf).unwrap().range, Some((1000, 2000)));
        let iam =
            IAm { device: ObjectId::device(3001), max_apdu: 1476, segmentation: Segmentation::Both, vendor_id: 999 };
        buf.clear();
        iam.encode(&mut buf);
        assert_eq!(IAm::decode(&buf).unwrap(), iam);
    }

    #[test]
    fn errors_decode_with_u32_codes() {
        let mut buf = Vec::new();
        codec::write_application(&mut buf, &Value::Enumerated(2));
        codec::write_application(&mut buf, &Value::Enumerated(70_000));
        assert_eq!(decode_error(&buf).unwrap(), ErrorClassCode { class: 2, code: 70_000 });
    }
}
