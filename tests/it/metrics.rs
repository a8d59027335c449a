//! `GET /metrics` in front of a real plant, simulator and store: the text is
//! well-formed Prometheus exposition, every family is documented in
//! docs/metrics.md, and the values are the ones the API shows.
//!
//! Event metrics live in the process's one recorder, shared by every test of
//! this binary: assertions on them are "at least", on this test's labels.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plantwatch_actors::sim;
use serde_json::{json, Value as Json};

use crate::api::App;

/// One sample: metric name and labels.
type Series = (String, BTreeMap<String, String>);

/// A parsed exposition: samples, and per family its HELP and TYPE lines.
#[derive(Default)]
struct Exposition {
    samples: Vec<(Series, f64)>,
    help: BTreeMap<String, usize>,
    types: BTreeMap<String, String>,
    type_lines: BTreeMap<String, usize>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut e = Exposition::default();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().expect("a name");
                *e.help.entry(name.to_string()).or_default() += 1;
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let (name, kind) = (it.next().expect("a name"), it.next().expect("a type"));
                e.types.insert(name.to_string(), kind.to_string());
                *e.type_lines.entry(name.to_string()).or_default() += 1;
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            e.samples.push(parse_sample(line));
        }
        e
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|((n, l), _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, v)| *v)
            .collect()
    }

    fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.get(name, labels);
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
        found[0]
    }

    /// The family a sample belongs to (histograms: without the suffix).
    fn family(&self, sample: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                if self.types.get(base).map(String::as_str) == Some("histogram") {
                    return base.to_string();
                }
            }
        }
        sample.to_string()
    }
}

