//! The transport against plantwatch's simulator over real UDP on loopback:
//! every service, segmentation, routed devices, and each fault the simulator
//! can play (drops, slowness, no RPM, no segmentation).

use std::net::SocketAddr;
use std::time::Duration;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::services::{
    CovSubscription, ErrorClassCode, PropertyRef, ReadAccessSpec, SubscribeCovRequest, WritePropertyRequest,
};
use plantwatch_actors::bacnet::types::{error, object_type, property, Mac, Route};
use plantwatch_actors::bacnet::{Address, ObjectId};
use plantwatch_actors::sim::{self, Faults, Layout, SimConfig, Simulator};
use plantwatch_actors::transport::{BacnetError, Transport, TransportConfig, Unsolicited};
use tokio::sync::mpsc::Receiver;

const PV: PropertyRef = PropertyRef::new(property::PRESENT_VALUE);

fn obj(s: &str) -> ObjectId {
    s.parse().expect("object reference")
}

async fn simulator(devices: usize, objects: usize, bind: &str, layout: Layout, faults: Faults) -> Simulator {
    sim::start(SimConfig {
        devices,
        objects,
        bind: bind.parse().expect("addr"),
        layout,
        faults,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

async fn transport_with(
    timeout: Duration,
    retries: u32,
    broadcast: Option<SocketAddr>,
) -> (Transport, Receiver<Unsolicited>) {
    Transport::bind(TransportConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        broadcast,
        apdu_timeout: timeout,
        apdu_retries: retries,
        ..TransportConfig::default()
    })
    .await
    .expect("transport binds")
}

fn address(sim: &Simulator, k: usize) -> Address {
    let d = &sim.devices()[k];
    Address { ip: d.address, route: d.route }
}

async fn collect_i_ams(rx: &mut Receiver<Unsolicited>, n: usize) -> Vec<(Address, u32)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Unsolicited::IAm { from, iam })) => seen.push((from, iam.device.instance)),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    seen.sort_by_key(|(_, i)| *i);
    seen
}

