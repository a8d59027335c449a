//! The bodies of the fuzz targets in `tests/fuzz/` (cargo-fuzz), one
//! function per target, each taking the fuzzer's bytes. The targets and the
//! replay test (`tests/it/fuzz_corpus.rs`, part of `cargo test`) call these
//! same functions, so a corpus file or a regression input replays through
//! exactly the code that was fuzzed. Not an API: hidden from the docs.
//!
//! Every function feeds untrusted bytes to a decoder or a sans-IO state
//! machine that takes network input. A malformed input is an `Err` and is
//! ignored; a function panics only where plantwatch's own code breaks an
//! invariant:
//!
//! - a decoded value that does not survive our encoder and decoder again;
//! - an answer the simulator queues that does not parse as a datagram;
//! - a segment range outside the answer, a reassembly over its limit, or a
//!   segmented transfer between the simulator's server side and the
//!   transport's client side that ends with other data than was sent.
//!
//! [`TARGETS`] names every function by its target (the directory name under
//! `tests/fuzz/corpus/` and `tests/fuzz/regressions/`).
//!
//! The stateful targets read their input as records ([`Records`]); the
//! builders [`sim_input`], [`segment_input`] and friends write that format
//! for the seed corpora (`tests/fuzz/examples/seeds.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::bacnet::codec::Reader;
use crate::bacnet::frame::{self, Apdu, Body, NpduOut, Segment};
use crate::bacnet::services::{
    self, CovNotification, IAm, ReadPropertyAck, ReadPropertyMultipleRequest, ReadPropertyRequest, SubscribeCovRequest,
    WhoIs, WritePropertyRequest,
};
use crate::bacnet::types::{service, Route};
use crate::sim::device::Device;
use crate::sim::object::Counts;
use crate::sim::outbox::Outbox;
use crate::sim::router::Router;
use crate::sim::segment::{AckOutcome, SegmentedAnswer};
use crate::sim::Faults;
use crate::transport::segment::{Reassembly, Step};
use crate::transport::TransportConfig;

/// A target's function.
pub type Target = fn(&[u8]);

/// Every target: its name and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", frame),
    ("apdu", apdu),
    ("tags", tags),
    ("read_property", read_property),
    ("read_property_ack", read_property_ack),
    ("rpm", rpm),
    ("rpm_ack", rpm_ack),
    ("write_property", write_property),
    ("subscribe_cov", subscribe_cov),
    ("cov_notification", cov_notification),
    ("who_is", who_is),
    ("i_am", i_am),
    ("error", error),
    ("transport_segments", transport_segments),
    ("sim_segments", sim_segments),
    ("segmentation", segmentation),
    ("sim_device", sim_device),
    ("sim_router", sim_router),
];

// ---------------------------------------------------------------- datagrams and headers

/// A received datagram, as the transport and the simulator take it:
/// BVLC, NPDU and APDU header ([`frame::parse`]), then the service data
/// through the decoder either of them uses for that service choice.
pub fn frame(data: &[u8]) {
    let Ok(f) = frame::parse(data) else { return };
    if let Some(source) = f.source {
        answer_route(source);
    }
    if let Body::Apdu(a) = f.body {
        service_data(&a);
    }
}

/// An APDU header alone ([`frame::parse_apdu`]), then its service data.
pub fn apdu(data: &[u8]) {
    if let Ok(a) = frame::parse_apdu(data) {
        service_data(&a);
    }
}

fn service_data(a: &Apdu<'_>) {
    match *a {
        Apdu::ConfirmedRequest { service, data, .. } => match service {
            service::READ_PROPERTY => read_property(data),
            service::READ_PROPERTY_MULTIPLE => rpm(data),
            service::WRITE_PROPERTY => write_property(data),
            service::SUBSCRIBE_COV => subscribe_cov(data),
            service::CONFIRMED_COV_NOTIFICATION => cov_notification(data),
            _ => {}
        },
        Apdu::UnconfirmedRequest { service, data } => match service {
            service::WHO_IS => who_is(data),
            service::I_AM => i_am(data),
            service::UNCONFIRMED_COV_NOTIFICATION => cov_notification(data),
            _ => {}
        },
        Apdu::ComplexAck { service, segment: None, data, .. } => match service {
            service::READ_PROPERTY => read_property_ack(data),
            service::READ_PROPERTY_MULTIPLE => rpm_ack(data),
            _ => {}
        },
        Apdu::Error { data, .. } => error(data),
        _ => {}
    }
}

