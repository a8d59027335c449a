//! Sans-IO tests of the device model: bytes in, bytes out, time passed in.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::bacnet::codec::Value;
use crate::bacnet::frame::Apdu;
use crate::bacnet::services::{decode_rpm_ack, CovNotification, CovSubscription, PropertyRef};
use crate::bacnet::types::{error, object_type as ot, property as p, service, services_supported, ObjectId};
use crate::sim::outbox::Outbox;
use crate::sim::segment::SEGMENT_TIMEOUT;
use crate::sim::testing::{self, apdu, error_of, rp, rp_value, Reassembly};
use crate::sim::Faults;

const CLIENT: &str = "127.0.0.1:47808";
const AI1: ObjectId = ObjectId::new(ot::ANALOG_INPUT, 1);
const AO1: ObjectId = ObjectId::new(ot::ANALOG_OUTPUT, 1);
const AV1: ObjectId = ObjectId::new(ot::ANALOG_VALUE, 1);
const DEV: ObjectId = ObjectId::device(1001);

fn client() -> SocketAddr {
    CLIENT.parse().unwrap()
}

struct Harness {
    device: Device,
    out: Outbox,
    now: Instant,
}

impl Harness {
    fn new(objects: usize, faults: Faults) -> Self {
        let now = Instant::now();
        Self { device: Device::new(1001, Counts::per_kind(objects), None, faults, now), out: Outbox::default(), now }
    }

    /// Sends a datagram; returns every datagram the device answers with.
    fn send(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        self.device.handle(datagram, client(), self.now, &mut self.out);
        self.take()
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        self.out.frames.drain(..).map(|f| f.bytes).collect()
    }

    /// Sends a request that must get exactly one answer.
    fn one(&mut self, datagram: &[u8]) -> Vec<u8> {
        let mut answers = self.send(datagram);
        assert_eq!(answers.len(), 1, "answers: {answers:02x?}");
        answers.remove(0)
    }

    fn advance(&mut self, by: Duration) -> Vec<Vec<u8>> {
        self.now += by;
        self.device.on_timer(self.now, &mut self.out);
        self.take()
    }
}

const PV: PropertyRef = PropertyRef::new(p::PRESENT_VALUE);

#[test]
fn read_property_present_value() {
    let mut h = Harness::new(3, Faults::default());
    let Value::Real(v) = rp_value(&h.one(&rp(1, AI1, PV))) else { panic!("not a real") };
    assert!((18.0..=24.0).contains(&v));
    match apdu(&h.one(&rp(2, AI1, PV))) {
        Apdu::ComplexAck { invoke_id: 2, service: service::READ_PROPERTY, .. } => {}
        other => panic!("{other:?}"),
    }
    // the wildcard device instance names this device in the answer
    let answer = h.one(&rp(3, ObjectId::device(4_194_303), PropertyRef::new(p::OBJECT_IDENTIFIER)));
    assert_eq!(rp_value(&answer), Value::ObjectId(DEV));
}

#[test]
fn answers_to_a_routed_requester_carry_dnet_and_dadr() {
    let mut h = Harness::new(1, Faults::default());
    let requester = crate::bacnet::types::Route { network: 7, mac: "c0a8010abac0".parse().unwrap() };
    let mut buf = Vec::new();
    let npdu = crate::bacnet::frame::NpduOut { destination: None, source: Some(requester), expecting_reply: true };
    crate::bacnet::frame::begin(&mut buf, false, &npdu);
    crate::bacnet::frame::write_confirmed_request(&mut buf, 3, service::READ_PROPERTY, 1476, 64);
    crate::bacnet::services::ReadPropertyRequest { object: AI1, property: PV }.encode(&mut buf).unwrap();
    crate::bacnet::frame::finish(&mut buf).unwrap();
    let answer = h.one(&buf);
    let f = crate::bacnet::frame::parse(&answer).unwrap();
    assert_eq!((f.destination, f.source), (Some(requester), None));
    assert!(matches!(rp_value(&answer), Value::Real(_)));
}

#[test]
fn a_forwarded_npdu_is_answered_to_its_origin() {
    let mut h = Harness::new(1, Faults::default());
    let unicast = rp(4, AI1, PV);
    let mut forwarded = vec![0x81, 0x04, 0, 0, 127, 0, 0, 9, 0xBA, 0xC0];
    forwarded.extend_from_slice(&unicast[4..]);
    let len = (forwarded.len() as u16).to_be_bytes();
    forwarded[2..4].copy_from_slice(&len);
    h.device.handle(&forwarded, client(), h.now, &mut h.out);
    assert_eq!(h.out.frames.len(), 1);
    assert_eq!(h.out.frames[0].to, "127.0.0.9:47808".parse().unwrap());
}

