//! Path and query parameters: parsed and checked before anything reaches a
//! handler's logic, a log line or a BACnet frame.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plantwatch_actors::bacnet::types::{parse_object_type, MAX_INSTANCE};
use plantwatch_actors::bacnet::ObjectId;
use plantwatch_actors::plant::model::{DeviceStatus, Millis, Quality};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// The query string as `T`. An unknown or malformed parameter is a 400
/// `INVALID_PARAMETER` that names it in `details.fields` (warp's own query
/// filter says only "Invalid query string").
pub fn query<T: DeserializeOwned + Send + 'static>(
) -> impl warp::Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|q: String| async move { parse_query::<T>(&q).map_err(warp::reject::custom) })
}

pub fn parse_query<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let reason = e.inner().to_string();
        let field = match e.path().to_string() {
            // serde names an unknown field only in its message: "unknown field `x`, expected ..."
            p if p == "." => reason.split('`').nth(1).unwrap_or("query").to_string(),
            p => p,
        };
        ApiError::parameter(&field, reason)
    })
}

pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;

pub fn limit(l: Option<usize>) -> Result<usize, ApiError> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(_) => Err(ApiError::parameter("limit", format!("must be 1..{MAX_LIMIT}"))),
    }
}

pub fn instance(s: &str) -> Result<u32, ApiError> {
    s.parse::<u32>()
        .ok()
        .filter(|i| *i <= MAX_INSTANCE)
        .ok_or_else(|| ApiError::parameter("instance", format!("must be a device instance 0..{MAX_INSTANCE}")))
}

/// An object reference like `analog-input:3`.
pub fn object(s: &str) -> Result<ObjectId, ApiError> {
    s.parse::<ObjectId>().map_err(|e| ApiError::parameter("object", format!("{e} (e.g. analog-input:3)")))
}

pub fn object_type(s: &str) -> Result<u16, ApiError> {
    parse_object_type(s).map_err(|e| ApiError::parameter("type", format!("{e} (e.g. analog-input)")))
}

pub fn status(s: &str) -> Result<DeviceStatus, ApiError> {
    serde_json::from_value(serde_json::json!(s))
        .map_err(|_| ApiError::parameter("status", "must be one of enrolling, online, degraded, offline, failed"))
}

pub fn quality(s: &str) -> Result<Quality, ApiError> {
    serde_json::from_value(serde_json::json!(s))
        .map_err(|_| ApiError::parameter("quality", "must be one of good, stale, comm-failure, error"))
}

/// An RFC 3339 time (`2026-11-26T02:10:00Z`) as milliseconds since the epoch.
pub fn time(field: &str, s: &str) -> Result<Millis, ApiError> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|_| ApiError::parameter(field, "must be an RFC 3339 time, e.g. 2026-11-26T02:10:00Z"))?;
    Ok(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

pub fn system_time(ms: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A search term: at most 100 characters, matched case-insensitively.
pub fn search(q: Option<&str>) -> Result<Option<String>, ApiError> {
    match q {
        None => Ok(None),
        Some(q) if q.chars().count() > 100 => Err(ApiError::parameter("q", "at most 100 characters")),
        Some(q) => Ok(Some(q.to_lowercase())),
    }
}

/// A sort key from a fixed set, `-` in front for descending.
pub fn sort<'a>(s: Option<&'a str>, keys: &[&'a str]) -> Result<(&'a str, bool), ApiError> {
    let Some(s) = s else { return Ok((keys[0], false)) };
    let (key, desc) = match s.strip_prefix('-') {
        Some(k) => (k, true),
        None => (s, false),
    };
    match keys.iter().find(|k| **k == key) {
        Some(k) => Ok((k, desc)),
        None => Err(ApiError::parameter("sort", format!("must be one of {} (with - for descending)", keys.join(", ")))),
    }
}

/// A value to sort by: numbers before strings, compared within their kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    Num(u64),
    Text(String),
}

/// Where a page ended: the sort key it was made for, the last item's sort
/// value and its unique id. The next page starts strictly after it, so items
/// added or removed meanwhile cause neither duplicates nor gaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub sort: String,
    pub value: SortValue,
    pub id: String,
}

