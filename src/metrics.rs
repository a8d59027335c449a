//! Prometheus metrics at `GET /metrics` (docs/metrics.md).
//!
//! Two sources, rendered one after the other:
//! - **events** (HTTP requests, BACnet requests and their latency, writes)
//!   are recorded as they happen into the process's global recorder,
//!   installed once by [`install`];
//! - **state** (devices, points, supervision, transports, store, process) is
//!   read at scrape time into a recorder made for that scrape, so series of
//!   devices that are gone disappear and nothing stale accumulates.
//!
//! Every metric name is described exactly once, in [`describe_events`] or
//! [`describe_state`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use plantwatch_actors::bacnet::types::units_name;
use plantwatch_actors::plant::model::{DeviceSnapshot, DeviceStatus, Quality};
use plantwatch_actors::transport::meter as bacnet;
use tracing::warn;

use crate::api::ApiState;

pub const HTTP_REQUESTS: &str = "plantwatch_http_requests_total";
pub const HTTP_DURATION: &str = "plantwatch_http_request_duration_seconds";
pub const HTTP_ERRORS: &str = "plantwatch_http_errors_total";
pub const WRITES: &str = "plantwatch_writes_total";

/// HTTP latency buckets: cached reads take well under a millisecond, device
/// calls up to the request timeout.
const HTTP_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0];
/// BACnet latency buckets: loopback answers in tens of microseconds, a
/// timed-out request after apdu_timeout × (retries + 1).
const BACNET_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0];

/// How often histogram samples are folded into their buckets when nobody
/// scrapes (otherwise they would pile up in memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static EVENTS: OnceLock<PrometheusHandle> = OnceLock::new();

fn builder() -> PrometheusBuilder {
    // Both lists are constant and not empty, the only thing the builder checks.
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_string()), &HTTP_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(bacnet::DURATION.to_string()), &BACNET_BUCKETS))
        .expect("histogram bucket lists are constant and not empty")
}

/// Installs the process's recorder for event metrics (once; later calls
/// return the same handle) and starts its upkeep thread.
pub fn install() -> PrometheusHandle {
    EVENTS
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                warn!("a metrics recorder was already installed; event metrics go there, not to /metrics");
            }
            describe_events();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
            if let Err(e) = spawned {
                warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at scrape time only");
            }
            handle
        })
        .clone()
}

/// Creates the bounded label sets of the event counters at 0, so that the
/// first event shows as an increase (`rate()` and `increase()` need a sample
/// before it). Per network: writes by outcome, BACnet requests of the
/// services plantwatch sends by outcome.
pub fn register_networks<'a>(networks: impl IntoIterator<Item = &'a str>) {
    use plantwatch_actors::bacnet::types::{confirmed_service_name, service};
    for network in networks {
        for outcome in WRITE_OUTCOMES {
            counter!(WRITES, "network" => network.to_string(), "outcome" => outcome).increment(0);
        }
        for s in
            [service::READ_PROPERTY, service::READ_PROPERTY_MULTIPLE, service::WRITE_PROPERTY, service::SUBSCRIBE_COV]
        {
            for outcome in bacnet::Outcome::ALL {
                counter!(bacnet::REQUESTS, "network" => network.to_string(), "service" => confirmed_service_name(s), "outcome" => outcome.as_str())
                    .increment(0);
            }
        }
    }
}

/// The outcomes of a write from the API, as in the audit log.
pub const WRITE_OUTCOMES: [&str; 4] = ["accepted", "refused", "invalid", "failed"];

fn describe_events() {
    for code in crate::api::error::ErrorCode::ALL {
        counter!(HTTP_ERRORS, "code" => code.as_str()).increment(0);
    }
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template, method and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time to answer an HTTP request, by route template and method.");
    describe_counter!(HTTP_ERRORS, "HTTP error answers, by stable error code (docs/errors.md).");
    describe_counter!(WRITES, "WriteProperty and relinquish requests from the API, by network and outcome.");
    describe_counter!(bacnet::REQUESTS, "Confirmed BACnet requests finished, by network, service and outcome.");
    describe_histogram!(
        bacnet::DURATION,
        Unit::Seconds,
        "Time from the first transmission of a confirmed BACnet request to its answer (retries included)."
    );
}