#[tokio::test]
async fn every_service_against_the_ip_layout() {
    let sim = simulator(5, 2, "127.0.1.2:0", Layout::Ip, Faults::default()).await;
    let (t, mut rx) = transport_with(Duration::from_secs(2), 1, sim.broadcast_address()).await;
    let dev = address(&sim, 2);
    let instance = sim.devices()[2].instance;

    // a global Who-Is reaches every device; a ranged one only some
    t.who_is(None, None).await.expect("who-is");
    let all = collect_i_ams(&mut rx, 5).await;
    assert_eq!(all.iter().map(|(_, i)| *i).collect::<Vec<_>>(), vec![1001, 1002, 1003, 1004, 1005]);
    assert!(all.iter().all(|(from, i)| *from == address(&sim, (*i - 1001) as usize)));
    t.who_is(None, Some((1002, 1003))).await.expect("ranged who-is");
    assert_eq!(collect_i_ams(&mut rx, 2).await.len(), 2);
    t.who_is(Some(dev), None).await.expect("directed who-is");
    assert_eq!(collect_i_ams(&mut rx, 1).await, vec![(dev, instance)]);
    assert!(tokio::time::timeout(Duration::from_millis(200), rx.recv()).await.is_err(), "only the asked answered");

    // ReadProperty and the Device object
    let device = ObjectId::device(instance);
    let list = t.read_object_list(dev, device).await.expect("object list");
    assert_eq!(list.len(), 1 + 7 * 2, "{list:?}");
    let name = t.read_property(dev, device, PropertyRef::new(property::OBJECT_NAME)).await.expect("name");
    assert!(matches!(name, Value::CharacterString(_)));
    let pv = t.read_property(dev, obj("analog-input:1"), PV).await.expect("present value");
    assert!(matches!(pv, Value::Real(_)), "{pv:?}");

    // ReadPropertyMultiple: ALL, and an unknown property reported inside the answer
    let rpm = t
        .read_property_multiple(
            dev,
            vec![
                ReadAccessSpec { object: obj("analog-output:1"), properties: vec![PropertyRef::new(property::ALL)] },
                ReadAccessSpec { object: obj("binary-input:1"), properties: vec![PV, PropertyRef::new(9999)] },
            ],
        )
        .await
        .expect("rpm");
    let priority_array = rpm
        .iter()
        .find(|r| r.object == obj("analog-output:1") && r.property.property == property::PRIORITY_ARRAY)
        .expect("ALL includes the priority array");
    assert_eq!(priority_array.value.as_ref().expect("value").elements().len(), 16);
    let unknown = rpm.iter().find(|r| r.property.property == 9999).expect("the unknown property");
    assert_eq!(unknown.value, Err(ErrorClassCode { class: error::CLASS_PROPERTY, code: error::CODE_UNKNOWN_PROPERTY }));
    assert!(rpm.iter().any(|r| r.object == obj("binary-input:1") && r.property == PV && r.value.is_ok()));

    // WriteProperty with priorities; NULL relinquishes
    let ao = obj("analog-output:1");
    let write = |value, priority| WritePropertyRequest { object: ao, property: PV, value, priority: Some(priority) };
    t.write_property(dev, &write(Value::Real(42.0), 8)).await.expect("write 8");
    t.write_property(dev, &write(Value::Real(11.0), 10)).await.expect("write 10");
    assert_eq!(t.read_property(dev, ao, PV).await, Ok(Value::Real(42.0)));
    t.write_property(dev, &write(Value::Null, 8)).await.expect("relinquish 8");
    assert_eq!(t.read_property(dev, ao, PV).await, Ok(Value::Real(11.0)));
    t.write_property(dev, &write(Value::Null, 10)).await.expect("relinquish 10");
    let default = t.read_property(dev, ao, PropertyRef::new(property::RELINQUISH_DEFAULT)).await.expect("default");
    assert_eq!(t.read_property(dev, ao, PV).await, Ok(default));

    // refusals are typed errors with their class and code
    let refused = |class, code| BacnetError::Error(ErrorClassCode { class, code });
    assert_eq!(t.read_property(dev, obj("analog-input:99"), PV).await, Err(refused(1, error::CODE_UNKNOWN_OBJECT)));
    assert_eq!(
        t.write_property(dev, &write(Value::CharacterString("hot".into()), 8)).await,
        Err(refused(2, error::CODE_INVALID_DATA_TYPE))
    );
    let ai_write =
        WritePropertyRequest { object: obj("analog-input:1"), property: PV, value: Value::Real(1.0), priority: None };
    assert_eq!(t.write_property(dev, &ai_write).await, Err(refused(2, error::CODE_WRITE_ACCESS_DENIED)));
    sim.shutdown().await;
}

#[tokio::test]
async fn cov_notifications_follow_writes_and_changes() {
    let sim = simulator(1, 1, "127.0.1.20:0", Layout::Port, Faults::default()).await;
    let (t, mut rx) = transport_with(Duration::from_secs(2), 1, None).await;
    let dev = address(&sim, 0);
    let instance = sim.devices()[0].instance;
    let bo = obj("binary-output:1");
    let av = obj("analog-value:1");
    for (object, confirmed) in [(bo, true), (av, false)] {
        let sub = SubscribeCovRequest {
            process_id: 5,
            object,
            subscription: Some(CovSubscription { confirmed, lifetime: Some(60) }),
        };
        t.subscribe_cov(dev, &sub).await.expect("subscribe");
        let (c, _) = next_cov(&mut rx, object).await; // the initial notification
        assert_eq!(c, confirmed);
    }
    // a write over the network, then a change inside the device
    let write = WritePropertyRequest { object: bo, property: PV, value: Value::Enumerated(1), priority: Some(8) };
    t.write_property(dev, &write).await.expect("write");
    let (_, values) = next_cov(&mut rx, bo).await;
    assert!(values.contains(&(PV, Value::Enumerated(1))), "{values:?}");
    sim.set_present_value(instance, av, Value::Real(77.0)).await.expect("set");
    let (confirmed, values) = next_cov(&mut rx, av).await;
    assert!(!confirmed);
    assert!(values.contains(&(PV, Value::Real(77.0))), "{values:?}");
    sim.shutdown().await;
}

