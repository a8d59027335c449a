//! Tests over real UDP sockets on loopback, ports from the OS. `start`
//! returns once every socket is bound, so nothing waits for start-up.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::testing::{self, apdu, error_of, rp, rp_value, Reassembly};
use super::*;
use crate::bacnet::codec::Value;
use crate::bacnet::frame::Apdu;
use crate::bacnet::services::{decode_rpm_ack, CovNotification, CovSubscription, IAm, ReadPropertyAck};
use crate::bacnet::types::{error, object_type as ot, property as p, service, Mac};

const AI1: ObjectId = ObjectId::new(ot::ANALOG_INPUT, 1);
const AO1: ObjectId = ObjectId::new(ot::ANALOG_OUTPUT, 1);
const PV: PropertyRef = PropertyRef::new(p::PRESENT_VALUE);
const WAIT: Duration = Duration::from_secs(2);

fn config(layout: Layout, devices: usize, objects: usize) -> SimConfig {
    SimConfig { devices, objects, bind: "127.0.0.1:0".parse().unwrap(), layout, ..SimConfig::default() }
}

struct Client {
    socket: UdpSocket,
    buf: Vec<u8>,
}

impl Client {
    async fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.set_broadcast(true).unwrap();
        Self { socket, buf: vec![0; 2048] }
    }

    async fn send(&self, to: SocketAddr, datagram: &[u8]) {
        self.socket.send_to(datagram, to).await.unwrap();
    }

    /// The next datagram, if one comes within `wait`.
    async fn recv_within(&mut self, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let (len, from) = tokio::time::timeout(wait, self.socket.recv_from(&mut self.buf)).await.ok()?.unwrap();
        Some((self.buf[..len].to_vec(), from))
    }

    async fn recv(&mut self) -> Vec<u8> {
        self.recv_within(WAIT).await.expect("an answer").0
    }

    async fn ask(&mut self, to: SocketAddr, datagram: &[u8]) -> Vec<u8> {
        self.send(to, datagram).await;
        self.recv().await
    }
}

#[tokio::test]
async fn read_property_over_udp() {
    let sim = start(config(Layout::Port, 2, 3)).await.unwrap();
    let devices = sim.devices().to_vec();
    assert_eq!(devices.iter().map(|d| d.instance).collect::<Vec<_>>(), [1001, 1002]);
    assert_ne!(devices[0].address, devices[1].address);
    let mut c = Client::new().await;
    let v = rp_value(&c.ask(devices[1].address, &rp(1, AI1, PV)).await);
    assert!(matches!(v, Value::Real(x) if (18.0..=24.0).contains(&x)), "{v:?}");
    let who =
        rp_value(&c.ask(devices[1].address, &rp(2, ObjectId::device(1002), PropertyRef::new(p::OBJECT_NAME))).await);
    assert_eq!(who, Value::CharacterString("SIM-1002".into()));
    let len = c.ask(devices[0].address, &rp(3, ObjectId::device(1001), PropertyRef::indexed(p::OBJECT_LIST, 0))).await;
    assert_eq!(rp_value(&len), Value::Unsigned(22));
    let list = c.ask(devices[0].address, &rp(4, ObjectId::device(1001), PropertyRef::new(p::OBJECT_LIST))).await;
    assert_eq!(rp_value(&list).elements().len(), 22);
    assert_eq!(sim.present_value(1001, ObjectId::new(ot::ANALOG_VALUE, 1)).await.unwrap(), Value::Real(50.0));
    sim.shutdown().await;
}

