//! Interoperability with an independent BACnet stack: plantwatch's transport
//! against a bacpypes3 device in its own process.

use std::time::Duration;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::services::{
    CovSubscription, PropertyRef, ReadAccessSpec, SubscribeCovRequest, WritePropertyRequest,
};
use plantwatch_actors::bacnet::types::{property, Segmentation};
use plantwatch_actors::bacnet::{Address, ObjectId};
use plantwatch_actors::transport::{BacnetError, Transport, TransportConfig, Unsolicited};

use crate::support::Bp3Device;

const PV: PropertyRef = PropertyRef::new(property::PRESENT_VALUE);

fn obj(s: &str) -> ObjectId {
    s.parse().expect("object reference")
}

async fn transport() -> (Transport, tokio::sync::mpsc::Receiver<Unsolicited>) {
    // 127.0.0.1 on an OS-chosen port: never the device's port (bacpypes3's loopback quirk).
    Transport::bind(TransportConfig { bind: "127.0.0.1:0".parse().expect("addr"), ..TransportConfig::default() })
        .await
        .expect("bind")
}

#[tokio::test]
async fn reads_writes_and_relinquishes_on_a_bacpypes3_device() {
    let dev = Bp3Device::start("127.0.0.21", 3001, 2).await;
    let (t, mut unsolicited) = transport().await;
    let to = Address::direct(dev.address);

    // discovery: a directed Who-Is gets its I-Am
    t.who_is(Some(to), None).await.expect("who-is");
    let iam = loop {
        match tokio::time::timeout(Duration::from_secs(5), unsolicited.recv()).await.expect("an I-Am").expect("open") {
            Unsolicited::IAm { from, iam } => break (from, iam),
            Unsolicited::Cov { .. } => continue,
        }
    };
    assert_eq!(iam.0, to);
    assert_eq!((iam.1.device, iam.1.max_apdu, iam.1.vendor_id), (ObjectId::device(3001), 1476, 999));
    assert_eq!(iam.1.segmentation, Segmentation::Both);

    // ReadProperty
    assert_eq!(t.read_property(to, obj("analog-input:1"), PV).await, Ok(Value::Real(21.0)));
    assert_eq!(
        t.read_property(to, obj("characterstring-value:1"), PV).await,
        Ok(Value::CharacterString("Grüße".into()))
    );
    let list = t.read_object_list(to, ObjectId::device(3001)).await.expect("object list");
    assert!(list.contains(&obj("analog-output:2")) && list.contains(&obj("multi-state-value:1")), "{list:?}");

    // ReadPropertyMultiple, with an error for one property inside the answer
    let rpm = t
        .read_property_multiple(
            to,
            vec![
                ReadAccessSpec {
                    object: obj("analog-input:2"),
                    properties: vec![PV, PropertyRef::new(property::UNITS), PropertyRef::new(property::OBJECT_NAME)],
                },
                ReadAccessSpec { object: obj("analog-value:1"), properties: vec![PV, PropertyRef::new(9999)] },
            ],
        )
        .await
        .expect("rpm");
    assert_eq!(rpm.len(), 5);
    assert_eq!(rpm[0].value, Ok(Value::Real(22.0)));
    assert_eq!(rpm[1].value, Ok(Value::Enumerated(62)));
    assert_eq!(rpm[2].value, Ok(Value::CharacterString("AI-2".into())));
    assert_eq!(rpm[3].value, Ok(Value::Real(50.0)));
    assert!(rpm[4].value.is_err(), "{:?}", rpm[4]);

    // WriteProperty with priority, then relinquish
    let ao = obj("analog-output:1");
    let write = |value, priority| WritePropertyRequest { object: ao, property: PV, value, priority: Some(priority) };
    t.write_property(to, &write(Value::Real(42.5), 8)).await.expect("write at 8");
    assert_eq!(t.read_property(to, ao, PV).await, Ok(Value::Real(42.5)));
    t.write_property(to, &write(Value::Real(10.0), 12)).await.expect("write at 12");
    assert_eq!(t.read_property(to, ao, PV).await, Ok(Value::Real(42.5)), "priority 8 still wins");
    let slots = t.read_property(to, ao, PropertyRef::new(property::PRIORITY_ARRAY)).await.expect("priority array");
    assert_eq!(slots.elements()[7], Value::Real(42.5));
    assert_eq!(slots.elements()[11], Value::Real(10.0));
    t.write_property(to, &write(Value::Null, 8)).await.expect("relinquish 8");
    assert_eq!(t.read_property(to, ao, PV).await, Ok(Value::Real(10.0)));
    t.write_property(to, &write(Value::Null, 12)).await.expect("relinquish 12");
    assert_eq!(t.read_property(to, ao, PV).await, Ok(Value::Real(0.0)), "back to the relinquish default");

    // a refusal is a typed error
    let err = t.read_property(to, obj("analog-input:99"), PV).await;
    assert!(matches!(err, Err(BacnetError::Error(e)) if e.code == 31), "{err:?}");
}

#[tokio::test]
async fn cov_subscriptions_on_a_bacpypes3_device() {
    let mut dev = Bp3Device::start("127.0.0.22", 3002, 1).await;
    let (t, mut unsolicited) = transport().await;
    let to = Address::direct(dev.address);
    let ai = obj("analog-input:1");

    for (confirmed, process_id, value) in [(false, 11u32, 41.0f32), (true, 12, 42.0)] {
        let sub = SubscribeCovRequest {
            process_id,
            object: ai,
            subscription: Some(CovSubscription { confirmed, lifetime: Some(120) }),
        };
        t.subscribe_cov(to, &sub).await.expect("subscribe");
        // the initial notification, then one per change beyond the COV increment
        let first = next_cov(&mut unsolicited, process_id).await;
        assert_eq!(first.0, confirmed);
        dev.control(&format!("set analog-input:1 {value}")).await;
        let changed = loop {
            let (c, values) = next_cov(&mut unsolicited, process_id).await;
            if values.iter().any(|(p, v)| p.property == property::PRESENT_VALUE && *v == Value::Real(value)) {
                break c;
            }
        };
        assert_eq!(changed, confirmed);
        // cancel: no more notifications for this process id after a change
        t.subscribe_cov(to, &SubscribeCovRequest { process_id, object: ai, subscription: None }).await.expect("cancel");
    }
    dev.control("set analog-input:1 5.0").await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), unsolicited.recv()).await;
    assert!(quiet.is_err(), "a notification after the subscriptions were cancelled: {quiet:?}");
}

async fn next_cov(
    rx: &mut tokio::sync::mpsc::Receiver<Unsolicited>,
    process_id: u32,
) -> (bool, Vec<(PropertyRef, Value)>) {
    loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a COV notification").expect("open");
        if let Unsolicited::Cov { confirmed, notification, .. } = msg {
            if notification.process_id == process_id {
                assert_eq!(notification.device, ObjectId::device(3002));
                return (confirmed, notification.values);
            }
        }
    }
}
