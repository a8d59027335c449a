//! The OpenAPI document against the running API: every answer of every
//! route, success and error, is checked against the schema the document
//! gives for that route and status (objects closed: a field the document
//! does not name fails), and the documented filters, sort keys and enums are
//! the ones the API accepts. The document's examples are checked against
//! their schemas too.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use plantwatch::api::{self, ApiState, NetworkInfo};
use plantwatch_actors::bacnet::Address;
use plantwatch_actors::plant::model::Quality;
use plantwatch_actors::sim::{self, Layout, SimConfig};
use plantwatch_actors::store::{HistoryRow, PointKey, Store, StoreConfig};
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------- a JSON Schema check (the subset utoipa writes)

/// Checks `v` against `schema`, resolving `$ref`s in `doc`. Objects are
/// closed: a key the schema does not name is an error.
fn check(doc: &Json, schema: &Json, v: &Json, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            errors.push(format!("{at}: unresolved {r}"));
        } else {
            check(doc, target, v, at, errors);
        }
        return;
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|o| {
                let mut e = Vec::new();
                check(doc, o, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!("{at}: {v} matches {matching} of oneOf {}", Json::Array(options.clone())));
        }
        return;
    }
    if let Some(all) = schema["allOf"].as_array() {
        all.iter().for_each(|s| check(doc, s, v, at, errors));
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Json::String(t) => vec![t.as_str()],
        Json::Array(ts) => ts.iter().filter_map(Json::as_str).collect(),
        _ => vec![],
    };
    let is = |t: &str| match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        errors.push(format!("{at}: {v} is not {types:?}"));
        return;
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(v) {
            errors.push(format!("{at}: {v} is not one of {values:?}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|m| n < m) || schema["maximum"].as_f64().is_some_and(|m| n > m) {
            errors.push(format!("{at}: {n} out of [{}, {}]", schema["minimum"], schema["maximum"]));
        }
    }
    if let (Some(s), Some("date-time")) = (v.as_str(), schema["format"].as_str()) {
        if humantime::parse_rfc3339(s).is_err() {
            errors.push(format!("{at}: {s} is not an RFC 3339 time"));
        }
    }
    if let (Some(s), Some(max)) = (v.as_str(), schema["maxLength"].as_u64()) {
        if s.chars().count() as u64 > max {
            errors.push(format!("{at}: longer than {max}"));
        }
    }
    if let (Some(items), Some(item)) = (v.as_array(), schema.get("items")) {
        for (i, x) in items.iter().enumerate() {
            check(doc, item, x, &format!("{at}[{i}]"), errors);
        }
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema["properties"].as_object()) {
        for r in schema["required"].as_array().into_iter().flatten().filter_map(Json::as_str) {
            if !obj.contains_key(r) {
                errors.push(format!("{at}: required {r} is missing"));
            }
        }
        for (k, x) in obj {
            match props.get(k) {
                Some(s) => check(doc, s, x, &format!("{at}.{k}"), errors),
                None => errors.push(format!("{at}: {k} is not in the document")),
            }
        }
    }
}

fn conforms(doc: &Json, schema: &Json, v: &Json, what: &str) {
    let mut errors = Vec::new();
    check(doc, schema, v, "$", &mut errors);
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{v:#}");
}

/// The template of a concrete path, by the API's own table.
fn template(path: &str) -> &'static str {
    api::route_template(path.split('?').next().unwrap_or(path))
}

// ---------------------------------------------------------------- the app

struct App {
    base: String,
    client: reqwest::Client,
    doc: Json,
    network: String,
    _store_dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Answer {
    status: u16,
    content_type: String,
    request_id: Option<String>,
    body: Json,
}

impl App {
    async fn send(&self, method: &str, path: &str, body: Option<Json>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let header = |h: &str| r.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = header("content-type").unwrap_or_default();
        let request_id = header("x-request-id");
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Json::String(text));
        Answer { status, content_type, request_id, body }
    }