/// The simulator answers a requester behind a router through DNET/DADR =
/// the request's SNET/SADR: that answer must parse back to the same route.
fn answer_route(source: Route) {
    let mut buf = Vec::new();
    frame::begin(&mut buf, false, &NpduOut { destination: Some(source), source: None, expecting_reply: false });
    frame::write_simple_ack(&mut buf, 1, service::WRITE_PROPERTY);
    frame::finish(&mut buf).expect("a simple ack fits in a datagram");
    let back = frame::parse(&buf).expect("an answer built by frame::begin parses");
    assert_eq!(back.destination, Some(source), "answer route {buf:02x?}");
}

/// The tag-level reader alone: application values, elements, and an
/// enclosed value, as far as each goes.
pub fn tags(data: &[u8]) {
    let mut r = Reader::new(data);
    while !r.is_empty() && r.application().is_ok() {}
    let mut r = Reader::new(data);
    while !r.is_empty() && r.skip_element().is_ok() {}
    if let Some((&n, rest)) = data.split_first() {
        let _ = Reader::new(rest).enclosed_value(n & 0x0F);
    }
}

// ---------------------------------------------------------------- service data

/// Decoded, encoded and decoded again, a value must encode to the same
/// bytes: what the simulator echoes (object, property, index) and what the
/// store keeps (values) is what was received.
fn stable<T>(data: &[u8], decode: impl Fn(&[u8]) -> Option<T>, encode: impl Fn(&T) -> Option<Vec<u8>>) {
    let Some(first) = decode(data) else { return };
    let Some(once) = encode(&first) else { return };
    let again = decode(&once).unwrap_or_else(|| panic!("our own encoding {once:02x?} does not decode"));
    let twice = encode(&again).expect("encodes again");
    assert_eq!(once, twice, "decode/encode is not stable for {data:02x?}");
}

fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::new();
    f(&mut buf);
    buf
}

/// What an encoder that may refuse its input wrote.
fn fallible<E>(f: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    f(&mut buf).ok().map(|()| buf)
}

/// ReadProperty request (simulator).
pub fn read_property(data: &[u8]) {
    stable(data, |d| ReadPropertyRequest::decode(d).ok(), |r| fallible(|b| r.encode(b)));
}

/// ReadProperty-ACK (transport).
pub fn read_property_ack(data: &[u8]) {
    stable(data, |d| ReadPropertyAck::decode(d).ok(), |a| Some(encoded(|b| a.encode(b))));
}

/// ReadPropertyMultiple request (simulator).
pub fn rpm(data: &[u8]) {
    stable(data, |d| ReadPropertyMultipleRequest::decode(d).ok(), |r| fallible(|b| r.encode(b)));
}

/// ReadPropertyMultiple-ACK (transport).
pub fn rpm_ack(data: &[u8]) {
    stable(data, |d| services::decode_rpm_ack(d).ok(), |r| Some(encoded(|b| services::encode_rpm_ack(b, r))));
}

/// WriteProperty request (simulator).
pub fn write_property(data: &[u8]) {
    stable(data, |d| WritePropertyRequest::decode(d).ok(), |r| fallible(|b| r.encode(b)));
}

/// SubscribeCOV request (simulator).
pub fn subscribe_cov(data: &[u8]) {
    stable(data, |d| SubscribeCovRequest::decode(d).ok(), |r| fallible(|b| r.encode(b)));
}

/// Confirmed and unconfirmed COV notifications (transport).
pub fn cov_notification(data: &[u8]) {
    stable(data, |d| CovNotification::decode(d).ok(), |n| Some(encoded(|b| n.encode(b))));
}

/// Who-Is (simulator).
pub fn who_is(data: &[u8]) {
    stable(data, |d| WhoIs::decode(d).ok(), |w| fallible(|b| w.encode(b)));
}

/// I-Am (transport: discovery and enrolment).
pub fn i_am(data: &[u8]) {
    stable(data, |d| IAm::decode(d).ok(), |i| Some(encoded(|b| i.encode(b))));
}

/// The parameters of an Error PDU (transport).
pub fn error(data: &[u8]) {
    let _ = services::decode_error(data);
}

// ---------------------------------------------------------------- records