#[test]
fn object_list_is_an_array() {
    let mut h = Harness::new(3, Faults::default());
    let len = rp_value(&h.one(&rp(1, DEV, PropertyRef::indexed(p::OBJECT_LIST, 0))));
    assert_eq!(len, Value::Unsigned(22));
    let list = rp_value(&h.one(&rp(2, DEV, PropertyRef::new(p::OBJECT_LIST))));
    let ids: Vec<ObjectId> =
        list.elements().iter().map(|v| if let Value::ObjectId(id) = v { *id } else { panic!("{v:?}") }).collect();
    assert_eq!(ids.len(), 22);
    assert_eq!(ids[0], DEV);
    assert_eq!(ids[1], AI1);
    assert!(ids.contains(&ObjectId::new(ot::CHARACTER_STRING_VALUE, 3)));
    assert!(ids.contains(&ObjectId::new(ot::MULTI_STATE_VALUE, 2)));
    let second = rp_value(&h.one(&rp(3, DEV, PropertyRef::indexed(p::OBJECT_LIST, 2))));
    assert_eq!(second, Value::ObjectId(AI1));
    let bad = h.one(&rp(4, DEV, PropertyRef::indexed(p::OBJECT_LIST, 23)));
    assert_eq!(error_of(&bad), (error::CLASS_PROPERTY, error::CODE_INVALID_ARRAY_INDEX));
    // names are unique within the device
    let mut names = std::collections::HashSet::new();
    for id in &ids {
        let name = rp_value(&h.one(&rp(5, *id, PropertyRef::new(p::OBJECT_NAME))));
        assert!(names.insert(format!("{name:?}")), "duplicate name {name:?}");
    }
}

#[test]
fn read_errors() {
    let mut h = Harness::new(3, Faults::default());
    let e = h.one(&rp(1, ObjectId::new(ot::ANALOG_INPUT, 4), PV));
    assert_eq!(error_of(&e), (error::CLASS_OBJECT, error::CODE_UNKNOWN_OBJECT));
    let e = h.one(&rp(2, AI1, PropertyRef::new(p::PRIORITY_ARRAY)));
    assert_eq!(error_of(&e), (error::CLASS_PROPERTY, error::CODE_UNKNOWN_PROPERTY));
    let e = h.one(&rp(3, AI1, PropertyRef::indexed(p::PRESENT_VALUE, 1)));
    assert_eq!(error_of(&e), (error::CLASS_PROPERTY, error::CODE_PROPERTY_IS_NOT_AN_ARRAY));
    let e = h.one(&rp(4, ObjectId::device(1002), PropertyRef::new(p::OBJECT_NAME)));
    assert_eq!(error_of(&e), (error::CLASS_OBJECT, error::CODE_UNKNOWN_OBJECT));
}

#[test]
fn device_properties() {
    let mut h = Harness::new(1, Faults::default());
    let read = |h: &mut Harness, prop| rp_value(&h.one(&rp(1, DEV, PropertyRef::new(prop))));
    assert_eq!(read(&mut h, p::PROTOCOL_VERSION), Value::Unsigned(1));
    assert_eq!(read(&mut h, p::MAX_APDU_LENGTH_ACCEPTED), Value::Unsigned(1476));
    assert_eq!(read(&mut h, p::SEGMENTATION_SUPPORTED), Value::Enumerated(1));
    assert_eq!(read(&mut h, p::VENDOR_IDENTIFIER), Value::Unsigned(u64::from(VENDOR_ID)));
    let Value::BitString(services) = read(&mut h, p::PROTOCOL_SERVICES_SUPPORTED) else { panic!("not bits") };
    for bit in [
        services_supported::READ_PROPERTY,
        services_supported::READ_PROPERTY_MULTIPLE,
        services_supported::WRITE_PROPERTY,
        services_supported::SUBSCRIBE_COV,
        services_supported::WHO_IS,
        services_supported::I_AM,
        services_supported::CONFIRMED_COV_NOTIFICATION,
        services_supported::UNCONFIRMED_COV_NOTIFICATION,
    ] {
        assert!(services.get(bit), "bit {bit}");
    }
    for &prop in DEVICE_REQUIRED.iter().chain(&DEVICE_OPTIONAL) {
        assert!(matches!(apdu(&h.one(&rp(1, DEV, PropertyRef::new(prop)))), Apdu::ComplexAck { .. }), "{prop}");
    }
}

