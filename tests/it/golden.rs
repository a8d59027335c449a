//! Golden bytes from an independent stack: frames that bacpypes3 encoded
//! (tests/golden/bacpypes3_frames.json, made by tests/interop/capture_golden.py)
//! must decode to the values bacpypes3 meant, and what plantwatch encodes for
//! the same request or answer must be the same bytes. Our encoder and decoder
//! therefore cannot agree on a bug of their own.

use serde_json::Value as Json;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::frame::{self, Apdu, Body, NpduOut, Segment};
use plantwatch_actors::bacnet::services::{
    decode_error, decode_rpm_ack, encode_rpm_ack, CovNotification, CovSubscription, ErrorClassCode, IAm, PropertyRef,
    PropertyResult, ReadAccessSpec, ReadPropertyAck, ReadPropertyMultipleRequest, ReadPropertyRequest,
    SubscribeCovRequest, WhoIs, WritePropertyRequest,
};
use plantwatch_actors::bacnet::types::{service, BitString, Mac, Route, Segmentation};
use plantwatch_actors::bacnet::ObjectId;
use plantwatch_actors::transport::segment::{Reassembly, Step};

use crate::support::hex;

fn frames() -> Vec<Json> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/bacpypes3_frames.json");
    let text = std::fs::read_to_string(path).expect("golden frames file");
    serde_json::from_str::<Vec<Json>>(&text).expect("golden frames are JSON")
}

fn golden(name: &str) -> (Vec<u8>, Json) {
    let all = frames();
    let f = all.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no golden frame {name}"));
    (hex(f["hex"].as_str().expect("hex")), f["fields"].clone())
}

fn obj(s: &str) -> ObjectId {
    s.parse().expect("object reference")
}

/// A whole frame as plantwatch builds it.
fn build(npdu: NpduOut, broadcast: bool, apdu: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = Vec::new();
    frame::begin(&mut f, broadcast, &npdu);
    apdu(&mut f);
    frame::finish(&mut f).expect("fits");
    f
}

fn request(invoke_id: u8, service: u8, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    // bacpypes3 advertises 16 segments of 1476 octets
    build(NpduOut { expecting_reply: true, ..NpduOut::default() }, false, |f| {
        frame::write_confirmed_request(f, invoke_id, service, 1476, 16);
        body(f);
    })
}

fn complex_ack(invoke_id: u8, service: u8, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    build(NpduOut::default(), false, |f| {
        frame::write_complex_ack(f, invoke_id, service, None);
        body(f);
    })
}

fn data_of(bytes: &[u8]) -> Vec<u8> {
    match frame::parse(bytes).expect("golden frame parses").body {
        Body::Apdu(
            Apdu::ConfirmedRequest { data, .. }
            | Apdu::ComplexAck { data, .. }
            | Apdu::UnconfirmedRequest { data, .. }
            | Apdu::Error { data, .. },
        ) => data.to_vec(),
        other => panic!("no service data in {other:?}"),
    }
}

#[test]
fn every_golden_frame_parses_with_the_header_bacpypes3_meant() {
    let all = frames();
    assert!(all.len() >= 30, "the golden file holds {} frames", all.len());
    for f in &all {
        let name = f["name"].as_str().expect("name");
        let bytes = hex(f["hex"].as_str().expect("hex"));
        let fields = &f["fields"];
        let parsed = frame::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(Some(u64::from(parsed.bvlc_function)), fields["bvlc_function"].as_u64(), "{name}");
        assert_eq!(Some(parsed.expecting_reply), fields["expecting_reply"].as_bool(), "{name}");
        let Body::Apdu(apdu) = parsed.body else { panic!("{name}: not an APDU") };
        let (kind, invoke_id, service) = match apdu {
            Apdu::ConfirmedRequest { invoke_id, service, .. } => (0, Some(invoke_id), Some(service)),
            Apdu::UnconfirmedRequest { service, .. } => (1, None, Some(service)),
            Apdu::SimpleAck { invoke_id, service } => (2, Some(invoke_id), Some(service)),
            Apdu::ComplexAck { invoke_id, service, .. } => (3, Some(invoke_id), Some(service)),
            Apdu::SegmentAck { invoke_id, .. } => (4, Some(invoke_id), None),
            Apdu::Error { invoke_id, service, .. } => (5, Some(invoke_id), Some(service)),
            Apdu::Reject { invoke_id, .. } => (6, Some(invoke_id), None),
            Apdu::Abort { invoke_id, .. } => (7, Some(invoke_id), None),
        };
        assert_eq!(Some(kind), fields["apdu_type"].as_u64(), "{name}");
        if let Some(id) = fields["invoke_id"].as_u64() {
            assert_eq!(invoke_id.map(u64::from), Some(id), "{name}");
        }
        if let Some(s) = fields["service_choice"].as_u64() {
            assert_eq!(service.map(u64::from), Some(s), "{name}");
        }
        if let Some(snet) = fields["snet"].as_u64() {
            let src = parsed.source.expect("source");
            assert_eq!(u64::from(src.network), snet, "{name}");
            assert_eq!(src.mac.to_string(), fields["sadr"].as_str().expect("sadr"), "{name}");
        }
    }
}