/// Fuzzer input read as a sequence of fields; reading past the end gives
/// zeros and empty slices, so every input is a valid sequence.
#[derive(Debug)]
pub struct Records<'a> {
    data: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` octets.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

// ---------------------------------------------------------------- transport reassembly

/// The transport's reassembly of a segmented ComplexAck (client side),
/// fed a sequence of segments as `on_segment` in the transport gets them.
///
/// Input: our window, max segments, max length (2 octets), then segments:
/// `sequence, window, flags (1: more follows, 2: another service), length`
/// and that many octets of data. A transaction that ends (done or aborted)
/// is followed by a new one, as the next request's answer would be.
pub fn transport_segments(data: &[u8]) {
    let mut r = Records::new(data);
    let our_window = r.byte();
    let max_segments = u32::from(r.byte());
    let max_len = usize::from(r.u16());
    let mut current: Option<Reassembly> = None;
    while !r.is_empty() {
        let (sequence, window, flags) = (r.byte(), r.byte(), r.byte());
        let len = usize::from(r.byte());
        let payload = r.take(len);
        let seg = Segment { sequence, window, more_follows: flags & 1 != 0 };
        let service = if flags & 2 != 0 { service::READ_PROPERTY_MULTIPLE } else { service::READ_PROPERTY };
        let step = match current.as_mut() {
            Some(re) => re.on_segment(seg, service, payload),
            None => {
                let (re, step) = Reassembly::start(seg, service, payload, our_window, max_segments, max_len);
                current = re;
                step
            }
        };
        match step {
            Step::Ack { window, .. } | Step::Done { window, .. } => {
                assert!((1..=127).contains(&window), "window {window} out of range");
                assert!(window <= our_window.max(1), "window {window} above ours {our_window}");
            }
            Step::Wait | Step::Abort(_) => {}
        }
        match step {
            Step::Done { .. } => {
                let done = current.take().expect("a reassembly in progress").into_data();
                assert!(done.len() <= max_len, "{} octets reassembled, limit {max_len}", done.len());
            }
            Step::Abort(_) => current = None,
            Step::Ack { .. } | Step::Wait => {}
        }
    }
}

// ---------------------------------------------------------------- simulator segmentation

const PATTERN_LIMIT: usize = 64 * 1476;

/// `len` octets that differ from one position to the next (so that a
/// segment out of place shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8).collect()
}

/// Checks the segments of `range` as the simulator writes them.
fn check_segments(answer: &SegmentedAnswer, range: std::ops::Range<usize>, max_apdu: usize) {
    assert!(range.start <= range.end && range.end <= answer.segments(), "range {range:?} of {}", answer.segments());
    for i in range {
        let mut buf = Vec::new();
        answer.write_segment(i, &mut buf);
        assert!(buf.len() <= max_apdu, "segment {i} is {} octets, max APDU {max_apdu}", buf.len());
        let Ok(Apdu::ComplexAck { segment: Some(seg), .. }) = frame::parse_apdu(&buf) else {
            panic!("segment {i} does not parse: {buf:02x?}");
        };
        assert_eq!(seg.sequence, (i % 256) as u8);
        assert_eq!(seg.more_follows, i + 1 < answer.segments());
    }
}

/// The simulator's server side of a segmented answer, fed Segment-ACKs
/// and timeouts.
///
/// Input: answer length (2 octets), max APDU / 6, max segments (0:
/// unspecified), then records `kind (0x80: timeout, 1: negative), sequence,
/// window`.
pub fn sim_segments(data: &[u8]) {
    let mut r = Records::new(data);
    let len = usize::from(r.u16()).min(PATTERN_LIMIT);
    let max_apdu = usize::from(r.byte()) * 6;
    let max_segments = match r.byte() {
        0 => None,
        255 => Some(u16::MAX),
        n => Some(u16::from(n)),
    };
    let now = Instant::now();
    let Ok(mut answer) = SegmentedAnswer::new(1, service::READ_PROPERTY, pattern(len), max_apdu, max_segments, now)
    else {
        return;
    };
    let first = answer.start(now);
    check_segments(&answer, first, max_apdu);
    let mut t = now;
    while !r.is_empty() {
        let (kind, sequence, window) = (r.byte(), r.byte(), r.byte());
        t += Duration::from_millis(100);
        if kind & 0x80 != 0 {
            match answer.on_timeout(t) {
                Some(range) => check_segments(&answer, range, max_apdu),
                None => return,
            }
            continue;
        }
        match answer.on_ack(kind & 1 != 0, sequence, window, t) {
            AckOutcome::Send(range) => check_segments(&answer, range, max_apdu),
            AckOutcome::Ignored => {}
            AckOutcome::Done | AckOutcome::Abort(_) => return,
        }
    }
}