#[test]
fn read_property_multiple_keeps_errors_inside_the_ack() {
    let mut h = Harness::new(2, Faults::default());
    let answer = h.one(&testing::rpm(
        7,
        vec![
            (AI1, vec![PropertyRef::new(p::ALL)]),
            (AV1, vec![PV, PropertyRef::new(9999), PropertyRef::new(p::UNITS)]),
            (ObjectId::new(ot::BINARY_INPUT, 9), vec![PropertyRef::new(p::ALL)]),
            (AO1, vec![PropertyRef::new(p::REQUIRED)]),
            (ObjectId::new(ot::MULTI_STATE_VALUE, 1), vec![PropertyRef::new(p::OPTIONAL)]),
        ],
    ));
    let Apdu::ComplexAck { invoke_id: 7, service: service::READ_PROPERTY_MULTIPLE, data, .. } = apdu(&answer) else {
        panic!("not an RPM ack");
    };
    let results = decode_rpm_ack(data).unwrap();
    let of = |id: ObjectId| results.iter().filter(move |r| r.object == id);
    let ai: Vec<_> = of(AI1).collect();
    assert_eq!(ai.len(), 11, "{ai:?}");
    assert!(ai.iter().all(|r| r.value.is_ok()));
    assert!(ai.iter().any(|r| r.property.property == p::UNITS && r.value == Ok(Value::Enumerated(62))));
    let av: Vec<_> = of(AV1).collect();
    assert_eq!(av[0].value, Ok(Value::Real(50.0)));
    assert_eq!(
        av[1].value.clone().map_err(|e| (e.class, e.code)),
        Err((error::CLASS_PROPERTY, error::CODE_UNKNOWN_PROPERTY))
    );
    assert_eq!(av[2].value, Ok(Value::Enumerated(98)));
    let missing: Vec<_> = of(ObjectId::new(ot::BINARY_INPUT, 9)).collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].value.clone().map_err(|e| e.code), Err(error::CODE_UNKNOWN_OBJECT));
    assert_eq!(of(AO1).count(), 11);
    let msv: Vec<_> = of(ObjectId::new(ot::MULTI_STATE_VALUE, 1)).map(|r| r.property.property).collect();
    assert_eq!(msv, [p::DESCRIPTION, p::RELIABILITY, p::STATE_TEXT]);
}

#[test]
fn write_property_follows_the_priority_array() {
    let mut h = Harness::new(1, Faults::default());
    let ok = |a: &[u8]| matches!(apdu(a), Apdu::SimpleAck { service: service::WRITE_PROPERTY, .. });
    assert!(ok(&h.one(&testing::wp(1, AO1, p::PRESENT_VALUE, Value::Real(30.0), Some(10)))));
    assert!(ok(&h.one(&testing::wp(2, AO1, p::PRESENT_VALUE, Value::Real(70.0), Some(8)))));
    assert_eq!(rp_value(&h.one(&rp(3, AO1, PV))), Value::Real(70.0));
    assert!(ok(&h.one(&testing::wp(4, AO1, p::PRESENT_VALUE, Value::Null, Some(8)))));
    assert_eq!(rp_value(&h.one(&rp(5, AO1, PV))), Value::Real(30.0));
    let slot = rp_value(&h.one(&rp(6, AO1, PropertyRef::indexed(p::PRIORITY_ARRAY, 10))));
    assert_eq!(slot, Value::Real(30.0));
    assert!(ok(&h.one(&testing::wp(7, AO1, p::PRESENT_VALUE, Value::Null, Some(10)))));
    assert_eq!(rp_value(&h.one(&rp(8, AO1, PV))), Value::Real(0.0));
}

#[test]
fn write_property_errors() {
    let mut h = Harness::new(1, Faults::default());
    let write =
        |h: &mut Harness, object, prop, value, prio| error_of(&h.one(&testing::wp(1, object, prop, value, prio)));
    let text = Value::CharacterString("hot".into());
    assert_eq!(
        write(&mut h, AO1, p::PRESENT_VALUE, text, Some(8)),
        (error::CLASS_PROPERTY, error::CODE_INVALID_DATA_TYPE)
    );
    assert_eq!(
        write(&mut h, AI1, p::PRESENT_VALUE, Value::Real(1.0), None),
        (error::CLASS_PROPERTY, error::CODE_WRITE_ACCESS_DENIED)
    );
    assert_eq!(
        write(&mut h, ObjectId::new(ot::ANALOG_OUTPUT, 2), p::PRESENT_VALUE, Value::Real(1.0), None),
        (error::CLASS_OBJECT, error::CODE_UNKNOWN_OBJECT)
    );
    assert_eq!(
        write(&mut h, DEV, p::OBJECT_NAME, Value::CharacterString("x".into()), None),
        (error::CLASS_PROPERTY, error::CODE_WRITE_ACCESS_DENIED)
    );
    assert_eq!(
        write(&mut h, ObjectId::new(ot::MULTI_STATE_VALUE, 1), p::PRESENT_VALUE, Value::Unsigned(4), None),
        (error::CLASS_PROPERTY, error::CODE_VALUE_OUT_OF_RANGE)
    );
    // priority 17 decodes and is refused as out of range
    let mut params = Vec::new();
    crate::bacnet::services::WritePropertyRequest {
        object: AO1,
        property: PropertyRef::new(p::PRESENT_VALUE),
        value: Value::Real(1.0),
        priority: None,
    }
    .encode(&mut params)
    .unwrap();
    params.extend_from_slice(&[0x49, 17]);
    let e = h.one(&testing::confirmed(2, service::WRITE_PROPERTY, 1476, 64, None, &params));
    assert_eq!(error_of(&e), (error::CLASS_PROPERTY, error::CODE_VALUE_OUT_OF_RANGE));
}