#[test]
fn requests_encode_to_the_same_bytes_as_bacpypes3() {
    let pv = PropertyRef::new(85);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "read-property-request",
            request(1, service::READ_PROPERTY, |f| {
                ReadPropertyRequest { object: obj("analog-input:1"), property: pv }.encode(f).expect("encodes")
            }),
        ),
        (
            "read-property-request-array-index",
            request(2, service::READ_PROPERTY, |f| {
                ReadPropertyRequest { object: obj("device:1001"), property: PropertyRef::indexed(76, 0) }
                    .encode(f)
                    .expect("encodes")
            }),
        ),
        (
            "read-property-multiple-request",
            request(3, service::READ_PROPERTY_MULTIPLE, |f| {
                ReadPropertyMultipleRequest {
                    specs: vec![
                        ReadAccessSpec { object: obj("analog-input:1"), properties: vec![pv, PropertyRef::new(111)] },
                        ReadAccessSpec { object: obj("analog-output:2"), properties: vec![pv, PropertyRef::new(87)] },
                    ],
                }
                .encode(f)
                .expect("encodes")
            }),
        ),
        (
            "write-property-request-real-priority-8",
            request(4, service::WRITE_PROPERTY, |f| {
                WritePropertyRequest {
                    object: obj("analog-output:1"),
                    property: pv,
                    value: Value::Real(42.5),
                    priority: Some(8),
                }
                .encode(f)
                .expect("encodes")
            }),
        ),
        (
            "write-property-request-relinquish-priority-8",
            request(5, service::WRITE_PROPERTY, |f| {
                WritePropertyRequest {
                    object: obj("analog-output:1"),
                    property: pv,
                    value: Value::Null,
                    priority: Some(8),
                }
                .encode(f)
                .expect("encodes")
            }),
        ),
        (
            "write-property-request-property-1000",
            request(6, service::WRITE_PROPERTY, |f| {
                WritePropertyRequest {
                    object: obj("analog-value:1"),
                    property: PropertyRef::new(1000),
                    value: Value::Unsigned(7),
                    priority: Some(16),
                }
                .encode(f)
                .expect("encodes")
            }),
        ),
        (
            "subscribe-cov-request",
            request(7, service::SUBSCRIBE_COV, |f| {
                SubscribeCovRequest {
                    process_id: 7,
                    object: obj("analog-input:1"),
                    subscription: Some(CovSubscription { confirmed: true, lifetime: Some(300) }),
                }
                .encode(f)
                .expect("encodes")
            }),
        ),
        (
            "subscribe-cov-request-cancel",
            request(8, service::SUBSCRIBE_COV, |f| {
                SubscribeCovRequest { process_id: 7, object: obj("analog-input:1"), subscription: None }
                    .encode(f)
                    .expect("encodes")
            }),
        ),
        (
            "who-is-local-broadcast",
            build(NpduOut::default(), true, |f| {
                frame::write_unconfirmed_request(f, service::WHO_IS);
                WhoIs { range: None }.encode(f).expect("encodes")
            }),
        ),
        (
            "read-property-request-routed",
            build(
                NpduOut {
                    destination: Some(Route { network: 100, mac: Mac::new(&[5]).expect("mac") }),
                    source: None,
                    expecting_reply: true,
                },
                false,
                |f| {
                    frame::write_confirmed_request(f, 12, service::READ_PROPERTY, 1476, 16);
                    ReadPropertyRequest { object: obj("analog-input:1"), property: pv }.encode(f).expect("encodes")
                },
            ),
        ),
    ];
    for (name, ours) in cases {
        let (theirs, _) = golden(name);
        assert_eq!(ours, theirs, "{name}: ours {ours:02x?} bacpypes3 {theirs:02x?}");
    }
    // Who-Is ranged: bacpypes3 sends it as a global broadcast (DNET 0xFFFF); the service data must agree.
    let (theirs, _) = golden("who-is-ranged");
    let mut ours = Vec::new();
    WhoIs { range: Some((1000, 2000)) }.encode(&mut ours).expect("encodes");
    assert_eq!(ours, data_of(&theirs));
}

