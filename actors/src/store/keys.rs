//! Byte layouts of the store's keys and values. Pure functions, no sled.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `snapshots` | `network \0 instance(BE u32)` | serde_json of the caller's snapshot type |
//! | `history` | `network \0 instance(BE u32) object \0 time(BE u64 ms since the Unix epoch)` | `value(BE f64 bits) quality(u8)`, 9 bytes |
//! | `audit` | `sequence(BE u64)`, from 1 | the caller's bytes |
//! | `api_keys` | key id (UTF-8) | the caller's bytes |
//! | `leases` | `network \0 instance(BE u32) object \0 priority(u8)` | the caller's bytes |
//! | `meta` | `schema_version` | decimal ASCII, e.g. `1` |
//!
//! A history key is self-describing: the point is readable in a backup and a
//! prune can tell where one point's rows end without a second index. The
//! point part (`network \0 instance object \0`) is a prefix-free code (names
//! cannot hold `\0`, the instance is fixed width), so every point's rows form
//! one contiguous, time-ordered range. A compact numeric point id would save
//! about 20 bytes per row before sled's per-node prefix compression, which
//! already strips most of the shared point prefix inside a leaf; it would cost
//! a second tree to keep consistent and to back up, so it is not used.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of the time suffix of a history key.
pub const TIME_LEN: usize = 8;
/// Length of a history value.
pub const HISTORY_VALUE_LEN: usize = 9;

/// Why a name cannot be part of a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {name:?} contains a NUL byte")]
    Nul { what: &'static str, name: String },
}

fn check(what: &'static str, name: &str) -> Result<(), KeyError> {
    if name.is_empty() {
        return Err(KeyError::Empty { what });
    }
    if name.as_bytes().contains(&0) {
        return Err(KeyError::Nul { what, name: name.to_owned() });
    }
    Ok(())
}

/// Milliseconds since the Unix epoch; a time before the epoch counts as 0 and
/// one past `u64::MAX` ms as `u64::MAX`.
pub fn millis(at: SystemTime) -> u64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub fn snapshot_key(network: &str, instance: u32) -> Result<Vec<u8>, KeyError> {
    check("network name", network)?;
    let mut key = Vec::with_capacity(network.len() + 5);
    key.extend_from_slice(network.as_bytes());
    key.push(0);
    key.extend_from_slice(&instance.to_be_bytes());
    Ok(key)
}

/// The network and instance of a snapshot key, `None` if it is not one.
pub fn parse_snapshot_key(key: &[u8]) -> Option<(String, u32)> {
    let nul = key.iter().position(|&b| b == 0)?;
    let network = std::str::from_utf8(&key[..nul]).ok()?;
    let rest: [u8; 4] = key[nul + 1..].try_into().ok()?;
    if network.is_empty() {
        return None;
    }
    Some((network.to_owned(), u32::from_be_bytes(rest)))
}

/// `network \0 instance object \0`: the part of a history key shared by all
/// rows of one point.
pub fn point_prefix(network: &str, instance: u32, object: &str) -> Result<Vec<u8>, KeyError> {
    check("network name", network)?;
    check("object", object)?;
    let mut key = Vec::with_capacity(network.len() + object.len() + 6 + TIME_LEN);
    key.extend_from_slice(network.as_bytes());
    key.push(0);
    key.extend_from_slice(&instance.to_be_bytes());
    key.extend_from_slice(object.as_bytes());
    key.push(0);
    Ok(key)
}

/// The key of a lease: a point prefix followed by the priority.
pub fn lease_key(network: &str, instance: u32, object: &str, priority: u8) -> Result<Vec<u8>, KeyError> {
    let mut key = point_prefix(network, instance, object)?;
    key.push(priority);
    Ok(key)
}

/// The network, instance, object and priority of a lease key.
pub fn parse_lease_key(key: &[u8]) -> Option<(String, u32, String, u8)> {
    let (&priority, rest) = key.split_last()?;
    let nul = rest.iter().position(|&b| b == 0)?;
    let network = std::str::from_utf8(&rest[..nul]).ok()?;
    let instance: [u8; 4] = rest.get(nul + 1..nul + 5)?.try_into().ok()?;
    let object = rest.get(nul + 5..)?.strip_suffix(&[0])?;
    let object = std::str::from_utf8(object).ok()?;
    if network.is_empty() || object.is_empty() || object.contains('\0') {
        return None;
    }
    Some((network.to_owned(), u32::from_be_bytes(instance), object.to_owned(), priority))
}

/// A point prefix followed by a time.
pub fn history_key(prefix: &[u8], ms: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + TIME_LEN);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&ms.to_be_bytes());
    key
}