#[tokio::test]
async fn rpm_write_and_errors_over_udp() {
    let sim = start(config(Layout::Port, 1, 2)).await.unwrap();
    let at = sim.devices()[0].address;
    let mut c = Client::new().await;
    let answer = c.ask(at, &testing::rpm(1, vec![(AI1, vec![PropertyRef::new(p::ALL), PropertyRef::new(4242)])])).await;
    let Apdu::ComplexAck { data, .. } = apdu(&answer) else { panic!("not an ack") };
    let results = decode_rpm_ack(data).unwrap();
    assert_eq!(results.iter().filter(|r| r.value.is_ok()).count(), 11);
    assert_eq!(results.last().unwrap().value.clone().map_err(|e| e.code), Err(error::CODE_UNKNOWN_PROPERTY));

    let ok = |a: &[u8]| matches!(apdu(a), Apdu::SimpleAck { .. });
    assert!(ok(&c.ask(at, &testing::wp(2, AO1, p::PRESENT_VALUE, Value::Real(55.0), Some(9))).await));
    assert!(ok(&c.ask(at, &testing::wp(3, AO1, p::PRESENT_VALUE, Value::Real(11.0), Some(12))).await));
    assert_eq!(rp_value(&c.ask(at, &rp(4, AO1, PV)).await), Value::Real(55.0));
    assert!(ok(&c.ask(at, &testing::wp(5, AO1, p::PRESENT_VALUE, Value::Null, Some(9))).await));
    assert_eq!(rp_value(&c.ask(at, &rp(6, AO1, PV)).await), Value::Real(11.0));

    let e = c.ask(at, &testing::wp(7, AO1, p::PRESENT_VALUE, Value::CharacterString("x".into()), None)).await;
    assert_eq!(error_of(&e), (error::CLASS_PROPERTY, error::CODE_INVALID_DATA_TYPE));
    let e = c.ask(at, &testing::wp(8, AI1, p::PRESENT_VALUE, Value::Real(1.0), None)).await;
    assert_eq!(error_of(&e), (error::CLASS_PROPERTY, error::CODE_WRITE_ACCESS_DENIED));
    let e =
        c.ask(at, &testing::wp(9, ObjectId::new(ot::ANALOG_OUTPUT, 3), p::PRESENT_VALUE, Value::Real(1.0), None)).await;
    assert_eq!(error_of(&e), (error::CLASS_OBJECT, error::CODE_UNKNOWN_OBJECT));
    sim.shutdown().await;
}

