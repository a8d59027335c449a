//! Test helpers: requests built with the codec's encoders, answers taken
//! apart with its decoders, as an independent client would.

use crate::bacnet::codec::Value;
use crate::bacnet::frame::{self, Apdu, Body, NpduOut};
use crate::bacnet::services::{
    CovSubscription, PropertyRef, ReadAccessSpec, ReadPropertyAck, ReadPropertyMultipleRequest, ReadPropertyRequest,
    SubscribeCovRequest, WhoIs, WritePropertyRequest,
};
use crate::bacnet::types::{service, ObjectId, Route};

/// A confirmed request: max-APDU and max-segments as a client would send
/// them (`max_segments` 1: segmented answers not accepted).
pub fn confirmed(
    invoke_id: u8,
    service: u8,
    max_apdu: u16,
    max_segments: u16,
    destination: Option<Route>,
    params: &[u8],
) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::begin(&mut buf, false, &NpduOut { destination, source: None, expecting_reply: true });
    frame::write_confirmed_request(&mut buf, invoke_id, service, max_apdu, max_segments);
    buf.extend_from_slice(params);
    frame::finish(&mut buf).unwrap();
    buf
}

pub fn rp(invoke_id: u8, object: ObjectId, property: PropertyRef) -> Vec<u8> {
    let mut params = Vec::new();
    ReadPropertyRequest { object, property }.encode(&mut params).unwrap();
    confirmed(invoke_id, service::READ_PROPERTY, 1476, 64, None, &params)
}

pub fn rp_routed(invoke_id: u8, route: Route, object: ObjectId, property: PropertyRef) -> Vec<u8> {
    let mut params = Vec::new();
    ReadPropertyRequest { object, property }.encode(&mut params).unwrap();
    confirmed(invoke_id, service::READ_PROPERTY, 1476, 64, Some(route), &params)
}

pub fn rpm(invoke_id: u8, specs: Vec<(ObjectId, Vec<PropertyRef>)>) -> Vec<u8> {
    let specs = specs.into_iter().map(|(object, properties)| ReadAccessSpec { object, properties }).collect();
    let mut params = Vec::new();
    ReadPropertyMultipleRequest { specs }.encode(&mut params).unwrap();
    confirmed(invoke_id, service::READ_PROPERTY_MULTIPLE, 1476, 64, None, &params)
}

pub fn wp(invoke_id: u8, object: ObjectId, property: u32, value: Value, priority: Option<u8>) -> Vec<u8> {
    let mut params = Vec::new();
    let property = PropertyRef::new(property);
    WritePropertyRequest { object, property, value, priority }.encode(&mut params).unwrap();
    confirmed(invoke_id, service::WRITE_PROPERTY, 1476, 64, None, &params)
}

pub fn subscribe(invoke_id: u8, process_id: u32, object: ObjectId, subscription: Option<CovSubscription>) -> Vec<u8> {
    let mut params = Vec::new();
    SubscribeCovRequest { process_id, object, subscription }.encode(&mut params).unwrap();
    confirmed(invoke_id, service::SUBSCRIBE_COV, 1476, 64, None, &params)
}

pub fn who_is(range: Option<(u32, u32)>, destination: Option<Route>) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::begin(&mut buf, destination.is_some(), &NpduOut { destination, source: None, expecting_reply: false });
    frame::write_unconfirmed_request(&mut buf, service::WHO_IS);
    WhoIs { range }.encode(&mut buf).unwrap();
    frame::finish(&mut buf).unwrap();
    buf
}

pub fn segment_ack(invoke_id: u8, sequence: u8, window: u8, negative: bool, destination: Option<Route>) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::begin(&mut buf, false, &NpduOut { destination, source: None, expecting_reply: false });
    frame::write_segment_ack(&mut buf, negative, false, invoke_id, sequence, window);
    frame::finish(&mut buf).unwrap();
    buf
}

pub fn simple_ack(invoke_id: u8, service: u8) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::begin(&mut buf, false, &NpduOut::default());
    frame::write_simple_ack(&mut buf, invoke_id, service);
    frame::finish(&mut buf).unwrap();
    buf
}

/// The APDU of an answer (panics on anything else: this is a test).
pub fn apdu(datagram: &[u8]) -> Apdu<'_> {
    match frame::parse(datagram).expect("answer parses").body {
        Body::Apdu(a) => a,
        other => panic!("not an APDU: {other:?}"),
    }
}

/// The value of an unsegmented ReadProperty-ACK.
pub fn rp_value(datagram: &[u8]) -> Value {
    match apdu(datagram) {
        Apdu::ComplexAck { service: service::READ_PROPERTY, segment: None, data, .. } => {
            ReadPropertyAck::decode(data).expect("ReadProperty-ACK decodes").value
        }
        other => panic!("not a ReadProperty-ACK: {other:?}"),
    }
}

/// Error class and code of an Error PDU.
pub fn error_of(datagram: &[u8]) -> (u32, u32) {
    match apdu(datagram) {
        Apdu::Error { data, .. } => {
            let e = crate::bacnet::services::decode_error(data).expect("error decodes");
            (e.class, e.code)
        }
        other => panic!("not an Error: {other:?}"),
    }
}

/// A client's side of a segmented ComplexAck, sans-IO: feed it segments,
/// it says which Segment-ACK to send and collects the service data.
#[derive(Debug)]
pub struct Reassembly {
    pub window: u8,
    pub data: Vec<u8>,
    expected: u8,
    in_window: u8,
    pub done: bool,
    pub segments: usize,
}

impl Reassembly {
    pub fn new(window: u8) -> Self {
        Self { window, data: Vec::new(), expected: 0, in_window: 0, done: false, segments: 0 }
    }

    /// Takes one segment; returns the sequence number to acknowledge, if an
    /// acknowledgement is due (end of window, last segment, or a gap).
    pub fn take(&mut self, datagram: &[u8]) -> Option<(u8, bool)> {
        let Apdu::ComplexAck { segment: Some(seg), data, .. } = apdu(datagram) else {
            panic!("not a segment: {:?}", apdu(datagram));
        };
        if seg.sequence != self.expected {
            // out of order: negative acknowledgement of the last good one
            return Some((self.expected.wrapping_sub(1), true));
        }
        self.data.extend_from_slice(data);
        self.segments += 1;
        self.expected = self.expected.wrapping_add(1);
        self.in_window += 1;
        let first = self.segments == 1;
        if !seg.more_follows {
            self.done = true;
        }
        if first || !seg.more_follows || self.in_window >= self.window {
            self.in_window = 0;
            return Some((seg.sequence, false));
        }
        None
    }
}