#[test]
fn answers_encode_to_the_same_bytes_as_bacpypes3() {
    let pv = PropertyRef::new(85);
    let ai1 = obj("analog-input:1");
    let cov = CovNotification {
        process_id: 7,
        device: obj("device:3001"),
        object: ai1,
        time_remaining: 299,
        values: vec![(pv, Value::Real(25.5)), (PropertyRef::new(111), Value::BitString(BitString::with_len(4)))],
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "read-property-ack-real",
            complex_ack(1, service::READ_PROPERTY, |f| {
                ReadPropertyAck { object: ai1, property: pv, value: Value::Real(21.5) }.encode(f)
            }),
        ),
        (
            "read-property-ack-string-utf8",
            complex_ack(1, service::READ_PROPERTY, |f| {
                ReadPropertyAck {
                    object: ai1,
                    property: PropertyRef::new(28),
                    value: Value::CharacterString("Grüße".into()),
                }
                .encode(f)
            }),
        ),
        (
            "i-am-unicast",
            build(NpduOut::default(), false, |f| {
                frame::write_unconfirmed_request(f, service::I_AM);
                IAm { device: obj("device:3001"), max_apdu: 1476, segmentation: Segmentation::Both, vendor_id: 999 }
                    .encode(f)
            }),
        ),
        (
            "read-property-error-unknown-property",
            build(NpduOut::default(), false, |f| frame::write_error(f, 1, service::READ_PROPERTY, 2, 32)),
        ),
        ("reject-unrecognized-service", build(NpduOut::default(), false, |f| frame::write_reject(f, 9, 9))),
        ("abort-segmentation-not-supported", build(NpduOut::default(), false, |f| frame::write_abort(f, true, 10, 4))),
        ("write-property-simple-ack", build(NpduOut::default(), false, |f| frame::write_simple_ack(f, 4, 15))),
        (
            "unconfirmed-cov-notification",
            build(NpduOut::default(), false, |f| {
                frame::write_unconfirmed_request(f, service::UNCONFIRMED_COV_NOTIFICATION);
                cov.encode(f)
            }),
        ),
        (
            "read-property-ack-routed",
            build(
                NpduOut {
                    destination: None,
                    source: Some(Route { network: 100, mac: Mac::new(&[5]).expect("mac") }),
                    expecting_reply: false,
                },
                false,
                |f| {
                    frame::write_complex_ack(f, 12, service::READ_PROPERTY, None);
                    ReadPropertyAck { object: ai1, property: pv, value: Value::Real(21.5) }.encode(f)
                },
            ),
        ),
    ];
    for (name, ours) in cases {
        let (theirs, _) = golden(name);
        assert_eq!(ours, theirs, "{name}: ours {ours:02x?} bacpypes3 {theirs:02x?}");
    }
    // The RPM-ACK: bacpypes3's mixed answer re-encoded by plantwatch from what it decoded.
    let (theirs, _) = golden("read-property-multiple-ack-mixed");
    let results = decode_rpm_ack(&data_of(&theirs)).expect("decodes");
    let mut ours = Vec::new();
    encode_rpm_ack(&mut ours, &results);
    assert_eq!(ours, data_of(&theirs));
}