/// The HTTP method as a bounded label.
fn method_label(m: &warp::http::Method) -> &'static str {
    use warp::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts one answered HTTP request. `route` is a route template.
pub fn http_request(route: &'static str, method: &warp::http::Method, status: u16, elapsed: Duration) {
    let method = method_label(method);
    counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status.to_string()).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method).record(elapsed.as_secs_f64());
}

/// Counts one error answer by its code.
pub fn http_error(code: &'static str) {
    counter!(HTTP_ERRORS, "code" => code).increment(1);
}

/// Counts one write from the API by its audit outcome.
pub fn write(network: &str, outcome: &'static str) {
    counter!(WRITES, "network" => network.to_string(), "outcome" => outcome).increment(1);
}

/// The text for `GET /metrics`.
pub fn render(state: &ApiState) -> String {
    let events = install();
    let scrape = builder().build_recorder();
    metrics::with_local_recorder(&scrape, || {
        describe_state();
        collect_state(state);
    });
    let mut out = events.render();
    out.push_str(&scrape.handle().render());
    device_text(&mut out, &state.plant.directory.list(), state.max_points, plantwatch_actors::plant::model::now_ms());
    process_text(&mut out);
    match &state.site {
        Some(site) => with_label(&out, "site", site),
        None => out,
    }
}

