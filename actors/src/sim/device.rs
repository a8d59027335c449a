//! One simulated BACnet device, sans-IO: [`Device::handle`] takes a received
//! datagram and the current instant and queues its answers in an
//! [`Outbox`]; [`Device::on_timer`] does what is due (segment and COV
//! notification retransmissions, COV of drifting values, expired
//! subscriptions) by [`Device::next_deadline`]. The socket tasks in
//! [`super`] only move bytes.
//!
//! Faults ([`Faults`]): dropped requests, delayed (and jittered) answers,
//! garbled answers, a one-shot silence, and a periodic one after which the
//! device comes back as it was, restarted, or reconfigured (a new
//! Database_Revision and object list); see [`super::fault`].

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::fault::{self, OnReturn};
use super::object::{self, err, Counts, Kind, Object, Pv};
use super::outbox::Outbox;
use super::segment::{AckOutcome, SegmentedAnswer};
use super::Faults;
use crate::bacnet::codec::{DecodeError, Value};
use crate::bacnet::frame::{self, Apdu, Body, Frame, NpduOut};
use crate::bacnet::services::{
    self, CovNotification, ErrorClassCode, IAm, PropertyRef, PropertyResult, ReadPropertyAck,
    ReadPropertyMultipleRequest, ReadPropertyRequest, SubscribeCovRequest, WhoIs, WritePropertyRequest,
};
use crate::bacnet::types::{
    error, object_type, property as p, service, services_supported, BitString, ObjectId, Route, Segmentation,
    MAX_INSTANCE,
};

pub const VENDOR_ID: u32 = 999;
const VENDOR_NAME: &str = "plantwatch";
const MODEL_NAME: &str = "plantwatch-sim";
const PROTOCOL_REVISION: u64 = 14;
/// Bits in BACnetObjectTypesSupported at protocol revision 14.
const OBJECT_TYPES_SUPPORTED_LEN: usize = 55;
/// APDU_Timeout and Number_Of_APDU_Retries, also used for the device's own
/// confirmed COV notifications.
const APDU_TIMEOUT: Duration = Duration::from_secs(3);
const APDU_RETRIES: u8 = 3;
/// How often COV subscriptions are checked for drifting values and expiry.
const COV_SCAN: Duration = Duration::from_secs(1);
const MAX_SUBSCRIPTIONS: usize = 1024;
const MAX_SEGMENTED_ANSWERS: usize = 64;
/// Instance 4194303 in a device object identifier means "this device".
const WILDCARD_INSTANCE: u32 = MAX_INSTANCE + 1;

const DEVICE_REQUIRED: [u32; 20] = [
    p::OBJECT_IDENTIFIER,
    p::OBJECT_NAME,
    p::OBJECT_TYPE,
    p::SYSTEM_STATUS,
    p::VENDOR_NAME,
    p::VENDOR_IDENTIFIER,
    p::MODEL_NAME,
    p::FIRMWARE_REVISION,
    p::APPLICATION_SOFTWARE_VERSION,
    p::PROTOCOL_VERSION,
    p::PROTOCOL_REVISION,
    p::PROTOCOL_SERVICES_SUPPORTED,
    p::PROTOCOL_OBJECT_TYPES_SUPPORTED,
    p::OBJECT_LIST,
    p::MAX_APDU_LENGTH_ACCEPTED,
    p::SEGMENTATION_SUPPORTED,
    p::APDU_TIMEOUT,
    p::NUMBER_OF_APDU_RETRIES,
    p::DEVICE_ADDRESS_BINDING,
    p::DATABASE_REVISION,
];
const DEVICE_OPTIONAL: [u32; 1] = [p::DESCRIPTION];

const UNKNOWN_OBJECT: ErrorClassCode = err(error::CLASS_OBJECT, error::CODE_UNKNOWN_OBJECT);

/// Who sent a request, and so where its answer goes: the BACnet/IP address
/// (the original source of a Forwarded-NPDU) and, for a requester behind a
/// router, its network and MAC (SNET/SADR, answered with DNET/DADR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub route: Option<Route>,
}

/// The header of a confirmed request that the answer depends on.
#[derive(Debug, Clone, Copy)]
struct Request {
    peer: Peer,
    invoke_id: u8,
    service: u8,
    segmented_response_accepted: bool,
    max_apdu: u16,
    max_segments: Option<u16>,
}