pub fn encode_cursor<T: Serialize>(t: &T) -> String {
    serde_json::to_vec(t).unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_cursor<T: DeserializeOwned>(s: &str) -> Result<T, ApiError> {
    let bad = || ApiError::parameter("cursor", "not a cursor from this API (use next_cursor as given)");
    if s.len() > 2048 || !s.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    serde_json::from_slice(&bytes.ok_or_else(bad)?).map_err(|_| bad())
}

/// Sorts `items` by `(value, id)`, skips what comes up to `after`, and
/// returns one page and the cursor of the next.
pub fn page<T>(
    mut items: Vec<(SortValue, String, T)>,
    sort: &str,
    desc: bool,
    after: Option<Cursor>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    if let Some(c) = &after {
        if c.sort != sort {
            return Err(ApiError::parameter("cursor", "the cursor was made for another sort order"));
        }
    }
    items.sort_by(|a, b| {
        let o = (&a.0, &a.1).cmp(&(&b.0, &b.1));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let start = match &after {
        None => 0,
        Some(c) => items.partition_point(|(v, id, _)| {
            // Skip everything up to and including the cursor's item.
            let o = (v, id).cmp(&(&c.value, &c.id));
            if desc {
                o.is_ge()
            } else {
                o.is_le()
            }
        }),
    };
    let mut rest = items.into_iter().skip(start);
    let page: Vec<(SortValue, String, T)> = rest.by_ref().take(limit).collect();
    let next = match (rest.next(), page.last()) {
        (Some(_), Some((v, id, _))) => {
            Some(encode_cursor(&Cursor { sort: sort.to_string(), value: v.clone(), id: id.clone() }))
        }
        _ => None,
    };
    Ok((page.into_iter().map(|(_, _, t)| t).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_without_duplicates_or_gaps_while_items_change() {
        let mk = |ids: &[u32]| -> Vec<(SortValue, String, u32)> {
            ids.iter().map(|&i| (SortValue::Num(u64::from(i % 7)), format!("{i:08}"), i)).collect()
        };
        let mut all: Vec<u32> = (0..50).collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (items, next) = page(mk(&all), "k", false, cursor.clone(), 6).unwrap();
            seen.extend(items);
            // an item is added before and after the cursor on every page
            all.push(1000 + seen.len() as u32 * 7);
            let Some(n) = next else { break };
            cursor = Some(decode_cursor::<Cursor>(&n).unwrap());
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "no duplicates");
        assert!((0..50).all(|i| seen.contains(&i)), "no gaps among the items present all along");
    }

    #[test]
    fn descending_pages_and_foreign_cursors() {
        let items: Vec<(SortValue, String, u32)> =
            (0..5).map(|i| (SortValue::Num(i), i.to_string(), i as u32)).collect();
        let (first, next) = page(items.clone(), "k", true, None, 2).unwrap();
        assert_eq!(first, vec![4, 3]);
        let c = decode_cursor::<Cursor>(&next.unwrap()).unwrap();
        let (second, _) = page(items.clone(), "k", true, Some(c.clone()), 2).unwrap();
        assert_eq!(second, vec![2, 1]);
        assert!(page(items, "other", true, Some(c), 2).is_err());
        assert!(decode_cursor::<Cursor>("zz").is_err());
        assert!(decode_cursor::<Cursor>("7b7d").is_err());
    }

    #[test]
    fn parameters_are_checked() {
        assert!(instance("4194302").is_ok());
        assert!(instance("4194303").is_err());
        assert!(instance("-1").is_err());
        assert!(object("analog-input:3").is_ok());
        assert!(object("analog-input").is_err());
        assert!(limit(Some(0)).is_err());
        assert_eq!(sort(Some("-name"), &["instance", "name"]).unwrap(), ("name", true));
        assert!(sort(Some("color"), &["instance", "name"]).is_err());
        assert!(time("from", "2026-11-26T02:10:00Z").is_ok());
        assert!(time("from", "yesterday").is_err());
        assert!(search(Some(&"x".repeat(101))).is_err());
    }
}