/// `text` with the label `name="value"` first on every sample line. The
/// event recorder is one per process and the device and process families
/// are written by hand, so a recorder's global label would not reach them
/// all: one pass over the finished text does. `value` is a site name
/// (`config::valid_site`): nothing in it needs escaping.
pub fn with_label(text: &str, name: &str, value: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        if line.starts_with('#') || line.trim().is_empty() {
            out.push_str(line);
            continue;
        }
        // A metric name holds neither '{' nor ' ': the first of them ends it.
        match line.find(['{', ' ']) {
            Some(i) if line.as_bytes()[i] == b'{' => {
                let labels_empty = line[i + 1..].starts_with('}');
                out.push_str(&line[..=i]);
                out.push_str(name);
                out.push_str("=\"");
                out.push_str(value);
                out.push('"');
                if !labels_empty {
                    out.push(',');
                }
                out.push_str(&line[i + 1..]);
            }
            Some(i) => {
                out.push_str(&line[..i]);
                out.push('{');
                out.push_str(name);
                out.push_str("=\"");
                out.push_str(value);
                out.push_str("\"}");
                out.push_str(&line[i..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// One metric family in Prometheus text: its HELP and TYPE lines, then the
/// samples `body` writes, then a blank line.
fn family(out: &mut String, name: &str, kind: &str, help: &str, body: impl FnOnce(&mut String)) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    body(out);
    out.push('\n');
}

/// One sample: `name{label="value",...} value`, label values escaped as the
/// text format asks (backslash, double quote, newline).
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    use std::fmt::Write as _;
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
    out.push('\n');
}

/// The per-device and per-point families, written straight from the
/// directory. At 10,000 devices they are over 100,000 series; filling a
/// recorder with them at every scrape and rendering it took 1.5 s (p50,
/// tests/bench/scale.py); written directly they cost a fraction of that.
fn device_text(out: &mut String, devices: &[Arc<DeviceSnapshot>], max_points: usize, now_ms: u64) {
    let ids: Vec<String> = devices.iter().map(|d| d.instance.to_string()).collect();
    let each = |out: &mut String, name: &str, value: &dyn Fn(&DeviceSnapshot) -> Option<f64>| {
        for (d, id) in devices.iter().zip(&ids) {
            if let Some(v) = value(d) {
                sample(out, name, &[("network", &d.network), ("device", id)], v);
            }
        }
    };
    let help = "One series per device, labelled with its name, vendor and model; always 1.";
    family(out, DEVICE_INFO, "gauge", help, |out| {
        for (d, id) in devices.iter().zip(&ids) {
            let (vendor, model) = d.identity.as_ref().map_or(("", ""), |i| (&i.vendor_name[..], &i.model_name[..]));
            let labels = [
                ("network", d.network.as_str()),
                ("device", id),
                ("name", d.name()),
                ("vendor", vendor),
                ("model", model),
            ];
            sample(out, DEVICE_INFO, &labels, 1.0);
        }
    });
    let up = |d: &DeviceSnapshot| {
        Some(f64::from(u8::from(matches!(d.status, DeviceStatus::Online | DeviceStatus::Degraded))))
    };
    family(out, DEVICE_UP, "gauge", "1 when the device answers (online or degraded), else 0.", |out| {
        each(out, DEVICE_UP, &up)
    });
    let help =
        "Unix time the device last delivered values: a poll round without a failed request, or a COV notification.";
    family(out, DEVICE_LAST_SUCCESS, "gauge", help, |out| {
        each(out, DEVICE_LAST_SUCCESS, &|d| d.last_success_at.map(|at| at as f64 / 1000.0))
    });
    family(out, DEVICE_POLL_DURATION, "gauge", "Duration of the device's last poll round.", |out| {
        each(out, DEVICE_POLL_DURATION, &|d| d.last_poll_us.map(|us| us as f64 / 1e6))
    });
    family(out, DEVICE_POLLS, "counter", "Poll rounds of the device, by outcome (ok, failed).", |out| {
        for (d, id) in devices.iter().zip(&ids) {
            for (outcome, n) in [("ok", d.counters.polls_ok), ("failed", d.counters.polls_failed)] {
                sample(out, DEVICE_POLLS, &[("network", &d.network), ("device", id), ("outcome", outcome)], n as f64);
            }
        }
    });
    family(out, DEVICE_FAILURES, "gauge", "Failed requests in a row to the device (0 when it answers).", |out| {
        each(out, DEVICE_FAILURES, &|d| Some(f64::from(d.consecutive_timeouts)))
    });
    family(out, DEVICE_COV, "gauge", "COV subscriptions active on the device.", |out| {
        each(out, DEVICE_COV, &|d| Some(f64::from(d.cov_subscriptions)))
    });
    let help = "Times the COV watchdog found the device's subscriptions silent (a value moved without a notification) and subscribed again.";
    family(out, COV_SILENT, "counter", help, |out| each(out, COV_SILENT, &|d| Some(d.counters.cov_silent as f64)));
    let help =
        "Failed requests and point reads that answered an error, by BACnet error class or timeout, reject, abort.";
    family(out, DEVICE_ERRORS, "counter", help, |out| {
        for (d, id) in devices.iter().zip(&ids) {
            for (class, n) in &d.errors {
                sample(out, DEVICE_ERRORS, &[("network", &d.network), ("device", id), ("class", class)], *n as f64);
            }
        }
    });
    let mut unexported = 0u64;
    let help = "Present value of numeric and binary points (binary: 0/1, multi-state: the state).";
    family(out, POINT_VALUE, "gauge", help, |out| {
        let mut exported = 0usize;
        for (d, id) in devices.iter().zip(&ids) {
            for p in &d.points {
                let Some(v) = p.value.as_ref().and_then(|v| v.as_f64()) else { continue };
                if !matches!(p.quality_at(now_ms), Quality::Good | Quality::Stale) {
                    continue;
                }
                if exported >= max_points {
                    unexported += 1;
                    continue;
                }
                exported += 1;
                let (object, units) = (p.object.to_string(), p.units.map(units_name).unwrap_or_default());
                let labels = [
                    ("network", d.network.as_str()),
                    ("device", id),
                    ("object", &object),
                    ("name", &p.name),
                    ("units", &units),
                ];
                sample(out, POINT_VALUE, &labels, v);
            }
        }
    });
    let help = "Point values left out of plantwatch_point_value by metrics.max_points.";
    family(out, POINTS_UNEXPORTED, "gauge", help, |out| sample(out, POINTS_UNEXPORTED, &[], unexported as f64));
}

/// The standard process metrics, written directly: the `metrics` facade's
/// counters are integers, and CPU time needs fractions of a second for a
/// `rate()` over a minute to mean anything.
fn process_text(out: &mut String) {
    use std::fmt::Write as _;
    let m = metrics_process::collector::collect();
    let families: [(&str, &str, &str, Option<f64>); 8] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            m.cpu_seconds_total,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            m.resident_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            m.virtual_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_max_bytes",
            "gauge",
            "Maximum amount of virtual memory available in bytes (0: unlimited).",
            m.virtual_memory_max_bytes.map(|v| v as f64),
        ),
        ("process_open_fds", "gauge", "Number of open file descriptors.", m.open_fds.map(|v| v as f64)),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors (0: unlimited).",
            m.max_fds.map(|v| v as f64),
        ),
        ("process_threads", "gauge", "Number of OS threads in the process.", m.threads.map(|v| v as f64)),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
            m.start_time_seconds.map(|v| v as f64),
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(v) = value {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n\n");
        }
    }
}