/// The greatest key any row of the point with this prefix can have: seeking
/// past it skips the rest of the point.
pub fn point_end(prefix: &[u8]) -> Vec<u8> {
    history_key(prefix, u64::MAX)
}

/// Splits a history key into its point prefix and time; `None` if the key
/// does not have the history shape.
pub fn split_history_key(key: &[u8]) -> Option<(&[u8], u64)> {
    let nul = key.iter().position(|&b| b == 0)?;
    // network \0, 4 bytes of instance, object (at least one byte) \0, time
    let object_start = nul + 5;
    let time_start = key.len().checked_sub(TIME_LEN)?;
    if time_start < object_start + 2 || key[time_start - 1] != 0 {
        return None;
    }
    if key[object_start..time_start - 1].contains(&0) {
        return None;
    }
    let time: [u8; TIME_LEN] = key[time_start..].try_into().ok()?;
    Some((&key[..time_start], u64::from_be_bytes(time)))
}

pub fn history_value(value: f64, quality: u8) -> [u8; HISTORY_VALUE_LEN] {
    let mut out = [0; HISTORY_VALUE_LEN];
    out[..8].copy_from_slice(&value.to_bits().to_be_bytes());
    out[8] = quality;
    out
}

pub fn parse_history_value(bytes: &[u8]) -> Option<(f64, u8)> {
    let bytes: &[u8; HISTORY_VALUE_LEN] = bytes.try_into().ok()?;
    let mut bits = [0; 8];
    bits.copy_from_slice(&bytes[..8]);
    Some((f64::from_bits(u64::from_be_bytes(bits)), bytes[8]))
}

pub fn audit_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

pub fn parse_audit_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_keys_round_trip_and_reject_bad_names() {
        let key = snapshot_key("bldg-a", 1001).unwrap();
        assert_eq!(key, b"bldg-a\0\0\0\x03\xe9");
        assert_eq!(parse_snapshot_key(&key), Some(("bldg-a".to_owned(), 1001)));
        assert_eq!(parse_snapshot_key(b"bldg-a\0\0\0\x03"), None);
        assert_eq!(parse_snapshot_key(b"\0\0\0\0\x01"), None);
        assert!(matches!(snapshot_key("", 1), Err(KeyError::Empty { .. })));
        assert!(matches!(snapshot_key("a\0b", 1), Err(KeyError::Nul { .. })));
    }

    #[test]
    fn lease_keys_round_trip() {
        // An instance whose bytes hold NUL must not confuse the parse.
        let key = lease_key("bldg-a", 256, "analog-output:1", 8).unwrap();
        assert_eq!(parse_lease_key(&key), Some(("bldg-a".to_owned(), 256, "analog-output:1".to_owned(), 8)));
        assert_eq!(parse_lease_key(b"bldg-a\0\0\0\x01"), None);
        assert!(matches!(lease_key("a", 1, "", 8), Err(KeyError::Empty { .. })));
    }

    #[test]
    fn history_keys_split_back_into_point_and_time() {
        // An instance whose bytes contain NUL and 0xFF must not confuse the split.
        let prefix = point_prefix("n", 0x00FF_0000, "analog-input:3").unwrap();
        let key = history_key(&prefix, 1_700_000_000_123);
        assert_eq!(split_history_key(&key), Some((&prefix[..], 1_700_000_000_123)));
        assert!(key < point_end(&prefix));
        assert_eq!(split_history_key(b"short"), None);
        assert_eq!(split_history_key(&snapshot_key("n", 1).unwrap()), None);
        assert!(point_prefix("n", 1, "").is_err());
        assert!(point_prefix("n", 1, "a\0").is_err());
    }

    #[test]
    fn points_are_contiguous_and_time_ordered() {
        // "a"/"ab" and "x"/"x:1" share byte prefixes; their rows must not interleave.
        let mut keys = Vec::new();
        for (net, obj) in [("a", "x"), ("ab", "x"), ("a", "x:1")] {
            let prefix = point_prefix(net, 7, obj).unwrap();
            for ms in [5u64, 300, 1 << 40] {
                keys.push((history_key(&prefix, ms), prefix.clone(), ms));
            }
        }
        keys.sort();
        for pair in keys.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.1 == b.1 {
                assert!(a.2 < b.2);
            } else {
                // once a point is left, it never comes back
                assert!(keys.iter().filter(|k| k.1 == a.1).all(|k| k.0 <= a.0));
            }
        }
    }

    #[test]
    fn values_and_times() {
        let v = history_value(-21.5, 3);
        assert_eq!(parse_history_value(&v), Some((-21.5, 3)));
        assert_eq!(parse_history_value(&v[..8]), None);
        assert_eq!(millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(millis(from_millis(42)), 42);
        assert_eq!(parse_audit_key(&audit_key(9)), Some(9));
    }
}