#[test]
fn who_is_ranged_and_directed() {
    let mut h = Harness::new(1, Faults::default());
    let iam = h.one(&testing::who_is(None, None));
    let Apdu::UnconfirmedRequest { service: service::I_AM, data } = apdu(&iam) else { panic!("not an I-Am") };
    let i = crate::bacnet::services::IAm::decode(data).unwrap();
    assert_eq!((i.device, i.max_apdu, i.vendor_id), (DEV, 1476, VENDOR_ID));
    assert_eq!(h.send(&testing::who_is(Some((1000, 1001)), None)).len(), 1);
    assert!(h.send(&testing::who_is(Some((1002, 2000)), None)).is_empty());
}

#[test]
fn unknown_and_malformed_requests() {
    let mut h = Harness::new(1, Faults::default());
    // ReadRange (26) is not implemented
    let r = h.one(&testing::confirmed(9, 26, 1476, 64, None, &[0x0C, 0, 0, 0, 1]));
    assert_eq!(apdu(&r), Apdu::Reject { invoke_id: 9, reason: error::REJECT_UNRECOGNIZED_SERVICE });
    // ReadProperty with its property cut off
    let r = h.one(&testing::confirmed(10, service::READ_PROPERTY, 1476, 64, None, &[0x0C, 0, 0, 0, 1]));
    assert!(matches!(apdu(&r), Apdu::Reject { invoke_id: 10, .. }));
    // junk is dropped silently
    assert!(h.send(&[0x81, 0x0A, 0x00, 0x05, 0x01]).is_empty());
    assert!(h.send(b"hello").is_empty());
}

#[test]
fn no_rpm_rejects_and_clears_the_service_bit() {
    let mut h = Harness::new(1, Faults { no_rpm: true, ..Faults::default() });
    let r = h.one(&testing::rpm(3, vec![(AI1, vec![PV])]));
    assert_eq!(apdu(&r), Apdu::Reject { invoke_id: 3, reason: 9 });
    let Value::BitString(bits) = rp_value(&h.one(&rp(4, DEV, PropertyRef::new(p::PROTOCOL_SERVICES_SUPPORTED)))) else {
        panic!("not bits");
    };
    assert!(!bits.get(services_supported::READ_PROPERTY_MULTIPLE));
    assert!(bits.get(services_supported::READ_PROPERTY));
}

#[test]
fn drop_rate_one_answers_nothing_and_half_is_deterministic() {
    let mut h = Harness::new(1, Faults { drop_rate: 1.0, ..Faults::default() });
    assert!(h.send(&rp(1, AI1, PV)).is_empty());
    assert!(h.send(&testing::who_is(None, None)).is_empty());
    let answered = || {
        let mut h = Harness::new(1, Faults { drop_rate: 0.5, ..Faults::default() });
        (0..200).map(|i| h.send(&rp(i as u8, AI1, PV)).len()).collect::<Vec<_>>()
    };
    let first = answered();
    assert_eq!(first, answered());
    let n: usize = first.iter().sum();
    assert!((60..140).contains(&n), "{n} of 200 answered");
}

#[test]
fn offline_then_online_again() {
    let faults = Faults {
        offline_after: Some(Duration::from_secs(10)),
        online_after: Some(Duration::from_secs(5)),
        ..Faults::default()
    };
    let mut h = Harness::new(1, faults);
    assert_eq!(h.send(&rp(1, AI1, PV)).len(), 1);
    h.now += Duration::from_secs(10);
    assert!(h.send(&rp(2, AI1, PV)).is_empty());
    h.now += Duration::from_secs(4);
    assert!(h.send(&testing::who_is(None, None)).is_empty());
    h.now += Duration::from_secs(1);
    assert_eq!(h.send(&rp(3, AI1, PV)).len(), 1);
}

#[test]
fn slow_answers_are_delayed_not_dropped() {
    let mut h = Harness::new(1, Faults { slow: Duration::from_millis(250), ..Faults::default() });
    h.device.handle(&rp(1, AI1, PV), client(), h.now, &mut h.out);
    assert_eq!(h.out.frames.len(), 1);
    assert_eq!(h.out.frames[0].send_at, Some(h.now + Duration::from_millis(250)));
}

#[test]
fn jittered_answers_spread_around_the_delay() {
    let ms = Duration::from_millis;
    let faults = Faults { slow: ms(200), jitter: ms(100), ..Faults::default() };
    let mut h = Harness::new(1, faults);
    let delays: Vec<Duration> = (0..200u8)
        .map(|i| {
            h.device.handle(&rp(i, AI1, PV), client(), h.now, &mut h.out);
            let f = h.out.frames.pop().expect("answered");
            f.send_at.expect("delayed") - h.now
        })
        .collect();
    assert!(delays.iter().all(|d| (ms(100)..=ms(300)).contains(d)), "{delays:?}");
    assert!(delays.iter().any(|d| *d < ms(150)) && delays.iter().any(|d| *d > ms(250)));
}

/// The churn schedule of device 1001 in a harness: its offset and the times
/// (since the epoch) when its first outage starts and ends.
fn first_outage(h: &Harness) -> (Duration, Duration) {
    let c = h.device.faults.churn.expect("churn");
    let start = c.outage.every + h.device.churn_offset;
    (start, start + c.outage.length)
}

