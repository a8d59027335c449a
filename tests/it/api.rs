//! The HTTP API on a real listener (port 0) in front of a real plant and
//! simulator: routes, the error envelope, request ids.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use plantwatch::api::{self, ApiState};
use plantwatch_actors::bacnet::Address;
use plantwatch_actors::plant::model::Quality;
use plantwatch_actors::sim::{self, Layout, SimConfig};
use serde_json::Value as Json;

struct App {
    base: String,
    client: reqwest::Client,
    _store_dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl App {
    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Json) {
        let r = self.client.get(format!("{}{path}", self.base)).send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.json::<Json>().await.expect("a JSON body");
        (status, headers, body)
    }
}

async fn spawn_app(
    first_instance: u32,
    name: &str,
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
    let ready = Arc::new(AtomicBool::new(true));
    let store_dir = tempfile::tempdir().expect("tempdir");
    let sc = plantwatch_actors::store::StoreConfig::new(store_dir.path().join("store"));
    let store = plantwatch_actors::store::Store::open(&sc).expect("store");
    let networks = Arc::new(vec![api::NetworkInfo {
        name: name.to_string(),
        bind: "127.0.0.1:47808".parse().expect("addr"),
        discover: false,
    }]);
    let state =
        ApiState { plant: plant.handle.clone(), store, networks, request_timeout: Duration::from_secs(3), ready };
    let listener = api::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
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
    (App { base, client: reqwest::Client::new(), _store_dir: store_dir, _stop: stop }, plant, sim)
}

#[tokio::test]
async fn the_read_routes_serve_the_cached_plant() {
    let (app, plant, sim) = spawn_app(4001, "api").await;
    let (status, _, body) = app.get("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    assert_eq!(app.get("/ready").await.0, 200);

    let (status, _, body) = app.get("/api/v1/devices").await;
    assert_eq!(status, 200);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["instance"], 4001);
    assert_eq!(items[0]["status"], "online");
    assert_eq!(items[0]["network"], "api");
    assert_eq!(items[0]["points"], 7);
    assert_eq!(items[0]["capabilities"]["rpm"], true);
    assert_eq!(body["next_cursor"], Json::Null);

    // pagination with an opaque cursor
    let (_, _, page1) = app.get("/api/v1/devices?limit=2").await;
    assert_eq!(page1["items"].as_array().map(Vec::len), Some(2));
    let cursor = page1["next_cursor"].as_str().expect("a next cursor");
    let (_, _, page2) = app.get(&format!("/api/v1/devices?limit=2&cursor={cursor}")).await;
    assert_eq!(page2["items"][0]["instance"], 4003);
    assert_eq!(page2["next_cursor"], Json::Null);
    let (_, _, online) = app.get("/api/v1/devices?status=offline").await;
    assert_eq!(online["items"].as_array().map(Vec::len), Some(0));

    let (status, _, dev) = app.get("/api/v1/devices/4002").await;
    assert_eq!((status, dev["instance"].as_u64()), (200, Some(4002)));
    let (status, _, points) = app.get("/api/v1/devices/4002/points").await;
    assert_eq!(status, 200);
    let pts = points["items"].as_array().expect("points");
    assert_eq!(pts.len(), 7);
    let ai = pts.iter().find(|p| p["object"] == "analog-input:1").expect("ai");
    assert_eq!(ai["units"], "degrees-celsius");
    assert_eq!(ai["quality"], "good");
    assert!(ai["value"].is_number() && ai["updated_at"].is_string());
    let bo = pts.iter().find(|p| p["object"] == "binary-output:1").expect("bo");
    assert!(bo["value"] == "active" || bo["value"] == "inactive", "{bo}");
    assert_eq!(bo["commandable"], true);
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_come_in_the_envelope_with_the_request_id() {
    let (app, plant, sim) = spawn_app(4101, "apierr").await;
    let cases = [
        ("/nope", 404, "NOT_FOUND"),
        ("/api/v1/devices/9999", 404, "DEVICE_NOT_FOUND"),
        ("/api/v1/devices/abc", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices/4194303", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?limit=0", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?limit=1001", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?status=sleeping", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?cursor=zz", 400, "INVALID_PARAMETER"),
        ("/api/v1/devices?bogus=1", 400, "INVALID_PARAMETER"),
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

    // a wrong method is 405 in the envelope
    let r = app.client.delete(format!("{}/api/v1/devices", app.base)).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 405);
    let body: Json = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");

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