#[derive(Debug)]
struct Subscription {
    subscriber: Peer,
    process_id: u32,
    /// Index into `Device::objects`.
    object: usize,
    confirmed: bool,
    expires: Option<Instant>,
    last_value: Pv,
    last_flags: crate::bacnet::types::StatusFlags,
}

/// A confirmed COV notification waiting for its acknowledgement.
#[derive(Debug)]
struct Pending {
    peer: Peer,
    invoke_id: u8,
    apdu: Vec<u8>,
    deadline: Instant,
    retries: u8,
}

#[derive(Debug)]
struct Transaction {
    peer: Peer,
    answer: SegmentedAnswer,
}

pub struct Device {
    instance: u32,
    /// Network and MAC of a device behind a router (SNET/SADR of its answers).
    route: Option<Route>,
    faults: Faults,
    epoch: Instant,
    /// Every object but the device, in Object_List order: `counts` of each
    /// [`Kind`] in turn, instances 1..=count.
    objects: Vec<Object>,
    counts: Counts,
    /// The counts of Database_Revision 1 (a reconfiguration changes `counts`).
    base_counts: Counts,
    database_revision: u64,
    /// Periodic outages (churn) this device has been through.
    outages_seen: u64,
    /// Where in the churn period this device's outages fall.
    churn_offset: Duration,
    rng: StdRng,
    /// State of the answer-jitter PRNG (used from `&self`).
    jitter: Cell<u64>,
    /// Service data of the answer being built.
    scratch: Vec<u8>,
    rpm_results: Vec<PropertyResult>,
    transactions: Vec<Transaction>,
    subscriptions: Vec<Subscription>,
    pending: Vec<Pending>,
    next_invoke_id: u8,
    next_cov_scan: Option<Instant>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("instance", &self.instance).field("route", &self.route).finish_non_exhaustive()
    }
}

impl Device {
    /// A device with `counts` objects of each kind; `epoch` is the instant
    /// its values start drifting from and its fault schedule counts from.
    pub fn new(instance: u32, counts: Counts, route: Option<Route>, faults: Faults, epoch: Instant) -> Self {
        let churn_offset = faults.churn.map_or(Duration::ZERO, |c| c.outage.offset(instance));
        Self {
            instance,
            route,
            faults,
            epoch,
            objects: objects_of(counts, instance),
            counts,
            base_counts: counts,
            database_revision: 1,
            outages_seen: 0,
            churn_offset,
            rng: StdRng::seed_from_u64(u64::from(instance)),
            jitter: Cell::new(u64::from(instance).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            scratch: Vec::with_capacity(frame::MAX_DATAGRAM),
            rpm_results: Vec::new(),
            transactions: Vec::new(),
            subscriptions: Vec::new(),
            pending: Vec::new(),
            next_invoke_id: 0,
            next_cov_scan: None,
        }
    }

    pub fn instance(&self) -> u32 {
        self.instance
    }

    fn t(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.epoch).as_secs_f64()
    }

    fn online(&self, now: Instant) -> bool {
        let t = now.saturating_duration_since(self.epoch);
        if self.faults.churn.is_some_and(|c| c.outage.down(t, self.churn_offset)) {
            return false;
        }
        let Some(off) = self.faults.offline_after else { return true };
        t < off || self.faults.online_after.is_some_and(|on| t >= off + on)
    }

    /// The device's Database_Revision (1, then one more per reconfiguration).
    pub fn database_revision(&self) -> u64 {
        self.database_revision
    }

    /// Applies what the periodic outages begun by `now` did to the device:
    /// a restart or a reconfiguration happens while it is gone, so from
    /// outside it is there when it comes back. Every entry point calls this
    /// first.
    pub fn catch_up(&mut self, now: Instant) {
        let Some(churn) = self.faults.churn else { return };
        let begun = churn.outage.begun(now.saturating_duration_since(self.epoch), self.churn_offset);
        if begun <= self.outages_seen {
            return;
        }
        let outages = begun - self.outages_seen;
        self.outages_seen = begun;
        // Gone: whatever the device was in the middle of is lost with it.
        self.transactions.clear();
        self.pending.clear();
        match churn.on_return {
            OnReturn::Same => {}
            OnReturn::Restart => self.restart(),
            OnReturn::NewRevision => {
                self.database_revision += outages;
                self.counts = self.base_counts.revised(self.database_revision);
                self.objects = objects_of(self.counts, self.instance);
                self.restart();
            }
        }
        tracing::debug!(
            device = self.instance,
            outages,
            revision = self.database_revision,
            "device back from an outage"
        );
    }