const BUILD_INFO: &str = "plantwatch_build_info";
const DEVICES: &str = "plantwatch_devices";
const DEVICE_INFO: &str = "plantwatch_device_info";
const DEVICE_UP: &str = "plantwatch_device_up";
const DEVICE_LAST_SUCCESS: &str = "plantwatch_device_last_success_timestamp_seconds";
const DEVICE_POLL_DURATION: &str = "plantwatch_device_poll_duration_seconds";
const DEVICE_POLLS: &str = "plantwatch_device_polls_total";
const POLL_OVERRUNS: &str = "plantwatch_poll_overruns_total";
const DEVICE_FAILURES: &str = "plantwatch_device_consecutive_failures";
const DEVICE_COV: &str = "plantwatch_device_cov_subscriptions";
const COV_SILENT: &str = "plantwatch_cov_silent_total";
const DEVICE_ERRORS: &str = "plantwatch_device_errors_total";
const POINT_VALUE: &str = "plantwatch_point_value";
const POINTS_UNEXPORTED: &str = "plantwatch_points_unexported";
const ACTOR_RESTARTS: &str = "plantwatch_actor_restarts_total";
const ACTOR_GIVE_UPS: &str = "plantwatch_actor_give_ups_total";
const HEARTBEAT_AGE: &str = "plantwatch_actor_heartbeat_age_seconds";
const BACNET_RETRIES: &str = "plantwatch_bacnet_retries_total";
const BACNET_IN_FLIGHT: &str = "plantwatch_bacnet_requests_in_flight";
const BACNET_QUEUED: &str = "plantwatch_bacnet_requests_queued";
const BACNET_MALFORMED: &str = "plantwatch_bacnet_malformed_frames_total";
const BACNET_UNEXPECTED: &str = "plantwatch_bacnet_unexpected_frames_total";
const BACNET_SEGMENTED: &str = "plantwatch_bacnet_segmented_answers_total";
const BACNET_UNSOLICITED: &str = "plantwatch_bacnet_unsolicited_total";
const HTTP_REJECTED: &str = "plantwatch_http_rejected_total";
const STORE_SIZE: &str = "plantwatch_store_size_bytes";
const STORE_SNAPSHOT_WRITES: &str = "plantwatch_store_snapshot_writes_total";
const STORE_HISTORY_WRITTEN: &str = "plantwatch_store_history_rows_written_total";
const STORE_HISTORY_PRUNED: &str = "plantwatch_store_history_rows_pruned_total";
const STORE_AUDIT: &str = "plantwatch_store_audit_records";
const LEASES_ACTIVE: &str = "plantwatch_leases_active";
const LEASE_EXPIRIES: &str = "plantwatch_lease_expiries_total";
const LEASE_REASSERTS: &str = "plantwatch_lease_reasserts_total";