    /// Sends a request and checks its answer against what the document says
    /// this route answers with this status.
    async fn conforming(&self, method: &str, path: &str, body: Option<Json>, status: u16) -> Json {
        let a = self.send(method, path, body).await;
        let what = format!("{method} {path}");
        assert_eq!(a.status, status, "{what}: {:#}", a.body);
        assert!(a.request_id.is_some(), "{what}: X-Request-Id");
        let op = &self.doc["paths"][template(path)][method.to_lowercase()];
        assert!(op.is_object(), "{what}: documented");
        let response = &op["responses"][status.to_string()];
        assert!(response.is_object(), "{what}: status {status} documented");
        let content = response["content"].as_object().expect("content");
        let (documented_type, media) = content.iter().next().expect("a media type");
        assert_eq!(a.content_type, *documented_type, "{what}");
        conforms(&self.doc, &media["schema"], &a.body, &what);
        if status >= 400 {
            // the code is one this route documents under this status
            let code = a.body["error"]["code"].as_str().expect("code");
            assert!(media["examples"].get(code).is_some(), "{what}: {code} documented under {status}");
            assert_eq!(a.body["error"]["request_id"].as_str(), a.request_id.as_deref());
        }
        a.body
    }
}

async fn spawn_app(
    first_instance: u32,
    bind: &str,
    name: &str,
) -> (App, plantwatch_actors::plant::supervisor::Plant, sim::Simulator) {
    let sim = sim::start(SimConfig {
        devices: 2,
        objects: 1,
        bind: bind.parse().expect("addr"),
        layout: Layout::Ip,
        first_instance,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let devices = sim.devices().iter().map(|d| (d.instance, Address { ip: d.address, route: d.route })).collect();
    let setup = crate::plant::Setup { broadcast: sim.broadcast_address(), ..crate::plant::Setup::default() };
    let (plant, _h) = crate::plant::plant_for(name, devices, setup).await;
    let store_dir = tempfile::tempdir().expect("tempdir");
    let sc = StoreConfig::new(store_dir.path().join("store"));
    let store = tokio::task::spawn_blocking(move || Store::open(&sc)).await.expect("join").expect("store");
    let leases = plantwatch::lease::Leases::load(store.clone(), plant.handle.clone(), Duration::from_secs(3))
        .await
        .expect("leases");
    let state = ApiState {
        plant: plant.handle.clone(),
        store,
        networks: Arc::new(vec![NetworkInfo {
            name: name.to_string(),
            bind: "127.0.0.1:47808".parse().expect("addr"),
            discover: false,
        }]),
        request_timeout: Duration::from_secs(3),
        ready: Arc::new(AtomicBool::new(true)),
        security: plantwatch::api::Security::open(),
        http: api::HttpSettings::default(),
        max_points: 25_000,
        site: None,
        leases,
        max_lease: Duration::from_secs(86_400),
    };
    let listener = api::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let all = sim.devices().iter().map(|d| d.instance).collect::<Vec<_>>();
    let good = plant
        .handle
        .directory
        .wait_for(Duration::from_secs(10), |d| {
            all.iter().all(|i| {
                d.get(*i).is_some_and(|s| !s.points.is_empty() && s.points.iter().all(|p| p.quality == Quality::Good))
            })
        })
        .await;
    assert!(good, "the simulated devices are online");
    // some history of analog-input:1 of the first device
    let now = SystemTime::now();
    let rows = (0..5u32)
        .map(|i| HistoryRow {
            point: PointKey::new(name, first_instance, "analog-input:1"),
            at: now - Duration::from_secs(60 * u64::from(5 - i)),
            value: 21.0 + f64::from(i) / 10.0,
            quality: 0,
        })
        .chain(std::iter::once(HistoryRow {
            point: PointKey::new(name, first_instance, "binary-output:1"),
            at: now - Duration::from_secs(30),
            value: 1.0,
            quality: 0,
        }))
        .collect();
    state.store.record_history(rows).await.expect("history");
    let client = crate::support::http_client();
    let doc: Json = client
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("the document is JSON");
    let app = App { base, client, doc, network: name.to_string(), _store_dir: store_dir, _stop: stop };
    (app, plant, sim)
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn every_answer_of_the_running_api_matches_the_document() {
    let (app, plant, sim) = spawn_app(5101, "127.0.5.2:0", "oapi").await;
    let (d, net) = (5101, app.network.clone());

    // service
    app.conforming("GET", "/health", None, 200).await;
    app.conforming("GET", "/ready", None, 200).await;
    app.conforming("GET", "/metrics", None, 200).await;
    app.conforming("GET", "/api/v1/openapi.json", None, 200).await;

    // reads
    let nets = app.conforming("GET", "/api/v1/networks", None, 200).await;
    assert_eq!(nets["items"][0]["devices"], 2);
    let page = app.conforming("GET", "/api/v1/devices?limit=1", None, 200).await;
    let cursor = page["next_cursor"].as_str().expect("a next page").to_string();
    app.conforming("GET", &format!("/api/v1/devices?limit=1&cursor={cursor}"), None, 200).await;
    app.conforming("GET", &format!("/api/v1/devices?network={net}&status=online&q=&sort=-name"), None, 200).await;
    app.conforming("GET", &format!("/api/v1/devices/{d}"), None, 200).await;
    let points = app.conforming("GET", &format!("/api/v1/devices/{d}/points"), None, 200).await;
    assert_eq!(points["items"].as_array().map(Vec::len), Some(7), "every kind of object is checked");
    app.conforming(
        "GET",
        &format!("/api/v1/devices/{d}/points?type=binary-output&quality=good&sort=-updated_at&limit=3"),
        None,
        200,
    )
    .await;
    for object in ["analog-input:1", "binary-input:1", "multi-state-value:1", "characterstring-value:1"] {
        app.conforming("GET", &format!("/api/v1/devices/{d}/points/{object}"), None, 200).await;
    }
    let live = app.conforming("GET", &format!("/api/v1/devices/{d}/points/analog-output:1?live=true"), None, 200).await;
    assert_eq!(live["live"], true);
    let h = app.conforming("GET", &format!("/api/v1/devices/{d}/points/analog-input:1/history"), None, 200).await;
    assert_eq!(h["items"].as_array().map(Vec::len), Some(5));
    let h =
        app.conforming("GET", &format!("/api/v1/devices/{d}/points/analog-input:1/history?limit=2"), None, 200).await;
    let cursor = h["next_cursor"].as_str().expect("a next page").to_string();
    app.conforming(
        "GET",
        &format!("/api/v1/devices/{d}/points/analog-input:1/history?limit=2&cursor={cursor}"),
        None,
        200,
    )
    .await;
    let h = app.conforming("GET", &format!("/api/v1/devices/{d}/points/binary-output:1/history"), None, 200).await;
    assert_eq!(h["items"][0]["value"], "active");
    app.conforming(
        "GET",
        &format!("/api/v1/devices/{d}/points/analog-input:1/history?from=2026-11-26T00:00:00Z&to=2026-11-26T03:00:00Z"),
        None,
        200,
    )
    .await;

    // writes: accepted, relinquished, invalid, refused by the device
    let ao = format!("/api/v1/devices/{d}/points/analog-output:1");
    let w = app.conforming("PUT", &ao, Some(json!({"value": 42.0, "priority": 8})), 200).await;
    assert_eq!((w["active_priority"].as_u64(), w["outcome"].as_str()), (Some(8), Some("accepted")), "{w}");
    app.conforming("PUT", &ao, Some(json!({"value": null, "priority": 8})), 200).await;
    let bo = format!("/api/v1/devices/{d}/points/binary-output:1");
    let w = app.conforming("PUT", &bo, Some(json!({"value": "active", "priority": 10})), 200).await;
    assert_eq!(w["present_value"], "active");
    let w = app.conforming("PUT", &ao, Some(json!({"value": 40.0, "priority": 12, "lease": "10m"})), 200).await;
    assert_eq!(w["lease"]["priority"], 12, "{w}");
    let p = app.conforming("GET", &ao, None, 200).await;
    assert_eq!(p["lease"]["priority"], 12, "{p}");
    app.conforming("GET", &format!("/api/v1/devices/{d}/points"), None, 200).await;
    let l = app.conforming("GET", "/api/v1/leases", None, 200).await;
    assert_eq!(l["items"].as_array().map(Vec::len), Some(1), "{l}");
    app.conforming("GET", &format!("/api/v1/leases?device={d}&limit=5"), None, 200).await;
    app.conforming("GET", "/api/v1/leases?device=x", None, 400).await;
    app.conforming("PUT", &ao, Some(json!({"value": 1.0, "priority": 8, "lease": "48h"})), 422).await;
    app.conforming("PUT", &ao, Some(json!({"value": "hot", "priority": 8})), 422).await;
    app.conforming("PUT", &ao, Some(json!({"value": 1, "priority": 17})), 422).await;
    let msv = format!("/api/v1/devices/{d}/points/multi-state-value:1");
    app.conforming("PUT", &msv, Some(json!({"value": 0})), 422).await;
    app.conforming("PUT", &ao, Some(json!({"value": 1, "colour": "red"})), 400).await;
    app.conforming("PUT", &ao, Some(json!([1, 2])), 400).await;
    let big = json!({"value": "x".repeat(20_000)});
    app.conforming("PUT", &ao, Some(big), 413).await;
    let r = app
        .client
        .put(format!("{}{ao}", app.base))
        .header("content-type", "text/plain")
        .body("{\"value\": 1}")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 415);

    // discovery
    let found = app.conforming("POST", "/api/v1/discovery", Some(json!({"network": net, "wait_ms": 500})), 200).await;
    assert!(
        found["items"].as_array().is_some_and(|i| i.iter().any(|f| f["instance"] == d && f["known"] == true)),
        "{found}"
    );
    app.conforming("POST", "/api/v1/discovery", Some(json!({"network": "nowhere"})), 404).await;
    app.conforming("POST", "/api/v1/discovery", Some(json!({"wait_ms": 5})), 422).await;
    app.conforming("POST", "/api/v1/discovery", Some(json!({"colour": 1})), 400).await;

    // the audit log has every attempt
    let audit = app.conforming("GET", "/api/v1/audit?limit=1000", None, 200).await;
    let outcomes: Vec<&str> =
        audit["items"].as_array().expect("items").iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"accepted") && outcomes.contains(&"invalid"), "{outcomes:?}");
    let page = app.conforming("GET", "/api/v1/audit?limit=1", None, 200).await;
    assert!(page["next_cursor"].is_string());

    // errors, each documented for its route and status
    app.conforming("GET", "/api/v1/devices?limit=0", None, 400).await;
    app.conforming("GET", "/api/v1/devices?bogus=1", None, 400).await;
    app.conforming("GET", "/api/v1/devices?network=nowhere", None, 404).await;
    app.conforming("GET", "/api/v1/devices/4194303", None, 400).await;
    app.conforming("GET", "/api/v1/devices/9999", None, 404).await;
    app.conforming("GET", &format!("/api/v1/devices/{d}/points?quality=great"), None, 400).await;
    app.conforming("GET", &format!("/api/v1/devices/{d}/points/analog-input:99"), None, 404).await;
    app.conforming("GET", &format!("/api/v1/devices/{d}/points/analog-input"), None, 400).await;
    app.conforming("GET", &format!("/api/v1/devices/{d}/points/analog-input:1?live=maybe"), None, 400).await;
    app.conforming("GET", &format!("/api/v1/devices/{d}/points/analog-input:1/history?from=yesterday"), None, 400)
        .await;
    app.conforming("GET", "/api/v1/audit?cursor=zz", None, 400).await;
    app.conforming("PUT", "/api/v1/devices/9999/points/analog-output:1", Some(json!({"value": 1})), 404).await;

    // outside any route: still the envelope
    let envelope = json!({"$ref": "#/components/schemas/ErrorEnvelope"});
    for (method, path, status) in [("GET", "/nope", 404), ("DELETE", "/api/v1/devices", 405), ("POST", "/health", 405)]
    {
        let a = app.send(method, path, None).await;
        assert_eq!(a.status, status, "{method} {path}");
        conforms(&app.doc, &envelope, &a.body, path);
    }
    plant.shutdown().await;
    sim.shutdown().await;
}