fn churning(on_return: crate::sim::OnReturn) -> Harness {
    let outage = crate::sim::Outage { every: Duration::from_secs(100), length: Duration::from_secs(20) };
    Harness::new(1, Faults { churn: Some(crate::sim::Churn { outage, on_return }), ..Faults::default() })
}

#[test]
fn a_churning_device_vanishes_periodically_and_comes_back_as_it_was() {
    let mut h = churning(crate::sim::OnReturn::Same);
    let epoch = h.now;
    let bo = ObjectId::new(ot::BINARY_OUTPUT, 1);
    h.one(&testing::wp(1, bo, p::PRESENT_VALUE, Value::Enumerated(1), Some(8)));
    let (down, up) = first_outage(&h);
    h.now = epoch + down - Duration::from_millis(1);
    assert_eq!(h.send(&rp(2, bo, PV)).len(), 1);
    h.now = epoch + down;
    assert!(h.send(&rp(3, bo, PV)).is_empty());
    assert!(h.send(&testing::who_is(None, None)).is_empty());
    h.now = epoch + up;
    assert_eq!(rp_value(&h.one(&rp(4, bo, PV))), Value::Enumerated(1), "commands kept");
    // and again one period later
    h.now = epoch + down + Duration::from_secs(100);
    assert!(h.send(&rp(5, bo, PV)).is_empty());
    h.now = epoch + up + Duration::from_secs(100);
    assert_eq!(h.send(&rp(6, bo, PV)).len(), 1);
    let rev = rp_value(&h.one(&rp(7, DEV, PropertyRef::new(p::DATABASE_REVISION))));
    assert_eq!(rev, Value::Unsigned(1));
}

#[test]
fn a_device_restarted_by_churn_has_empty_priority_arrays_and_no_subscriptions() {
    let mut h = churning(crate::sim::OnReturn::Restart);
    let epoch = h.now;
    h.one(&testing::wp(1, AO1, p::PRESENT_VALUE, Value::Real(42.0), Some(8)));
    h.one(&testing::wp(2, AO1, p::RELINQUISH_DEFAULT, Value::Real(5.0), None));
    let sub = CovSubscription { confirmed: false, lifetime: Some(1000) };
    assert_eq!(h.send(&testing::subscribe(3, 1, AV1, Some(sub))).len(), 2);
    assert_eq!(rp_value(&h.one(&rp(4, AO1, PV))), Value::Real(42.0));
    let (_, up) = first_outage(&h);
    h.now = epoch + up;
    assert_eq!(rp_value(&h.one(&rp(5, AO1, PV))), Value::Real(5.0), "back at its relinquish default");
    assert_eq!(rp_value(&h.one(&rp(6, AO1, PropertyRef::new(p::CURRENT_COMMAND_PRIORITY)))), Value::Null);
    // the subscription is gone: a change is not notified
    assert_eq!(h.send(&testing::wp(7, AV1, p::PRESENT_VALUE, Value::Real(10.0), None)).len(), 1);
    assert!(h.device.subscriptions.is_empty());
    let rev = rp_value(&h.one(&rp(8, DEV, PropertyRef::new(p::DATABASE_REVISION))));
    assert_eq!(rev, Value::Unsigned(1));
}

#[test]
fn a_device_reconfigured_by_churn_has_a_new_revision_and_object_list() {
    let mut h = churning(crate::sim::OnReturn::NewRevision);
    let epoch = h.now;
    let list = |h: &mut Harness, id| {
        let v = rp_value(&h.one(&rp(id, DEV, PropertyRef::new(p::OBJECT_LIST))));
        v.elements().iter().map(|e| if let Value::ObjectId(o) = e { *o } else { panic!("{e:?}") }).collect::<Vec<_>>()
    };
    let revision = |h: &mut Harness, id| rp_value(&h.one(&rp(id, DEV, PropertyRef::new(p::DATABASE_REVISION))));
    let av2 = ObjectId::new(ot::ANALOG_VALUE, 2);
    let bi1 = ObjectId::new(ot::BINARY_INPUT, 1);
    let before = list(&mut h, 1);
    assert!(before.contains(&bi1) && !before.contains(&av2));
    assert_eq!(revision(&mut h, 2), Value::Unsigned(1));
    let (_, up) = first_outage(&h);
    h.now = epoch + up;
    assert_eq!(revision(&mut h, 3), Value::Unsigned(2));
    let after = list(&mut h, 4);
    assert!(after.contains(&av2) && !after.contains(&bi1), "{after:?}");
    assert_eq!(after.len(), before.len());
    assert_eq!(error_of(&h.one(&rp(5, bi1, PV))), (error::CLASS_OBJECT, error::CODE_UNKNOWN_OBJECT));
    assert!(matches!(rp_value(&h.one(&rp(6, av2, PV))), Value::Real(_)));
    // the next return goes back to revision 1's objects, at revision 3
    h.now = epoch + up + Duration::from_secs(100);
    assert_eq!(revision(&mut h, 7), Value::Unsigned(3));
    assert_eq!(list(&mut h, 8), before);
    // time jumping over several outages at once counts each of them
    h.now = epoch + up + Duration::from_secs(300);
    assert_eq!(revision(&mut h, 9), Value::Unsigned(5));
}

