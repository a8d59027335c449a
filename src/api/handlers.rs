//! The handlers: plain async functions from checked parameters to
//! `Result<Json, ApiError>`, turned into a reply in one place (`super::reply`).

use std::collections::BTreeMap;
use std::time::Duration;

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::types::{object_type, parse_property, property, property_name};
use plantwatch_actors::bacnet::ObjectId;
use plantwatch_actors::plant::device::Write;
use plantwatch_actors::plant::model::{now_ms, DeviceSnapshot, DeviceStatus, Millis, Point};
use plantwatch_actors::plant::persist::quality_from_byte;
use plantwatch_actors::store::PointKey;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use tracing::info;

use super::error::{bacnet_details, ApiError, ErrorCode};
use super::params::{self, Cursor, SortValue};
use super::{view, ApiState};
use crate::lease::Lease;
use plantwatch_actors::plant::CallError;

type Answer = Result<Json, ApiError>;

fn device(state: &ApiState, instance: u32) -> Result<std::sync::Arc<DeviceSnapshot>, ApiError> {
    state
        .plant
        .directory
        .get(instance)
        .ok_or_else(|| ApiError::new(ErrorCode::DeviceNotFound, format!("no device {instance}")))
}

fn point(s: &DeviceSnapshot, object: ObjectId) -> Result<&Point, ApiError> {
    s.point(object).ok_or_else(|| {
        let why = if s.identity.is_none() { " (it is not enrolled yet)" } else { "" };
        ApiError::new(ErrorCode::PointNotFound, format!("device {} has no point {object}{why}", s.instance))
    })
}

// ---------------------------------------------------------------- networks

pub async fn networks(state: ApiState) -> Answer {
    let devices = state.plant.directory.list();
    let items: Vec<Json> = state
        .networks
        .iter()
        .map(|n| {
            let mut by_status: BTreeMap<&str, usize> =
                ["enrolling", "online", "degraded", "offline", "failed"].iter().map(|s| (*s, 0)).collect();
            let mut total = 0;
            for d in devices.iter().filter(|d| d.network == n.name) {
                *by_status.entry(d.status.as_str()).or_default() += 1;
                total += 1;
            }
            json!({"name": n.name, "bind": n.bind.to_string(), "discover": n.discover, "devices": total, "by_status": by_status})
        })
        .collect();
    Ok(json!({"items": items, "next_cursor": null}))
}

// ---------------------------------------------------------------- devices

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    network: Option<String>,
    status: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

const DEVICE_SORTS: [&str; 5] = ["instance", "name", "status", "network", "last_seen"];

pub async fn list_devices(state: ApiState, q: DeviceQuery) -> Answer {
    let limit = params::limit(q.limit)?;
    let status = q.status.as_deref().map(params::status).transpose()?;
    let search = params::search(q.q.as_deref())?;
    let (sort, desc) = params::sort(q.sort.as_deref(), &DEVICE_SORTS)?;
    let after = q.cursor.as_deref().map(params::decode_cursor::<Cursor>).transpose()?;
    if let Some(n) = &q.network {
        if !state.networks.iter().any(|x| x.name == *n) {
            return Err(ApiError::new(ErrorCode::NetworkNotFound, format!("no network {n}")));
        }
    }
    let items = state
        .plant
        .directory
        .list()
        .into_iter()
        .filter(|s| q.network.as_ref().is_none_or(|n| *n == s.network))
        .filter(|s| status.is_none_or(|st| st == s.status))
        .filter(|s| search.as_ref().is_none_or(|t| s.name().to_lowercase().contains(t)))
        .map(|s| {
            let key = match sort {
                "name" => SortValue::Text(s.name().to_lowercase()),
                "status" => SortValue::Text(s.status.as_str().to_string()),
                "network" => SortValue::Text(s.network.clone()),
                "last_seen" => SortValue::Num(s.last_seen.unwrap_or(0)),
                _ => SortValue::Num(u64::from(s.instance)),
            };
            (key, format!("{:08}", s.instance), s)
        })
        .collect();
    let (page, next) = params::page(items, sort, desc, after, limit)?;
    Ok(json!({"items": page.iter().map(|s| view::device(s)).collect::<Vec<_>>(), "next_cursor": next}))
}

