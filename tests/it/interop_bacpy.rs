//! Interoperability with a second independent BACnet stack, bac-py 1.5.7
//! (tests/interop/bacpy_device.py and bacpy_client.py), both ways: the plant
//! discovers, polls, commands and subscribes to a bac-py device, and bac-py's
//! client reads, writes and discovers `plantwatch simulate`.
//!
//! bac-py needs Python >= 3.13: the venv is target/bacpy-venv, made by
//! tests/interop/bacpy_venv.sh (on first use here, or by .ci/run). Where no
//! such Python can be had, the tests print "SKIPPED" and pass, unless
//! PLANTWATCH_REQUIRE_BACPY is set, which makes a missing peer a failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::types::property;
use plantwatch_actors::bacnet::{Address, ObjectId};
use plantwatch_actors::plant::device::{DeviceError, PointSettings, Write};
use plantwatch_actors::plant::model::Quality;
use plantwatch_actors::plant::network::{DeviceDefaults, NetworkSettings};
use plantwatch_actors::plant::supervisor::{Plant, PlantArgs};
use plantwatch_actors::plant::{CallError, Directory, SupervisionStats};
use plantwatch_actors::transport::{BacnetError, TransportConfig};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::support::repo;

const WAIT: Duration = Duration::from_secs(10);

fn obj(s: &str) -> ObjectId {
    s.parse().expect("object reference")
}

/// The venv's Python when bac-py is installed (`PLANTWATCH_BACPY_PYTHON`
/// names another). Runs tests/interop/bacpy_venv.sh once when the venv is
/// missing or stale.
fn bacpy_python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("PLANTWATCH_BACPY_PYTHON") {
                return Some(PathBuf::from(p));
            }
            let venv = repo().join("target/bacpy-venv");
            let ready = || {
                let wanted = std::fs::read(repo().join("tests/interop/bacpy-requirements.txt")).ok();
                venv.join("bin/python").exists()
                    && wanted.is_some()
                    && std::fs::read(venv.join(".requirements-installed")).ok() == wanted
            };
            if !ready() {
                let out = std::process::Command::new("bash")
                    .arg(repo().join("tests/interop/bacpy_venv.sh"))
                    .output()
                    .expect("run tests/interop/bacpy_venv.sh");
                eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(out.status.success(), "tests/interop/bacpy_venv.sh failed");
            }
            ready().then(|| venv.join("bin/python"))
        })
        .as_deref()
}

/// Whether a missing bac-py must fail the test (CI sets it where Python 3.13 exists).
fn required() -> bool {
    std::env::var_os("PLANTWATCH_REQUIRE_BACPY").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The bac-py Python, or `None` after a skip message (a panic when required).
fn bacpy_or_skip(test: &str) -> Option<&'static Path> {
    let python = bacpy_python();
    if python.is_none() {
        assert!(
            !required(),
            "{test}: PLANTWATCH_REQUIRE_BACPY is set but there is no bac-py venv (target/bacpy-venv needs Python >= 3.13; see tests/interop/bacpy_venv.sh)"
        );
        eprintln!(
            "SKIPPED {test}: bac-py interop: no Python >= 3.13 for target/bacpy-venv (tests/interop/bacpy_venv.sh); set PLANTWATCH_REQUIRE_BACPY=1 to fail instead"
        );
    }
    python
}