#[test]
fn a_garbage_device_spoils_a_share_of_its_answers_deterministically() {
    let run = || {
        let mut h = Harness::new(1, Faults { garbage_rate: 0.3, ..Faults::default() });
        (0..400u16)
            .map(|i| {
                let answers = h.send(&rp(i as u8, AV1, PV));
                assert_eq!(answers.len(), 1, "every request is answered");
                match frame::parse(&answers[0]) {
                    Ok(f) => match f.body {
                        Body::Apdu(Apdu::ComplexAck { data, .. }) => {
                            crate::bacnet::services::ReadPropertyAck::decode(data).is_ok()
                        }
                        _ => false,
                    },
                    Err(_) => false,
                }
            })
            .collect::<Vec<bool>>()
    };
    let good = run();
    assert_eq!(good, run());
    let bad = good.iter().filter(|g| !**g).count();
    assert!((80..160).contains(&bad), "{bad} of 400 garbled");
}

fn read_segmented(h: &mut Harness, request: &[u8], window: u8) -> Reassembly {
    let Apdu::ConfirmedRequest { invoke_id, .. } = apdu(request) else { panic!("not a request") };
    let mut r = Reassembly::new(window);
    let mut inbox = h.send(request);
    let mut rounds = 0;
    while !r.done {
        rounds += 1;
        assert!(rounds < 10_000, "no progress");
        assert!(!inbox.is_empty(), "stalled after {} segments", r.segments);
        let mut ack = None;
        for datagram in inbox.drain(..) {
            if let Some(a) = r.take(&datagram) {
                ack = Some(a);
            }
        }
        if let Some((sequence, negative)) = ack {
            inbox = h.send(&testing::segment_ack(invoke_id, sequence, window, negative, None));
        }
    }
    // the final acknowledgement ends the transaction
    assert!(inbox.is_empty());
    assert_eq!(h.device.transactions.len(), 0);
    r
}

fn object_list_request(invoke_id: u8, max_apdu: u16, max_segments: u16) -> Vec<u8> {
    let mut params = Vec::new();
    crate::bacnet::services::ReadPropertyRequest { object: DEV, property: PropertyRef::new(p::OBJECT_LIST) }
        .encode(&mut params)
        .unwrap();
    testing::confirmed(invoke_id, service::READ_PROPERTY, max_apdu, max_segments, None, &params)
}

#[test]
fn a_2000_object_list_is_read_in_segments() {
    // 286 of each of 7 kinds + the device = 2003 objects, about 10 kB
    let mut h = Harness::new(286, Faults::default());
    for (max_apdu, window) in [(1476, 16), (480, 4), (480, 1), (206, 127)] {
        let r = read_segmented(&mut h, &object_list_request(42, max_apdu, 64), window);
        let ack = ReadPropertyAck::decode(&r.data).unwrap();
        assert_eq!(ack.value.elements().len(), 2003, "max-APDU {max_apdu}");
        assert_eq!(ack.value.elements()[2002], Value::ObjectId(ObjectId::new(ot::CHARACTER_STRING_VALUE, 286)));
    }
}

#[test]
fn device_max_apdu_bounds_the_answer() {
    let mut h = Harness::new(20, Faults { max_apdu: 206, ..Faults::default() });
    let mut r = Reassembly::new(16);
    let first = h.send(&object_list_request(1, 1476, 64));
    assert_eq!(first.len(), 1);
    assert!(first[0].len() <= 206 + 6);
    r.take(&first[0]);
}

#[test]
fn segments_are_resent_on_timeout_then_given_up() {
    let mut h = Harness::new(60, Faults::default());
    let first = h.send(&object_list_request(5, 480, 16));
    assert_eq!(first.len(), 1);
    let again = h.advance(SEGMENT_TIMEOUT);
    assert_eq!(again, first);
    h.advance(SEGMENT_TIMEOUT);
    h.advance(SEGMENT_TIMEOUT);
    assert!(h.advance(SEGMENT_TIMEOUT).is_empty());
    assert!(h.device.transactions.is_empty());
    assert_eq!(h.device.next_deadline(), None);
}

#[test]
fn segmentation_refused_with_abort_4() {
    // the client does not accept segments
    let mut h = Harness::new(60, Faults::default());
    let a = h.one(&object_list_request(5, 480, 1));
    assert_eq!(apdu(&a), Apdu::Abort { server: true, invoke_id: 5, reason: 4 });
    // the device does not segment
    let mut h = Harness::new(60, Faults { no_segmentation: true, ..Faults::default() });
    let a = h.one(&object_list_request(6, 480, 64));
    assert_eq!(apdu(&a), Apdu::Abort { server: true, invoke_id: 6, reason: 4 });
    assert_eq!(rp_value(&h.one(&rp(7, DEV, PropertyRef::new(p::SEGMENTATION_SUPPORTED)))), Value::Enumerated(3));
    // too many segments for the client
    let mut h = Harness::new(60, Faults::default());
    let a = h.one(&object_list_request(8, 206, 2));
    assert_eq!(apdu(&a), Apdu::Abort { server: true, invoke_id: 8, reason: error::ABORT_BUFFER_OVERFLOW });
}

