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

/// Runs bp3_client.py against `target` and returns one JSON value per action.
async fn bp3_client(target: std::net::SocketAddr, extra: &[&str], actions: &[&str]) -> Vec<serde_json::Value> {
    let out = tokio::process::Command::new(crate::support::python())
        .arg(crate::support::repo().join("tests/interop/bp3_client.py"))
        .args(["--local", "127.0.0.1", "--target", &target.to_string()])
        .args(extra)
        .args(actions)
        .output()
        .await
        .expect("run bp3_client.py");
    assert!(out.status.success(), "bp3_client.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test]
async fn a_bacpypes3_client_reads_and_writes_plantwatch_simulate_with_50_devices() {
    use tokio::io::AsyncBufReadExt;
    // the real binary, as a user runs it
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_plantwatch"))
        .args(["simulate", "--devices", "50", "--bind", "127.0.4.2:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start plantwatch simulate");
    let mut lines = tokio::io::BufReader::new(sim.stdout.take().expect("stdout")).lines();
    let mut devices = Vec::new();
    while devices.len() < 50 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("simulate prints its devices")
            .expect("read")
            .expect("simulate exited early");
        let d: serde_json::Value = serde_json::from_str(&line).expect("one JSON line per device");
        assert_eq!(d["route"], serde_json::Value::Null);
        devices.push((d["instance"].as_u64().expect("instance"), d["address"].as_str().expect("address").to_string()));
    }
    assert_eq!(devices[0].0, 1001);
    assert_eq!(devices[49].0, 1050);
    let port: u16 = devices[0].1.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");

    // a global Who-Is from bacpypes3 finds all 50
    let broadcast = format!("127.255.255.255:{port}");
    let first: std::net::SocketAddr = devices[0].1.parse().expect("address");
    let r = bp3_client(first, &["--broadcast", &broadcast, "--wait", "2"], &["whois"]).await;
    let mut found: Vec<u64> =
        r[0]["iams"].as_array().expect("iams").iter().filter_map(|i| i["instance"].as_u64()).collect();
    found.sort_unstable();
    found.dedup();
    assert_eq!(found, (1001..=1050).collect::<Vec<u64>>(), "{r:?}");

    for (instance, address) in [&devices[0], &devices[24], &devices[49]] {
        let target: std::net::SocketAddr = address.parse().expect("address");
        let r = bp3_client(
            target,
            &[],
            &[
                "read",
                &format!("device:{instance}"),
                "object-name",
                "read",
                "analog-input:1",
                "units",
                "rpm",
                "analog-value:1",
                "present-value,status-flags",
                "binary-input:1",
                "present-value",
                "write",
                "analog-output:1",
                "present-value",
                "42.5",
                "8",
                "read",
                "analog-output:1",
                "present-value",
                "read",
                "analog-output:1",
                "priority-array",
                "write",
                "analog-output:1",
                "present-value",
                "null",
                "8",
                "read",
                "analog-output:1",
                "present-value",
                "read",
                "analog-output:1",
                "relinquish-default",
                "write",
                "analog-input:1",
                "present-value",
                "1.0",
            ],
        )
        .await;
        assert_eq!(r.len(), 10, "{r:?}");
        assert!(r[0]["value"].is_string(), "object-name: {r:?}");
        assert_eq!(r[1]["value"], "degrees-celsius");
        let results = r[2]["results"].as_array().expect("rpm results");
        assert_eq!(results.len(), 3, "{r:?}");
        assert!(results.iter().all(|x| x.get("error").is_none()), "{r:?}");
        assert_eq!(r[3]["ok"], true, "write: {r:?}");
        assert_eq!(r[4]["value"], 42.5);
        assert_eq!(r[5]["value"][7], 42.5, "priority 8 holds the command: {r:?}");
        assert_eq!(r[6]["ok"], true, "relinquish: {r:?}");
        assert_eq!(r[7]["value"], r[8]["value"], "back to the relinquish default: {r:?}");
        assert_eq!(r[9]["error"], "property:write-access-denied", "{r:?}");
    }
    let _ = sim.start_kill();
}

#[tokio::test]
async fn plantwatch_enrols_and_polls_a_bacpypes3_device() {
    let dev = Bp3Device::start("127.0.0.23", 3003, 1).await;
    let (plant, _history) = crate::plant::plant_for(
        "bp3",
        vec![(3003, Address::direct(dev.address))],
        crate::plant::Setup { timeout: Duration::from_secs(2), ..crate::plant::Setup::default() },
    )
    .await;
    let dir = plant.handle.directory.clone();
    let enrolled = dir
        .wait_for(Duration::from_secs(20), |d| {
            d.get(3003).is_some_and(|s| {
                !s.points.is_empty()
                    && s.points.iter().all(|p| p.quality == plantwatch_actors::plant::model::Quality::Good)
            })
        })
        .await;
    assert!(enrolled, "{:#?}", dir.get(3003));
    let s = dir.get(3003).expect("device");
    let id = s.identity.clone().expect("identity");
    assert_eq!(
        (id.vendor_name.as_str(), id.vendor_id, id.model_name.as_str()),
        ("plantwatch-interop", 999, "bp3_device")
    );
    assert_eq!(s.points.len(), 7);
    // what bacpypes3 itself reports for every point
    let objects: Vec<String> = s.points.iter().map(|p| p.object.to_string()).collect();
    let mut actions = vec!["rpm".to_string()];
    for o in &objects {
        actions.push(o.clone());
        actions.push("present-value,object-name".into());
    }
    let args: Vec<&str> = actions.iter().map(String::as_str).collect();
    let r = bp3_client(dev.address, &[], &args).await;
    let results = r[0]["results"].as_array().expect("results");
    for p in &s.points {
        let theirs = |prop: &str| {
            results
                .iter()
                .find(|x| x["object"] == p.object.to_string().as_str() && x["property"] == prop)
                .map(|x| x["value"].clone())
                .unwrap_or_else(|| panic!("bacpypes3 has no {prop} for {}", p.object))
        };
        assert_eq!(theirs("object-name"), p.name.as_str(), "{}", p.object);
        let ours = p.value.clone().expect("polled");
        let same = match (&ours, theirs("present-value")) {
            (Value::Real(a), serde_json::Value::Number(b)) => b.as_f64() == Some(f64::from(*a)),
            (Value::Unsigned(a), serde_json::Value::Number(b)) => b.as_u64() == Some(*a),
            (Value::Enumerated(a), serde_json::Value::String(b)) => (*a == 1) == (b == "active"),
            (Value::CharacterString(a), serde_json::Value::String(b)) => *a == b,
            (a, b) => panic!("{}: ours {a:?}, bacpypes3 {b:?}", p.object),
        };
        assert!(same, "{}: ours {ours:?}, bacpypes3 {:?}", p.object, theirs("present-value"));
    }
    plant.shutdown().await;
}
