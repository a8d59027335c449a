//! The HTTP API on a real listener (port 0) in front of a real plant,
//! simulator and store: every route, the error envelope and codes,
//! pagination under change, writes with audit, and hostile paths and queries.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use plantwatch::api::{self, ApiState, NetworkInfo, Security};
use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::{Address, ObjectId};
use plantwatch_actors::plant::model::{DeviceSnapshot, DeviceStatus, Point, Quality};
use plantwatch_actors::plant::{Directory, PlantHandle, SupervisionStats};
use plantwatch_actors::sim::{self, Layout, SimConfig};
use plantwatch_actors::store::{Store, StoreConfig};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

pub struct App {
    pub base: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl App {
    pub async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Json) {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.json::<Json>().await.expect("a JSON body");
        (status, headers, body)
    }

    pub async fn put(&self, path: &str, body: &Json) -> (u16, Json) {
        let r = self.client.put(format!("{}{path}", self.base)).json(body).send().await.expect("request");
        (r.status().as_u16(), r.json().await.expect("json"))
    }

    async fn post(&self, path: &str, body: &Json) -> (u16, Json) {
        let r = self.client.post(format!("{}{path}", self.base)).json(body).send().await.expect("request");
        (r.status().as_u16(), r.json().await.expect("json"))
    }
}

/// Serves the API over `handle` with a fresh store, without authentication.
pub async fn serve_api(handle: PlantHandle, networks: Vec<NetworkInfo>) -> App {
    serve_api_with(handle, networks, |_| Security::open()).await
}

/// Serves the API with the security `make` builds on the fresh store.
pub async fn serve_api_with(
    handle: PlantHandle,
    networks: Vec<NetworkInfo>,
    make: impl FnOnce(&Store) -> Security,
) -> App {
    serve_api_full(handle, networks, make, 25_000).await
}

/// Serves the API with the security `make` builds and `max_points` point values at /metrics.
pub async fn serve_api_full(
    handle: PlantHandle,
    networks: Vec<NetworkInfo>,
    make: impl FnOnce(&Store) -> Security,
    max_points: usize,
) -> App {
    serve_api_at_site(handle, networks, make, max_points, None).await
}

/// As [`serve_api_full`], with `server.site` set to `site`.
pub async fn serve_api_at_site(
    handle: PlantHandle,
    networks: Vec<NetworkInfo>,
    make: impl FnOnce(&Store) -> Security,
    max_points: usize,
    site: Option<&str>,
) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&StoreConfig::new(dir.path().join("store"))).expect("store");
    let leases =
        plantwatch::lease::Leases::start(store.clone(), handle.clone(), Duration::from_secs(5)).await.expect("leases");
    let state = ApiState {
        plant: handle,
        store: store.clone(),
        networks: Arc::new(networks),
        request_timeout: Duration::from_secs(5),
        ready: Arc::new(AtomicBool::new(true)),
        security: make(&store),
        http: api::HttpSettings::default(),
        max_points,
        site: site.map(str::to_string),
        leases,
        max_lease: Duration::from_secs(86_400),
    };
    let listener = api::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    App { base, client: crate::support::http_client(), _dir: dir, _stop: stop }
}

async fn spawn_app(
    first_instance: u32,
    name: &str,
) -> (App, plantwatch_actors::plant::supervisor::Plant, sim::Simulator) {
    spawn_app_with(first_instance, name, 25_000).await
}

/// Three simulated devices from `first_instance`, a plant of network `name`
/// watching them and the API (no keys, `max_points` at /metrics), once
/// every point reads good.
pub async fn spawn_app_with(
    first_instance: u32,
    name: &str,
    max_points: usize,
) -> (App, plantwatch_actors::plant::supervisor::Plant, sim::Simulator) {
    spawn_app_at_site(first_instance, name, max_points, None).await
}