/// A bac-py device in its own process (tests/interop/bacpy_device.py).
/// Dropping it kills it.
struct BacpyDevice {
    address: SocketAddr,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl BacpyDevice {
    async fn start(python: &Path, ip: &str, instance: u32) -> Self {
        let mut child = Command::new(python)
            .arg(repo().join("tests/interop/bacpy_device.py"))
            .args(["--address", ip, "--port", "0", "--instance", &instance.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start bacpy_device.py");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("bacpy_device.py did not get ready")
            .expect("read")
            .expect("bacpy_device.py exited before it was ready");
        let ready: Json = serde_json::from_str(&line).expect("ready line is JSON");
        let address = ready["address"].as_str().expect("address").parse().expect("socket address");
        Self { address, child, stdin, stdout }
    }

    /// Sends a control line (`set analog-input:1 25.5`) and checks the answer.
    async fn control(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write control line");
        self.stdin.flush().await.expect("flush");
        let answer = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("control answer")
            .expect("read")
            .expect("device exited");
        let v: Json = serde_json::from_str(&answer).expect("JSON answer");
        assert_eq!(v["ok"], true, "{line}: {answer}");
    }
}

impl Drop for BacpyDevice {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Runs bacpy_client.py against `target` and returns one JSON value per action.
async fn bacpy_client(python: &Path, target: SocketAddr, extra: &[&str], actions: &[&str]) -> Vec<Json> {
    let out = Command::new(python)
        .arg(repo().join("tests/interop/bacpy_client.py"))
        .args(["--local", "127.0.0.1", "--target", &target.to_string()])
        .args(extra)
        .args(actions)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run bacpy_client.py");
    assert!(out.status.success(), "bacpy_client.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A plant with one network bound to `bind`, discovering on `broadcast`,
/// with no configured device: what it polls, it found.
async fn discovering_plant(name: &str, bind: SocketAddr, broadcast: SocketAddr) -> Plant {
    let restart = plantwatch_actors::plant::restart::RestartPolicy {
        intensity: 5,
        window: Duration::from_secs(60),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    };
    let network = NetworkSettings {
        name: name.to_string(),
        transport: TransportConfig {
            bind,
            apdu_timeout: Duration::from_secs(2),
            apdu_retries: 1,
            broadcast: Some(broadcast),
            ..TransportConfig::default()
        },
        discover: true,
        devices: Vec::new(),
        defaults: DeviceDefaults {
            poll: Duration::from_millis(200),
            cov: false,
            cov_lifetime: Duration::from_secs(300),
            cov_quiet: Duration::from_secs(300),
            offline_after: 3,
            reprobe_max: Duration::from_secs(1),
            history_max_interval: Duration::from_secs(900),
            poison_value: None,
        },
        restart,
        heartbeat_timeout: Duration::from_secs(30),
    };
    let (history, _rx) = tokio::sync::mpsc::channel(10_000);
    Plant::start(PlantArgs {
        networks: vec![Arc::new(network)],
        directory: Directory::default(),
        history,
        stats: Arc::new(SupervisionStats::default()),
        restart,
    })
    .await
    .expect("plant starts")
}

fn point_value(dir: &Directory, instance: u32, object: ObjectId) -> Option<Value> {
    dir.get(instance).and_then(|s| s.point(object).and_then(|p| p.value.clone()))
}

#[tokio::test]
async fn plantwatch_discovers_polls_and_commands_a_bacpy_device() {
    let Some(py) = bacpy_or_skip("plantwatch_discovers_polls_and_commands_a_bacpy_device") else { return };
    let dev = BacpyDevice::start(py, "127.0.0.31", 4001).await;
    // bac-py answers Who-Is with a global broadcast on its own port (see
    // tests/interop/README.md): plantwatch listens where a site's service
    // would, on the devices' port, and hears the I-Am there.
    let port = dev.address.port();
    let plant = discovering_plant(
        "bacpy",
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from(([127, 255, 255, 255], port)),
    )
    .await;
    let dir = plant.handle.directory.clone();
    let enrolled = dir
        .wait_for(WAIT, |d| {
            d.get(4001).is_some_and(|s| {
                s.points.len() == 4 && s.points.iter().all(|p| p.quality == Quality::Good && p.value.is_some())
            })
        })
        .await;
    assert!(enrolled, "{:#?}", dir.get(4001));
    let s = dir.get(4001).expect("device");
    assert_eq!((s.address, s.route), (dev.address, None), "found at the address the I-Am came from");
    let id = s.identity.clone().expect("identity");
    assert_eq!(
        (id.name.as_str(), id.vendor_name.as_str(), id.vendor_id, id.model_name.as_str()),
        ("bacpy-device-4001", "plantwatch-interop", 999, "bacpy_device")
    );
    assert!(s.use_rpm, "bac-py answers ReadPropertyMultiple");
    let ai1 = s.point(obj("analog-input:1")).expect("ai1");
    assert_eq!((ai1.name.as_str(), ai1.units, ai1.value.clone()), ("AI-1", Some(62), Some(Value::Real(21.0))));
    assert!(s.point(obj("analog-value:1")).expect("av").commandable);
    assert!(s.point(obj("binary-value:1")).expect("bv").commandable);
    assert!(!ai1.commandable);
    // the ramp moves between polls, and polling follows it
    let first = point_value(&dir, 4001, obj("analog-input:2"));
    let moved = dir
        .wait_for(WAIT, |d| point_value(d, 4001, obj("analog-input:2")).is_some_and(|v| Some(&v) != first.as_ref()))
        .await;
    assert!(moved, "analog-input:2 stayed at {first:?}");
    // and on demand
    let found = plant.discover("bacpy", Some((4001, 4001)), Duration::from_millis(800)).await.expect("discover");
    assert_eq!(
        found.iter().map(|f| (f.instance, f.address)).collect::<Vec<_>>(),
        [(4001, Address::direct(dev.address))]
    );

    // commands with priorities, read back by bac-py's own client
    let av = obj("analog-value:1");
    let write =
        |value, priority| Write { object: av, property: property::PRESENT_VALUE, value, priority: Some(priority) };
    let o = plant.handle.write(4001, write(Value::Real(42.5), 8), WAIT).await.expect("write at 8");
    assert_eq!((o.present_value, o.active_priority), (Some(Value::Real(42.5)), Some(8)));
    let o = plant.handle.write(4001, write(Value::Real(10.0), 12), WAIT).await.expect("write at 12");
    assert_eq!((o.present_value, o.active_priority), (Some(Value::Real(42.5)), Some(8)), "8 beats 12");
    let r = bacpy_client(py, dev.address, &[], &["read", "analog-value:1", "priority-array"]).await;
    let slots = r[0]["value"].as_array().unwrap_or_else(|| panic!("priority array: {r:?}"));
    assert_eq!(slots.len(), 16);
    assert_eq!((&slots[7], &slots[11]), (&Json::from(42.5), &Json::from(10.0)), "{r:?}");
    assert_eq!(slots.iter().filter(|s| s.is_null()).count(), 14, "{r:?}");
    let o = plant.handle.write(4001, write(Value::Null, 8), WAIT).await.expect("relinquish 8");
    assert_eq!((o.present_value, o.active_priority), (Some(Value::Real(10.0)), Some(12)));
    let o = plant.handle.write(4001, write(Value::Null, 12), WAIT).await.expect("relinquish 12");
    assert_eq!((o.present_value, o.active_priority), (Some(Value::Real(0.0)), None), "relinquish default");
    let bv = obj("binary-value:1");
    let o = plant
        .handle
        .write(
            4001,
            Write { object: bv, property: property::PRESENT_VALUE, value: Value::Enumerated(1), priority: Some(9) },
            WAIT,
        )
        .await
        .expect("binary write");
    assert_eq!((o.present_value, o.active_priority), (Some(Value::Enumerated(1)), Some(9)));
    let r = bacpy_client(
        py,
        dev.address,
        &[],
        &[
            "read",
            "analog-value:1",
            "priority-array",
            "read",
            "analog-value:1",
            "present-value",
            "read",
            "binary-value:1",
            "priority-array",
        ],
    )
    .await;
    assert!(r[0]["value"].as_array().is_some_and(|a| a.iter().all(Json::is_null)), "all relinquished: {r:?}");
    assert_eq!(r[1]["value"], 0.0, "{r:?}");
    assert_eq!(r[2]["value"][8], 1, "binary-value active at 9: {r:?}");
    let o = plant
        .handle
        .write(
            4001,
            Write { object: bv, property: property::PRESENT_VALUE, value: Value::Null, priority: Some(9) },
            WAIT,
        )
        .await
        .expect("binary relinquish");
    assert_eq!((o.present_value, o.active_priority), (Some(Value::Enumerated(0)), None));
    // a refusal is bac-py's error, passed on
    let w = Write {
        object: obj("analog-input:1"),
        property: property::PRESENT_VALUE,
        value: Value::Real(1.0),
        priority: None,
    };
    let err = plant.handle.write(4001, w, WAIT).await.expect_err("analog-input is read-only");
    // error class property (2), code write-access-denied (40), as the simulator and bacpypes3 answer
    let refused =
        matches!(&err, CallError::Device(DeviceError::Bacnet(BacnetError::Error(e))) if (e.class, e.code) == (2, 40));
    assert!(refused, "{err:?}");
    plant.shutdown().await;
}

#[tokio::test]
async fn plantwatch_subscribes_to_cov_on_a_bacpy_device() {
    let Some(py) = bacpy_or_skip("plantwatch_subscribes_to_cov_on_a_bacpy_device") else { return };
    let mut dev = BacpyDevice::start(py, "127.0.0.32", 4002).await;
    let (ai1, ai2, av) = (obj("analog-input:1"), obj("analog-input:2"), obj("analog-value:1"));
    let points = [ai1, ai2, av].map(|object| PointSettings { object, poll: None, cov: None }).to_vec();
    // a poll a minute: anything new within seconds came by COV
    let setup = crate::plant::Setup {
        cov: true,
        poll: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
        points: Some(points),
        ..crate::plant::Setup::default()
    };
    let (plant, _history) =
        crate::plant::plant_for("bacpycov", vec![(4002, Address::direct(dev.address))], setup).await;
    let dir = plant.handle.directory.clone();
    let subscribed = dir
        .wait_for(WAIT, |d| {
            d.get(4002).is_some_and(|s| s.cov_subscriptions == 3 && s.points.iter().all(|p| p.value.is_some()))
        })
        .await;
    assert!(subscribed, "{:#?}", dir.get(4002));
    // a change inside the device, past its COV increment (0.5)
    dev.control("set analog-input:1 25.5").await;
    let via_cov = dir.wait_for(Duration::from_secs(5), |d| point_value(d, 4002, ai1) == Some(Value::Real(25.5))).await;
    assert!(via_cov, "{:#?}", dir.get(4002));
    // the ramp notifies on its own (increment 0.1, +0.25 every 200 ms)
    let before = point_value(&dir, 4002, ai2);
    let ramped = dir
        .wait_for(Duration::from_secs(5), |d| point_value(d, 4002, ai2).is_some_and(|v| Some(&v) != before.as_ref()))
        .await;
    assert!(ramped, "analog-input:2 stayed at {before:?}");
    // a command from another client (bac-py's) reaches plantwatch by COV too
    let r = bacpy_client(py, dev.address, &[], &["write", "analog-value:1", "present-value", "33.0", "10"]).await;
    assert_eq!(r[0]["ok"], true, "{r:?}");
    let commanded = dir.wait_for(Duration::from_secs(5), |d| point_value(d, 4002, av) == Some(Value::Real(33.0))).await;
    assert!(commanded, "{:#?}", dir.get(4002));
    let r = bacpy_client(py, dev.address, &[], &["write", "analog-value:1", "present-value", "null", "10"]).await;
    assert_eq!(r[0]["ok"], true, "{r:?}");
    let relinquished =
        dir.wait_for(Duration::from_secs(5), |d| point_value(d, 4002, av) == Some(Value::Real(0.0))).await;
    assert!(relinquished, "{:#?}", dir.get(4002));
    plant.shutdown().await;
}

#[tokio::test]
async fn a_bacpy_client_reads_writes_and_discovers_plantwatch_simulate() {
    let Some(py) = bacpy_or_skip("a_bacpy_client_reads_writes_and_discovers_plantwatch_simulate") else { return };
    // the real binary, as a user runs it
    let mut sim = Command::new(env!("CARGO_BIN_EXE_plantwatch"))
        .args(["simulate", "--devices", "5", "--bind", "127.0.5.2:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start plantwatch simulate");
    let mut lines = BufReader::new(sim.stdout.take().expect("stdout")).lines();
    let mut devices = Vec::new();
    while devices.len() < 5 {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("simulate prints its devices")
            .expect("read")
            .expect("simulate exited early");
        let d: Json = serde_json::from_str(&line).expect("one JSON line per device");
        let address: SocketAddr = d["address"].as_str().expect("address").parse().expect("address");
        devices.push((d["instance"].as_u64().expect("instance"), address));
    }
    let port = devices[0].1.port();

    // a global Who-Is (Original-Broadcast-NPDU) from bac-py finds all five,
    // each at its own address
    let broadcast = format!("127.255.255.255:{port}");
    let r =
        bacpy_client(py, devices[0].1, &["--broadcast", &broadcast, "--wait", "3", "--expect", "5"], &["whois"]).await;
    let mut found: Vec<(u64, String)> = r[0]["iams"]
        .as_array()
        .unwrap_or_else(|| panic!("iams: {r:?}"))
        .iter()
        .map(|i| (i["instance"].as_u64().expect("instance"), i["address"].as_str().expect("address").to_string()))
        .collect();
    found.sort();
    found.dedup();
    let expected: Vec<(u64, String)> = devices.iter().map(|(i, a)| (*i, a.to_string())).collect();
    assert_eq!(found, expected, "{r:?}");
    let iam = &r[0]["iams"][0];
    assert_eq!((&iam["max_apdu"], &iam["vendor_id"]), (&Json::from(1476), &Json::from(999)), "{r:?}");

    for (instance, target) in [devices[0], devices[4]] {
        let r = bacpy_client(
            py,
            target,
            &[],
            &[
                "whois",
                "read",
                &format!("device:{instance}"),
                "object-name",
                "read",
                "analog-input:1",
                "units",
                "rpm",
                "analog-value:1",
                "present-value,status-flags,9999",
                "binary-input:1",
                "present-value",
                "write",
                "analog-output:1",
                "present-value",
                "42.5",
                "8",
                "write",
                "analog-output:1",
                "present-value",
                "10",
                "12",
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
                "write",
                "analog-output:1",
                "present-value",
                "null",
                "12",
                "read",
                "analog-output:1",
                "present-value",
                "read",
                "analog-output:1",
                "relinquish-default",
                "write",
                "binary-output:1",
                "present-value",
                "active",
                "9",
                "read",
                "binary-output:1",
                "present-value",
                "write",
                "binary-output:1",
                "present-value",
                "null",
                "9",
                "write",
                "analog-input:1",
                "present-value",
                "1.0",
            ],
        )
        .await;
        assert_eq!(r.len(), 16, "{r:?}");
        // a directed Who-Is: the simulator answers the requester
        assert_eq!(r[0]["iams"][0]["instance"], instance, "{r:?}");
        assert_eq!(r[0]["iams"][0]["address"], target.to_string().as_str(), "{r:?}");
        assert_eq!(r[1]["value"], format!("SIM-{instance}").as_str(), "{r:?}");
        assert_eq!(r[2]["value"], 62, "degrees-celsius: {r:?}");
        let results = r[3]["results"].as_array().unwrap_or_else(|| panic!("rpm: {r:?}"));
        assert_eq!(results.len(), 4, "{r:?}");
        assert_eq!(results[0]["value"], 50.0, "{r:?}");
        assert_eq!(results[1]["value"], serde_json::json!([false, false, false, false]), "{r:?}");
        assert_eq!(results[2]["error"], "property:unknown-property", "{r:?}");
        assert!(results[3]["value"].is_number(), "binary-input present-value is enumerated: {r:?}");
        assert_eq!((&r[4]["ok"], &r[5]["ok"]), (&Json::Bool(true), &Json::Bool(true)), "{r:?}");
        let slots = r[6]["value"].as_array().unwrap_or_else(|| panic!("priority array: {r:?}"));
        assert_eq!((slots.len(), &slots[7], &slots[11]), (16, &Json::from(42.5), &Json::from(10.0)), "{r:?}");
        assert_eq!(r[7]["ok"], true, "relinquish 8: {r:?}");
        assert_eq!(r[8]["value"], 10.0, "priority 12 now in control: {r:?}");
        assert_eq!(r[9]["ok"], true, "relinquish 12: {r:?}");
        assert_eq!(r[10]["value"], r[11]["value"], "back to the relinquish default: {r:?}");
        assert_eq!(
            (&r[12]["ok"], &r[13]["value"], &r[14]["ok"]),
            (&Json::Bool(true), &Json::from(1), &Json::Bool(true)),
            "{r:?}"
        );
        assert_eq!(r[15]["error"], "property:write-access-denied", "{r:?}");
    }
    let _ = sim.start_kill();
}