    /// A restart: commands and COV subscriptions are volatile.
    fn restart(&mut self) {
        self.objects.iter_mut().for_each(Object::clear_priority_array);
        self.subscriptions.clear();
        self.next_cov_scan = None;
    }

    fn segmentation(&self) -> Segmentation {
        if self.faults.no_segmentation {
            Segmentation::None
        } else {
            // Segmented requests are not accepted: transmit only.
            Segmentation::Transmit
        }
    }

    fn send_at(&self, now: Instant) -> Option<Instant> {
        fault::answer_delay(self.faults.slow, self.faults.jitter, &self.jitter).map(|d| now + d)
    }

    fn npdu(&self, to: &Peer, expecting_reply: bool) -> NpduOut {
        NpduOut { destination: to.route, source: self.route, expecting_reply }
    }

    /// Handles a datagram received on the device's own socket.
    pub fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant, out: &mut Outbox) {
        match frame::parse(datagram) {
            // Only a global broadcast may carry a destination to a direct device.
            Ok(f) if f.destination.is_none_or(|d| d.network == 0xFFFF) => self.handle_frame(&f, from, now, out),
            Ok(_) => tracing::debug!(device = self.instance, %from, "frame for another network ignored"),
            Err(e) => tracing::debug!(device = self.instance, %from, error = %e, "malformed frame dropped"),
        }
    }

    /// Handles a parsed frame addressed to this device (the router calls
    /// this for the devices behind it).
    pub fn handle_frame(&mut self, f: &Frame<'_>, from: SocketAddr, now: Instant, out: &mut Outbox) {
        self.catch_up(now);
        if !self.online(now) {
            return;
        }
        let Body::Apdu(apdu) = f.body else { return };
        let peer = Peer { addr: f.origin.unwrap_or(from), route: f.source };
        match apdu {
            Apdu::ConfirmedRequest {
                invoke_id,
                service,
                segmented_response_accepted,
                max_apdu,
                max_segments,
                segment,
                data,
            } => {
                if self.dropped() {
                    return;
                }
                let req = Request { peer, invoke_id, service, segmented_response_accepted, max_apdu, max_segments };
                let before = out.frames.len();
                if segment.is_some() {
                    self.abort(&req, error::ABORT_SEGMENTATION_NOT_SUPPORTED, now, out);
                } else {
                    self.confirmed(&req, data, now, out);
                }
                if out.frames.len() > before && self.garbled() {
                    let roll = self.rng.random::<u64>();
                    for f in &mut out.frames[before..] {
                        let how = fault::garble(&mut f.bytes, roll);
                        tracing::trace!(device = self.instance, ?how, "answer garbled");
                    }
                }
            }
            Apdu::UnconfirmedRequest { service: service::WHO_IS, data } => {
                if !self.dropped() {
                    self.who_is(data, peer, now, out);
                }
            }
            Apdu::UnconfirmedRequest { .. } => {}
            Apdu::SegmentAck { negative, server: false, invoke_id, sequence, window } => {
                self.segment_ack(peer, invoke_id, negative, sequence, window, now, out);
            }
            Apdu::Abort { server: false, invoke_id, .. } => {
                self.transactions.retain(|t| !(t.peer == peer && t.answer.invoke_id == invoke_id));
            }
            Apdu::SimpleAck { invoke_id, .. }
            | Apdu::Error { invoke_id, .. }
            | Apdu::Reject { invoke_id, .. }
            | Apdu::Abort { server: true, invoke_id, .. } => {
                self.pending.retain(|n| !(n.peer == peer && n.invoke_id == invoke_id));
            }
            Apdu::SegmentAck { server: true, .. } | Apdu::ComplexAck { .. } => {}
        }
    }

    /// Whether the drop-rate fault swallows this request.
    fn dropped(&mut self) -> bool {
        self.faults.drop_rate > 0.0 && self.rng.random::<f64>() < self.faults.drop_rate
    }

    /// Whether the garbage fault spoils this answer.
    fn garbled(&mut self) -> bool {
        self.faults.garbage_rate > 0.0 && self.rng.random::<f64>() < self.faults.garbage_rate
    }

    fn who_is(&mut self, data: &[u8], peer: Peer, now: Instant, out: &mut Outbox) {
        match WhoIs::decode(data) {
            Ok(w) if w.matches(self.instance) => {
                let iam = IAm {
                    device: ObjectId::device(self.instance),
                    max_apdu: u32::from(self.faults.max_apdu),
                    segmentation: self.segmentation(),
                    vendor_id: VENDOR_ID,
                };
                // Answered to the requester: on loopback a broadcast would not
                // reach a client bound to its own address.
                out.push(peer.addr, &self.npdu(&peer, false), self.send_at(now), |b| {
                    frame::write_unconfirmed_request(b, service::I_AM);
                    iam.encode(b);
                });
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(device = self.instance, error = %e, "malformed who-is dropped"),
        }
    }

    fn confirmed(&mut self, req: &Request, data: &[u8], now: Instant, out: &mut Outbox) {
        let outcome = match req.service {
            service::READ_PROPERTY => self.read_property(req, data, now, out),
            service::READ_PROPERTY_MULTIPLE if !self.faults.no_rpm => self.read_property_multiple(req, data, now, out),
            service::WRITE_PROPERTY => self.write_property(req, data, now, out),
            service::SUBSCRIBE_COV => self.subscribe_cov(req, data, now, out),
            _ => {
                self.reject(req, error::REJECT_UNRECOGNIZED_SERVICE, now, out);
                Ok(())
            }
        };
        if let Err(e) = outcome {
            tracing::debug!(device = self.instance, service = req.service, error = %e, "malformed request rejected");
            let reason = match e {
                DecodeError::Truncated(_) => error::REJECT_MISSING_REQUIRED_PARAMETER,
                DecodeError::UnexpectedTag(_) => error::REJECT_INVALID_TAG,
                DecodeError::BadLength(_) => error::REJECT_INVALID_PARAMETER_DATA_TYPE,
                DecodeError::Invalid(_) | DecodeError::TooDeep => error::REJECT_OTHER,
            };
            self.reject(req, reason, now, out);
        }
    }

    // ------------------------------------------------------------ answers

    fn simple_ack(&self, req: &Request, now: Instant, out: &mut Outbox) {
        out.push(req.peer.addr, &self.npdu(&req.peer, false), self.send_at(now), |b| {
            frame::write_simple_ack(b, req.invoke_id, req.service);
        });
    }

    fn error(&self, req: &Request, e: ErrorClassCode, now: Instant, out: &mut Outbox) {
        out.push(req.peer.addr, &self.npdu(&req.peer, false), self.send_at(now), |b| {
            frame::write_error(b, req.invoke_id, req.service, e.class, e.code);
        });
    }

    fn reject(&self, req: &Request, reason: u8, now: Instant, out: &mut Outbox) {
        out.push(req.peer.addr, &self.npdu(&req.peer, false), self.send_at(now), |b| {
            frame::write_reject(b, req.invoke_id, reason);
        });
    }

    fn abort(&self, req: &Request, reason: u8, now: Instant, out: &mut Outbox) {
        out.push(req.peer.addr, &self.npdu(&req.peer, false), self.send_at(now), |b| {
            frame::write_abort(b, true, req.invoke_id, reason);
        });
    }

    /// Sends the ComplexAck whose service data is in `self.scratch`: whole,
    /// segmented, or refused with an Abort when it cannot be segmented.
    fn complex_ack(&mut self, req: &Request, now: Instant, out: &mut Outbox) {
        let limit = usize::from(req.max_apdu.min(self.faults.max_apdu));
        let send_at = self.send_at(now);
        let npdu = self.npdu(&req.peer, false);
        if self.scratch.len() + 3 <= limit {
            let data = &self.scratch;
            out.push(req.peer.addr, &npdu, send_at, |b| {
                frame::write_complex_ack(b, req.invoke_id, req.service, None);
                b.extend_from_slice(data);
            });
            return;
        }
        if !req.segmented_response_accepted || !self.segmentation().can_transmit() {
            return self.abort(req, error::ABORT_SEGMENTATION_NOT_SUPPORTED, now, out);
        }
        self.transactions.retain(|t| !(t.peer == req.peer && t.answer.invoke_id == req.invoke_id));
        if self.transactions.len() >= MAX_SEGMENTED_ANSWERS {
            return self.abort(req, error::ABORT_OUT_OF_RESOURCES, now, out);
        }
        let data = self.scratch.clone();
        match SegmentedAnswer::new(req.invoke_id, req.service, data, limit, req.max_segments, now) {
            Ok(mut answer) => {
                tracing::debug!(device = self.instance, segments = answer.segments(), "segmented answer");
                let first = answer.start(now);
                for i in first {
                    out.push(req.peer.addr, &npdu, send_at, |b| answer.write_segment(i, b));
                }
                self.transactions.push(Transaction { peer: req.peer, answer });
            }
            Err(reason) => self.abort(req, reason, now, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn segment_ack(
        &mut self,
        peer: Peer,
        invoke_id: u8,
        negative: bool,
        sequence: u8,
        window: u8,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(i) = self.transactions.iter().position(|t| t.peer == peer && t.answer.invoke_id == invoke_id) else {
            return;
        };
        let send_at = self.send_at(now);
        let npdu = self.npdu(&peer, false);
        let t = &mut self.transactions[i];
        match t.answer.on_ack(negative, sequence, window, now) {
            AckOutcome::Send(range) => {
                for s in range {
                    out.push(peer.addr, &npdu, send_at, |b| t.answer.write_segment(s, b));
                }
            }
            AckOutcome::Ignored => {}
            AckOutcome::Done => {
                self.transactions.swap_remove(i);
            }
            AckOutcome::Abort(reason) => {
                out.push(peer.addr, &npdu, send_at, |b| frame::write_abort(b, true, invoke_id, reason));
                self.transactions.swap_remove(i);
            }
        }
    }

    // ------------------------------------------------------------ properties

    fn object_index(&self, id: ObjectId) -> Option<usize> {
        let slot = Kind::slot(id.object_type)?;
        let instance = usize::try_from(id.instance).ok()?;
        (1..=self.counts.of(slot)).contains(&instance).then(|| self.counts.offset(slot) + instance - 1)
    }

    fn is_self(&self, id: ObjectId) -> bool {
        id.object_type == object_type::DEVICE && (id.instance == self.instance || id.instance == WILDCARD_INSTANCE)
    }

    /// The object identifier an answer names (the wildcard device resolved).
    fn resolve(&self, id: ObjectId) -> ObjectId {
        if self.is_self(id) {
            ObjectId::device(self.instance)
        } else {
            id
        }
    }

    fn read(&self, id: ObjectId, prop: PropertyRef, now: Instant) -> Result<Value, ErrorClassCode> {
        if self.is_self(id) {
            return self.read_device(prop);
        }
        let i = self.object_index(id).ok_or(UNKNOWN_OBJECT)?;
        self.objects[i].read(prop, self.t(now))
    }

    fn read_device(&self, prop: PropertyRef) -> Result<Value, ErrorClassCode> {
        if !DEVICE_REQUIRED.contains(&prop.property) && !DEVICE_OPTIONAL.contains(&prop.property) {
            return Err(object::UNKNOWN_PROPERTY);
        }
        if prop.property == p::OBJECT_LIST {
            let id = ObjectId::device(self.instance);
            return object::array(prop.index, self.objects.len() + 1, |i| {
                Value::ObjectId(if i == 0 { id } else { self.objects[i - 1].id })
            });
        }
        if prop.index.is_some() {
            return Err(object::NOT_AN_ARRAY);
        }
        let text = |s: &str| Value::CharacterString(s.to_string());
        Ok(match prop.property {
            p::OBJECT_IDENTIFIER => Value::ObjectId(ObjectId::device(self.instance)),
            p::OBJECT_NAME => Value::CharacterString(format!("SIM-{}", self.instance)),
            p::OBJECT_TYPE => Value::Enumerated(u32::from(object_type::DEVICE)),
            p::SYSTEM_STATUS => Value::Enumerated(0),
            p::VENDOR_NAME => text(VENDOR_NAME),
            p::VENDOR_IDENTIFIER => Value::Unsigned(u64::from(VENDOR_ID)),
            p::MODEL_NAME => text(MODEL_NAME),
            p::FIRMWARE_REVISION | p::APPLICATION_SOFTWARE_VERSION => text(env!("CARGO_PKG_VERSION")),
            p::PROTOCOL_VERSION => Value::Unsigned(1),
            p::PROTOCOL_REVISION => Value::Unsigned(PROTOCOL_REVISION),
            p::PROTOCOL_SERVICES_SUPPORTED => Value::BitString(self.services_supported()),
            p::PROTOCOL_OBJECT_TYPES_SUPPORTED => {
                let mut bits = BitString::with_len(OBJECT_TYPES_SUPPORTED_LEN);
                bits.set(usize::from(object_type::DEVICE), true);
                Kind::ALL.iter().for_each(|k| bits.set(usize::from(k.object_type()), true));
                Value::BitString(bits)
            }
            p::MAX_APDU_LENGTH_ACCEPTED => Value::Unsigned(u64::from(self.faults.max_apdu)),
            p::SEGMENTATION_SUPPORTED => Value::Enumerated(self.segmentation().to_enumerated()),
            p::APDU_TIMEOUT => Value::Unsigned(APDU_TIMEOUT.as_millis() as u64),
            p::NUMBER_OF_APDU_RETRIES => Value::Unsigned(u64::from(APDU_RETRIES)),
            p::DEVICE_ADDRESS_BINDING => Value::List(Vec::new()),
            p::DATABASE_REVISION => Value::Unsigned(self.database_revision),
            p::DESCRIPTION => text("plantwatch simulated device"),
            _ => return Err(object::UNKNOWN_PROPERTY),
        })
    }

    fn services_supported(&self) -> BitString {
        let mut bits = BitString::with_len(services_supported::LEN);
        for bit in [
            services_supported::READ_PROPERTY,
            services_supported::WRITE_PROPERTY,
            services_supported::SUBSCRIBE_COV,
            services_supported::WHO_IS,
            services_supported::I_AM,
            services_supported::CONFIRMED_COV_NOTIFICATION,
            services_supported::UNCONFIRMED_COV_NOTIFICATION,
        ] {
            bits.set(bit, true);
        }
        bits.set(services_supported::READ_PROPERTY_MULTIPLE, !self.faults.no_rpm);
        bits
    }

    /// Properties named by ALL, REQUIRED or OPTIONAL for an object.
    fn special_properties(&self, id: ObjectId, special: u32) -> Option<impl Iterator<Item = u32> + 'static> {
        let (required, optional): (&'static [u32], &'static [u32]) = if self.is_self(id) {
            (&DEVICE_REQUIRED, &DEVICE_OPTIONAL)
        } else {
            let kind = self.objects[self.object_index(id)?].kind;
            (kind.required(), kind.optional())
        };
        let (r, o): (&'static [u32], &'static [u32]) = match special {
            p::REQUIRED => (required, &[]),
            p::OPTIONAL => (&[], optional),
            _ => (required, optional),
        };
        Some(r.iter().chain(o).copied())
    }

    // ------------------------------------------------------------ services

    fn read_property(&mut self, req: &Request, data: &[u8], now: Instant, out: &mut Outbox) -> Result<(), DecodeError> {
        let rp = ReadPropertyRequest::decode(data)?;
        match self.read(rp.object, rp.property, now) {
            Ok(value) => {
                self.scratch.clear();
                ReadPropertyAck { object: self.resolve(rp.object), property: rp.property, value }
                    .encode(&mut self.scratch);
                self.complex_ack(req, now, out);
            }
            Err(e) => self.error(req, e, now, out),
        }
        Ok(())
    }

    fn read_property_multiple(
        &mut self,
        req: &Request,
        data: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let rpm = ReadPropertyMultipleRequest::decode(data)?;
        let mut results = std::mem::take(&mut self.rpm_results);
        results.clear();
        for spec in &rpm.specs {
            let object = self.resolve(spec.object);
            for prop in &spec.properties {
                let special = matches!(prop.property, p::ALL | p::REQUIRED | p::OPTIONAL) && prop.index.is_none();
                if !special {
                    let value = self.read(object, *prop, now);
                    results.push(PropertyResult { object, property: *prop, value });
                    continue;
                }
                match self.special_properties(object, prop.property) {
                    Some(props) => results.extend(props.map(|id| PropertyResult {
                        object,
                        property: PropertyRef::new(id),
                        value: self.read(object, PropertyRef::new(id), now),
                    })),
                    None => results.push(PropertyResult { object, property: *prop, value: Err(UNKNOWN_OBJECT) }),
                }
            }
        }
        self.scratch.clear();
        services::encode_rpm_ack(&mut self.scratch, &results);
        self.rpm_results = results;
        self.complex_ack(req, now, out);
        Ok(())
    }

    fn write_property(
        &mut self,
        req: &Request,
        data: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let wp = WritePropertyRequest::decode(data)?;
        let t = self.t(now);
        let outcome = if self.is_self(wp.object) {
            self.read_device(PropertyRef::new(wp.property.property)).and(Err(object::WRITE_ACCESS_DENIED))
        } else {
            match self.object_index(wp.object) {
                Some(i) => self.objects[i].write(wp.property, &wp.value, wp.priority, t).map(|()| i),
                None => Err(UNKNOWN_OBJECT),
            }
        };
        match outcome {
            Ok(i) => {
                self.simple_ack(req, now, out);
                self.cov_check(Some(i), now, out);
            }
            Err(e) => self.error(req, e, now, out),
        }
        Ok(())
    }

    fn subscribe_cov(&mut self, req: &Request, data: &[u8], now: Instant, out: &mut Outbox) -> Result<(), DecodeError> {
        let sub = SubscribeCovRequest::decode(data)?;
        let object = match self.object_index(sub.object) {
            Some(i) => i,
            None if self.is_self(sub.object) => {
                let e = err(error::CLASS_OBJECT, error::CODE_OPTIONAL_FUNCTIONALITY_NOT_SUPPORTED);
                self.error(req, e, now, out);
                return Ok(());
            }
            None => {
                self.error(req, UNKNOWN_OBJECT, now, out);
                return Ok(());
            }
        };
        let same = |s: &Subscription| s.subscriber == req.peer && s.process_id == sub.process_id && s.object == object;
        let existing = self.subscriptions.iter().position(same);
        let Some(params) = sub.subscription else {
            if let Some(i) = existing {
                self.subscriptions.swap_remove(i);
            }
            self.simple_ack(req, now, out);
            return Ok(());
        };
        if existing.is_none() && self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            self.error(req, err(error::CLASS_RESOURCES, error::CODE_COV_SUBSCRIPTION_FAILED), now, out);
            return Ok(());
        }
        let expires = params.lifetime.filter(|&l| l > 0).map(|l| now + Duration::from_secs(u64::from(l)));
        let o = &self.objects[object];
        let entry = Subscription {
            subscriber: req.peer,
            process_id: sub.process_id,
            object,
            confirmed: params.confirmed,
            expires,
            last_value: o.present_value(self.t(now)),
            last_flags: o.status_flags(),
        };
        let i = match existing {
            Some(i) => {
                self.subscriptions[i] = entry;
                i
            }
            None => {
                self.subscriptions.push(entry);
                self.subscriptions.len() - 1
            }
        };
        self.next_cov_scan.get_or_insert(now + COV_SCAN);
        self.simple_ack(req, now, out);
        // The standard asks for a notification right after subscribing.
        self.notify(i, now, out);
        Ok(())
    }

    // ------------------------------------------------------------ COV

    /// Notifies subscribers of objects (all, or one) whose value or status
    /// changed enough since their last notification.
    fn cov_check(&mut self, object: Option<usize>, now: Instant, out: &mut Outbox) {
        let t = self.t(now);
        for i in 0..self.subscriptions.len() {
            let s = &self.subscriptions[i];
            if object.is_some_and(|o| o != s.object) {
                continue;
            }
            let o = &self.objects[s.object];
            if o.status_flags() != s.last_flags || o.cov_changed(&s.last_value, &o.present_value(t)) {
                self.notify(i, now, out);
            }
        }
    }

    fn notify(&mut self, i: usize, now: Instant, out: &mut Outbox) {
        let t = self.t(now);
        let s = &mut self.subscriptions[i];
        let o = &self.objects[s.object];
        s.last_value = o.present_value(t);
        s.last_flags = o.status_flags();
        let time_remaining = s.expires.map_or(0, |e| e.saturating_duration_since(now).as_secs() as u32);
        let n = CovNotification {
            process_id: s.process_id,
            device: ObjectId::device(self.instance),
            object: o.id,
            time_remaining,
            values: vec![
                (PropertyRef::new(p::PRESENT_VALUE), s.last_value.to_value()),
                (PropertyRef::new(p::STATUS_FLAGS), Value::BitString(s.last_flags.to_bits())),
            ],
        };
        let (peer, confirmed) = (s.subscriber, s.confirmed);
        let send_at = self.send_at(now);
        if !confirmed {
            out.push(peer.addr, &self.npdu(&peer, false), send_at, |b| {
                frame::write_unconfirmed_request(b, service::UNCONFIRMED_COV_NOTIFICATION);
                n.encode(b);
            });
            return;
        }
        let Some(invoke_id) = self.free_invoke_id() else {
            tracing::warn!(device = self.instance, "no free invoke id for a confirmed COV notification");
            return;
        };
        let mut apdu = Vec::new();
        frame::write_confirmed_request(
            &mut apdu,
            invoke_id,
            service::CONFIRMED_COV_NOTIFICATION,
            self.faults.max_apdu,
            1,
        );
        n.encode(&mut apdu);
        out.push(peer.addr, &self.npdu(&peer, true), send_at, |b| b.extend_from_slice(&apdu));
        self.pending.push(Pending { peer, invoke_id, apdu, deadline: now + APDU_TIMEOUT, retries: 0 });
    }

    fn free_invoke_id(&mut self) -> Option<u8> {
        for _ in 0..=u8::MAX {
            let id = self.next_invoke_id;
            self.next_invoke_id = id.wrapping_add(1);
            if !self.pending.iter().any(|n| n.invoke_id == id) {
                return Some(id);
            }
        }
        None
    }

    // ------------------------------------------------------------ time

    /// When [`Device::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let segments = self.transactions.iter().map(|t| t.answer.deadline());
        let pending = self.pending.iter().map(|n| n.deadline);
        segments.chain(pending).chain(self.next_cov_scan).min()
    }

    /// Retransmits what was not acknowledged in time, notifies COV of
    /// drifting values and expires subscriptions.
    pub fn on_timer(&mut self, now: Instant, out: &mut Outbox) {
        self.catch_up(now);
        if !self.online(now) {
            // A device that went dark forgets its transactions.
            self.transactions.clear();
            self.pending.clear();
        }
        let send_at = self.send_at(now);
        let mut i = 0;
        while i < self.transactions.len() {
            let t = &mut self.transactions[i];
            if t.answer.deadline() > now {
                i += 1;
                continue;
            }
            match t.answer.on_timeout(now) {
                Some(range) => {
                    let npdu = NpduOut { destination: t.peer.route, source: self.route, expecting_reply: false };
                    for s in range {
                        out.push(t.peer.addr, &npdu, send_at, |b| t.answer.write_segment(s, b));
                    }
                    i += 1;
                }
                None => {
                    tracing::debug!(
                        device = self.instance,
                        invoke_id = t.answer.invoke_id,
                        "segmented answer given up"
                    );
                    self.transactions.swap_remove(i);
                }
            }
        }
        self.pending.retain_mut(|n| {
            if n.deadline > now {
                return true;
            }
            if n.retries >= APDU_RETRIES {
                tracing::debug!(invoke_id = n.invoke_id, "confirmed COV notification never acknowledged");
                return false;
            }
            n.retries += 1;
            n.deadline = now + APDU_TIMEOUT;
            let npdu = NpduOut { destination: n.peer.route, source: self.route, expecting_reply: true };
            out.push(n.peer.addr, &npdu, send_at, |b| b.extend_from_slice(&n.apdu));
            true
        });
        if self.next_cov_scan.is_some_and(|at| at <= now) {
            self.subscriptions.retain(|s| s.expires.is_none_or(|e| e > now));
            if self.online(now) {
                self.cov_check(None, now, out);
            }
            self.next_cov_scan = (!self.subscriptions.is_empty()).then(|| now + COV_SCAN);
        }
    }

    // ------------------------------------------------------------ from outside

    /// Sets an object's value from outside (see [`Object::force`]) and
    /// notifies its COV subscribers.
    pub fn force(&mut self, id: ObjectId, value: &Value, now: Instant, out: &mut Outbox) -> Result<(), ErrorClassCode> {
        self.catch_up(now);
        let i = self.object_index(id).ok_or(UNKNOWN_OBJECT)?;
        self.objects[i].force(value)?;
        self.cov_check(Some(i), now, out);
        Ok(())
    }

    /// Forgets every COV subscription, as a device that restarted (or a
    /// router that lost them) would, without telling the subscribers: the
    /// device goes on answering requests, and sends no notifications until
    /// it is subscribed again. Returns how many it forgot.
    pub fn forget_subscriptions(&mut self, now: Instant) -> usize {
        self.catch_up(now);
        let n = self.subscriptions.len();
        self.subscriptions.clear();
        self.pending.clear();
        self.next_cov_scan = None;
        n
    }

    /// Reads a property from outside, as ReadProperty would answer it.
    pub fn read_from_outside(&self, id: ObjectId, prop: PropertyRef, now: Instant) -> Result<Value, ErrorClassCode> {
        self.read(id, prop, now)
    }
}

/// The objects of a device with `counts` of each kind, in Object_List order.
fn objects_of(counts: Counts, instance: u32) -> Vec<Object> {
    Kind::ALL
        .iter()
        .enumerate()
        .flat_map(|(slot, &kind)| (1..=counts.of(slot) as u32).map(move |i| Object::new(kind, i, instance)))
        .collect()
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
