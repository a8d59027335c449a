//! Writes the seed corpora of every fuzz target into a directory (default
//! `tests/fuzz/work`, one sub-directory per target): the frames bacpypes3
//! encoded (`tests/golden/bacpypes3_frames.json`), their APDUs and service
//! data, frames and service data from plantwatch's own encoders, and
//! request sequences for the stateful targets in the input format of
//! `plantwatch_actors::fuzzing`.
//!
//! ```sh
//! cargo run --manifest-path tests/fuzz/Cargo.toml --example seeds -- tests/fuzz/work
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plantwatch_actors::bacnet::codec::{self, Value};
use plantwatch_actors::bacnet::frame::{self, Apdu, Body, NpduOut, Segment};
use plantwatch_actors::bacnet::services::{
    encode_rpm_ack, CovNotification, CovSubscription, ErrorClassCode, IAm, PropertyRef, PropertyResult, ReadAccessSpec,
    ReadPropertyAck, ReadPropertyMultipleRequest, ReadPropertyRequest, SubscribeCovRequest, WhoIs,
    WritePropertyRequest,
};
use plantwatch_actors::bacnet::types::{object_type, property, service, BitString, Date, Mac, ObjectId, Route, Time};
use plantwatch_actors::bacnet::Segmentation;
use plantwatch_actors::fuzzing::{self, ChannelOp, SimStep};

type Corpora = BTreeMap<&'static str, Vec<Vec<u8>>>;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    frame::finish(&mut buf).expect("a frame that fits");
    buf
}

fn datagram(destination: Option<Route>, source: Option<Route>, expecting_reply: bool, apdu: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::begin(&mut buf, false, &NpduOut { destination, source, expecting_reply });
    buf.extend_from_slice(apdu);
    finish(buf)
}

fn confirmed(invoke_id: u8, service: u8, max_apdu: u16, max_segments: u16, params: &[u8]) -> Vec<u8> {
    let mut apdu = Vec::new();
    frame::write_confirmed_request(&mut apdu, invoke_id, service, max_apdu, max_segments);
    apdu.extend_from_slice(params);
    apdu
}

fn unconfirmed(service: u8, params: &[u8]) -> Vec<u8> {
    let mut apdu = Vec::new();
    frame::write_unconfirmed_request(&mut apdu, service);
    apdu.extend_from_slice(params);
    apdu
}

fn complex(invoke_id: u8, service: u8, segment: Option<Segment>, data: &[u8]) -> Vec<u8> {
    let mut apdu = Vec::new();
    frame::write_complex_ack(&mut apdu, invoke_id, service, segment);
    apdu.extend_from_slice(data);
    apdu
}

fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Vec::new();
    f(&mut b);
    b
}

/// Service data by service, from our encoders.
struct Services {
    rp: Vec<Vec<u8>>,
    rp_ack: Vec<Vec<u8>>,
    rpm: Vec<Vec<u8>>,
    rpm_ack: Vec<Vec<u8>>,
    wp: Vec<Vec<u8>>,
    sub: Vec<Vec<u8>>,
    cov: Vec<Vec<u8>>,
    who_is: Vec<Vec<u8>>,
    i_am: Vec<Vec<u8>>,
    error: Vec<Vec<u8>>,
}

fn values() -> Vec<Value> {
    let mut flags = BitString::with_len(4);
    flags.set(1, true);
    vec![
        Value::Null,
        Value::Boolean(true),
        Value::Unsigned(70_000),
        Value::Signed(-129),
        Value::Real(21.5),
        Value::Double(-1.25e300),
        Value::OctetString(vec![1, 2, 3]),
        Value::CharacterString("Grüße".into()),
        Value::BitString(flags),
        Value::Enumerated(1),
        Value::Date(Date([126, 11, 26, 4])),
        Value::Time(Time([2, 10, 0, 0])),
        Value::ObjectId(ObjectId::new(object_type::ANALOG_INPUT, 3)),
        Value::List(vec![Value::ObjectId(ObjectId::device(1001)), Value::ObjectId(ObjectId::new(0, 1))]),
        Value::Opaque(hex("0ea47e0b1a04b40c1e00000f")),
    ]
}

