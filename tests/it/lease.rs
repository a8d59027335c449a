//! Lease writes over the real API (port 0) in front of a real plant,
//! simulator (UDP on loopback) and sled store: a lease runs out and
//! plantwatch relinquishes the slot and audits it as actor `lease`; a second
//! PUT renews it; a PUT without a lease or a relinquish ends it; leases
//! survive a restart of the plant on the same store; a device that comes back
//! with the slot empty gets it written again; a lease above the maximum is
//! refused in the error envelope.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use plantwatch::api::{self, ApiState, NetworkInfo, Security};
use plantwatch::lease::Leases;
use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::services::PropertyRef;
use plantwatch_actors::bacnet::{Address, ObjectId};
use plantwatch_actors::plant::model::{DeviceStatus, Quality};
use plantwatch_actors::plant::supervisor::Plant;
use plantwatch_actors::sim::{self, Layout, SimConfig, Simulator};
use plantwatch_actors::store::{Store, StoreConfig};
use serde_json::{json, Value as Json};

const AO: &str = "analog-output:1";

struct Rig {
    base: String,
    client: reqwest::Client,
    plant: Plant,
    leases_task: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Rig {
    async fn get(&self, path: &str) -> (u16, Json) {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.expect("request");
        let status = r.status().as_u16();
        if path == "/metrics" {
            return (status, Json::String(r.text().await.expect("text")));
        }
        (status, r.json().await.expect("json"))
    }

    async fn put(&self, path: &str, body: &Json) -> (u16, Json) {
        let r = self.client.put(format!("{}{path}", self.base)).json(body).send().await.expect("request");
        (r.status().as_u16(), r.json().await.expect("json"))
    }

    /// Stops the API, the lease task and the plant (the store stays).
    async fn stop(self) {
        self.leases_task.abort();
        drop(self._stop);
        self.plant.shutdown().await;
    }

    async fn audit(&self) -> Vec<Json> {
        let (s, a) = self.get("/api/v1/audit?limit=1000").await;
        assert_eq!(s, 200, "{a}");
        a["items"].as_array().cloned().expect("items")
    }

    async fn lease_records(&self) -> Vec<Json> {
        self.audit().await.into_iter().filter(|r| r["actor"] == "lease").collect()
    }
}

async fn simulator(first_instance: u32, faults: sim::Faults) -> Simulator {
    sim::start(SimConfig {
        devices: 1,
        objects: 1,
        bind: "127.0.0.1:0".parse().expect("addr"),
        layout: Layout::Port,
        first_instance,
        faults,
        ..SimConfig::default()
    })
    .await
    .expect("sim")
}

fn store_in(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig::new(dir.path().join("store"))).expect("store")
}

/// A plant of network `name` watching `sim`, its leases (from `store`) and
/// the API, once the device's points read good.
async fn rig(name: &str, sim: &Simulator, store: &Store, max_lease: Duration) -> Rig {
    let devices = sim.devices().iter().map(|d| (d.instance, Address { ip: d.address, route: d.route })).collect();
    let (plant, _h) = crate::plant::plant_for(name, devices, crate::plant::Setup::default()).await;
    let leases = Leases::load(store.clone(), plant.handle.clone(), Duration::from_secs(5)).await.expect("leases");
    let leases_task = leases.spawn();
    let state = ApiState {
        plant: plant.handle.clone(),
        store: store.clone(),
        networks: Arc::new(vec![NetworkInfo {
            name: name.into(),
            bind: "127.0.0.1:0".parse().expect("addr"),
            discover: false,
        }]),
        request_timeout: Duration::from_secs(5),
        ready: Arc::new(AtomicBool::new(true)),
        security: Security::open(),
        http: api::HttpSettings::default(),
        max_points: 25_000,
        site: None,
        leases,
        max_lease,
    };
    let listener = api::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let instance = sim.devices()[0].instance;
    let good = plant
        .handle
        .directory
        .wait_for(Duration::from_secs(10), |d| {
            d.get(instance).is_some_and(|s| {
                s.status == DeviceStatus::Online
                    && !s.points.is_empty()
                    && s.points.iter().all(|p| p.quality == Quality::Good)
            })
        })
        .await;
    assert!(good, "the device is enrolled and polled");
    Rig { base, client: crate::support::http_client(), plant, leases_task, _stop: stop }
}

/// The device's Priority_Array slot `priority` of analog-output:1.
async fn slot(sim: &Simulator, instance: u32, priority: u8) -> Value {
    let ao: ObjectId = AO.parse().expect("object");
    let v = sim.read_property(instance, ao, PropertyRef::new(87)).await.expect("priority array");
    v.elements().get(usize::from(priority) - 1).cloned().expect("16 slots")
}