fn parse_sample(line: &str) -> (Series, f64) {
    let (head, value) = line.rsplit_once(' ').expect("name and value");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
    };
    let Some((name, rest)) = head.split_once('{') else { return ((head.to_string(), BTreeMap::new()), value) };
    let body = rest.strip_suffix('}').expect("closing brace");
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label value of {key} in {line}");
        let mut v = String::new();
        loop {
            match chars.next().expect("closing quote") {
                '\\' => match chars.next().expect("escaped char") {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                '"' => break,
                c => v.push(c),
            }
        }
        labels.insert(key, v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    ((name.to_string(), labels), value)
}

/// Metric names in docs/metrics.md's tables.
fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(crate::support::repo().join("docs/metrics.md")).expect("docs/metrics.md");
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or("");
            first.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

async fn scrape(app: &App) -> (String, Exposition) {
    let r = app.client.get(format!("{}/metrics", app.base)).send().await.expect("scrape");
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text().await.expect("text");
    let e = Exposition::parse(&text);
    (text, e)
}

async fn plant_and_api(
    name: &str,
    first_instance: u32,
    max_points: usize,
) -> (App, plantwatch_actors::plant::supervisor::Plant, sim::Simulator) {
    plant_and_api_at_site(name, first_instance, max_points, None).await
}

/// As [`plant_and_api`], with `server.site` set to `site`.
async fn plant_and_api_at_site(
    name: &str,
    first_instance: u32,
    max_points: usize,
    site: Option<&str>,
) -> (App, plantwatch_actors::plant::supervisor::Plant, sim::Simulator) {
    // Before the plant starts: its transport records into this recorder.
    plantwatch::metrics::install();
    plantwatch::metrics::register_networks([name]);
    let (app, plant, sim) = crate::api::spawn_app_at_site(first_instance, name, max_points, site).await;
    let all: Vec<u32> = sim.devices().iter().map(|d| d.instance).collect();
    let good = plant
        .handle
        .directory
        .wait_for(Duration::from_secs(10), |d| {
            all.iter().all(|i| d.get(*i).is_some_and(|s| s.last_success_at.is_some()))
        })
        .await;
    assert!(good, "every device polled");
    (app, plant, sim)
}

#[tokio::test]
async fn metrics_show_the_plant_as_the_api_does() {
    let net = "metrics-a";
    let (app, plant, _sim) = plant_and_api(net, 6001, 25_000).await;
    // Some API traffic: a success, an error, and a write the device refuses
    // (the simulated analog value has no Description property).
    let (status, _, _) = app.get("/api/v1/devices/6001").await;
    assert_eq!(status, 200);
    let (status, _, _) = app.get("/api/v1/devices/6999").await;
    assert_eq!(status, 404);
    let (status, body) =
        app.put("/api/v1/devices/6001/points/analog-value:1", &json!({"value": "x", "property": "description"})).await;
    assert_eq!(status, 502, "{body}");

    let (text, m) = scrape(&app).await;

    // Well-formed: every family has one HELP and one TYPE, every sample a family.
    for (name, n) in &m.type_lines {
        assert_eq!(*n, 1, "TYPE of {name}");
        assert_eq!(m.help.get(name), Some(&1), "HELP of {name}");
    }
    for ((name, _), _) in &m.samples {
        let family = m.family(name);
        assert!(m.types.contains_key(&family), "{name} has no TYPE");
        assert!(family.starts_with("plantwatch_") || family.starts_with("process_"), "{family}");
    }
    // Every family is documented, and the documented ones are here (this
    // test makes every kind of event happen).
    let families: BTreeSet<String> = m.types.keys().cloned().collect();
    let docs = documented();
    let undocumented: Vec<_> = families.difference(&docs).collect();
    assert!(undocumented.is_empty(), "not in docs/metrics.md: {undocumented:?}");
    let missing: Vec<_> = docs.difference(&families).filter(|n| !n.starts_with("process_")).collect();
    assert!(missing.is_empty(), "documented but not exported: {missing:?}\n{text}");

    // Devices: the same as the API.
    assert_eq!(m.one("plantwatch_devices", &[("network", net), ("status", "online")]), 3.0);
    for status in ["enrolling", "degraded", "offline", "failed"] {
        assert_eq!(m.one("plantwatch_devices", &[("network", net), ("status", status)]), 0.0, "{status}");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    for instance in ["6001", "6002", "6003"] {
        let labels = [("network", net), ("device", instance)];
        let (_, _, device) = app.get(&format!("/api/v1/devices/{instance}")).await;
        assert_eq!(m.one("plantwatch_device_up", &labels), 1.0);
        let name = device["name"].as_str().expect("name");
        assert_eq!(m.one("plantwatch_device_info", &[("network", net), ("device", instance), ("name", name)]), 1.0);
        assert!(m.one("plantwatch_device_polls_total", &[("device", instance), ("outcome", "ok")]) >= 1.0);
        let last = m.one("plantwatch_device_last_success_timestamp_seconds", &labels);
        assert!((now - 60.0..=now + 1.0).contains(&last), "last success {last} vs now {now}");
        assert!(m.one("plantwatch_device_poll_duration_seconds", &labels) < 1.0);
        assert_eq!(m.one("plantwatch_device_consecutive_failures", &labels), 0.0);
        assert_eq!(Some(m.one("plantwatch_cov_silent_total", &labels)), device["counters"]["cov_silent"].as_f64());

        // Point values equal the API's (numbers; binary as 0/1).
        let (_, _, points) = app.get(&format!("/api/v1/devices/{instance}/points?limit=500")).await;
        let items = points["items"].as_array().expect("items");
        let mut numeric = 0;
        for p in items {
            let object = p["object"].as_str().expect("object");
            let exported = m.get("plantwatch_point_value", &[("device", instance), ("object", object)]);
            let expected = match &p["value"] {
                Json::Number(n) => n.as_f64(),
                Json::String(s) if s == "active" => Some(1.0),
                Json::String(s) if s == "inactive" => Some(0.0),
                _ => None,
            };
            match expected {
                Some(v) => {
                    numeric += 1;
                    assert_eq!(exported.len(), 1, "{instance} {object}");
                    // Values move between the API read and the scrape: same kind, close enough for
                    // binary and multi-state, present for analog.
                    if !object.starts_with("analog") {
                        assert_eq!(exported[0], v, "{instance} {object}");
                    }
                }
                None => assert!(exported.is_empty(), "{instance} {object} is not numeric: {exported:?}"),
            }
        }
        assert!(numeric >= 3, "{instance}: numeric points {numeric}");
    }
    let units = m.get("plantwatch_point_value", &[("device", "6001"), ("units", "degrees-celsius")]);
    assert!(!units.is_empty(), "analog points carry their units");
    assert_eq!(m.one("plantwatch_points_unexported", &[]), 0.0);

    // Bounded label sets exist at 0 before their first event, so that the
    // first one shows in rate() and increase().
    assert_eq!(m.one("plantwatch_writes_total", &[("network", net), ("outcome", "accepted")]), 0.0);
    assert_eq!(
        m.one(
            "plantwatch_bacnet_requests_total",
            &[("network", net), ("service", "write-property"), ("outcome", "timeout")]
        ),
        0.0
    );
    assert!(m.one("plantwatch_http_errors_total", &[("code", "STORE_UNAVAILABLE")]) >= 0.0);
    let cpu = m.one("process_cpu_seconds_total", &[]);
    assert!(cpu > 0.0 && cpu.fract() != 0.0, "CPU time in fractions of a second: {cpu}");

    // The refused write: counted as a write and as a device error.
    assert!(m.one("plantwatch_writes_total", &[("network", net), ("outcome", "refused")]) >= 1.0);
    assert!(m.one("plantwatch_device_errors_total", &[("device", "6001"), ("class", "property")]) >= 1.0);

    // BACnet: polls went out as RPM and came back; the histogram agrees with itself.
    let rpm = [("network", net), ("service", "read-property-multiple")];
    assert!(m.one("plantwatch_bacnet_requests_total", &[rpm[0], rpm[1], ("outcome", "ok")]) >= 3.0);
    let buckets = m.get("plantwatch_bacnet_request_duration_seconds_bucket", &rpm);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "buckets are cumulative: {buckets:?}");
    let count = m.one("plantwatch_bacnet_request_duration_seconds_count", &rpm);
    assert_eq!(buckets.last().copied(), Some(count));
    for family in [
        "plantwatch_bacnet_retries_total",
        "plantwatch_bacnet_malformed_frames_total",
        "plantwatch_poll_overruns_total",
    ] {
        assert_eq!(m.one(family, &[("network", net)]), 0.0, "{family}");
    }
    assert!(m.one("plantwatch_actor_heartbeat_age_seconds", &[("network", net)]) < 30.0);

    // HTTP: the requests above, by route template.
    let route = [("route", "/api/v1/devices/{instance}"), ("method", "GET")];
    assert!(m.one("plantwatch_http_requests_total", &[route[0], route[1], ("status", "200")]) >= 1.0);
    assert!(m.one("plantwatch_http_requests_total", &[route[0], route[1], ("status", "404")]) >= 1.0);
    assert!(m.one("plantwatch_http_errors_total", &[("code", "DEVICE_NOT_FOUND")]) >= 1.0);
    for reason in ["unauthenticated", "forbidden", "rate_limited"] {
        assert_eq!(m.one("plantwatch_http_rejected_total", &[("reason", reason)]), 0.0, "{reason}");
    }
    for (kind, reason) in [("device", "panic"), ("device", "error"), ("device", "frozen"), ("network", "failed")] {
        assert_eq!(m.one("plantwatch_actor_restarts_total", &[("kind", kind), ("reason", reason)]), 0.0);
    }
    assert_eq!(m.get("plantwatch_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), vec![1.0]);
    assert!(m.one("plantwatch_store_size_bytes", &[]) > 0.0);
    assert!(m.one("process_resident_memory_bytes", &[]) > 0.0);
    plant.shutdown().await;
}

#[tokio::test]
async fn point_values_stop_at_the_cap_and_the_rest_are_counted() {
    let (app, plant, _sim) = plant_and_api("metrics-cap", 6101, 5).await;
    let (_, m) = scrape(&app).await;
    let exported = m.get("plantwatch_point_value", &[("network", "metrics-cap")]).len();
    let left_out = m.one("plantwatch_points_unexported", &[]);
    assert_eq!(exported, 5);
    // 3 devices, each with one object of every simulated type; all but the
    // character strings are numeric or binary.
    let (_, _, points) = app.get("/api/v1/devices/6101/points?limit=500").await;
    let numeric = |p: &&Json| p["value"].is_number() || p["value"] == "active" || p["value"] == "inactive";
    let per_device = points["items"].as_array().expect("items").iter().filter(numeric).count();
    assert_eq!(exported as f64 + left_out, (3 * per_device) as f64);
    plant.shutdown().await;
}

#[tokio::test]
async fn a_device_that_stops_answering_is_down_with_no_values() {
    // A device that stops answering stays as a series at 0 (an alert can
    // fire on it) and its point values leave the scrape.
    let (app, plant, sim) = plant_and_api("metrics-gone", 6201, 25_000).await;
    sim.shutdown().await;
    let dir = plant.handle.directory.clone();
    let offline = dir
        .wait_for(Duration::from_secs(10), |d| {
            d.get(6201).is_some_and(|s| s.status == plantwatch_actors::plant::model::DeviceStatus::Offline)
        })
        .await;
    assert!(offline);
    let (_, m) = scrape(&app).await;
    assert_eq!(m.one("plantwatch_device_up", &[("network", "metrics-gone"), ("device", "6201")]), 0.0);
    assert!(m.one("plantwatch_device_consecutive_failures", &[("device", "6201")]) >= 1.0);
    assert!(m.one("plantwatch_devices", &[("network", "metrics-gone"), ("status", "offline")]) >= 1.0);
    assert!(m.get("plantwatch_point_value", &[("device", "6201")]).is_empty(), "no values without communication");
    assert!(m.one("plantwatch_device_errors_total", &[("device", "6201"), ("class", "timeout")]) >= 1.0);
    plant.shutdown().await;
}

#[tokio::test]
async fn a_site_labels_every_sample_and_changes_nothing_else() {
    // server.site: every sample carries site="...", events (from the
    // process's one recorder), state, devices, points and process alike, and
    // the exposition stays well-formed with the same families as without it.
    let (app, plant, _sim) = plant_and_api_at_site("metrics-site", 6301, 25_000, Some("bldg-east")).await;
    let (status, _, _) = app.get("/api/v1/devices/6301").await;
    assert_eq!(status, 200);
    let (text, m) = scrape(&app).await;
    assert!(!m.samples.is_empty());
    let unlabelled: Vec<_> =
        m.samples.iter().filter(|((_, l), _)| l.get("site").map(String::as_str) != Some("bldg-east")).collect();
    assert!(unlabelled.is_empty(), "samples without site=\"bldg-east\": {unlabelled:?}");
    for ((name, _), _) in &m.samples {
        assert!(m.types.contains_key(&m.family(name)), "{name} has no TYPE");
    }
    for (name, n) in &m.type_lines {
        assert_eq!(*n, 1, "TYPE of {name}");
    }
    // One of each kind, with its own labels beside the site.
    for (name, labels) in [
        ("plantwatch_device_up", vec![("network", "metrics-site"), ("device", "6301")]),
        ("plantwatch_devices", vec![("network", "metrics-site"), ("status", "online")]),
        ("plantwatch_writes_total", vec![("network", "metrics-site"), ("outcome", "accepted")]),
        ("process_cpu_seconds_total", vec![]),
    ] {
        let mut labels = labels;
        labels.push(("site", "bldg-east"));
        assert_eq!(m.get(name, &labels).len(), 1, "{name}{labels:?}\n{text}");
    }
    assert!(
        !m.get("plantwatch_http_requests_total", &[("site", "bldg-east"), ("status", "200")]).is_empty(),
        "event metrics carry the site too"
    );
    assert!(
        m.get("plantwatch_point_value", &[("site", "bldg-east"), ("device", "6301")]).len() >= 3,
        "point values carry the site"
    );
    plant.shutdown().await;
}