fn services() -> Services {
    let ai = ObjectId::new(object_type::ANALOG_INPUT, 1);
    let ao = ObjectId::new(object_type::ANALOG_OUTPUT, 1);
    let dev = ObjectId::device(1001);
    let pv = PropertyRef::new(property::PRESENT_VALUE);
    let list = PropertyRef::indexed(property::OBJECT_LIST, 0);
    let rp = [(ai, pv), (dev, list), (dev, PropertyRef::new(1000))]
        .iter()
        .map(|&(object, property)| {
            let mut b = Vec::new();
            ReadPropertyRequest { object, property }.encode(&mut b).expect("encodes");
            b
        })
        .collect();
    let rp_ack = values()
        .into_iter()
        .map(|value| enc(|b| ReadPropertyAck { object: ai, property: pv, value }.encode(b)))
        .chain([enc(|b| ReadPropertyAck { object: dev, property: list, value: Value::Unsigned(22) }.encode(b))])
        .collect();
    let rpm = [
        vec![ReadAccessSpec { object: ai, properties: vec![pv, PropertyRef::new(property::STATUS_FLAGS)] }],
        vec![ReadAccessSpec { object: dev, properties: vec![PropertyRef::new(property::ALL)] }],
        vec![
            ReadAccessSpec { object: ai, properties: vec![PropertyRef::new(property::REQUIRED)] },
            ReadAccessSpec { object: ao, properties: vec![PropertyRef::indexed(property::PRIORITY_ARRAY, 8)] },
        ],
    ]
    .into_iter()
    .map(|specs| {
        let mut b = Vec::new();
        ReadPropertyMultipleRequest { specs }.encode(&mut b).expect("encodes");
        b
    })
    .collect();
    let results = vec![
        PropertyResult { object: ai, property: pv, value: Ok(Value::Real(21.5)) },
        PropertyResult {
            object: ai,
            property: PropertyRef::new(9999),
            value: Err(ErrorClassCode { class: 2, code: 32 }),
        },
        PropertyResult { object: ao, property: PropertyRef::indexed(87, 3), value: Ok(Value::Opaque(hex("0e21050f"))) },
    ];
    let rpm_ack = vec![enc(|b| encode_rpm_ack(b, &results)), enc(|b| encode_rpm_ack(b, &results[..1]))];
    let wp = [
        (ao, pv, Value::Real(42.5), Some(8)),
        (ao, pv, Value::Null, Some(8)),
        (ObjectId::new(object_type::CHARACTER_STRING_VALUE, 1), pv, Value::CharacterString("hello".into()), None),
        (ObjectId::new(object_type::ANALOG_VALUE, 1), PropertyRef::new(1000), Value::Unsigned(7), Some(16)),
    ]
    .into_iter()
    .map(|(object, property, value, priority)| {
        let mut b = Vec::new();
        WritePropertyRequest { object, property, value, priority }.encode(&mut b).expect("encodes");
        b
    })
    .collect();
    let sub = [
        Some(CovSubscription { confirmed: false, lifetime: Some(300) }),
        Some(CovSubscription { confirmed: true, lifetime: None }),
        None,
    ]
    .into_iter()
    .map(|subscription| {
        let mut b = Vec::new();
        SubscribeCovRequest { process_id: 7, object: ai, subscription }.encode(&mut b).expect("encodes");
        b
    })
    .collect();
    let n = CovNotification {
        process_id: 7,
        device: dev,
        object: ai,
        time_remaining: 299,
        values: vec![
            (pv, Value::Real(25.5)),
            (PropertyRef::new(property::STATUS_FLAGS), Value::BitString(BitString::with_len(4))),
        ],
    };
    let cov = vec![
        enc(|b| n.encode(b)),
        hex("09111c0203f7a12c000000013a012c4e09552e3ea47e0b1a04b40c1e00003f2f096f2e8204002f4f"),
    ];
    let who_is = [None, Some((1000, 2000))]
        .into_iter()
        .map(|range| {
            let mut b = Vec::new();
            WhoIs { range }.encode(&mut b).expect("encodes");
            b
        })
        .collect();
    let i_am =
        vec![enc(|b| IAm { device: dev, max_apdu: 1476, segmentation: Segmentation::Both, vendor_id: 999 }.encode(b))];
    let error = vec![
        enc(|b| {
            codec::write_application(b, &Value::Enumerated(2));
            codec::write_application(b, &Value::Enumerated(32));
        }),
        hex("0e91029120 0f".replace(' ', "").as_str()),
    ];
    Services { rp, rp_ack, rpm, rpm_ack, wp, sub, cov, who_is, i_am, error }
}