#[tokio::test]
async fn who_is_directed_and_ranged() {
    let sim = start(config(Layout::Port, 3, 1)).await.unwrap();
    let mut c = Client::new().await;
    let at = sim.devices()[2].address;
    let iam = c.ask(at, &testing::who_is(None, None)).await;
    let Apdu::UnconfirmedRequest { service: service::I_AM, data } = apdu(&iam) else { panic!("not an I-Am") };
    assert_eq!(IAm::decode(data).unwrap().device, ObjectId::device(1003));
    c.send(at, &testing::who_is(Some((1001, 1002)), None)).await;
    assert!(c.recv_within(Duration::from_millis(200)).await.is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn broadcast_who_is_reaches_every_device_of_the_ip_layout() {
    let cfg = SimConfig { bind: "127.0.0.2:0".parse().unwrap(), ..config(Layout::Ip, 5, 1) };
    let sim = start(cfg).await.unwrap();
    let addresses: Vec<SocketAddr> = sim.devices().iter().map(|d| d.address).collect();
    let port = addresses[0].port();
    assert_eq!(addresses[4], SocketAddr::from(([127, 0, 0, 6], port)));
    let broadcast = sim.broadcast_address().unwrap();
    assert_eq!(broadcast, SocketAddr::from(([127, 255, 255, 255], port)));
    let mut c = Client::new().await;
    c.send(broadcast, &testing::who_is(None, None)).await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let (iam, from) = c.recv_within(WAIT).await.expect("an I-Am from every device");
        let Apdu::UnconfirmedRequest { service: service::I_AM, data } = apdu(&iam) else { panic!("not an I-Am") };
        let instance = IAm::decode(data).unwrap().device.instance;
        // each device answers from its own socket
        assert_eq!(from, addresses[(instance - 1001) as usize]);
        seen.push(instance);
    }
    seen.sort_unstable();
    assert_eq!(seen, [1001, 1002, 1003, 1004, 1005]);
    sim.shutdown().await;
}

#[tokio::test]
async fn cov_notifications_over_udp() {
    let sim = start(config(Layout::Port, 1, 1)).await.unwrap();
    let at = sim.devices()[0].address;
    let mut c = Client::new().await;
    let bo = ObjectId::new(ot::BINARY_OUTPUT, 1);
    let sub = CovSubscription { confirmed: false, lifetime: Some(120) };
    let ack = c.ask(at, &testing::subscribe(1, 5, bo, Some(sub))).await;
    assert!(matches!(apdu(&ack), Apdu::SimpleAck { .. }));
    let initial = c.recv().await;
    let Apdu::UnconfirmedRequest { service: service::UNCONFIRMED_COV_NOTIFICATION, data } = apdu(&initial) else {
        panic!("not a notification");
    };
    assert_eq!(CovNotification::decode(data).unwrap().values[0].1, Value::Enumerated(0));
    // a write by another party
    let ack = c.ask(at, &testing::wp(2, bo, p::PRESENT_VALUE, Value::Enumerated(1), Some(8))).await;
    assert!(matches!(apdu(&ack), Apdu::SimpleAck { .. }));
    let changed = c.recv().await;
    let Apdu::UnconfirmedRequest { data, .. } = apdu(&changed) else { panic!("not a notification") };
    assert_eq!(CovNotification::decode(data).unwrap().values[0].1, Value::Enumerated(1));
    // a change from outside the BACnet network
    let bi = ObjectId::new(ot::BINARY_INPUT, 1);
    let ack = c.ask(at, &testing::subscribe(3, 6, bi, Some(sub))).await;
    assert!(matches!(apdu(&ack), Apdu::SimpleAck { .. }));
    c.recv().await;
    sim.set_present_value(1001, bi, Value::Enumerated(0)).await.unwrap();
    let forced = c.recv().await;
    let Apdu::UnconfirmedRequest { data, .. } = apdu(&forced) else { panic!("not a notification") };
    let n = CovNotification::decode(data).unwrap();
    assert_eq!((n.process_id, n.object, n.values[0].1.clone()), (6, bi, Value::Enumerated(0)));
    sim.shutdown().await;
}

#[tokio::test]
async fn segmented_object_list_over_udp() {
    // 60 of each of 7 kinds: 421 objects, about 2.1 kB, 5 segments at 480
    let sim = start(config(Layout::Port, 1, 60)).await.unwrap();
    let at = sim.devices()[0].address;
    let mut c = Client::new().await;
    let mut params = Vec::new();
    crate::bacnet::services::ReadPropertyRequest {
        object: ObjectId::device(1001),
        property: PropertyRef::new(p::OBJECT_LIST),
    }
    .encode(&mut params)
    .unwrap();
    c.send(at, &testing::confirmed(77, service::READ_PROPERTY, 480, 16, None, &params)).await;
    let mut r = Reassembly::new(2);
    while !r.done {
        let segment = c.recv().await;
        assert!(segment.len() <= 480 + 6);
        if let Some((sequence, negative)) = r.take(&segment) {
            c.send(at, &testing::segment_ack(77, sequence, 2, negative, None)).await;
        }
    }
    assert_eq!(r.segments, 5);
    let ack = ReadPropertyAck::decode(&r.data).unwrap();
    assert_eq!(ack.value.elements().len(), 421);

    // the same read, by a client that does not accept segments
    let a = c.ask(at, &testing::confirmed(78, service::READ_PROPERTY, 480, 1, None, &params)).await;
    assert_eq!(apdu(&a), Apdu::Abort { server: true, invoke_id: 78, reason: error::ABORT_SEGMENTATION_NOT_SUPPORTED });
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_over_udp() {
    let faults = Faults { no_rpm: true, no_segmentation: true, drop_rate: 0.0, ..Faults::default() };
    let cfg = SimConfig { faults, fault_devices: Some(vec![1002]), ..config(Layout::Port, 3, 20) };
    let sim = start(cfg).await.unwrap();
    let [d1, d2, _] = sim.devices() else { panic!("three devices") };
    let mut c = Client::new().await;
    let rpm = testing::rpm(1, vec![(AI1, vec![PV])]);
    assert!(matches!(apdu(&c.ask(d1.address, &rpm).await), Apdu::ComplexAck { .. }));
    assert_eq!(apdu(&c.ask(d2.address, &rpm).await), Apdu::Reject { invoke_id: 1, reason: 9 });
    let list = rp(2, ObjectId::device(1002), PropertyRef::new(p::OBJECT_LIST));
    let mut params = Vec::new();
    crate::bacnet::services::ReadPropertyRequest {
        object: ObjectId::device(1002),
        property: PropertyRef::new(p::OBJECT_LIST),
    }
    .encode(&mut params)
    .unwrap();
    let small = testing::confirmed(3, service::READ_PROPERTY, 480, 64, None, &params);
    assert_eq!(apdu(&c.ask(d2.address, &small).await), Apdu::Abort { server: true, invoke_id: 3, reason: 4 });
    assert!(matches!(apdu(&c.ask(d2.address, &list).await), Apdu::ComplexAck { segment: None, .. }));
    sim.shutdown().await;

    let cfg = SimConfig { faults: Faults { drop_rate: 1.0, ..Faults::default() }, ..config(Layout::Port, 1, 1) };
    let sim = start(cfg).await.unwrap();
    c.send(sim.devices()[0].address, &rp(4, AI1, PV)).await;
    assert!(c.recv_within(Duration::from_millis(300)).await.is_none());
    sim.shutdown().await;
}

/// The delay queue and the offline schedule, on the real clock (real
/// sockets and a paused clock do not mix: time would jump while the kernel
/// delivers a datagram).
#[tokio::test]
async fn slow_and_offline_faults_over_udp() {
    let faults = Faults {
        slow: Duration::from_millis(100),
        offline_after: Some(Duration::from_millis(400)),
        online_after: Some(Duration::from_millis(400)),
        ..Faults::default()
    };
    let started = tokio::time::Instant::now();
    let sim = start(SimConfig { faults, ..config(Layout::Port, 1, 1) }).await.unwrap();
    let at = sim.devices()[0].address;
    let mut c = Client::new().await;
    let sent = tokio::time::Instant::now();
    assert!(matches!(apdu(&c.ask(at, &rp(1, AI1, PV)).await), Apdu::ComplexAck { .. }));
    assert!(sent.elapsed() >= Duration::from_millis(100));
    tokio::time::sleep_until(started + Duration::from_millis(450)).await;
    c.send(at, &rp(2, AI1, PV)).await;
    assert!(c.recv_within(Duration::from_millis(200)).await.is_none());
    tokio::time::sleep_until(started + Duration::from_millis(850)).await;
    assert!(matches!(apdu(&c.ask(at, &rp(3, AI1, PV)).await), Apdu::ComplexAck { invoke_id: 3, .. }));
    sim.shutdown().await;
}

#[tokio::test]
async fn router_layout_over_udp() {
    let sim = start(config(Layout::Router, 3, 1)).await.unwrap();
    let devices = sim.devices().to_vec();
    assert!(devices.iter().all(|d| d.address == devices[0].address));
    let route = devices[2].route.unwrap();
    assert_eq!(route, Route { network: 100, mac: Mac::new(&[3]).unwrap() });
    let json = serde_json::to_string(&devices[2]).unwrap();
    assert_eq!(
        json,
        format!(r#"{{"instance":1003,"address":"{}","route":{{"network":100,"mac":"03"}}}}"#, devices[2].address)
    );
    let mut c = Client::new().await;
    let answer = c
        .ask(
            devices[0].address,
            &testing::rp_routed(1, route, ObjectId::device(1003), PropertyRef::new(p::OBJECT_NAME)),
        )
        .await;
    let f = frame::parse(&answer).unwrap();
    assert_eq!(f.source, Some(route));
    assert_eq!(rp_value(&answer), Value::CharacterString("SIM-1003".into()));
    // a global Who-Is: one I-Am per device, each with its SNET/SADR
    let global = Route { network: 0xFFFF, mac: Mac::default() };
    c.send(devices[0].address, &testing::who_is(None, Some(global))).await;
    let mut sources = Vec::new();
    for _ in 0..3 {
        let iam = c.recv().await;
        sources.push(frame::parse(&iam).unwrap().source.unwrap().mac);
    }
    sources.sort();
    assert_eq!(sources, devices.iter().map(|d| d.route.unwrap().mac).collect::<Vec<_>>());
    sim.shutdown().await;
}

/// Several routers: router r on its own socket with network 100+r, the
/// devices shared out in blocks, each with exactly `points` objects.
#[tokio::test]
async fn several_routers_with_a_point_count() {
    let cfg = SimConfig { routers: 3, points: Some(50), ..config(Layout::Router, 7, 1) };
    let sim = start(cfg).await.unwrap();
    let devices = sim.devices().to_vec();
    let networks: Vec<u16> = devices.iter().map(|d| d.route.unwrap().network).collect();
    assert_eq!(networks, [100, 100, 100, 101, 101, 101, 102]);
    assert_ne!(devices[0].address, devices[3].address);
    assert_ne!(devices[3].address, devices[6].address);
    // device 1007 is the first (and only) one behind the third router
    assert_eq!(devices[6].route.unwrap().mac, Mac::new(&[1]).unwrap());
    let mut c = Client::new().await;
    let list = PropertyRef::indexed(p::OBJECT_LIST, 0);
    let answer = c
        .ask(devices[6].address, &testing::rp_routed(1, devices[6].route.unwrap(), ObjectId::device(1007), list))
        .await;
    assert_eq!(rp_value(&answer), Value::Unsigned(51), "50 points and the device object");
    // the same request to another router's network is not answered
    let wrong = Route { network: 100, ..devices[6].route.unwrap() };
    c.send(devices[6].address, &testing::rp_routed(2, wrong, ObjectId::device(1007), list)).await;
    assert!(c.recv_within(Duration::from_millis(200)).await.is_none());
    // the last of the 8 analog-inputs and the 7th multi-state-value exist, no 8th
    let at = |i| (devices[4].address, devices[4].route.unwrap(), i);
    let (a, r, _) = at(0);
    let ai8 = c.ask(a, &testing::rp_routed(3, r, ObjectId::new(ot::ANALOG_INPUT, 8), PV)).await;
    assert!(matches!(rp_value(&ai8), Value::Real(_)));
    let msv7 = c.ask(a, &testing::rp_routed(4, r, ObjectId::new(ot::MULTI_STATE_VALUE, 7), PV)).await;
    assert!(matches!(rp_value(&msv7), Value::Unsigned(_)));
    let msv8 = c.ask(a, &testing::rp_routed(5, r, ObjectId::new(ot::MULTI_STATE_VALUE, 8), PV)).await;
    assert_eq!(error_of(&msv8), (error::CLASS_OBJECT, error::CODE_UNKNOWN_OBJECT));
    sim.shutdown().await;
}

#[test]
fn sim_devices_print_as_the_cli_contract_says() {
    let d = SimDevice { instance: 1001, address: "127.0.0.2:47808".parse().unwrap(), route: None };
    assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"instance":1001,"address":"127.0.0.2:47808","route":null}"#);
}

fn outage(every: u64, length: u64) -> crate::sim::Outage {
    crate::sim::Outage { every: Duration::from_secs(every), length: Duration::from_secs(length) }
}

fn churn(every: u64, length: u64) -> crate::sim::Churn {
    crate::sim::Churn { outage: outage(every, length), on_return: crate::sim::OnReturn::Restart }
}

/// Jittered answers leave the delay queue by their own times, not in the
/// order they were made.
#[tokio::test]
async fn jittered_answers_over_udp() {
    let faults = Faults { slow: Duration::from_millis(100), jitter: Duration::from_millis(60), ..Faults::default() };
    let sim = start(SimConfig { faults, ..config(Layout::Port, 1, 1) }).await.unwrap();
    let at = sim.devices()[0].address;
    let mut c = Client::new().await;
    let sent = tokio::time::Instant::now();
    for i in 0..30u8 {
        c.send(at, &rp(i, AI1, PV)).await;
    }
    let mut order = Vec::new();
    while order.len() < 30 {
        let answer = c.recv_within(Duration::from_secs(2)).await.expect("every request is answered");
        let Apdu::ComplexAck { invoke_id, .. } = apdu(&answer.0) else { panic!("not an answer") };
        order.push(invoke_id);
    }
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(40) && took < Duration::from_millis(1000), "{took:?}");
    assert_ne!(order, (0..30).collect::<Vec<u8>>(), "answers overtake each other");
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    for cfg in [
        SimConfig { devices: 0, ..SimConfig::default() },
        SimConfig { first_instance: 4_194_302, devices: 2, ..SimConfig::default() },
        SimConfig { faults: Faults { drop_rate: 1.5, ..Faults::default() }, ..SimConfig::default() },
        SimConfig { faults: Faults { max_apdu: 20, ..Faults::default() }, ..SimConfig::default() },
        SimConfig { bind: "127.255.255.250:0".parse().unwrap(), devices: 10, ..SimConfig::default() },
        SimConfig { routers: 0, ..config(Layout::Router, 3, 1) },
        SimConfig { routers: 4, ..config(Layout::Router, 3, 1) },
        SimConfig { routers: 2, router_network: 65534, ..config(Layout::Router, 3, 1) },
        SimConfig { faults: Faults { garbage_rate: -0.1, ..Faults::default() }, ..SimConfig::default() },
        SimConfig { faults: Faults { churn: Some(churn(10, 10)), ..Faults::default() }, ..SimConfig::default() },
        SimConfig {
            faults: Faults { router_outage: Some(outage(10, 2)), ..Faults::default() },
            ..config(Layout::Port, 1, 1)
        },
        SimConfig {
            faults: Faults { router_outage: Some(outage(0, 0)), ..Faults::default() },
            ..config(Layout::Router, 1, 1)
        },
    ] {
        assert!(matches!(start(cfg).await, Err(SimError::Config(_))));
    }
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = SimConfig { bind: taken.local_addr().unwrap(), ..config(Layout::Port, 1, 1) };
    assert!(matches!(start(cfg).await, Err(SimError::Bind { .. })));
}

/// Scale: 1,000 devices on 1,000 loopback addresses answer one broadcast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_devices_answer_a_broadcast() {
    let cfg = SimConfig { bind: "127.0.0.2:0".parse().unwrap(), ..config(Layout::Ip, 1000, 1) };
    let sim = start(cfg).await.unwrap();
    assert_eq!(sim.devices()[999].address.ip(), "127.0.3.233".parse::<std::net::IpAddr>().unwrap());
    let mut c = Client::new().await;
    // room for 1,000 I-Ams arriving at once
    socket2::SockRef::from(&c.socket).set_recv_buffer_size(4 << 20).unwrap();
    c.send(sim.broadcast_address().unwrap(), &testing::who_is(None, None)).await;
    let mut seen = std::collections::HashSet::new();
    while let Some((iam, _)) = c.recv_within(WAIT).await {
        let Apdu::UnconfirmedRequest { data, .. } = apdu(&iam) else { panic!("not an I-Am") };
        seen.insert(IAm::decode(data).unwrap().device.instance);
        if seen.len() == 1000 {
            break;
        }
    }
    assert_eq!(seen.len(), 1000);
    sim.shutdown().await;
}