/// Waits up to `within` for slot `priority` to hold `want`.
async fn slot_becomes(sim: &Simulator, instance: u32, priority: u8, want: &Value, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if slot(sim, instance, priority).await == *want {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn point_path(instance: u32) -> String {
    format!("/api/v1/devices/{instance}/points/{AO}")
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn a_lease_runs_out_and_plantwatch_relinquishes_the_slot_and_audits_it() {
    let sim = simulator(7301, sim::Faults::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir);
    let r = rig("lease-exp", &sim, &store, DAY).await;
    let path = point_path(7301);

    let (s, w) = r.put(&path, &json!({"value": 42.0, "priority": 8, "lease": "2s"})).await;
    assert_eq!(s, 200, "{w}");
    assert_eq!((w["lease"]["priority"].as_u64(), w["lease"]["value"].as_f64()), (Some(8), Some(42.0)), "{w}");
    assert!(w["lease"]["until"].is_string(), "{w}");
    assert_eq!(slot(&sim, 7301, 8).await, Value::Real(42.0));
    let (_, list) = r.get("/api/v1/leases").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["object"], AO);
    let (_, p) = r.get(&path).await;
    assert_eq!((p["lease"]["priority"].as_u64(), p["lease"]["value"].as_f64()), (Some(8), Some(42.0)), "{p}");
    let (_, m) = r.get("/metrics").await;
    assert!(m.as_str().is_some_and(|t| t.contains("plantwatch_leases_active{network=\"lease-exp\"} 1")), "{m}");

    // still held before its end, relinquished by plantwatch after it
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(slot(&sim, 7301, 8).await, Value::Real(42.0), "not before the lease runs out");
    assert!(slot_becomes(&sim, 7301, 8, &Value::Null, Duration::from_secs(6)).await, "relinquished at the end");

    let records = r.lease_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    let e = &records[0];
    assert_eq!((e["action"].as_str(), e["outcome"].as_str()), (Some("expired"), Some("accepted")), "{e}");
    assert_eq!(
        (e["priority"].as_u64(), e["new_value"].is_null(), e["active_priority"].is_null()),
        (Some(8), true, true)
    );
    assert_eq!(e["device"], 7301);
    let (_, list) = r.get("/api/v1/leases").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    let (_, p) = r.get(&path).await;
    assert!(p["lease"].is_null(), "{p}");
    let (_, m) = r.get("/metrics").await;
    let text = m.as_str().unwrap_or_default();
    assert!(text.contains("plantwatch_lease_expiries_total{network=\"lease-exp\"} 1"), "{text}");
    assert!(text.contains("plantwatch_leases_active{network=\"lease-exp\"} 0"), "{text}");
    r.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_second_put_renews_a_lease_a_put_without_one_or_a_relinquish_ends_it() {
    let sim = simulator(7311, sim::Faults::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir);
    let r = rig("lease-renew", &sim, &store, DAY).await;
    let path = point_path(7311);

    // renewed: a second leased PUT on the slot replaces value and end
    let (s, _) = r.put(&path, &json!({"value": 10.0, "priority": 8, "lease": "2s"})).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (s, w) = r.put(&path, &json!({"value": 11.0, "priority": 8, "lease": "4s"})).await;
    assert_eq!(s, 200, "{w}");
    let (_, list) = r.get("/api/v1/leases?device=7311").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "one lease per slot: {list}");
    assert_eq!(list["items"][0]["value"], 11.0);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(slot(&sim, 7311, 8).await, Value::Real(11.0), "the first end does not count any more");
    assert!(slot_becomes(&sim, 7311, 8, &Value::Null, Duration::from_secs(6)).await, "the renewed end does");

    // a PUT without a lease on the slot makes the write permanent
    let (s, _) = r.put(&path, &json!({"value": 20.0, "priority": 9, "lease": "1s"})).await;
    assert_eq!(s, 200);
    let (s, w) = r.put(&path, &json!({"value": 21.0, "priority": 9})).await;
    assert_eq!(s, 200, "{w}");
    assert!(w["lease"].is_null(), "{w}");
    // a relinquish of a leased slot ends the lease
    let (s, _) = r.put(&path, &json!({"value": 30.0, "priority": 10, "lease": "1s"})).await;
    assert_eq!(s, 200);
    let (s, _) = r.put(&path, &json!({"value": null, "priority": 10})).await;
    assert_eq!(s, 200);
    let (_, list) = r.get("/api/v1/leases").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    // and a write at priority 10 after it is not taken back
    let (s, _) = r.put(&path, &json!({"value": 31.0, "priority": 10})).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(slot(&sim, 7311, 9).await, Value::Real(21.0), "permanent");
    assert_eq!(slot(&sim, 7311, 10).await, Value::Real(31.0), "not relinquished by the ended lease");
    let records = r.lease_records().await;
    assert_eq!(records.len(), 1, "only the renewed lease expired: {records:?}");
    r.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_lease_above_the_maximum_or_malformed_is_refused_in_the_envelope() {
    let sim = simulator(7321, sim::Faults::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir);
    let r = rig("lease-max", &sim, &store, Duration::from_secs(3600)).await;
    let path = point_path(7321);
    for (body, reason) in [
        (json!({"value": 1.0, "priority": 8, "lease": "2h"}), "at most 1h"),
        (json!({"value": 1.0, "priority": 8, "lease": "soon"}), "invalid duration"),
        (json!({"value": 1.0, "priority": 8, "lease": 60}), "duration"),
        (json!({"value": 1.0, "lease": "10m"}), "needs a priority"),
        (json!({"value": null, "priority": 8, "lease": "10m"}), "no lease"),
    ] {
        let (s, e) = r.put(&path, &body).await;
        assert_eq!(s, 422, "{body}: {e}");
        assert_eq!(e["error"]["code"], "VALIDATION_FAILED", "{e}");
        assert_eq!(e["error"]["status"], 422);
        let fields = e["error"]["details"]["fields"].as_array().cloned().unwrap_or_default();
        assert!(
            fields.iter().any(|f| f["field"] == "lease" && f["reason"].as_str().is_some_and(|t| t.contains(reason))),
            "{body}: {e}"
        );
    }
    assert_eq!(slot(&sim, 7321, 8).await, Value::Null, "nothing was written");
    let (_, list) = r.get("/api/v1/leases").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    let (s, _) = r.put(&path, &json!({"value": 1.0, "priority": 8, "lease": "1h"})).await;
    assert_eq!(s, 200, "the maximum itself is taken");
    r.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn leases_survive_a_restart_of_the_plant_on_the_same_store() {
    let sim = simulator(7331, sim::Faults::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir);
    let r = rig("lease-restart", &sim, &store, DAY).await;
    let path = point_path(7331);
    let (s, _) = r.put(&path, &json!({"value": 5.0, "priority": 8, "lease": "1s"})).await;
    assert_eq!(s, 200);
    let (s, _) = r.put(&path, &json!({"value": 6.0, "priority": 9, "lease": "6s"})).await;
    assert_eq!(s, 200);
    let granted = tokio::time::Instant::now();
    // plantwatch goes away before the first lease runs out
    r.stop().await;
    drop(store);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(slot(&sim, 7331, 8).await, Value::Real(5.0), "nobody relinquished it while plantwatch was down");

    let store = tokio::task::spawn_blocking({
        let path = dir.path().join("store");
        move || Store::open(&StoreConfig::new(path))
    })
    .await
    .expect("join")
    .expect("store reopened");
    let r = rig("lease-restart", &sim, &store, DAY).await;
    // the expired one at once, the other still runs
    assert!(slot_becomes(&sim, 7331, 8, &Value::Null, Duration::from_secs(4)).await, "expired: relinquished at start");
    assert_eq!(slot(&sim, 7331, 9).await, Value::Real(6.0), "unexpired: still held");
    let (_, list) = r.get("/api/v1/leases").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["priority"], 9);
    // ...and runs out on time
    assert!(
        slot_becomes(&sim, 7331, 9, &Value::Null, Duration::from_secs(8)).await,
        "unexpired: relinquished at its end"
    );
    assert!(granted.elapsed() >= Duration::from_millis(5900), "not before its end: {:?}", granted.elapsed());
    let records = r.lease_records().await;
    let slots: Vec<u64> = records.iter().filter_map(|e| e["priority"].as_u64()).collect();
    assert_eq!(slots, vec![8, 9], "{records:?}");
    assert!(records.iter().all(|e| e["action"] == "expired"));
    r.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_device_that_comes_back_without_the_leased_command_gets_it_written_again() {
    // The device vanishes for 3.5 s every 5 s (first at about 5.8 s): long
    // enough to be offline (3 timeouts of 600 ms), and comes back restarted:
    // its Priority_Array empty.
    let churn = sim::Churn {
        outage: sim::Outage { every: Duration::from_secs(5), length: Duration::from_millis(3500) },
        on_return: sim::OnReturn::Restart,
    };
    let sim = simulator(7351, sim::Faults { churn: Some(churn), ..sim::Faults::default() }).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir);
    let r = rig("lease-back", &sim, &store, DAY).await;
    let path = point_path(7351);
    let (s, w) = r.put(&path, &json!({"value": 42.0, "priority": 8, "lease": "10m"})).await;
    assert_eq!(s, 200, "{w}");
    // gone, back without the command, then written again by plantwatch
    let lost = slot_becomes(&sim, 7351, 8, &Value::Null, Duration::from_secs(10)).await;
    assert!(lost, "the device restarted and lost the command");
    let back = slot_becomes(&sim, 7351, 8, &Value::Real(42.0), Duration::from_secs(10)).await;
    assert!(back, "plantwatch wrote it again");
    let (_, list) = r.get("/api/v1/leases").await;
    assert!(list["items"][0]["reasserts"].as_u64().is_some_and(|n| n >= 1), "{list}");
    let records = r.lease_records().await;
    assert!(
        records.iter().any(|e| e["action"] == "reasserted" && e["outcome"] == "accepted" && e["new_value"] == 42.0),
        "{records:?}"
    );
    let (_, m) = r.get("/metrics").await;
    let text = m.as_str().unwrap_or_default();
    assert!(!text.contains("plantwatch_lease_reasserts_total{network=\"lease-back\"} 0"), "{text}");
    assert!(text.contains("plantwatch_lease_reasserts_total{network=\"lease-back\"}"), "{text}");
    r.stop().await;
    sim.shutdown().await;
}