fn notification(datagram: &[u8]) -> (bool, CovNotification) {
    match apdu(datagram) {
        Apdu::UnconfirmedRequest { service: service::UNCONFIRMED_COV_NOTIFICATION, data } => {
            (false, CovNotification::decode(data).unwrap())
        }
        Apdu::ConfirmedRequest { service: service::CONFIRMED_COV_NOTIFICATION, data, .. } => {
            (true, CovNotification::decode(data).unwrap())
        }
        other => panic!("not a COV notification: {other:?}"),
    }
}

#[test]
fn subscribe_cov_then_write_notifies() {
    let mut h = Harness::new(1, Faults::default());
    let sub = CovSubscription { confirmed: false, lifetime: Some(60) };
    let answers = h.send(&testing::subscribe(1, 77, AV1, Some(sub)));
    assert_eq!(answers.len(), 2);
    assert!(matches!(apdu(&answers[0]), Apdu::SimpleAck { invoke_id: 1, service: service::SUBSCRIBE_COV }));
    let (confirmed, n) = notification(&answers[1]);
    assert!(!confirmed);
    assert_eq!((n.process_id, n.device, n.object, n.time_remaining), (77, DEV, AV1, 60));
    assert_eq!(n.values[0], (PropertyRef::new(p::PRESENT_VALUE), Value::Real(50.0)));
    assert_eq!(n.values[1].0, PropertyRef::new(p::STATUS_FLAGS));
    // a change below COV_Increment (1.0) is not notified, one above is
    assert_eq!(h.send(&testing::wp(2, AV1, p::PRESENT_VALUE, Value::Real(50.5), None)).len(), 1);
    let answers = h.send(&testing::wp(3, AV1, p::PRESENT_VALUE, Value::Real(52.0), None));
    assert_eq!(answers.len(), 2);
    assert_eq!(notification(&answers[1]).1.values[0].1, Value::Real(52.0));
    // out of service changes the status flags: notified
    assert_eq!(h.send(&testing::wp(4, AV1, p::OUT_OF_SERVICE, Value::Boolean(true), None)).len(), 2);
    // cancel, then nothing more
    assert_eq!(h.send(&testing::subscribe(5, 77, AV1, None)).len(), 1);
    assert_eq!(h.send(&testing::wp(6, AV1, p::PRESENT_VALUE, Value::Real(10.0), None)).len(), 1);
}

#[test]
fn a_device_that_forgets_its_subscriptions_answers_reads_and_notifies_nothing() {
    let mut h = Harness::new(1, Faults::default());
    let sub = CovSubscription { confirmed: false, lifetime: Some(300) };
    assert_eq!(h.send(&testing::subscribe(1, 1, AV1, Some(sub))).len(), 2);
    assert_eq!(h.device.forget_subscriptions(h.now), 1);
    // a change well above COV_Increment: acknowledged, read back, not notified
    assert_eq!(h.send(&testing::wp(2, AV1, p::PRESENT_VALUE, Value::Real(80.0), None)).len(), 1);
    assert_eq!(testing::rp_value(&h.one(&testing::rp(3, AV1, PV))), Value::Real(80.0));
    assert!(h.advance(Duration::from_secs(5)).is_empty());
    // subscribed again, it notifies again
    assert_eq!(h.send(&testing::subscribe(4, 1, AV1, Some(sub))).len(), 2);
    assert_eq!(h.send(&testing::wp(5, AV1, p::PRESENT_VALUE, Value::Real(90.0), None)).len(), 2);
}

#[test]
fn cov_of_drifting_inputs_and_expiry() {
    let mut h = Harness::new(1, Faults::default());
    let sub = CovSubscription { confirmed: false, lifetime: Some(300) };
    assert_eq!(h.send(&testing::subscribe(1, 1, AI1, Some(sub))).len(), 2);
    // the drift (3 degrees over a 600 s period) passes COV_Increment 0.1 within a minute
    let notified: usize = (0..60).map(|_| h.advance(Duration::from_secs(1)).len()).sum();
    assert!(notified >= 1, "no COV notification of a drifting input");
    for _ in 0..300 {
        h.advance(Duration::from_secs(1));
    }
    assert!(h.device.subscriptions.is_empty());
    assert_eq!(h.device.next_deadline(), None);
}