/// As [`spawn_app_with`], with `server.site` set to `site`.
pub async fn spawn_app_at_site(
    first_instance: u32,
    name: &str,
    max_points: usize,
    site: Option<&str>,
) -> (App, plantwatch_actors::plant::supervisor::Plant, sim::Simulator) {
    let sim = sim::start(SimConfig {
        devices: 3,
        objects: 1,
        bind: "127.0.0.1:0".parse().expect("addr"),
        layout: Layout::Port,
        first_instance,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let devices = sim.devices().iter().map(|d| (d.instance, Address { ip: d.address, route: d.route })).collect();
    let (plant, _h) = crate::plant::plant_for(name, devices, crate::plant::Setup::default()).await;
    let networks = vec![NetworkInfo { name: name.into(), bind: "127.0.0.1:0".parse().expect("addr"), discover: false }];
    let app = serve_api_at_site(plant.handle.clone(), networks, |_| Security::open(), max_points, site).await;
    let dir = plant.handle.directory.clone();
    let all = sim.devices().iter().map(|d| d.instance).collect::<Vec<_>>();
    let good = dir
        .wait_for(Duration::from_secs(10), |d| {
            all.iter().all(|i| {
                d.get(*i).is_some_and(|s| !s.points.is_empty() && s.points.iter().all(|p| p.quality == Quality::Good))
            })
        })
        .await;
    assert!(good);
    (app, plant, sim)
}

#[tokio::test]
async fn the_read_routes_serve_the_cached_plant() {
    let (app, plant, sim) = spawn_app(4001, "api").await;
    let (status, _, body) = app.get("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _, body) = app.get("/ready").await;
    assert_eq!((status, body["devices"].as_u64()), (200, Some(3)));

    let (status, _, nets) = app.get("/api/v1/networks").await;
    assert_eq!(status, 200);
    assert_eq!(nets["items"][0]["name"], "api");
    assert_eq!(nets["items"][0]["devices"], 3);
    assert_eq!(nets["items"][0]["by_status"]["online"], 3);

    let (status, _, body) = app.get("/api/v1/devices").await;
    assert_eq!(status, 200);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["instance"], 4001);
    assert_eq!(items[0]["status"], "online");
    assert_eq!(items[0]["points"], 7);
    assert_eq!(items[0]["capabilities"]["rpm"], true);
    assert_eq!(body["next_cursor"], Json::Null);
    let (_, _, by_network) = app.get("/api/v1/devices?network=api&status=online&sort=-instance").await;
    assert_eq!(by_network["items"][0]["instance"], 4003);

    let (status, _, dev) = app.get("/api/v1/devices/4002").await;
    assert_eq!((status, dev["instance"].as_u64()), (200, Some(4002)));
    let (status, _, points) = app.get("/api/v1/devices/4002/points").await;
    assert_eq!(status, 200);
    let pts = points["items"].as_array().expect("points");
    assert_eq!(pts.len(), 7);
    let ai = pts.iter().find(|p| p["object"] == "analog-input:1").expect("ai");
    assert_eq!((ai["units"].as_str(), ai["quality"].as_str()), (Some("degrees-celsius"), Some("good")));
    assert!(ai["value"].is_number() && ai["updated_at"].is_string());
    let bo = pts.iter().find(|p| p["object"] == "binary-output:1").expect("bo");
    assert!(bo["value"] == "active" || bo["value"] == "inactive", "{bo}");
    assert_eq!(bo["commandable"], true);
    let (_, _, only_bo) = app.get("/api/v1/devices/4002/points?type=binary-output&quality=good").await;
    assert_eq!(only_bo["items"].as_array().map(Vec::len), Some(1));

    // one point, cached and live
    let (status, _, one) = app.get("/api/v1/devices/4002/points/analog-value:1").await;
    assert_eq!((status, one["object"].as_str()), (200, Some("analog-value:1")));
    sim.set_present_value(4002, "analog-value:1".parse().expect("obj"), Value::Real(71.25)).await.expect("set");
    let (status, _, live) = app.get("/api/v1/devices/4002/points/analog-value:1?live=true").await;
    assert_eq!((status, live["value"].as_f64(), live["live"].as_bool()), (200, Some(71.25), Some(true)));

    // discovery on a network whose transport has no broadcast: an empty answer, not an error
    let (status, found) = app.post("/api/v1/discovery", &json!({"wait_ms": 200})).await;
    assert_eq!((status, found["network"].as_str()), (200, Some("api")), "{found}");

    // history: the polled values were recorded by the plant's history channel; the API
    // reads the store, which this test owns, so it answers an empty page
    let (status, _, h) = app.get("/api/v1/devices/4002/points/analog-input:1/history").await;
    assert_eq!((status, h["items"].as_array().map(Vec::len)), (200, Some(0)), "{h}");
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_come_in_the_envelope_with_the_request_id() {
    let (app, plant, sim) = spawn_app(4101, "apierr").await;
    let cases = [
        ("/nope", 404, "NOT_FOUND"),
        ("/api/v1/devices/9999", 404, "DEVICE_NOT_FOUND"),
        ("/api/v1/devices/4101/points/analog-input:99", 404, "POINT_NOT_FOUND"),
        ("/api/v1/devices?network=elsewhere", 404, "NETWORK_NOT_FOUND"),
        ("/api/v1/devices/abc", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices/4194303", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices/4101/points/analog-inptu:1", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?limit=0", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?limit=1001", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?status=sleeping", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?sort=color", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?cursor=zz", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?bogus=1", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices/4101/points?quality=perfect", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices/4101/points/analog-input:1/history?from=yesterday", 400, "INVALID_PARAMETER"),
    ];
    for (path, status, code) in cases {
        let (s, headers, body) = app.get(path).await;
        assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        assert_eq!(body["error"]["status"], status);
        let id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).expect("x-request-id");
        assert_eq!(body["error"]["request_id"], id, "{path}");
    }
    let (_, _, body) = app.get("/api/v1/devices?limit=0").await;
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "limit");
    // query parameters that do not parse, or are not known, are named too
    for (path, field) in [
        ("/api/v1/devices?bogus=1", "bogus"),
        ("/api/v1/devices?limit=abc", "limit"),
        ("/api/v1/devices/4101/points/analog-input:1?live=maybe", "live"),
    ] {
        let (s, _, body) = app.get(path).await;
        assert_eq!(s, 400, "{path}");
        assert_eq!(body["error"]["details"]["fields"][0]["field"], field, "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with(field)), "{path}: {body}");
    }

    // a wrong method is 405 in the envelope
    let r = app.client.delete(format!("{}/api/v1/devices", app.base)).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 405);
    let body: Json = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");

    // bodies: not JSON, too large, wrong media type, unknown fields, bad values
    let url = format!("{}/api/v1/devices/4101/points/analog-output:1", app.base);
    let r = app.client.put(&url).header("content-type", "application/json").body("{nope").send().await.expect("r");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Json>().await.expect("json")["error"]["code"], "MALFORMED_BODY");
    let big = format!("{{\"value\": \"{}\"}}", "x".repeat(20_000));
    let r = app.client.put(&url).header("content-type", "application/json").body(big).send().await.expect("r");
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.json::<Json>().await.expect("json")["error"]["code"], "PAYLOAD_TOO_LARGE");
    let r = app.client.put(&url).header("content-type", "text/plain").body("{\"value\": 1}").send().await.expect("r");
    assert_eq!(r.status().as_u16(), 415, "{:?}", r.text().await);
    let (s, body) = app.put("/api/v1/devices/4101/points/analog-output:1", &json!({"value": 1, "colour": "red"})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (400, Some("MALFORMED_BODY")), "{body}");
    let (s, body) =
        app.put("/api/v1/devices/4101/points/analog-output:1", &json!({"value": "hot", "priority": 17})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (422, Some("VALIDATION_FAILED")), "{body}");
    let fields: Vec<&str> = body["error"]["details"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert!(fields.contains(&"priority") && fields.contains(&"value"), "{body}");
    let (s, body) = app.put("/api/v1/devices/4101/points/binary-output:1", &json!({"value": 2})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (422, Some("VALIDATION_FAILED")), "{body}");
    let (s, body) = app.put("/api/v1/devices/4101/points/multi-state-value:1", &json!({"value": 4})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (422, Some("VALIDATION_FAILED")), "{body}");
    // the device refuses: its BACnet class and code come back in details
    let (s, body) = app.put("/api/v1/devices/4101/points/analog-input:1", &json!({"value": 3.0})).await;
    assert_eq!((s, body["error"]["code"].as_str()), (502, Some("DEVICE_REFUSED")), "{body}");
    assert_eq!(body["error"]["details"]["bacnet"]["code"], 40, "write-access-denied: {body}");

    // a sane client request id is kept, a hostile one replaced
    let r =
        app.client.get(format!("{}/health", app.base)).header("x-request-id", "abc-123").send().await.expect("request");
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("abc-123"));
    let r = app
        .client
        .get(format!("{}/health", app.base))
        .header("x-request-id", "a b<script>")
        .send()
        .await
        .expect("request");
    let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("id").to_string();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_follow_the_priority_array_and_every_attempt_is_audited() {
    let (app, plant, sim) = spawn_app(4201, "apiwrite").await;
    let path = "/api/v1/devices/4202/points/analog-output:1";
    let ao: ObjectId = "analog-output:1".parse().expect("obj");
    let slots = || async {
        let v = sim
            .read_property(4202, ao, plantwatch_actors::bacnet::services::PropertyRef::new(87))
            .await
            .expect("priority array");
        v.elements().to_vec()
    };
    // 8, then 5 masks it, then relinquish 5 and 8
    let steps: [(Json, u8, Option<u8>, Option<f64>); 4] = [
        (json!(42.0), 8, Some(8), Some(42.0)),
        (json!(17.5), 5, Some(5), Some(17.5)),
        (Json::Null, 5, Some(8), Some(42.0)),
        (Json::Null, 8, None, None),
    ];
    for (value, priority, active, present) in steps {
        let (s, body) = app.put(path, &json!({"value": value, "priority": priority})).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["outcome"], "accepted");
        assert_eq!(body["active_priority"].as_u64().map(|p| p as u8), active, "{body}");
        let array = slots().await;
        // the answer and the device agree on which slot is in control
        let in_control = array.iter().position(|v| *v != Value::Null).map(|i| i as u8 + 1);
        assert_eq!(in_control, active, "{array:?}");
        if let Some(p) = present {
            assert_eq!(body["present_value"].as_f64(), Some(p), "{body}");
            assert_eq!(array[usize::from(active.unwrap_or(16)) - 1], Value::Real(p as f32));
        }
    }
    // a refused and an invalid attempt are audited too
    let (s, _) = app.put("/api/v1/devices/4202/points/analog-input:1", &json!({"value": 1.0})).await;
    assert_eq!(s, 502);
    let (s, _) = app.put(path, &json!({"value": "warm", "priority": 8})).await;
    assert_eq!(s, 422);
    let (_, _, audit) = app.get("/api/v1/audit?limit=3").await;
    let mut records = audit["items"].as_array().cloned().expect("items");
    let mut cursor = audit["next_cursor"].as_str().map(str::to_string);
    while let Some(c) = cursor {
        let (_, _, more) = app.get(&format!("/api/v1/audit?limit=3&cursor={c}")).await;
        records.extend(more["items"].as_array().cloned().unwrap_or_default());
        cursor = more["next_cursor"].as_str().map(str::to_string);
    }
    let outcomes: Vec<&str> = records.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes, vec!["accepted", "accepted", "accepted", "accepted", "refused", "invalid"], "{records:?}");
    assert!(records
        .iter()
        .all(|r| r["key_id"] == "anonymous" && r["request_id"].as_str().is_some_and(|s| !s.is_empty())));
    assert_eq!(records[0]["priority"], 8);
    assert_eq!(records[0]["new_value"], 42.0);
    assert_eq!(records[4]["error"]["bacnet"]["code"], 40);
    let seqs: Vec<u64> = records.iter().filter_map(|r| r["sequence"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    plant.shutdown().await;
    sim.shutdown().await;
}

fn fake_device(instance: u32, points: u32) -> DeviceSnapshot {
    let mut s = DeviceSnapshot::new(instance, "big", Address::direct("127.0.0.1:1".parse().expect("addr")), None);
    s.status = if instance.is_multiple_of(3) { DeviceStatus::Degraded } else { DeviceStatus::Online };
    s.label = Some(format!("Device {:04}", instance % 997));
    s.points = (1..=points)
        .map(|i| {
            let mut p = Point::new(ObjectId::new(0, i), Duration::from_secs(10), false);
            p.name = format!("P{i}");
            p
        })
        .collect();
    s
}

#[tokio::test]
async fn pagination_walks_1200_devices_and_points_without_duplicates_or_gaps_while_they_change() {
    let directory = Directory::default();
    for i in 1..=1200 {
        directory.publish(fake_device(i * 2, 0));
    }
    directory.publish(fake_device(999_999, 1100));
    let handle = PlantHandle { directory: directory.clone(), stats: Arc::new(SupervisionStats::default()) };
    let app = serve_api(
        handle,
        vec![NetworkInfo { name: "big".into(), bind: "127.0.0.1:0".parse().expect("a"), discover: false }],
    )
    .await;
    for sort in ["instance", "-instance", "name", "-status", "last_seen"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut added = 0u32;
        loop {
            let q = format!(
                "/api/v1/devices?limit=97&sort={sort}{}",
                cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default()
            );
            let (s, _, page) = app.get(&q).await;
            assert_eq!(s, 200, "{page}");
            seen.extend(page["items"].as_array().expect("items").iter().filter_map(|d| d["instance"].as_u64()));
            // devices come and change while we walk
            added += 1;
            directory.publish(fake_device(100_000 + added * 2 + 1, 0));
            directory.set_status(4, DeviceStatus::Offline);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{sort}: duplicates");
        if sort != "-status" {
            assert!((1..=1200u64).all(|i| seen.contains(&(i * 2))), "{sort}: gaps");
        }
    }
    let mut points = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = format!(
            "/api/v1/devices/999999/points?limit=250{}",
            cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default()
        );
        let (_, _, page) = app.get(&q).await;
        points.extend(
            page["items"].as_array().expect("items").iter().filter_map(|p| p["object"].as_str().map(str::to_string)),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(points.len(), 1100);
    let (_, _, filtered) = app.get("/api/v1/devices?q=device%200004&limit=1000").await;
    assert!(filtered["items"]
        .as_array()
        .is_some_and(|d| !d.is_empty() && d.iter().all(|x| x["name"].as_str().is_some_and(|n| n.contains("0004")))));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// No path or query string gets a 5xx, and every error is the envelope.
    #[test]
    fn hostile_paths_and_queries_never_get_a_5xx(
        segs in proptest::collection::vec("[a-z0-9:%._~-]{0,12}", 0..6),
        query in "[a-z0-9=&%._~-]{0,40}",
        known in 0usize..6,
    ) {
        let rt = runtime();
        rt.block_on(async {
            let directory = Directory::default();
            directory.publish(fake_device(7, 3));
            let handle = PlantHandle { directory, stats: Arc::new(SupervisionStats::default()) };
            let app = serve_api(handle, Vec::new()).await;
            let prefixes = ["", "/api/v1/devices", "/api/v1/devices/7", "/api/v1/devices/7/points", "/api/v1/devices/7/points/analog-input:1", "/api/v1/audit"];
            let path = format!("{}/{}?{}", prefixes[known], segs.join("/"), query);
            let r = app.client.get(format!("{}{path}", app.base)).send().await.expect("request");
            let status = r.status().as_u16();
            let text = r.text().await.expect("body");
            prop_assert!(status < 500, "{path} -> {status} {text}");
            if status >= 400 {
                let body: Json = serde_json::from_str(&text).expect("an envelope");
                prop_assert!(body["error"]["code"].is_string(), "{path}: {text}");
            }
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------- security

struct Keys {
    admin: String,
    operator: String,
    read: String,
    revoked: String,
}

fn secured(read_per_s: f64, auth_failures_per_min: f64) -> (impl FnOnce(&Store) -> Security, Keys) {
    use plantwatch::api::auth::{generate, KeyRing, Role};
    let ring = KeyRing::default();
    let mut keys = Vec::new();
    for role in [Role::Admin, Role::Operator, Role::Read, Role::Admin] {
        let (k, r) = generate("test", role);
        ring.insert(r.clone());
        keys.push((k, r));
    }
    let (revoked, mut record) = keys.pop().expect("four keys");
    record.revoked = Some(1);
    ring.insert(record);
    let k = Keys { admin: keys[0].0.clone(), operator: keys[1].0.clone(), read: keys[2].0.clone(), revoked };
    let make = move |_store: &Store| Security {
        auth_enabled: true,
        metrics_public: true,
        keys: ring,
        limits: Arc::new(plantwatch::api::limits::Limits::new(read_per_s, 1000.0, auth_failures_per_min, 1.0)),
        stats: Arc::default(),
    };
    (make, k)
}

async fn status_of(
    app: &App,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<Json>,
) -> (u16, Json) {
    let mut r = app.client.request(method, format!("{}{path}", app.base));
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.json::<Json>().await.unwrap_or(Json::Null);
    (status, body)
}

fn plant_with_one_device() -> PlantHandle {
    let directory = Directory::default();
    let mut d = fake_device(7, 2);
    d.identity = Some(Default::default());
    directory.publish(d);
    PlantHandle { directory, stats: Arc::new(SupervisionStats::default()) }
}

#[tokio::test]
async fn no_bypass_gets_through_and_none_gets_a_5xx() {
    let (make, k) = secured(1e6, 1e6);
    let nets = vec![NetworkInfo { name: "n".into(), bind: "127.0.0.1:0".parse().expect("a"), discover: false }];
    let app = serve_api_with(plant_with_one_device(), nets, make).await;
    use reqwest::Method;
    // public routes need no key
    assert_eq!(status_of(&app, Method::GET, "/health", None, None).await.0, 200);
    assert_eq!(status_of(&app, Method::GET, "/api/v1/openapi.json", None, None).await.0, 200);
    // no key, a wrong key, a revoked key, a very long key, the key in the query string
    for (key, path) in [
        (None, "/api/v1/devices".to_string()),
        (Some("pw_0123"), "/api/v1/devices".to_string()),
        (Some(k.revoked.as_str()), "/api/v1/devices".to_string()),
        (Some(&*"k".repeat(5000)), "/api/v1/devices".to_string()),
        (None, format!("/api/v1/devices?api_key={}", k.admin)),
        (None, format!("/api/v1/devices?key={}", k.admin)),
        (None, format!("/api/v1/audit?token={}", k.admin)),
    ] {
        let (s, body) = status_of(&app, Method::GET, &path, key, None).await;
        assert_eq!((s, body["error"]["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{path}");
    }
    // the read role on every route that needs more
    let writes: [(Method, &str, Option<Json>); 6] = [
        (Method::PUT, "/api/v1/devices/7/points/analog-input:1", Some(json!({"value": 1.0}))),
        (Method::POST, "/api/v1/discovery", Some(json!({}))),
        (Method::GET, "/api/v1/audit", None),
        (Method::GET, "/api/v1/keys", None),
        (Method::POST, "/api/v1/keys", Some(json!({"name": "x", "role": "admin"}))),
        (Method::DELETE, "/api/v1/keys/abc", None),
    ];
    for (m, path, body) in writes.iter().cloned() {
        let (s, b) = status_of(&app, m.clone(), path, Some(&k.read), body).await;
        assert_eq!((s, b["error"]["code"].as_str()), (403, Some("FORBIDDEN")), "{m} {path}: {b}");
    }
    // the operator role on the admin routes
    for (m, path, body) in writes.iter().skip(2).cloned() {
        let (s, b) = status_of(&app, m.clone(), path, Some(&k.operator), body).await;
        assert_eq!(s, 403, "{m} {path}: {b}");
    }
    // case and encoding tricks in paths: never served with a weaker key
    for path in [
        "/API/v1/audit",
        "/api/v1/%61udit",
        "/api/v1//audit",
        "/api/v1/devices/../audit",
        "/api/v1/audit/",
        "/api/v1/keys/%2e%2e",
    ] {
        let (s, b) = status_of(&app, Method::GET, path, Some(&k.read), None).await;
        assert!(s == 403 || s == 404 || s == 405 || s == 400, "{path}: {s} {b}");
        let (s, _) = status_of(&app, Method::GET, path, None, None).await;
        assert!(s < 500 && s != 200, "{path}: {s}");
    }
    // oversized headers get nothing through, and no 5xx
    let big = "x".repeat(200_000);
    // (a closed connection is fine too)
    if let Ok(r) = app.client.get(format!("{}/api/v1/devices", app.base)).header("x-filler", big).send().await {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    // the right roles work
    assert_eq!(status_of(&app, Method::GET, "/api/v1/devices", Some(&k.read), None).await.0, 200);
    assert_eq!(status_of(&app, Method::GET, "/api/v1/audit", Some(&k.admin), None).await.0, 200);
}

#[tokio::test]
async fn keys_are_made_listed_and_revoked_through_the_api() {
    let (make, k) = secured(1e6, 1e6);
    let app = serve_api_with(plant_with_one_device(), Vec::new(), make).await;
    use reqwest::Method;
    let (s, made) =
        status_of(&app, Method::POST, "/api/v1/keys", Some(&k.admin), Some(json!({"name": "bms", "role": "read"})))
            .await;
    assert_eq!(s, 200, "{made}");
    let new_key = made["key"].as_str().expect("the key, shown once").to_string();
    let id = made["id"].as_str().expect("id").to_string();
    assert_eq!(status_of(&app, Method::GET, "/api/v1/devices", Some(&new_key), None).await.0, 200);
    let (_, list) = status_of(&app, Method::GET, "/api/v1/keys", Some(&k.admin), None).await;
    assert!(!list.to_string().contains(&new_key[3..]), "a listed key never shows its secret");
    assert!(list["items"].as_array().is_some_and(|l| l.iter().any(|x| x["id"] == id.as_str() && x["role"] == "read")));
    let (s, _) =
        status_of(&app, Method::POST, "/api/v1/keys", Some(&k.admin), Some(json!({"name": "bms", "role": "god"})))
            .await;
    assert_eq!(s, 422);
    let (s, revoked) = status_of(&app, Method::DELETE, &format!("/api/v1/keys/{id}"), Some(&k.admin), None).await;
    assert_eq!((s, revoked["revoked"].is_string()), (200, true), "{revoked}");
    // revocation takes effect on the next request
    assert_eq!(status_of(&app, Method::GET, "/api/v1/devices", Some(&new_key), None).await.0, 401);
    assert_eq!(status_of(&app, Method::DELETE, "/api/v1/keys/nope", Some(&k.admin), None).await.0, 404);
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers_refill_and_stay_per_key() {
    let (make, k) = secured(20.0, 3.0);
    let app = serve_api_with(plant_with_one_device(), Vec::new(), make).await;
    let get = |key: String| {
        let client = app.client.clone();
        let url = format!("{}/api/v1/devices", app.base);
        async move { client.get(url).header("authorization", format!("Bearer {key}")).send().await.expect("request") }
    };
    let first = get(k.read.clone()).await;
    let h = |r: &reqwest::Response, n: &str| {
        r.headers().get(n).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(h(&first, "ratelimit-limit"), Some(20));
    assert_eq!(h(&first, "ratelimit-remaining"), Some(19));
    assert!(h(&first, "ratelimit-reset").is_some());
    // 20 more empty the bucket; on a loaded machine it refills a token every
    // 50 ms meanwhile, so send until the 429 comes (at most 200: 10 s).
    let mut last = first;
    for _ in 0..200 {
        last = get(k.read.clone()).await;
        if last.status().as_u16() == 429 {
            break;
        }
    }
    assert_eq!(last.status().as_u16(), 429);
    assert!(h(&last, "retry-after").is_some_and(|s| s >= 1));
    assert_eq!(h(&last, "ratelimit-remaining"), Some(0));
    let body: Json = last.json().await.expect("json");
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    // another key from the same address is not limited
    assert_eq!(get(k.operator.clone()).await.status().as_u16(), 200);
    // the budget refills: 20 per second
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(get(k.read.clone()).await.status().as_u16(), 200);
    // the failed-authentication guard trips after 3 failures a minute, even for a good key then
    for _ in 0..3 {
        assert_eq!(get("pw_wrong".into()).await.status().as_u16(), 401);
    }
    let blocked = get(k.admin.clone()).await;
    assert_eq!(blocked.status().as_u16(), 429);
    assert!(h(&blocked, "retry-after").is_some());
    // public routes carry the headers too
    let health = app.client.get(format!("{}/health", app.base)).send().await.expect("health");
    assert!(h(&health, "ratelimit-limit").is_some());
}