pub async fn get_device(instance: String, state: ApiState) -> Answer {
    let i = params::instance(&instance)?;
    Ok(view::device(device(&state, i)?.as_ref()))
}

// ---------------------------------------------------------------- points

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointQuery {
    #[serde(rename = "type")]
    object_type: Option<String>,
    q: Option<String>,
    quality: Option<String>,
    sort: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

const POINT_SORTS: [&str; 4] = ["object", "name", "quality", "updated_at"];

pub async fn list_points(instance: String, state: ApiState, q: PointQuery) -> Answer {
    let i = params::instance(&instance)?;
    let limit = params::limit(q.limit)?;
    let t = q.object_type.as_deref().map(params::object_type).transpose()?;
    let quality = q.quality.as_deref().map(params::quality).transpose()?;
    let search = params::search(q.q.as_deref())?;
    let (sort, desc) = params::sort(q.sort.as_deref(), &POINT_SORTS)?;
    let after = q.cursor.as_deref().map(params::decode_cursor::<Cursor>).transpose()?;
    let s = device(&state, i)?;
    let now = now_ms();
    let items = s
        .points
        .iter()
        .filter(|p| t.is_none_or(|t| p.object.object_type == t))
        .filter(|p| quality.is_none_or(|qq| p.quality_at(now) == qq))
        .filter(|p| search.as_ref().is_none_or(|x| p.name.to_lowercase().contains(x)))
        .map(|p| {
            let key = match sort {
                "name" => SortValue::Text(p.name.to_lowercase()),
                "quality" => SortValue::Text(format!("{:?}", p.quality_at(now))),
                "updated_at" => SortValue::Num(p.updated_at),
                _ => SortValue::Num(u64::from(p.object.raw())),
            };
            (key, format!("{:010}", p.object.raw()), p)
        })
        .collect();
    let (page, next) = params::page(items, sort, desc, after, limit)?;
    let items: Vec<Json> = page.iter().map(|p| with_lease(&state, i, p.object, view::point(p, now))).collect();
    Ok(json!({"items": items, "next_cursor": next}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnePointQuery {
    live: Option<bool>,
}

pub async fn get_point(instance: String, object: String, state: ApiState, q: OnePointQuery) -> Answer {
    let i = params::instance(&instance)?;
    let o = params::object(&object)?;
    let s = device(&state, i)?;
    let p = point(&s, o)?;
    let now = now_ms();
    if !q.live.unwrap_or(false) {
        return Ok(with_lease(&state, i, o, view::point(p, now)));
    }
    let v = state.plant.read(i, o, property::PRESENT_VALUE, true, state.request_timeout).await?;
    // The actor updated its cache with the live value: show the point with it.
    let mut fresh = p.clone();
    fresh.value = Some(v);
    fresh.quality = plantwatch_actors::plant::model::Quality::Good;
    fresh.updated_at = now_ms();
    let mut j = with_lease(&state, i, o, view::point(&fresh, now_ms()));
    j["live"] = json!(true);
    Ok(j)
}

/// A point's JSON with its lease: the one of the highest priority (lowest
/// number) if several slots are leased, else null.
fn with_lease(state: &ApiState, instance: u32, object: ObjectId, mut j: Json) -> Json {
    let lease = state.leases.on_point(instance, object).into_iter().next();
    j["lease"] =
        lease.map_or(Json::Null, |l| json!({"priority": l.priority, "value": l.shown, "until": view::time(l.until)}));
    j
}

// ---------------------------------------------------------------- leases

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseQuery {
    device: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Every lease that runs, by device, object and priority; paged.
pub async fn leases(state: ApiState, q: LeaseQuery) -> Answer {
    let limit = params::limit(q.limit)?;
    let device = q.device.as_deref().map(params::instance).transpose()?;
    let after = q.cursor.as_deref().map(params::decode_cursor::<Cursor>).transpose()?;
    let all = state.leases.list();
    let items = all
        .iter()
        .filter(|l| device.is_none_or(|d| d == l.instance))
        .map(|l| {
            let tie = format!("{:08}{:010}{:02}", l.instance, l.object.raw(), l.priority);
            (SortValue::Text(tie.clone()), tie, l)
        })
        .collect();
    let (page, next) = params::page(items, "device", false, after, limit)?;
    Ok(json!({"items": page.iter().map(|l| l.view()).collect::<Vec<_>>(), "next_cursor": next}))
}

// ---------------------------------------------------------------- history

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn history(instance: String, object: String, state: ApiState, q: HistoryQuery) -> Answer {
    let i = params::instance(&instance)?;
    let o = params::object(&object)?;
    let limit = params::limit(q.limit)?;
    let now = now_ms();
    let to = q.to.as_deref().map(|t| params::time("to", t)).transpose()?.unwrap_or(now + 1);
    let from = q.from.as_deref().map(|t| params::time("from", t)).transpose()?.unwrap_or(to.saturating_sub(86_400_000));
    if from >= to {
        return Err(ApiError::parameter("from", "must be before to"));
    }
    let after: Option<u64> = q.cursor.as_deref().map(params::decode_cursor).transpose()?;
    let s = device(&state, i)?;
    let p = point(&s, o)?;
    let key = PointKey::new(s.network.clone(), i, o.to_string());
    let samples = state
        .store
        .history(&key, params::system_time(from), params::system_time(to), limit + 1, after.map(params::system_time))
        .await
        .map_err(ApiError::store)?;
    let more = samples.len() > limit;
    let items: Vec<Json> = samples
        .iter()
        .take(limit)
        .map(|h| {
            let ms = h.at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            json!({"time": view::time(ms), "value": history_value(p, h.value), "quality": quality_from_byte(h.quality)})
        })
        .collect();
    let next = if more {
        samples.get(limit - 1).map(|h| {
            params::encode_cursor(&(h.at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)))
        })
    } else {
        None
    };
    Ok(
        json!({"object": o.to_string(), "units": p.units.map(plantwatch_actors::bacnet::types::units_name), "items": items, "next_cursor": next}),
    )
}

fn history_value(p: &Point, v: f64) -> Json {
    match p.object.object_type {
        object_type::BINARY_INPUT | object_type::BINARY_OUTPUT | object_type::BINARY_VALUE => {
            json!(if v == 0.0 { "inactive" } else { "active" })
        }
        // Analog values were REALs: show the shortest decimal that reads back as one.
        object_type::ANALOG_INPUT | object_type::ANALOG_OUTPUT | object_type::ANALOG_VALUE => {
            view::value(p.object, &Value::Real(v as f32))
        }
        _ => json!(v),
    }
}

// ---------------------------------------------------------------- writes

/// The value to write, checked against the object type (Present_Value) or
/// taken from its JSON type (other properties).
fn write_value(p: &Point, prop: u32, v: &Json) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if prop != property::PRESENT_VALUE {
        return inferred(v);
    }
    match p.object.object_type {
        object_type::ANALOG_INPUT | object_type::ANALOG_OUTPUT | object_type::ANALOG_VALUE => v
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() <= f64::from(f32::MAX))
            .map(|f| Value::Real(f as f32))
            .ok_or_else(|| format!("{} takes a number", view::type_name(p.object))),
        object_type::BINARY_INPUT | object_type::BINARY_OUTPUT | object_type::BINARY_VALUE => match v {
            Json::String(s) if s == "active" => Ok(Value::Enumerated(1)),
            Json::String(s) if s == "inactive" => Ok(Value::Enumerated(0)),
            Json::Bool(b) => Ok(Value::Enumerated(u32::from(*b))),
            Json::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                Ok(Value::Enumerated(n.as_u64().unwrap_or(0) as u32))
            }
            _ => Err(format!("{} takes \"active\" or \"inactive\"", view::type_name(p.object))),
        },
        object_type::MULTI_STATE_INPUT | object_type::MULTI_STATE_OUTPUT | object_type::MULTI_STATE_VALUE => {
            let states = if p.state_text.is_empty() { u64::from(u32::MAX) } else { p.state_text.len() as u64 };
            match v.as_u64() {
                Some(n) if (1..=states).contains(&n) => Ok(Value::Unsigned(n)),
                _ => Err(format!("{} takes a state number 1..{states}", view::type_name(p.object))),
            }
        }
        object_type::CHARACTER_STRING_VALUE => match v {
            Json::String(s) if s.len() <= 1000 => Ok(Value::CharacterString(s.clone())),
            _ => Err("characterstring-value takes a string of at most 1000 bytes".into()),
        },
        _ => inferred(v),
    }
}

/// A value whose BACnet type is taken from its JSON type: a whole
/// non-negative number is an Unsigned, another number a REAL.
fn inferred(v: &Json) -> Result<Value, String> {
    match v {
        Json::Bool(b) => Ok(Value::Boolean(*b)),
        Json::Number(n) if n.is_u64() => Ok(Value::Unsigned(n.as_u64().unwrap_or(0))),
        Json::Number(n) => {
            n.as_f64().filter(|f| f.is_finite()).map(|f| Value::Real(f as f32)).ok_or("must be a finite number".into())
        }
        Json::String(s) if s.len() <= 1000 => Ok(Value::CharacterString(s.clone())),
        _ => Err("must be a number, a boolean, a string of at most 1000 bytes, or null".into()),
    }
}

pub(crate) struct WriteRequest {
    property: u32,
    value: Value,
    priority: Option<u8>,
    /// How long the write holds before plantwatch relinquishes it.
    lease: Option<Duration>,
}

pub(crate) fn check_write(p: &Point, body: &Json, max_lease: Duration) -> Result<WriteRequest, ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::new(
            ErrorCode::MalformedBody,
            "the body must be a JSON object like {\"value\": 21.5, \"priority\": 8}",
        ));
    };
    let mut fields = Vec::new();
    for k in map.keys() {
        if !matches!(k.as_str(), "value" | "priority" | "property" | "lease") {
            fields.push(json!({"field": k, "reason": "unknown field (value, priority, property, lease)"}));
        }
    }
    let property = match map.get("property") {
        None => property::PRESENT_VALUE,
        Some(Json::String(s)) => match parse_property(s) {
            Ok(p) => p,
            Err(e) => {
                fields.push(json!({"field": "property", "reason": e.to_string()}));
                property::PRESENT_VALUE
            }
        },
        Some(_) => {
            fields.push(json!({"field": "property", "reason": "must be a property name like present-value"}));
            property::PRESENT_VALUE
        }
    };
    let priority = match map.get("priority") {
        None | Some(Json::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=16) => Some(n as u8),
            _ => {
                fields.push(json!({"field": "priority", "reason": "must be 1..16"}));
                None
            }
        },
    };
    let value = match map.get("value") {
        None => {
            fields.push(json!({"field": "value", "reason": "required (null relinquishes)"}));
            None
        }
        Some(v) => match write_value(p, property, v) {
            Ok(v) => Some(v),
            Err(reason) => {
                fields.push(json!({"field": "value", "reason": reason}));
                None
            }
        },
    };
    if value == Some(Value::Null) && property == property::PRESENT_VALUE && !p.commandable {
        fields.push(json!({"field": "value", "reason": format!("{} is not commandable: there is nothing to relinquish", p.object)}));
    }
    let lease = match map.get("lease") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => match crate::config::parse_duration(s) {
            Ok(d) if d > max_lease => {
                let max = humantime::format_duration(max_lease).to_string().replace(' ', "");
                fields.push(json!({"field": "lease", "reason": format!("at most {max} (server.max_lease)")}));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                fields.push(json!({"field": "lease", "reason": e}));
                None
            }
        },
        Some(_) => {
            fields.push(json!({"field": "lease", "reason": "must be a duration like \"15m\""}));
            None
        }
    };
    if lease.is_some() {
        if priority.is_none() {
            fields.push(json!({"field": "lease", "reason": "a lease needs a priority (1..16) to relinquish"}));
        }
        if value == Some(Value::Null) {
            fields.push(json!({"field": "lease", "reason": "a relinquish takes no lease"}));
        }
        if property != property::PRESENT_VALUE || !p.commandable {
            fields.push(json!({"field": "lease", "reason": format!("only the present-value of a commandable object takes a lease; {} is not one", p.object)}));
        }
    }
    match (value, fields.is_empty()) {
        (Some(value), true) => Ok(WriteRequest { property, value, priority, lease }),
        _ => {
            let first = fields.first().and_then(|f| f["reason"].as_str()).unwrap_or("invalid").to_string();
            let message = format!("the write is not valid: {first}");
            let code = if fields.iter().any(|f| f["reason"].as_str().is_some_and(|r| r.starts_with("unknown field"))) {
                ErrorCode::MalformedBody
            } else {
                ErrorCode::ValidationFailed
            };
            Err(ApiError::new(code, message).with_details(json!({"fields": fields})))
        }
    }
}