async fn next_cov(rx: &mut Receiver<Unsolicited>, object: ObjectId) -> (bool, Vec<(PropertyRef, Value)>) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a notification").expect("open");
        if let Unsolicited::Cov { confirmed, notification, .. } = msg {
            if notification.object == object {
                return (confirmed, notification.values);
            }
        }
    }
}

#[tokio::test]
async fn a_2000_object_list_is_reassembled_from_segments() {
    // 7 object types × 300 = 2,100 objects; at max-APDU 480 the list needs about 22 segments.
    let faults = Faults { max_apdu: 480, ..Faults::default() };
    let sim = simulator(1, 300, "127.0.1.30:0", Layout::Port, faults).await;
    let (t, _rx) = transport_with(Duration::from_secs(2), 1, None).await;
    let dev = address(&sim, 0);
    let list = t.read_object_list(dev, ObjectId::device(sim.devices()[0].instance)).await.expect("object list");
    assert_eq!(list.len(), 2101);
    assert!(list.contains(&ObjectId::new(object_type::MULTI_STATE_VALUE, 300)));
    let s = t.stats();
    assert_eq!((s.segmented_answers, s.requests), (1, 1), "{s:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_device_that_cannot_segment_is_read_element_by_element() {
    let faults = Faults { max_apdu: 480, no_segmentation: true, ..Faults::default() };
    let sim = simulator(1, 20, "127.0.1.40:0", Layout::Port, faults).await;
    let (t, _rx) = transport_with(Duration::from_secs(2), 1, None).await;
    let dev = address(&sim, 0);
    let device = ObjectId::device(sim.devices()[0].instance);
    let whole = t.read_property(dev, device, PropertyRef::new(property::OBJECT_LIST)).await;
    assert_eq!(whole, Err(BacnetError::Abort { reason: error::ABORT_SEGMENTATION_NOT_SUPPORTED, by_server: true }));
    let list = t.read_object_list(dev, device).await.expect("object list, element by element");
    assert_eq!(list.len(), 141);
    assert_eq!(list[0], device);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_device_without_rpm_rejects_it() {
    let faults = Faults { no_rpm: true, ..Faults::default() };
    let sim = simulator(1, 1, "127.0.1.50:0", Layout::Port, faults).await;
    let (t, _rx) = transport_with(Duration::from_secs(2), 1, None).await;
    let rpm = t
        .read_property_multiple(
            address(&sim, 0),
            vec![ReadAccessSpec { object: obj("analog-input:1"), properties: vec![PV] }],
        )
        .await;
    assert_eq!(rpm, Err(BacnetError::Reject { reason: error::REJECT_UNRECOGNIZED_SERVICE }));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_broadcast_who_is_is_global_so_routers_pass_it_on() {
    // Sent to the broadcast address with no destination, the Who-Is must
    // carry DNET 0xFFFF: a router forwards only that (or a broadcast to one
    // of its networks), and the devices behind it answer.
    let sim = simulator(2, 1, "127.0.1.61:0", Layout::Router, Faults::default()).await;
    let router = sim.devices()[0].address;
    let (t, mut rx) = transport_with(Duration::from_secs(2), 1, Some(router)).await;
    t.who_is(None, None).await.expect("who-is");
    let found = collect_i_ams(&mut rx, 2).await;
    assert_eq!(found.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [1001, 1002], "{found:?}");
    assert!(found.iter().all(|(from, _)| from.route.map(|r| r.network) == Some(100)), "{found:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn routed_devices_are_discovered_and_read_through_the_router() {
    let sim = simulator(3, 1, "127.0.1.60:0", Layout::Router, Faults::default()).await;
    let (t, mut rx) = transport_with(Duration::from_secs(2), 1, None).await;
    let router = sim.devices()[0].address;
    // a global Who-Is sent to the router crosses it; the I-Ams carry SNET/SADR
    let global = Address { ip: router, route: Some(Route { network: 0xFFFF, mac: Mac::default() }) };
    t.who_is(Some(global), None).await.expect("who-is");
    let found = collect_i_ams(&mut rx, 3).await;
    assert_eq!(found.len(), 3);
    for (k, (from, instance)) in found.iter().enumerate() {
        assert_eq!(*from, address(&sim, k));
        assert_eq!(from.route.map(|r| r.network), Some(100));
        let v =
            t.read_property(*from, ObjectId::device(*instance), PropertyRef::new(property::OBJECT_IDENTIFIER)).await;
        assert_eq!(v, Ok(Value::ObjectId(ObjectId::device(*instance))));
    }
    // writes reach the right device behind the router
    let dev = address(&sim, 1);
    let write = WritePropertyRequest {
        object: obj("analog-value:1"),
        property: PV,
        value: Value::Real(12.5),
        priority: Some(16),
    };
    t.write_property(dev, &write).await.expect("write");
    assert_eq!(
        sim.present_value(sim.devices()[1].instance, obj("analog-value:1")).await.expect("pv"),
        Value::Real(12.5)
    );
    assert_ne!(
        sim.present_value(sim.devices()[0].instance, obj("analog-value:1")).await.expect("pv"),
        Value::Real(12.5)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_silent_device_times_out_after_the_retries() {
    let faults = Faults { drop_rate: 1.0, ..Faults::default() };
    let sim = simulator(1, 1, "127.0.1.70:0", Layout::Port, faults).await;
    let (t, _rx) = transport_with(Duration::from_millis(50), 2, None).await;
    let r = t.read_property(address(&sim, 0), obj("analog-input:1"), PV).await;
    assert_eq!(r, Err(BacnetError::Timeout { attempts: 3 }));
    assert_eq!((t.stats().retries, t.stats().timeouts), (2, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn lossy_devices_converge_with_retries() {
    let faults = Faults { drop_rate: 0.3, ..Faults::default() };
    let sim = simulator(1, 5, "127.0.1.80:0", Layout::Port, faults).await;
    let (t, _rx) = transport_with(Duration::from_millis(50), 8, None).await;
    let dev = address(&sim, 0);
    let instance = sim.devices()[0].instance;
    for i in (1..=5).cycle().take(40) {
        let object = ObjectId::new(object_type::ANALOG_VALUE, i);
        let expected = sim.present_value(instance, object).await.expect("pv");
        assert_eq!(t.read_property(dev, object, PV).await, Ok(expected));
    }
    assert!(t.stats().retries > 0, "30% drops caused no retry: {:?}", t.stats());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_slow_answer_still_matches_its_retried_request_and_the_duplicate_is_dropped() {
    // answers come 120 ms late; the transport retries after 80 ms with the same invoke id
    let faults = Faults { slow: Duration::from_millis(120), ..Faults::default() };
    let sim = simulator(1, 1, "127.0.1.90:0", Layout::Port, faults).await;
    let (t, _rx) = transport_with(Duration::from_millis(80), 2, None).await;
    let dev = address(&sim, 0);
    let r = t.read_property(dev, obj("analog-value:1"), PV).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(t.stats().retries, 1);
    // the answer to the retransmission arrives too and matches nothing
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while t.stats().unexpected == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(t.stats().unexpected, 1);
    sim.shutdown().await;
}