/// The `sort` keys and the `status`/`quality` values the document lists are
/// the ones the API takes: each is accepted, and the API's own list of them
/// (in the error for a wrong one) is the documented list.
#[tokio::test]
async fn the_documented_filters_are_the_ones_the_api_takes() {
    let (app, plant, sim) = spawn_app(5201, "127.0.5.12:0", "oapif").await;
    let enum_of = |path: &str, name: &str| -> Vec<String> {
        let p = app.doc["paths"][path]["get"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{path} ?{name}"));
        let schema = match p["schema"]["$ref"].as_str() {
            Some(r) => app.doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")].clone(),
            None => p["schema"].clone(),
        };
        schema["enum"].as_array().expect("an enum").iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
    };
    let cases = [
        ("/api/v1/devices", "/api/v1/devices", "sort"),
        ("/api/v1/devices", "/api/v1/devices", "status"),
        ("/api/v1/devices/{instance}/points", "/api/v1/devices/5201/points", "sort"),
        ("/api/v1/devices/{instance}/points", "/api/v1/devices/5201/points", "quality"),
    ];
    for (template, path, name) in cases {
        let documented = enum_of(template, name);
        for v in &documented {
            app.conforming("GET", &format!("{path}?{name}={v}"), None, 200).await;
        }
        let wrong = app.conforming("GET", &format!("{path}?{name}=bogus"), None, 400).await;
        let message = wrong["error"]["details"]["fields"][0]["reason"].as_str().expect("reason");
        let listed = message.trim_start_matches("must be one of ").trim_end_matches(" (with - for descending)");
        let mut theirs: Vec<String> = listed.split(", ").map(str::to_string).collect();
        if name == "sort" {
            theirs = theirs.iter().flat_map(|k| [k.clone(), format!("-{k}")]).collect();
        }
        assert_eq!(documented, theirs, "{path} ?{name}");
    }
    // every documented query parameter of every GET route is taken (unknown ones are refused)
    let doc = app.doc.clone();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        let Some(params) = item["get"]["parameters"].as_array() else { continue };
        let path = template.replace("{instance}", "5201").replace("{object}", "analog-input:1");
        for p in params.iter().filter(|p| p["in"] == "query" && p["name"] != "cursor") {
            let example = match &p["example"] {
                // the document's example network is not this test's
                Json::String(s) if s == "bldg-a" => app.network.clone(),
                Json::String(s) => s.clone(),
                Json::Null => continue,
                other => other.to_string(),
            };
            let name = p["name"].as_str().expect("name");
            let a = app.send("GET", &format!("{path}?{name}={example}"), None).await;
            assert_eq!(a.status, 200, "{path}?{name}={example}: {:#}", a.body);
        }
    }
    plant.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn the_documents_examples_match_their_schemas() {
    let doc = serde_json::to_value(api::openapi::document()).expect("document");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let mut media = Vec::new();
            if let Some(c) = op["requestBody"]["content"].as_object() {
                media.extend(c.values().map(|m| ("body".to_string(), m)));
            }
            for (status, r) in op["responses"].as_object().expect("responses") {
                if let Some(c) = r["content"].as_object() {
                    media.extend(c.values().map(|m| (status.clone(), m)));
                }
            }
            for (what, m) in media {
                for (name, ex) in m["examples"].as_object().into_iter().flatten() {
                    conforms(&doc, &m["schema"], &ex["value"], &format!("{method} {path} {what} example {name}"));
                    checked += 1;
                }
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if !p["example"].is_null() {
                    conforms(&doc, &p["schema"], &p["example"], &format!("{method} {path} ?{}", p["name"]));
                }
            }
        }
    }
    assert!(checked > 40, "{checked} examples");

    // and the check itself finds what it should
    let point = json!({"$ref": "#/components/schemas/PointView"});
    let good = api::view::point(
        &plantwatch_actors::plant::model::Point::new(
            plantwatch_actors::bacnet::ObjectId::new(0, 1),
            Duration::from_secs(10),
            false,
        ),
        0,
    );
    conforms(&doc, &point, &good, "a fresh point");
    let wrong = |edit: &dyn Fn(&mut Json)| {
        let mut v = good.clone();
        edit(&mut v);
        let mut errors = Vec::new();
        check(&doc, &point, &v, "$", &mut errors);
        assert!(!errors.is_empty(), "{v} passed");
    };
    wrong(&|v| v["quality"] = json!("great"));
    wrong(&|v| v["colour"] = json!("red"));
    wrong(&|v| v["updated_at"] = json!("yesterday"));
    wrong(&|v| v["commandable"] = json!(1));
    wrong(&|v| v["value"] = json!({"bytes": "00"}));
    wrong(&|v| {
        v.as_object_mut().map(|m| m.remove("units"));
    });
}
