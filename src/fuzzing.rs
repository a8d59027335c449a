//! The bodies of the HTTP fuzz targets in `tests/fuzz/` (the network ones
//! are in `plantwatch_actors::fuzzing`): path and query parameters and the
//! JSON bodies, parsed and checked as the routes and handlers do, and every
//! refusal rendered as the API answers it. The cargo-fuzz targets and the
//! replay test (`tests/it/fuzz_corpus.rs`) call these same functions. Not an
//! API: hidden from the docs.

use std::time::Duration;

use plantwatch_actors::bacnet::types::object_type;
use plantwatch_actors::bacnet::ObjectId;
use plantwatch_actors::fuzzing::Target;
use plantwatch_actors::plant::model::Point;
use warp::Reply;

use crate::api::error::ApiError;
use crate::api::handlers::{self, AuditQuery, DeviceQuery, DiscoveryBody, HistoryQuery, OnePointQuery, PointQuery};
use crate::api::params::{self, Cursor, SortValue};
use crate::api::{auth, view, MAX_BODY};

/// Every HTTP target: its name and its function.
pub const TARGETS: &[(&str, Target)] = &[("http_query", query), ("http_body", body)];

/// The sort keys of the device and point lists.
const SORTS: [&str; 8] = ["instance", "name", "status", "network", "last_seen", "object", "quality", "updated_at"];

/// A request target `INSTANCE/OBJECT?QUERY` (the part before `?` optional):
/// the path parameters as the routes check them, the query string as every
/// route that takes one parses it, and each parameter through the check its
/// handler makes (limit, status, quality, type, search, sort, cursor and a
/// page after it, times).
pub fn query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path, q) = text.split_once('?').unwrap_or(("", &text));
    let mut errors: Vec<ApiError> = Vec::new();
    let mut keep = |r: Result<(), ApiError>| errors.extend(r.err());
    if let Some((instance, object)) = path.split_once('/') {
        keep(params::instance(instance).map(drop));
        keep(params::object(object).map(drop));
    }
    keep(params::parse_query::<DeviceQuery>(q).map(drop));
    keep(params::parse_query::<PointQuery>(q).map(drop));
    keep(params::parse_query::<OnePointQuery>(q).map(drop));
    keep(params::parse_query::<HistoryQuery>(q).map(drop));
    keep(params::parse_query::<AuditQuery>(q).map(drop));
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match &*k {
            "limit" => keep(params::limit(v.parse().ok()).map(drop)),
            "status" => keep(params::status(&v).map(drop)),
            "quality" => keep(params::quality(&v).map(drop)),
            "type" => keep(params::object_type(&v).map(drop)),
            "q" => keep(params::search(Some(&v)).map(drop)),
            "sort" => keep(params::sort(Some(&v), &SORTS).map(drop)),
            "from" | "to" => keep(params::time(&k, &v).map(drop)),
            "cursor" => {
                keep(params::decode_cursor::<u64>(&v).map(drop));
                match params::decode_cursor::<Cursor>(&v) {
                    Ok(c) => {
                        let sort = c.sort.clone();
                        keep(params::page(items(), &sort, false, Some(c.clone()), 2).map(drop));
                        keep(params::page(items(), &sort, true, Some(c), 2).map(drop));
                    }
                    Err(e) => keep(Err(e)),
                }
            }
            _ => {}
        }
    }
    for e in errors {
        let _ = e.into_response();
    }
}

/// Items of a page: numbers and strings, as the lists sort them.
fn items() -> Vec<(SortValue, String, u32)> {
    (0..5u32)
        .map(|i| {
            let value = if i % 2 == 0 { SortValue::Num(u64::from(i)) } else { SortValue::Text(format!("n{i}")) };
            (value, format!("{i:08}"), i)
        })
        .collect()
}

/// Points of the kinds a write is checked against.
fn points() -> Vec<Point> {
    let point = |t: u16, commandable: bool| {
        let mut p = Point::new(ObjectId::new(t, 1), Duration::from_secs(5), false);
        p.commandable = commandable;
        p
    };
    let mut msv = point(object_type::MULTI_STATE_VALUE, true);
    msv.state_text = vec!["Off".into(), "Auto".into(), "Manual".into()];
    vec![
        point(object_type::ANALOG_OUTPUT, true),
        point(object_type::ANALOG_INPUT, false),
        point(object_type::BINARY_OUTPUT, true),
        msv,
        point(object_type::MULTI_STATE_VALUE, false),
        point(object_type::CHARACTER_STRING_VALUE, false),
        point(object_type::DEVICE, false),
    ]
}

/// A request body (at most the API's 16 KiB): as the JSON of a point write
/// (`PUT .../points/{object}`) checked against a point of every kind, as
/// `POST /api/v1/discovery` and as `POST /api/v1/keys` with its role.
pub fn body(data: &[u8]) {
    if data.len() as u64 > MAX_BODY {
        return;
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        for p in points() {
            if let Err(e) = handlers::check_write(&p, &json, std::time::Duration::from_secs(86_400)) {
                let _ = e.into_response();
            }
        }
    }
    let _ = serde_json::from_slice::<DiscoveryBody>(data);
    if let Ok(k) = serde_json::from_slice::<view::KeyCreateBody>(data) {
        let _ = k.role.parse::<auth::Role>();
    }
}