fn describe_state() {
    describe_gauge!(BUILD_INFO, "The running build: always 1, labelled with version and commit.");
    describe_gauge!(DEVICES, "Devices by network and status.");
    describe_counter!(
        POLL_OVERRUNS,
        "Polls that started later than their due time plus the overrun window (a tenth of the interval, at least 100 ms)."
    );
    describe_counter!(ACTOR_RESTARTS, "Actors restarted by their supervisor, by kind and reason.");
    describe_counter!(
        ACTOR_GIVE_UPS,
        "Actors not restarted any more (restart intensity exceeded), by kind and reason."
    );
    describe_gauge!(
        HEARTBEAT_AGE,
        Unit::Seconds,
        "Longest time any device actor of the network has gone without handling a message (ticks come every 5 s at most)."
    );
    describe_counter!(BACNET_RETRIES, "BACnet requests sent again after a timeout.");
    describe_gauge!(BACNET_IN_FLIGHT, "Confirmed BACnet requests waiting for an answer.");
    describe_gauge!(BACNET_QUEUED, "BACnet requests waiting for an in-flight slot.");
    describe_counter!(BACNET_MALFORMED, "BACnet frames that could not be decoded (dropped).");
    describe_counter!(BACNET_UNEXPECTED, "Well-formed BACnet frames that answer nothing we asked (dropped).");
    describe_counter!(BACNET_SEGMENTED, "BACnet answers that came in segments.");
    describe_counter!(BACNET_UNSOLICITED, "I-Am and COV notifications received.");
    describe_counter!(HTTP_REJECTED, "HTTP requests refused by authentication, role or rate limit.");
    describe_gauge!(STORE_SIZE, Unit::Bytes, "Size of the sled database on disk.");
    describe_counter!(STORE_SNAPSHOT_WRITES, "Device snapshots written to the store.");
    describe_counter!(STORE_HISTORY_WRITTEN, "History rows written to the store.");
    describe_counter!(STORE_HISTORY_PRUNED, "History rows removed by retention.");
    describe_gauge!(STORE_AUDIT, "Records in the write audit log.");
    describe_gauge!(LEASES_ACTIVE, "Leased writes running, by network.");
    describe_counter!(LEASE_EXPIRIES, "Leases that ran out and whose slot plantwatch relinquished, by network.");
    describe_counter!(
        LEASE_REASSERTS,
        "Leased slots written again because the device lost them (came back with the slot empty), by network."
    );
}