/// The APDU of a datagram (after BVLC and NPDU).
fn apdu_of(datagram: &[u8]) -> Option<&[u8]> {
    let f = frame::parse(datagram).ok()?;
    let Body::Apdu(_) = f.body else { return None };
    let mut at = if f.origin.is_some() { 10 } else { 4 } + 2;
    for r in [f.destination, f.source].into_iter().flatten() {
        at += 3 + r.mac.as_bytes().len();
    }
    if f.destination.is_some() {
        at += 1;
    }
    datagram.get(at..)
}

/// Files the service data of a parsed APDU under the target that decodes it.
fn file_service_data(c: &mut Corpora, apdu: &Apdu<'_>) {
    let (target, data) = match *apdu {
        Apdu::ConfirmedRequest { service, data, .. } => match service {
            service::READ_PROPERTY => ("read_property", data),
            service::READ_PROPERTY_MULTIPLE => ("rpm", data),
            service::WRITE_PROPERTY => ("write_property", data),
            service::SUBSCRIBE_COV => ("subscribe_cov", data),
            service::CONFIRMED_COV_NOTIFICATION => ("cov_notification", data),
            _ => return,
        },
        Apdu::UnconfirmedRequest { service, data } => match service {
            service::WHO_IS => ("who_is", data),
            service::I_AM => ("i_am", data),
            service::UNCONFIRMED_COV_NOTIFICATION => ("cov_notification", data),
            _ => return,
        },
        Apdu::ComplexAck { service: service::READ_PROPERTY, segment: None, data, .. } => ("read_property_ack", data),
        Apdu::ComplexAck { service: service::READ_PROPERTY_MULTIPLE, segment: None, data, .. } => ("rpm_ack", data),
        Apdu::Error { data, .. } => ("error", data),
        _ => return,
    };
    c.entry(target).or_default().push(data.to_vec());
    c.entry("tags").or_default().push(data.to_vec());
}

fn golden(repo: &Path) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(repo.join("tests/golden/bacpypes3_frames.json")).expect("golden frames");
    let frames: serde_json::Value = serde_json::from_str(&text).expect("golden JSON");
    frames
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|f| Some((f["name"].as_str()?.to_string(), hex(f["hex"].as_str()?))))
        .collect()
}

fn network_frames(s: &Services) -> Vec<Vec<u8>> {
    let route = Route { network: 100, mac: Mac::new(&[2]).expect("a MAC") };
    let source = Route { network: 7, mac: Mac::new(&[0x0A, 0, 0, 5, 0xBA, 0xC0]).expect("a MAC") };
    let global = Route { network: 0xFFFF, mac: Mac::EMPTY };
    let mut out = Vec::new();
    for p in &s.rp {
        out.push(datagram(None, None, true, &confirmed(1, service::READ_PROPERTY, 1476, 64, p)));
        out.push(datagram(Some(route), None, true, &confirmed(2, service::READ_PROPERTY, 1476, 64, p)));
        out.push(datagram(None, Some(source), true, &confirmed(3, service::READ_PROPERTY, 50, 1, p)));
    }
    for p in &s.rpm {
        out.push(datagram(None, None, true, &confirmed(4, service::READ_PROPERTY_MULTIPLE, 480, 16, p)));
    }
    for p in &s.wp {
        out.push(datagram(None, None, true, &confirmed(5, service::WRITE_PROPERTY, 1476, 1, p)));
    }
    for p in &s.sub {
        out.push(datagram(None, None, true, &confirmed(6, service::SUBSCRIBE_COV, 1476, 1, p)));
    }
    for p in &s.cov {
        out.push(datagram(None, None, true, &confirmed(7, service::CONFIRMED_COV_NOTIFICATION, 1476, 1, p)));
        out.push(datagram(None, None, false, &unconfirmed(service::UNCONFIRMED_COV_NOTIFICATION, p)));
    }
    for p in &s.who_is {
        out.push(datagram(None, None, false, &unconfirmed(service::WHO_IS, p)));
        out.push(datagram(Some(global), None, false, &unconfirmed(service::WHO_IS, p)));
    }
    for p in &s.i_am {
        out.push(datagram(None, Some(source), false, &unconfirmed(service::I_AM, p)));
    }
    for p in &s.rp_ack {
        out.push(datagram(None, None, false, &complex(1, service::READ_PROPERTY, None, p)));
    }
    for p in &s.rpm_ack {
        out.push(datagram(None, Some(route), false, &complex(4, service::READ_PROPERTY_MULTIPLE, None, p)));
    }
    let seg = |sequence, more_follows| Some(Segment { sequence, window: 16, more_follows });
    out.push(datagram(None, None, false, &complex(1, service::READ_PROPERTY, seg(0, true), &s.rp_ack[13])));
    for p in &s.error {
        let mut a = Vec::new();
        frame::write_error(&mut a, 1, service::READ_PROPERTY, 2, 32);
        out.push(datagram(None, None, false, &a));
        out.push(datagram(None, None, false, &[&[0x50, 1, service::READ_PROPERTY][..], p].concat()));
    }
    let mut a = Vec::new();
    frame::write_reject(&mut a, 1, 9);
    out.push(datagram(None, None, false, &a));
    a.clear();
    frame::write_abort(&mut a, true, 1, 4);
    out.push(datagram(None, None, false, &a));
    a.clear();
    frame::write_segment_ack(&mut a, false, false, 1, 0, 16);
    out.push(datagram(None, None, false, &a));
    a.clear();
    frame::write_simple_ack(&mut a, 5, service::WRITE_PROPERTY);
    out.push(datagram(None, None, false, &a));
    // a segmented confirmed request, a Forwarded-NPDU, network layer messages
    let mut seg_req = confirmed(8, service::READ_PROPERTY, 1476, 64, &s.rp[0]);
    seg_req[0] |= 0x0C;
    seg_req.splice(3..3, [0, 4]);
    out.push(datagram(None, None, true, &seg_req));
    let mut fwd = vec![0x81, 0x04, 0, 0, 127, 0, 0, 9, 0xBA, 0xC0];
    fwd.extend_from_slice(&datagram(None, None, false, &unconfirmed(service::WHO_IS, &[]))[4..]);
    out.push(finish(fwd));
    for (kind, data) in [(0u8, &[][..]), (0, &[0, 100][..]), (1, &[0, 100][..]), (0x80, &[0, 0x03, 0xE7, 1][..])] {
        let mut b = Vec::new();
        frame::begin_network_message(&mut b, true, kind);
        b.extend_from_slice(data);
        out.push(finish(b));
    }
    out
}