/// An audit record: every write attempt that named a known point.
#[allow(clippy::too_many_arguments)]
fn audit_record(
    key_id: &str,
    lease: Option<(Duration, Millis)>,
    device: u32,
    object: ObjectId,
    property: u32,
    priority: Option<u8>,
    old: Option<&Value>,
    new: &Json,
    outcome: &str,
    error: Option<Json>,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "time": view::time(now_ms()),
        "actor": "api",
        "key_id": key_id,
        "lease": lease.map(|(d, _)| humantime::format_duration(d).to_string().replace(' ', "")),
        "lease_until": lease.map(|(_, until)| view::time(until)),
        "request_id": super::request_id(),
        "device": device,
        "object": object.to_string(),
        "property": property_name(property),
        "priority": priority,
        "old_value": old.map(|v| view::value(object, v)),
        "new_value": new,
        "outcome": outcome,
        "error": error,
    }))
    .unwrap_or_default()
}

pub async fn write(instance: String, object: String, state: ApiState, body: Json) -> Answer {
    let i = params::instance(&instance)?;
    let o = params::object(&object)?;
    let s = device(&state, i)?;
    if s.identity.is_none() {
        return Err(ApiError::new(
            ErrorCode::DeviceNotEnrolled,
            format!("device {i} is not enrolled yet; try again shortly"),
        ));
    }
    let p = point(&s, o)?.clone();
    let given = body.as_object().and_then(|m| m.get("value")).cloned().unwrap_or(Json::Null);
    let key_id = super::identity().key_id;
    let key_id = key_id.as_str();
    let checked = check_write(&p, &body, state.max_lease);
    let w = match checked {
        Ok(w) => w,
        Err(e) => {
            let record = audit_record(
                key_id,
                None,
                i,
                o,
                property::PRESENT_VALUE,
                None,
                p.value.as_ref(),
                &given,
                "invalid",
                Some(json!({"message": e.message})),
            );
            state.store.append_audit(record).await.map_err(ApiError::store)?;
            crate::metrics::write(&s.network, "invalid");
            return Err(e);
        }
    };
    let result = state
        .plant
        .write(
            i,
            Write { object: o, property: w.property, value: w.value.clone(), priority: w.priority },
            state.request_timeout,
        )
        .await;
    let (outcome, error) = match &result {
        Ok(_) => ("accepted", None),
        Err(CallError::Device(plantwatch_actors::plant::device::DeviceError::Bacnet(b)))
            if !matches!(b, plantwatch_actors::transport::BacnetError::Timeout { .. }) =>
        {
            ("refused", Some(bacnet_details(b)))
        }
        Err(e) => ("failed", Some(json!({"message": e.to_string()}))),
    };
    let until = w.lease.map(|d| now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    let lease = w.lease.zip(until);
    let record = audit_record(key_id, lease, i, o, w.property, w.priority, p.value.as_ref(), &given, outcome, error);
    // The lease, or the end of one, is flushed before the audit record and
    // the answer: an acknowledged lease is never lost. If it cannot be
    // stored, the attempt is still audited and the answer is 503.
    let mut granted = None;
    let mut lease_stored = Ok(());
    if let (Ok(_), Some(priority), true) = (&result, w.priority, w.property == property::PRESENT_VALUE) {
        match until {
            Some(until) => {
                let l = Lease {
                    network: s.network.clone(),
                    instance: i,
                    object: o,
                    priority,
                    value: w.value.clone(),
                    shown: given.clone(),
                    since: now_ms(),
                    until,
                    key_id: key_id.to_string(),
                    reasserts: 0,
                };
                lease_stored = state.leases.grant(l.clone()).await;
                granted = Some(l);
            }
            // A write without a lease on a leased slot is permanent; a relinquish ends the lease too.
            None => {
                lease_stored = state.leases.end(i, o, priority).await.map(|_| ());
            }
        }
    }
    // Flushed before the answer: an acknowledged write always has its record.
    state.store.append_audit(record).await.map_err(ApiError::store)?;
    crate::metrics::write(&s.network, outcome);
    // The device took the write but its lease is not stored: not acknowledged.
    lease_stored.map_err(ApiError::store)?;
    let done = result?;
    info!(device = i, object = %o, priority = ?w.priority, outcome, lease = ?w.lease, "write");
    Ok(json!({
        "lease": granted.map(|l| l.view()),
        "object": o.to_string(),
        "property": property_name(w.property),
        "priority": w.priority,
        "value": given,
        "outcome": outcome,
        "active_priority": done.active_priority,
        "present_value": done.present_value.as_ref().map(|v| view::value(o, v)),
        "request_id": super::request_id(),
    }))
}

// ---------------------------------------------------------------- discovery and audit

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryBody {
    network: Option<String>,
    low: Option<u32>,
    high: Option<u32>,
    wait_ms: Option<u64>,
}

pub async fn discovery(state: ApiState, body: DiscoveryBody) -> Answer {
    let network = match (&body.network, state.networks.as_slice()) {
        (Some(n), nets) if nets.iter().any(|x| x.name == *n) => n.clone(),
        (Some(n), _) => return Err(ApiError::new(ErrorCode::NetworkNotFound, format!("no network {n}"))),
        (None, [only]) => only.name.clone(),
        (None, _) => return Err(ApiError::invalid("network", "required when there is not exactly one network")),
    };
    let range = match (body.low, body.high) {
        (None, None) => None,
        (Some(lo), Some(hi)) if lo <= hi && hi <= plantwatch_actors::bacnet::types::MAX_INSTANCE => Some((lo, hi)),
        _ => return Err(ApiError::invalid("low", "low and high go together, low <= high <= 4194302")),
    };
    let wait = Duration::from_millis(body.wait_ms.unwrap_or(2000));
    if !(Duration::from_millis(100)..=Duration::from_secs(10)).contains(&wait) || wait >= state.request_timeout {
        return Err(ApiError::invalid("wait_ms", "must be 100..10000 and shorter than the request timeout"));
    }
    let found = state.plant.discover(&network, range, wait).await.map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
    let known: Vec<u32> = state.plant.directory.list().iter().map(|d| d.instance).collect();
    let items: Vec<Json> = found
        .iter()
        .map(|f| {
            json!({"instance": f.instance, "address": f.address.ip.to_string(),
                   "route": f.address.route.map(|r| json!({"network": r.network, "mac": r.mac.to_string()})),
                   "max_apdu": f.max_apdu, "vendor_id": f.vendor_id, "known": known.contains(&f.instance)})
        })
        .collect();
    Ok(json!({"network": network, "items": items}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn audit(state: ApiState, q: AuditQuery) -> Answer {
    let limit = params::limit(q.limit)?;
    let after: Option<u64> = q.cursor.as_deref().map(params::decode_cursor).transpose()?;
    let rows = state.store.audit_page(after, limit + 1).await.map_err(ApiError::store)?;
    let more = rows.len() > limit;
    let items: Vec<Json> = rows
        .iter()
        .take(limit)
        .map(|(seq, bytes)| {
            let mut j: Json = serde_json::from_slice(bytes).unwrap_or_else(|_| json!({"undecodable": true}));
            if let Some(m) = j.as_object_mut() {
                m.insert("sequence".into(), json!(seq));
            }
            j
        })
        .collect();
    let next = if more { rows.get(limit - 1).map(|(seq, _)| params::encode_cursor(seq)) } else { None };
    Ok(json!({"items": items, "next_cursor": next}))
}

// ---------------------------------------------------------------- keys

pub async fn list_keys(state: ApiState) -> Answer {
    let items: Vec<view::KeyView> = state.security.keys.list().iter().map(view::key).collect();
    Ok(json!({"items": items, "next_cursor": null}))
}

pub async fn create_key(state: ApiState, body: view::KeyCreateBody) -> Answer {
    let role: super::auth::Role = body.role.parse().map_err(|e: String| ApiError::invalid("role", e))?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "1 to 100 printable characters"));
    }
    let (key, record) = super::auth::generate(name, role);
    let bytes = serde_json::to_vec(&record).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    // Flushed before the answer: a key shown to the client is a key that exists.
    state.store.put_key(&record.id, bytes).await.map_err(ApiError::store)?;
    state.security.keys.insert(record.clone());
    info!(key = %record.id, role = role.as_str(), by = %super::identity().key_id, "API key created");
    Ok(json!(view::KeyCreated::new(view::key(&record), key)))
}

pub async fn revoke_key(id: String, state: ApiState) -> Answer {
    let mut record = state.security.keys.get(&id).ok_or_else(|| {
        ApiError::new(ErrorCode::KeyNotFound, format!("no API key {}", id.chars().take(40).collect::<String>()))
    })?;
    if record.revoked.is_none() {
        record.revoked = Some(now_ms());
        let bytes = serde_json::to_vec(&record).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        state.store.put_key(&record.id, bytes).await.map_err(ApiError::store)?;
        state.security.keys.insert(record.clone());
        info!(key = %record.id, by = %super::identity().key_id, "API key revoked");
    }
    Ok(json!(view::key(&record)))
}

// ---------------------------------------------------------------- health

pub fn health() -> Json {
    json!({"status": "ok"})
}

pub fn ready(state: &ApiState) -> Answer {
    if state.ready.load(std::sync::atomic::Ordering::Relaxed) {
        let devices = state.plant.directory.list();
        let mut by_status: Map<String, Json> = Map::new();
        for s in [DeviceStatus::Online, DeviceStatus::Degraded, DeviceStatus::Offline, DeviceStatus::Failed] {
            by_status.insert(s.as_str().into(), json!(devices.iter().filter(|d| d.status == s).count()));
        }
        Ok(json!({"status": "ready", "devices": devices.len(), "by_status": by_status}))
    } else {
        Err(ApiError::new(ErrorCode::NotReady, "starting or stopping: the store or the supervisors are not up"))
    }
}