/// What the lossy channel of [`segmentation`] does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOp {
    /// Deliver the next segment to the client.
    Deliver = 0,
    DropSegment = 1,
    DuplicateSegment = 2,
    /// The next segment goes to the back of the queue.
    ReorderSegment = 3,
    /// Deliver the next Segment-ACK to the server.
    DeliverAck = 4,
    DropAck = 5,
    /// The server's segment timer expires.
    Timeout = 6,
    DuplicateAck = 7,
}

/// A whole segmented transfer: the simulator's [`SegmentedAnswer`] sends,
/// the transport's [`Reassembly`] receives, over a channel that drops,
/// duplicates and reorders what the input says, then over a reliable one.
/// A transfer the client completes must deliver exactly the data sent; over
/// the reliable channel every transfer that nobody aborted or gave up must
/// complete.
///
/// Input: answer length (2 octets), max APDU (code 0..=5), client window,
/// client max segments, then one [`ChannelOp`] per octet (low 3 bits).
pub fn segmentation(data: &[u8]) {
    let mut r = Records::new(data);
    let len = usize::from(r.u16()).min(PATTERN_LIMIT);
    let max_apdu = frame::max_apdu_from_code(r.byte() % 6).unwrap_or(1476);
    let our_window = r.byte();
    let max_segments = r.byte();
    let now = Instant::now();
    let sent = pattern(len);
    let limit = Some(u16::from(max_segments));
    let Ok(server) = SegmentedAnswer::new(7, service::READ_PROPERTY, sent.clone(), usize::from(max_apdu), limit, now)
    else {
        return;
    };
    let mut x = Transfer {
        server,
        client: None,
        our_window,
        max_segments: u32::from(max_segments),
        max_len: usize::from(max_apdu) * usize::from(max_segments),
        to_client: VecDeque::new(),
        to_server: VecDeque::new(),
        received: None,
        server_done: false,
        over: false,
        t: now,
    };
    x.to_client.extend(x.server.start(now));
    // The lossy channel.
    while !r.is_empty() && !x.over && !x.server_done {
        x.t += Duration::from_millis(10);
        match r.byte() & 7 {
            0 => x.deliver_segment(),
            1 => {
                x.to_client.pop_front();
            }
            2 => {
                if let Some(&i) = x.to_client.front() {
                    x.to_client.push_back(i);
                }
            }
            3 => {
                if let Some(i) = x.to_client.pop_front() {
                    x.to_client.push_back(i);
                }
            }
            4 => x.deliver_ack(),
            5 => {
                x.to_server.pop_front();
            }
            6 => x.timeout(),
            _ => {
                if let Some(&a) = x.to_server.front() {
                    x.to_server.push_back(a);
                }
            }
        }
    }
    // The reliable channel: everything in flight arrives, the server's
    // timer resends when nothing is.
    let mut steps = 0;
    while !x.over && !x.server_done {
        steps += 1;
        assert!(steps < 100_000, "the transfer does not end over a reliable channel");
        x.t += Duration::from_millis(10);
        if !x.to_client.is_empty() {
            x.deliver_segment();
        } else if !x.to_server.is_empty() {
            x.deliver_ack();
        } else if x.received.is_some() {
            break; // the client has it all; the server waits for an ACK that was lost
        } else {
            x.timeout();
        }
    }
    if x.server_done {
        assert!(x.received.is_some(), "the server is done but the client has not got everything");
    }
    match x.received {
        Some(got) => assert!(got == sent, "reassembled {} octets differ from the {} sent", got.len(), sent.len()),
        None => assert!(x.over, "the transfer ended without data, abort or give-up"),
    }
}

/// The state of a [`segmentation`] run.
struct Transfer {
    server: SegmentedAnswer,
    client: Option<Reassembly>,
    our_window: u8,
    max_segments: u32,
    max_len: usize,
    /// Segments in flight to the client.
    to_client: VecDeque<usize>,
    /// Segment-ACKs in flight to the server: negative, sequence, window.
    to_server: VecDeque<(bool, u8, u8)>,
    /// What the client reassembled.
    received: Option<Vec<u8>>,
    server_done: bool,
    /// Aborted by either side, or given up by the server.
    over: bool,
    t: Instant,
}