#[test]
fn confirmed_notifications_are_resent_until_acknowledged() {
    let mut h = Harness::new(1, Faults::default());
    let sub = CovSubscription { confirmed: true, lifetime: None };
    let answers = h.send(&testing::subscribe(1, 9, ObjectId::new(ot::BINARY_OUTPUT, 1), Some(sub)));
    assert_eq!(answers.len(), 2);
    let (confirmed, n) = notification(&answers[1]);
    assert!(confirmed);
    assert_eq!(n.time_remaining, 0);
    let Apdu::ConfirmedRequest { invoke_id, .. } = apdu(&answers[1]) else { unreachable!() };
    // never acknowledged: resent 3 times, then forgotten
    let resent: Vec<_> = (0..4).map(|_| h.advance(Duration::from_secs(3))).collect();
    let confirmed_requests = resent.iter().flatten().filter(|d| matches!(apdu(d), Apdu::ConfirmedRequest { .. }));
    assert_eq!(confirmed_requests.count(), 3);
    assert!(h.device.pending.is_empty());
    // a later one, acknowledged, is not resent
    let answers =
        h.send(&testing::wp(2, ObjectId::new(ot::BINARY_OUTPUT, 1), p::PRESENT_VALUE, Value::Enumerated(1), None));
    assert_eq!(answers.len(), 2);
    let Apdu::ConfirmedRequest { invoke_id: second, .. } = apdu(&answers[1]) else { panic!("not confirmed") };
    assert_ne!(second, invoke_id);
    assert!(h.send(&testing::simple_ack(second, service::CONFIRMED_COV_NOTIFICATION)).is_empty());
    assert!(h.device.pending.is_empty());
}

#[test]
fn cov_errors() {
    let mut h = Harness::new(1, Faults::default());
    let sub = Some(CovSubscription { confirmed: false, lifetime: None });
    let e = h.one(&testing::subscribe(1, 1, ObjectId::new(ot::ANALOG_INPUT, 5), sub));
    assert_eq!(error_of(&e), (error::CLASS_OBJECT, error::CODE_UNKNOWN_OBJECT));
    let e = h.one(&testing::subscribe(2, 1, DEV, sub));
    assert_eq!(error_of(&e), (error::CLASS_OBJECT, error::CODE_OPTIONAL_FUNCTIONALITY_NOT_SUPPORTED));
}

#[test]
fn force_sets_values_from_outside() {
    let mut h = Harness::new(1, Faults::default());
    h.device.force(AI1, &Value::Real(30.0), h.now, &mut h.out).unwrap();
    assert_eq!(rp_value(&h.one(&rp(1, AI1, PV))), Value::Real(30.0));
    let bad = h.device.force(AI1, &Value::Boolean(true), h.now, &mut h.out);
    assert_eq!(bad.map_err(|e| e.code), Err(error::CODE_INVALID_DATA_TYPE));
    assert!(h.device.force(ObjectId::new(ot::ANALOG_INPUT, 2), &Value::Real(1.0), h.now, &mut h.out).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// No input panics the device: random bytes, and valid requests with
    /// random bytes changed.
    #[test]
    fn no_input_panics(junk in proptest::collection::vec(any::<u8>(), 0..64),
                       which in 0usize..6, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
        let mut h = Harness::new(2, Faults { max_apdu: 128, ..Faults::default() });
        h.send(&junk);
        let mut base = match which {
            0 => rp(1, DEV, PropertyRef::new(p::OBJECT_LIST)),
            1 => testing::rpm(2, vec![(AI1, vec![PropertyRef::new(p::ALL)])]),
            2 => testing::wp(3, AO1, p::PRESENT_VALUE, Value::Real(1.0), Some(8)),
            3 => testing::subscribe(4, 1, AI1, Some(CovSubscription { confirmed: true, lifetime: Some(5) })),
            4 => testing::who_is(Some((0, 5000)), None),
            _ => testing::segment_ack(1, 0, 4, false, None),
        };
        let len = base.len();
        for (at, byte) in flips {
            base[at % len] = byte;
        }
        h.send(&base);
        h.advance(Duration::from_secs(3));
    }
}

/// Counts this thread's heap allocations, to prove the ReadProperty path
/// allocates nothing once warm.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    struct Counting;

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract is passed on.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: the caller's contract is passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub fn allocations() -> usize {
        ALLOCATIONS.with(Cell::get)
    }
}

#[test]
fn reading_present_value_allocates_nothing_once_warm() {
    let mut h = Harness::new(3, Faults::default());
    let requests: Vec<Vec<u8>> = (0..64).map(|i| rp(i as u8, ObjectId::new(ot::ANALOG_INPUT, 1 + i % 3), PV)).collect();
    let serve = |h: &mut Harness| {
        for r in &requests {
            h.device.handle(r, client(), h.now, &mut h.out);
            let mut frames = std::mem::take(&mut h.out.frames);
            for f in frames.drain(..) {
                h.out.recycle(f.bytes);
            }
            h.out.frames = frames;
        }
    };
    serve(&mut h);
    let before = counting::allocations();
    serve(&mut h);
    assert_eq!(counting::allocations() - before, 0);
    // the counter does count
    std::hint::black_box(vec![0u8; 16]);
    assert!(counting::allocations() > before);
}