fn collect_state(state: &ApiState) {
    let commit = env!("PLANTWATCH_COMMIT");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => commit).set(1.0);

    // Devices and points.
    let devices = state.plant.directory.list();
    let mut by_status: std::collections::BTreeMap<(&str, &'static str), u32> = state
        .networks
        .iter()
        .flat_map(|n| DeviceStatus::ALL.iter().map(move |s| ((n.name.as_str(), s.as_str()), 0)))
        .collect();
    let mut overruns: std::collections::BTreeMap<&str, u64> =
        state.networks.iter().map(|n| (n.name.as_str(), 0)).collect();
    for d in &devices {
        *by_status.entry((d.network.as_str(), d.status.as_str())).or_default() += 1;
        *overruns.entry(d.network.as_str()).or_default() += d.counters.overruns;
    }
    for (network, n) in overruns {
        counter!(POLL_OVERRUNS, "network" => network.to_string()).absolute(n);
    }
    for ((network, status), n) in by_status {
        gauge!(DEVICES, "network" => network.to_string(), "status" => status).set(f64::from(n));
    }

    // Supervision and transports.
    let stats = &state.plant.stats;
    for (reason, restarts, give_ups) in stats.by_reason() {
        let labels = [("kind", reason.kind()), ("reason", reason.as_str())];
        counter!(ACTOR_RESTARTS, &labels).absolute(restarts);
        counter!(ACTOR_GIVE_UPS, &labels).absolute(give_ups);
    }
    for (network, n) in stats.networks() {
        let labels = [("network", network)];
        gauge!(HEARTBEAT_AGE, &labels).set(n.heartbeat_age_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        let t = n.transport.snapshot();
        counter!(BACNET_RETRIES, &labels).absolute(t.retries);
        gauge!(BACNET_IN_FLIGHT, &labels).set(t.in_flight as f64);
        gauge!(BACNET_QUEUED, &labels).set(t.queued as f64);
        counter!(BACNET_MALFORMED, &labels).absolute(t.malformed);
        counter!(BACNET_UNEXPECTED, &labels).absolute(t.unexpected);
        counter!(BACNET_SEGMENTED, &labels).absolute(t.segmented_answers);
        counter!(BACNET_UNSOLICITED, &labels).absolute(t.unsolicited);
    }

    // HTTP refusals.
    let s = &state.security.stats;
    for (reason, c) in
        [("unauthenticated", &s.unauthenticated), ("forbidden", &s.forbidden), ("rate_limited", &s.rate_limited)]
    {
        counter!(HTTP_REJECTED, "reason" => reason).absolute(c.load(Ordering::Relaxed));
    }

    // Store.
    let st = state.store.stats();
    gauge!(STORE_SIZE).set(st.size_on_disk_bytes as f64);
    counter!(STORE_SNAPSHOT_WRITES).absolute(st.snapshots_written);
    counter!(STORE_HISTORY_WRITTEN).absolute(st.history_rows_recorded);
    counter!(STORE_HISTORY_PRUNED).absolute(st.history_rows_pruned);
    gauge!(STORE_AUDIT).set(st.audit_last_sequence as f64);

    // Leases.
    for n in state.networks.iter() {
        let (active, expiries, reasserts) = state.leases.stats(&n.name);
        let labels = [("network", n.name.clone())];
        gauge!(LEASES_ACTIVE, &labels).set(active as f64);
        counter!(LEASE_EXPIRIES, &labels).absolute(expiries);
        counter!(LEASE_REASSERTS, &labels).absolute(reasserts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values_and_spell_special_values_as_prometheus_does() {
        let mut out = String::new();
        sample(&mut out, "m", &[("name", "a \"b\"\\c\nd"), ("device", "7")], 21.5);
        sample(&mut out, "m", &[], f64::NAN);
        sample(&mut out, "m", &[("x", "")], f64::INFINITY);
        sample(&mut out, "m", &[("x", "")], f64::NEG_INFINITY);
        sample(&mut out, "m", &[("x", "")], 1_733_550_000_000.0);
        assert_eq!(
            out,
            "m{name=\"a \\\"b\\\"\\\\c\\nd\",device=\"7\"} 21.5\nm NaN\nm{x=\"\"} +Inf\nm{x=\"\"} -Inf\nm{x=\"\"} 1733550000000\n"
        );
        let mut fam = String::new();
        family(&mut fam, "m", "gauge", "Help.", |o| sample(o, "m", &[], 1.0));
        assert_eq!(fam, "# HELP m Help.\n# TYPE m gauge\nm 1\n\n");
    }

    #[test]
    fn the_site_label_goes_on_every_sample_and_nowhere_else() {
        let text = "# HELP m Help.\n# TYPE m gauge\nm 1\nm{} 2\nm{device=\"7\",name=\"a {b} c\"} 3\n\nh_bucket{le=\"+Inf\"} 4\nlast 5";
        assert_eq!(
            with_label(text, "site", "bldg-a"),
            "# HELP m Help.\n# TYPE m gauge\nm{site=\"bldg-a\"} 1\nm{site=\"bldg-a\"} 2\n\
             m{site=\"bldg-a\",device=\"7\",name=\"a {b} c\"} 3\n\nh_bucket{site=\"bldg-a\",le=\"+Inf\"} 4\n\
             last{site=\"bldg-a\"} 5"
        );
    }
}