impl Transfer {
    fn deliver_segment(&mut self) {
        let Some(i) = self.to_client.pop_front() else { return };
        if self.received.is_some() || self.over {
            return; // the transaction is over on the client's side
        }
        let mut buf = Vec::new();
        self.server.write_segment(i, &mut buf);
        let Ok(Apdu::ComplexAck { segment: Some(seg), service, data, .. }) = frame::parse_apdu(&buf) else {
            panic!("segment {i} does not parse: {buf:02x?}");
        };
        let step = match self.client.as_mut() {
            Some(re) => re.on_segment(seg, service, data),
            None => {
                let (re, step) =
                    Reassembly::start(seg, service, data, self.our_window, self.max_segments, self.max_len);
                self.client = re;
                step
            }
        };
        match step {
            Step::Ack { negative, sequence, window } => self.to_server.push_back((negative, sequence, window)),
            Step::Done { sequence, window } => {
                self.to_server.push_back((false, sequence, window));
                self.received = self.client.take().map(Reassembly::into_data);
            }
            Step::Wait => {}
            Step::Abort(_) => self.over = true,
        }
    }

    fn deliver_ack(&mut self) {
        let Some((negative, sequence, window)) = self.to_server.pop_front() else { return };
        match self.server.on_ack(negative, sequence, window, self.t) {
            AckOutcome::Send(range) => self.to_client.extend(range),
            AckOutcome::Ignored => {}
            AckOutcome::Done => self.server_done = true,
            AckOutcome::Abort(_) => self.over = true,
        }
    }

    fn timeout(&mut self) {
        match self.server.on_timeout(self.t) {
            Some(range) => self.to_client.extend(range),
            None => self.over = true,
        }
    }
}

// ---------------------------------------------------------------- simulator device and router

/// One step of a [`sim_device`] or [`sim_router`] input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStep<'a> {
    /// A datagram from peer `peer % 3`.
    Datagram { peer: u8, bytes: &'a [u8] },
    /// Time passes (at most 16 s a step, in quarter seconds), then what is due runs.
    Wait(Duration),
}

/// Configuration octet of a simulator input: bit 0 no ReadPropertyMultiple,
/// bit 1 no segmentation, bits 2-3 max APDU (1476, 480, 206, 50), bit 4
/// offline from 5 s to 10 s.
pub fn sim_input(config: u8, steps: &[SimStep<'_>]) -> Vec<u8> {
    let mut out = vec![config];
    for s in steps {
        match *s {
            SimStep::Datagram { peer, bytes } => {
                let len = bytes.len().min(0x3FFF);
                out.push(((peer % 3) << 6) | (len >> 8) as u8);
                out.push(len as u8);
                out.extend_from_slice(&bytes[..len]);
            }
            SimStep::Wait(d) => {
                let quarters = (d.as_millis() / 250).clamp(1, 64) as u8;
                out.push(0xC0 | (quarters - 1));
            }
        }
    }
    out
}

const PEERS: [&str; 3] = ["127.0.0.1:47808", "127.0.0.1:47809", "10.0.0.9:47808"];

fn faults(config: u8) -> Faults {
    Faults {
        no_rpm: config & 1 != 0,
        no_segmentation: config & 2 != 0,
        max_apdu: [1476, 480, 206, 50][usize::from((config >> 2) & 3)],
        offline_after: (config & 0x10 != 0).then_some(Duration::from_secs(5)),
        online_after: (config & 0x10 != 0).then_some(Duration::from_secs(5)),
        ..Faults::default()
    }
}

/// What a node of the simulator is fed.
trait Node {
    fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant, out: &mut Outbox);
    fn next_deadline(&self) -> Option<Instant>;
    fn on_timer(&mut self, now: Instant, out: &mut Outbox);
}

impl Node for Device {
    fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant, out: &mut Outbox) {
        Device::handle(self, datagram, from, now, out);
    }
    fn next_deadline(&self) -> Option<Instant> {
        Device::next_deadline(self)
    }
    fn on_timer(&mut self, now: Instant, out: &mut Outbox) {
        Device::on_timer(self, now, out);
    }
}

impl Node for Router {
    fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant, out: &mut Outbox) {
        Router::handle(self, datagram, from, now, out);
    }
    fn next_deadline(&self) -> Option<Instant> {
        Router::next_deadline(self)
    }
    fn on_timer(&mut self, now: Instant, out: &mut Outbox) {
        Router::on_timer(self, now, out);
    }
}