#[test]
fn answers_decode_to_the_values_bacpypes3_meant() {
    let (b, _) = golden("read-property-ack-string-iso8859-1");
    assert_eq!(ReadPropertyAck::decode(&data_of(&b)).expect("decodes").value, Value::CharacterString("Grüße".into()));
    let (b, fields) = golden("read-property-ack-string-ucs2");
    let expected = fields["value"]["value"].as_str().expect("text").to_string();
    assert_eq!(ReadPropertyAck::decode(&data_of(&b)).expect("decodes").value, Value::CharacterString(expected));
    let (b, _) = golden("read-property-ack-object-list");
    let list = ReadPropertyAck::decode(&data_of(&b)).expect("decodes").value;
    assert_eq!(list.elements().len(), 3);
    assert_eq!(list.elements()[0], Value::ObjectId(obj("device:3001")));
    let (b, _) = golden("read-property-ack-object-list-length");
    assert_eq!(ReadPropertyAck::decode(&data_of(&b)).expect("decodes").value, Value::Unsigned(3));

    let (b, _) = golden("read-property-multiple-ack-mixed");
    let r = decode_rpm_ack(&data_of(&b)).expect("decodes");
    assert_eq!(r[0].value, Ok(Value::Real(21.5)));
    assert_eq!(r[1].value, Err(ErrorClassCode { class: 2, code: 32 }));
    assert_eq!(r[2].value.as_ref().expect("priority array").elements().len(), 16);
    assert_eq!(r[2].value.as_ref().expect("priority array").elements()[7], Value::Real(42.5));
    assert_eq!(r[3].value, Ok(Value::Real(0.0)));

    let (b, fields) = golden("read-property-multiple-ack-context-tagged");
    let r: Vec<PropertyResult> = decode_rpm_ack(&data_of(&b)).expect("constructed values do not fail the batch");
    assert_eq!(r.len(), 4);
    // constructed values stay opaque, byte for byte what bacpypes3 put inside the value tags
    for (i, expected) in fields["results"].as_array().expect("results").iter().enumerate() {
        let raw = hex(expected["value"]["value_hex"].as_str().expect("value_hex"));
        match &r[i].value {
            Ok(Value::List(items)) => {
                let joined: Vec<u8> = items
                    .iter()
                    .flat_map(|v| match v {
                        Value::Opaque(b) => b.clone(),
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                assert_eq!(joined, raw);
            }
            Ok(Value::Opaque(b)) => assert_eq!(*b, raw),
            Ok(_) => {}
            Err(e) => panic!("result {i}: {e}"),
        }
    }
    assert_eq!(r[1].value, Ok(Value::Real(21.5)));
    assert_eq!(r[3].value, Ok(Value::CharacterString("Grüße".into())));

    let (b, _) = golden("read-property-error-unknown-property");
    assert_eq!(decode_error(&data_of(&b)).expect("decodes"), ErrorClassCode { class: 2, code: 32 });

    for name in ["unconfirmed-cov-notification", "confirmed-cov-notification"] {
        let (b, _) = golden(name);
        let n = CovNotification::decode(&data_of(&b)).expect("decodes");
        assert_eq!(
            (n.process_id, n.device, n.object, n.time_remaining),
            (7, obj("device:3001"), obj("analog-input:1"), 299)
        );
        assert_eq!(n.values[0], (PropertyRef::new(85), Value::Real(25.5)));
    }
    let (b, _) = golden("i-am-global");
    let iam = IAm::decode(&data_of(&b)).expect("decodes");
    assert_eq!(
        (iam.device, iam.max_apdu, iam.segmentation, iam.vendor_id),
        (obj("device:3001"), 1476, Segmentation::Both, 999)
    );
    let (b, _) = golden("write-property-request-property-1000");
    let wp = WritePropertyRequest::decode(&data_of(&b)).expect("decodes");
    assert_eq!((wp.property.property, wp.priority), (1000, Some(16)));
}

#[test]
fn bacpypes3_segments_reassemble_into_one_object_list() {
    let segments: Vec<Vec<u8>> = (0..4).map(|i| golden(&format!("read-property-ack-segment-{i}")).0).collect();
    let mut reassembly: Option<Reassembly> = None;
    let mut done = None;
    for bytes in &segments {
        let f = frame::parse(bytes).expect("parses");
        let Body::Apdu(Apdu::ComplexAck { service, segment: Some(seg), data, .. }) = f.body else {
            panic!("not a segment: {f:?}")
        };
        let step = match reassembly.as_mut() {
            None => {
                let (r, step) = Reassembly::start(seg, service, data, 16, 64, 100_000);
                reassembly = r;
                step
            }
            Some(r) => r.on_segment(seg, service, data),
        };
        assert!(!matches!(step, Step::Abort(_)), "{step:?}");
        if let Step::Done { .. } = step {
            done = reassembly.take().map(Reassembly::into_data);
        }
        let _: Segment = seg;
    }
    let ack = ReadPropertyAck::decode(&done.expect("complete")).expect("one ReadProperty-ACK");
    assert_eq!(ack.property.property, 76);
    assert!(ack.value.elements().len() > 20);
    assert!(ack.value.elements().iter().all(|v| matches!(v, Value::ObjectId(_))));
}
