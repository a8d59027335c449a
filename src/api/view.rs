//! The API's JSON shapes of devices and points (DESIGN §7), made from
//! snapshots. Values are shown as people read them: numbers, `"active"` /
//! `"inactive"` for binary objects, the state number with its text for
//! multi-state objects.

use std::time::{Duration, UNIX_EPOCH};

use plantwatch_actors::bacnet::codec::Value;
use plantwatch_actors::bacnet::types::{object_type, units_name, ObjectId};
use plantwatch_actors::plant::model::{DeviceSnapshot, Millis, Point};
use serde_json::{json, Value as Json};

pub fn time(ms: Millis) -> Json {
    if ms == 0 {
        return Json::Null;
    }
    Json::String(humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

fn is_binary(o: ObjectId) -> bool {
    matches!(o.object_type, object_type::BINARY_INPUT | object_type::BINARY_OUTPUT | object_type::BINARY_VALUE)
}

/// A value as JSON, knowing which object it belongs to.
pub fn value(object: ObjectId, v: &Value) -> Json {
    match v {
        Value::Enumerated(e) if is_binary(object) => Json::String(if *e == 0 { "inactive" } else { "active" }.into()),
        other => plain(other),
    }
}

fn plain(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Unsigned(u) => json!(u),
        Value::Signed(i) => json!(i),
        // The shortest decimal that reads back as the same f32: 21.4, not 21.399999618530273.
        Value::Real(f) if f.is_finite() => json!(f.to_string().parse::<f64>().unwrap_or(f64::from(*f))),
        Value::Double(f) if f.is_finite() => json!(f),
        Value::Real(f) => Json::String(f.to_string()),
        Value::Double(f) => Json::String(f.to_string()),
        Value::Enumerated(e) => json!(e),
        Value::CharacterString(s) => Json::String(s.clone()),
        Value::OctetString(b) | Value::Opaque(b) => {
            json!({"hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>()})
        }
        Value::BitString(b) => Json::Array((0..b.len()).map(|i| Json::Bool(b.get(i))).collect()),
        Value::ObjectId(o) => Json::String(o.to_string()),
        Value::Date(d) => Json::String(format!("{}-{:02}-{:02}", 1900 + u32::from(d.0[0]), d.0[1], d.0[2])),
        Value::Time(t) => Json::String(format!("{:02}:{:02}:{:02}.{:02}", t.0[0], t.0[1], t.0[2], t.0[3])),
        Value::List(items) => Json::Array(items.iter().map(plain).collect()),
    }
}

pub fn point(p: &Point, now: Millis) -> Json {
    let mut j = json!({
        "object": p.object.to_string(),
        "name": p.name,
        "description": p.description,
        "value": p.value.as_ref().map_or(Json::Null, |v| value(p.object, v)),
        "units": p.units.map(units_name),
        "quality": p.quality_at(now),
        "status_flags": p.status_flags,
        "updated_at": time(p.updated_at),
        "commandable": p.commandable,
        "poll_interval_ms": p.poll_ms,
        "cov": p.cov_wanted && p.cov_refused.is_none(),
    });
    if let Some(e) = p.error {
        j["error"] = json!({"class": e.class, "code": e.code, "text": e.to_string()});
    }
    if !p.state_text.is_empty() {
        let text =
            p.value.as_ref().and_then(Value::as_unsigned).and_then(|n| p.state_text.get((n as usize).checked_sub(1)?));
        j["state_text"] = json!(text);
        j["state_texts"] = json!(p.state_text);
    }
    if let Some(r) = &p.cov_refused {
        j["cov_refused"] = json!(r);
    }
    j
}

pub fn device(s: &DeviceSnapshot) -> Json {
    let id = s.identity.as_ref();
    json!({
        "instance": s.instance,
        "network": s.network,
        "name": s.name(),
        "address": s.address.to_string(),
        "route": s.route.map(|r| json!({"network": r.network, "mac": r.mac.to_string()})),
        "status": s.status,
        "vendor": id.map(|i| i.vendor_name.as_str()),
        "vendor_id": id.map(|i| i.vendor_id),
        "model": id.map(|i| i.model_name.as_str()),
        "firmware": id.map(|i| i.firmware_revision.as_str()),
        "database_revision": id.and_then(|i| i.database_revision),
        "last_seen": time(s.last_seen.unwrap_or(0)),
        "last_error": s.last_error,
        "capabilities": {
            "rpm": s.use_rpm,
            "rpm_fallback_reason": s.rpm_fallback_reason,
            "segmentation": id.and_then(|i| i.segmentation),
            "max_apdu": id.map(|i| i.max_apdu),
            "cov": id.is_some_and(|i| i.cov_listed),
        },
        "points": s.points.len(),
        "cov_subscriptions": s.cov_subscriptions,
        "counters": s.counters,
    })
}

/// `analog-input` for `analog-input:3`.
pub fn type_name(o: ObjectId) -> String {
    plantwatch_actors::bacnet::types::object_type_name(o.object_type)
}