/// Runs a simulator input (see [`sim_input`]) against `node` as its socket
/// task would: every answer it queues must be a datagram that parses.
fn run_node(node: &mut impl Node, r: &mut Records<'_>, epoch: Instant) {
    let mut out = Outbox::default();
    let mut now = epoch;
    while !r.is_empty() {
        let op = r.byte();
        if op >= 0xC0 {
            now += Duration::from_millis(250) * (u32::from(op & 0x3F) + 1);
            if node.next_deadline().is_some_and(|at| at <= now) {
                node.on_timer(now, &mut out);
            }
        } else {
            let from: SocketAddr = PEERS[usize::from(op >> 6)].parse().expect("a socket address");
            let len = (usize::from(op & 0x3F) << 8) | usize::from(r.byte());
            node.handle(r.take(len), from, now, &mut out);
        }
        for f in out.frames.drain(..) {
            assert!(f.bytes.len() <= frame::MAX_DATAGRAM, "an answer of {} octets", f.bytes.len());
            if let Err(e) = frame::parse(&f.bytes) {
                panic!("the simulator sent a frame that does not parse ({e}): {:02x?}", f.bytes);
            }
        }
    }
}

/// One simulated device (3 objects of each kind) fed datagrams from three
/// peers and the passing of time: the most complete "what the simulator
/// accepts" target. Input: see [`sim_input`].
pub fn sim_device(data: &[u8]) {
    let mut r = Records::new(data);
    let config = r.byte();
    let epoch = Instant::now();
    let mut device = Device::new(1001, Counts::per_kind(3), None, faults(config), epoch);
    run_node(&mut device, &mut r, epoch);
}

/// Network behind the simulated router of [`sim_router`].
pub const ROUTER_NETWORK: u16 = 100;
/// Devices behind the simulated router of [`sim_router`] (instances 2001...).
pub const ROUTED_DEVICES: usize = 3;

/// A simulated router with [`ROUTED_DEVICES`] devices behind it on network
/// [`ROUTER_NETWORK`] (device k has MAC k+1). Input: see [`sim_input`].
pub fn sim_router(data: &[u8]) {
    let mut r = Records::new(data);
    let config = r.byte();
    let epoch = Instant::now();
    let devices = (0..ROUTED_DEVICES)
        .map(|k| {
            let route = Route { network: ROUTER_NETWORK, mac: Router::mac(k, ROUTED_DEVICES) };
            Device::new(2001 + k as u32, Counts::per_kind(2), Some(route), faults(config), epoch)
        })
        .collect();
    let mut router = Router::new(ROUTER_NETWORK, devices);
    run_node(&mut router, &mut r, epoch);
}

// ---------------------------------------------------------------- seed builders

/// A [`transport_segments`] input: limits as the transport's defaults, then
/// `segments` as `(sequence, window, more_follows, data)`.
pub fn transport_segments_input(segments: &[(u8, u8, bool, &[u8])]) -> Vec<u8> {
    let c = TransportConfig::default();
    let max_len = (usize::from(c.max_apdu) * usize::from(c.max_segments)).min(usize::from(u16::MAX)) as u16;
    let mut out = vec![c.window, c.max_segments.min(255) as u8];
    out.extend_from_slice(&max_len.to_be_bytes());
    for &(sequence, window, more, data) in segments {
        let data = &data[..data.len().min(255)];
        out.extend_from_slice(&[sequence, window, u8::from(more), data.len() as u8]);
        out.extend_from_slice(data);
    }
    out
}

/// A [`segmentation`] input.
pub fn segmentation_input(len: u16, max_apdu_code: u8, window: u8, max_segments: u8, ops: &[ChannelOp]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&[max_apdu_code, window, max_segments]);
    out.extend(ops.iter().map(|&op| op as u8));
    out
}

/// A [`sim_segments`] input: `acks` as `(negative, sequence, window)`;
/// `None` is a timeout.
pub fn sim_segments_input(len: u16, max_apdu: usize, max_segments: u8, acks: &[Option<(bool, u8, u8)>]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&[(max_apdu / 6).min(255) as u8, max_segments]);
    for a in acks {
        match *a {
            None => out.extend_from_slice(&[0x80, 0, 0]),
            Some((negative, sequence, window)) => out.extend_from_slice(&[u8::from(negative), sequence, window]),
        }
    }
    out
}