/// A ReadProperty of the Object_List from the device at `dest` that needs
/// segmenting at max-APDU 50, then the Segment-ACKs a client sends.
fn segmented_session(dest: Option<Route>, invoke_id: u8) -> Vec<Vec<u8>> {
    let device = ObjectId::device(4_194_303);
    let mut p = Vec::new();
    ReadPropertyRequest { object: device, property: PropertyRef::new(property::OBJECT_LIST) }
        .encode(&mut p)
        .expect("encodes");
    let mut out = vec![datagram(dest, None, true, &confirmed(invoke_id, service::READ_PROPERTY, 50, 64, &p))];
    for (sequence, window, negative) in [(0, 4, false), (2, 4, true), (4, 4, false), (8, 4, false)] {
        let mut a = Vec::new();
        frame::write_segment_ack(&mut a, negative, false, invoke_id, sequence, window);
        out.push(datagram(dest, None, false, &a));
    }
    out
}

fn sim_sessions(s: &Services, dest: Option<Route>) -> Vec<Vec<u8>> {
    let rp = |invoke: u8, object: ObjectId, property: PropertyRef| {
        let mut p = Vec::new();
        ReadPropertyRequest { object, property }.encode(&mut p).expect("encodes");
        datagram(dest, None, true, &confirmed(invoke, service::READ_PROPERTY, 1476, 64, &p))
    };
    let wait = SimStep::Wait(Duration::from_secs(3));
    let mut sessions: Vec<(u8, Vec<Vec<u8>>, bool)> = Vec::new();
    let dev = ObjectId::device(4_194_303);
    let mut reads = Vec::new();
    for (k, prop) in
        [property::OBJECT_NAME, property::PROTOCOL_SERVICES_SUPPORTED, property::OBJECT_LIST].into_iter().enumerate()
    {
        reads.push(rp(k as u8, dev, PropertyRef::new(prop)));
    }
    for t in [0u16, 1, 3, 4, 13, 19, 40] {
        reads.push(rp(9, ObjectId::new(t, 1), PropertyRef::new(property::PRESENT_VALUE)));
        reads.push(rp(10, ObjectId::new(t, 2), PropertyRef::new(property::PRIORITY_ARRAY)));
    }
    sessions.push((0, reads, false));
    sessions.push((
        0,
        s.rpm.iter().map(|p| datagram(dest, None, true, &confirmed(4, 14, 1476, 64, p))).collect(),
        false,
    ));
    sessions.push((0x08, segmented_session(dest, 11), false));
    sessions.push((0x0C, segmented_session(dest, 12), true));
    sessions.push((0x02, segmented_session(dest, 13), false));
    let mut writes: Vec<Vec<u8>> =
        s.wp.iter().map(|p| datagram(dest, None, true, &confirmed(5, service::WRITE_PROPERTY, 1476, 1, p))).collect();
    writes.push(rp(6, ObjectId::new(object_type::ANALOG_OUTPUT, 1), PropertyRef::new(property::PRIORITY_ARRAY)));
    sessions.push((0, writes, false));
    let mut cov: Vec<Vec<u8>> =
        s.sub.iter().map(|p| datagram(dest, None, true, &confirmed(7, service::SUBSCRIBE_COV, 1476, 1, p))).collect();
    cov.rotate_left(1); // confirmed subscription first, then the unconfirmed one, then the cancellation
    sessions.push((0, cov, true));
    let mut a = Vec::new();
    frame::write_simple_ack(&mut a, 0, service::CONFIRMED_COV_NOTIFICATION);
    sessions.push((
        0,
        vec![datagram(dest, None, true, &confirmed(7, 5, 1476, 1, &s.sub[1])), datagram(dest, None, false, &a)],
        true,
    ));
    let global = Route { network: 0xFFFF, mac: Mac::EMPTY };
    let who = s.who_is.iter().map(|p| datagram(dest.map(|_| global), None, false, &unconfirmed(service::WHO_IS, p)));
    sessions.push((0x10, who.collect(), true));
    sessions.push((
        0x01,
        s.rpm.iter().map(|p| datagram(dest, None, true, &confirmed(4, 14, 1476, 64, p))).collect(),
        false,
    ));
    sessions
        .into_iter()
        .map(|(config, frames, waits)| {
            let mut steps = Vec::new();
            for (k, f) in frames.iter().enumerate() {
                steps.push(SimStep::Datagram { peer: (k % 2) as u8, bytes: f });
                if waits {
                    steps.push(wait);
                }
            }
            steps.push(SimStep::Wait(Duration::from_secs(16)));
            fuzzing::sim_input(config, &steps)
        })
        .collect()
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out: PathBuf = std::env::args().nth(1).map_or_else(|| repo.join("tests/fuzz/work"), PathBuf::from);
    let s = services();
    let mut c: Corpora = BTreeMap::new();
    let mut frames: Vec<Vec<u8>> = golden(&repo).into_iter().map(|(_, f)| f).collect();
    frames.extend(network_frames(&s));
    for f in &frames {
        c.entry("frame").or_default().push(f.clone());
        if let Some(a) = apdu_of(f) {
            c.entry("apdu").or_default().push(a.to_vec());
            if let Ok(parsed) = frame::parse_apdu(a) {
                file_service_data(&mut c, &parsed);
            }
        }
    }
    for (target, data) in [
        ("read_property", &s.rp),
        ("read_property_ack", &s.rp_ack),
        ("rpm", &s.rpm),
        ("rpm_ack", &s.rpm_ack),
        ("write_property", &s.wp),
        ("subscribe_cov", &s.sub),
        ("cov_notification", &s.cov),
        ("who_is", &s.who_is),
        ("i_am", &s.i_am),
        ("error", &s.error),
    ] {
        c.entry(target).or_default().extend(data.iter().cloned());
    }
    c.entry("tags").or_default().extend(values().iter().map(|v| enc(|b| codec::write_application(b, v))));

    // Segments: the golden segmented answer, in order, with a gap, with a
    // repeat, and a long one whose sequence numbers wrap.
    let golden_segments: Vec<(u8, u8, bool, Vec<u8>)> = golden(&repo)
        .iter()
        .filter(|(name, _)| name.starts_with("read-property-ack-segment-"))
        .filter_map(|(_, f)| match frame::parse(f).ok()?.body {
            Body::Apdu(Apdu::ComplexAck { segment: Some(s), data, .. }) => {
                Some((s.sequence, s.window, s.more_follows, data.to_vec()))
            }
            _ => None,
        })
        .collect();
    let as_refs = |v: &[(u8, u8, bool, Vec<u8>)]| -> Vec<u8> {
        let r: Vec<(u8, u8, bool, &[u8])> = v.iter().map(|(a, b, c, d)| (*a, *b, *c, &d[..])).collect();
        fuzzing::transport_segments_input(&r)
    };
    let ts = c.entry("transport_segments").or_default();
    ts.push(as_refs(&golden_segments));
    let mut gap = golden_segments.clone();
    if gap.len() > 2 {
        let second = gap.remove(1);
        gap.push(second);
    }
    ts.push(as_refs(&gap));
    let mut repeat = golden_segments.clone();
    if let Some(first) = golden_segments.get(1).cloned() {
        repeat.insert(2, first);
    }
    ts.push(as_refs(&repeat));
    let long: Vec<(u8, u8, bool, Vec<u8>)> = (0..300u32).map(|i| (i as u8, 4, i < 299, vec![i as u8; 3])).collect();
    ts.push(as_refs(&long));

    let ss = c.entry("sim_segments").or_default();
    ss.push(fuzzing::sim_segments_input(100, 10, 255, &[Some((false, 0, 4)), Some((false, 2, 4)), Some((true, 3, 4))]));
    ss.push(fuzzing::sim_segments_input(3000, 480, 0, &[None, Some((false, 0, 16)), None, None, None, None]));
    let acks: Vec<Option<(bool, u8, u8)>> = (0..200u32).map(|i| Some((false, (i * 3) as u8, 3))).collect();
    ss.push(fuzzing::sim_segments_input(600 * 6, 12, 255, &acks));

    use ChannelOp::*;
    let sg = c.entry("segmentation").or_default();
    sg.push(fuzzing::segmentation_input(5000, 0, 16, 255, &[]));
    sg.push(fuzzing::segmentation_input(
        2000,
        1,
        4,
        64,
        &[Deliver, DeliverAck, DropSegment, Deliver, Deliver, DeliverAck, Timeout, DuplicateAck, ReorderSegment],
    ));
    sg.push(fuzzing::segmentation_input(
        60_000,
        0,
        127,
        255,
        &[Deliver, DeliverAck, Deliver, DuplicateSegment, DropAck, Timeout, Deliver, DeliverAck],
    ));

    let route = Route { network: fuzzing::ROUTER_NETWORK, mac: Mac::new(&[2]).expect("a MAC") };
    c.entry("sim_device").or_default().extend(sim_sessions(&s, None));
    let mut routed = sim_sessions(&s, Some(route));
    let mut who_is_router = Vec::new();
    frame::begin_network_message(&mut who_is_router, true, 0);
    let who_is_router = finish(who_is_router);
    routed.push(fuzzing::sim_input(0, &[SimStep::Datagram { peer: 0, bytes: &who_is_router }]));
    c.entry("sim_router").or_default().extend(routed);
    // Every datagram is also a one-step session.
    for f in &frames {
        for target in ["sim_device", "sim_router"] {
            c.entry(target).or_default().push(fuzzing::sim_input(0, &[SimStep::Datagram { peer: 0, bytes: f }]));
        }
    }

    c.entry("http_query").or_default().extend(
        [
            "",
            "1001/analog-input:1?live=true",
            "4194303/device:1?limit=2",
            "?network=demo&status=online&q=Demo&sort=-name&limit=2",
            "?type=analog-output&quality=good&sort=updated_at&limit=1000",
            "?from=2026-11-26T02:10:00Z&to=2026-11-26T03:10:00.5%2B01:00&limit=10",
            "?cursor=7b22736f7274223a226e616d65222c2276616c7565223a22646576696365222c226964223a223030303031303031227d",
            "?cursor=313233&limit=0",
            "?sort=color&limit=-1&live=maybe&unknown=1",
            "?q=%E2%82%AC%ZZ&limit=18446744073709551616",
        ]
        .iter()
        .map(|q| q.as_bytes().to_vec()),
    );
    c.entry("http_body").or_default().extend(
        [
            r#"{"value": 42.5, "priority": 8}"#,
            r#"{"value": null, "priority": 8}"#,
            r#"{"value": "active", "priority": 16, "property": "present-value"}"#,
            r#"{"value": 2, "property": "out-of-service"}"#,
            r#"{"value": 1e400, "priority": 0, "colour": "red"}"#,
            r#"{"network": "demo", "low": 1000, "high": 2000, "wait_ms": 500}"#,
            r#"{"name": "bms", "role": "operator"}"#,
            r#"[1, {"value": [true]}]"#,
        ]
        .iter()
        .map(|b| b.as_bytes().to_vec()),
    );

    for (target, inputs) in &c {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).expect("a corpus directory");
        for (k, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{k:03}")), input).expect("a seed file");
        }
        println!("{target}: {} seeds", inputs.len());
    }
}
