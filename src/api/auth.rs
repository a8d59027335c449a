//! API keys and roles.
//!
//! A key is `pw_` and 64 hex digits (256 random bits), shown once when it is
//! made. The store keeps only its SHA-256 with an id, a name, a role, when it
//! was made and last used, and whether it is revoked. A request presents it
//! as `Authorization: Bearer KEY` or `X-API-Key: KEY`, never in the query
//! string; it is found by its hash and the hashes are compared in constant
//! time. Revocation takes effect on the next request.
//!
//! Roles: `read` (every GET), `operator` (read, point writes, discovery),
//! `admin` (operator, audit, key management).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use plantwatch_actors::plant::model::{now_ms, Millis};
use plantwatch_actors::store::Store;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do. Ordered: each role can do what the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Operator,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("'{s}' is not a role: read, operator or admin")),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// SHA-256 of the key, hex.
    pub hash: String,
    pub created: Millis,
    pub last_used: Option<Millis>,
    pub revoked: Option<Millis>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The key id, or `anonymous` when authentication is off.
    pub key_id: String,
    pub role: Role,
}

impl Identity {
    pub fn anonymous() -> Self {
        Self { key_id: "anonymous".into(), role: Role::Admin }
    }
}

/// Keys longer than this are refused before hashing.
pub const MAX_KEY_LEN: usize = 256;
/// Shortest secret accepted for a bootstrap key.
pub const MIN_SECRET_LEN: usize = 32;

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new random key and its record.
pub fn generate(name: &str, role: Role) -> (String, KeyRecord) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("pw_{}", hex(&secret));
    let mut id = [0u8; 6];
    rand::rng().fill_bytes(&mut id);
    let record = record_for(&key, &hex(&id), name, role);
    (key, record)
}

/// The record of a key whose secret is given (bootstrap).
pub fn record_for(key: &str, id: &str, name: &str, role: Role) -> KeyRecord {
    KeyRecord {
        id: id.to_string(),
        name: name.to_string(),
        role,
        hash: hex(&hash(key)),
        created: now_ms(),
        last_used: None,
        revoked: None,
    }
}

/// A SHA-256.
type Digest32 = [u8; 32];

/// A key's record, its hash, and its last use (millis, 0: not yet).
type StoredKey = (KeyRecord, Digest32, Arc<AtomicU64>);

/// The keys, cached from the store: looked up by hash on every request.
#[derive(Clone, Default)]
pub struct KeyRing {
    inner: Arc<RwLock<Vec<StoredKey>>>,
}

/// Why a presented key is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    TooLong,
    Unknown,
    Revoked,
}

impl KeyRing {
    pub async fn load(store: &Store) -> Result<Self, String> {
        let ring = KeyRing::default();
        for (_, bytes) in store.list_keys().await.map_err(|e| e.to_string())? {
            let record: KeyRecord =
                serde_json::from_slice(&bytes).map_err(|e| format!("a stored API key is unreadable: {e}"))?;
            ring.insert(record);
        }
        Ok(ring)
    }

    pub fn insert(&self, record: KeyRecord) {
        let Some(h) = unhex(&record.hash) else { return };
        let mut keys = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let used = keys
            .iter()
            .find(|(r, _, _)| r.id == record.id)
            .map_or_else(|| Arc::new(AtomicU64::new(record.last_used.unwrap_or(0))), |(_, _, u)| u.clone());
        keys.retain(|(r, _, _)| r.id != record.id);
        keys.push((record, h, used));
    }

    pub fn list(&self) -> Vec<KeyRecord> {
        let keys = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<KeyRecord> = keys.iter().map(|(r, _, u)| with_last_use(r, u)).collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        out
    }

    pub fn get(&self, id: &str) -> Option<KeyRecord> {
        let keys = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.iter().find(|(r, _, _)| r.id == id).map(|(r, _, u)| with_last_use(r, u))
    }

    pub fn is_empty(&self) -> bool {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }

    /// Checks a presented key. Every stored hash is compared, in constant
    /// time, so the time taken does not say which key came close.
    pub fn check(&self, presented: Option<&str>) -> Result<Identity, Refusal> {
        let key = presented.ok_or(Refusal::Missing)?;
        if key.len() > MAX_KEY_LEN {
            return Err(Refusal::TooLong);
        }
        let h = hash(key);
        let keys = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found: Option<(&KeyRecord, &AtomicU64)> = None;
        for (record, stored, used) in keys.iter() {
            if bool::from(stored.ct_eq(&h)) {
                found = Some((record, used));
            }
        }
        match found {
            Some((r, _)) if r.revoked.is_some() => Err(Refusal::Revoked),
            Some((r, used)) => {
                used.store(now_ms(), Ordering::Relaxed);
                Ok(Identity { key_id: r.id.clone(), role: r.role })
            }
            None => Err(Refusal::Unknown),
        }
    }
}

/// A record with its last use as seen by this process (not written to the
/// store on every request: a restart forgets it).
fn with_last_use(r: &KeyRecord, used: &AtomicU64) -> KeyRecord {
    let mut r = r.clone();
    r.last_used = Some(used.load(Ordering::Relaxed)).filter(|t| *t > 0);
    r
}

/// The key presented with a request: `Authorization: Bearer KEY` or
/// `X-API-Key: KEY` (never the query string).
pub fn presented(headers: &warp::http::HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok())?;
    let (scheme, rest) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim().to_string())
}

/// The role a route needs; `None`: public.
pub fn required_role(method: &warp::http::Method, route: &str, metrics_public: bool) -> Option<Role> {
    use warp::http::Method;
    match route {
        "/health" | "/ready" | "/docs" | "/api/v1/openapi.json" => None,
        "/metrics" if metrics_public => None,
        "/metrics" => Some(Role::Read),
        "/api/v1/audit" | "/api/v1/keys" | "/api/v1/keys/{id}" => Some(Role::Admin),
        "/api/v1/discovery" => Some(Role::Operator),
        _ if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS => Some(Role::Read),
        _ => Some(Role::Operator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_by_hash_and_revocation_counts() {
        let ring = KeyRing::default();
        let (key, mut record) = generate("ops", Role::Operator);
        assert!(key.starts_with("pw_") && key.len() == 67);
        assert!(!record.hash.contains(&key[3..]), "the key is not stored");
        ring.insert(record.clone());
        assert_eq!(ring.get(&record.id).and_then(|r| r.last_used), None);
        assert_eq!(ring.check(Some(&key)), Ok(Identity { key_id: record.id.clone(), role: Role::Operator }));
        assert!(ring.get(&record.id).and_then(|r| r.last_used).is_some(), "last use is kept");
        assert_eq!(ring.check(Some("pw_0000")), Err(Refusal::Unknown));
        assert_eq!(ring.check(None), Err(Refusal::Missing));
        assert_eq!(ring.check(Some(&"x".repeat(300))), Err(Refusal::TooLong));
        // a key differing in case is another key
        assert_eq!(ring.check(Some(&key.to_uppercase())), Err(Refusal::Unknown));
        record.revoked = Some(1);
        ring.insert(record);
        assert_eq!(ring.check(Some(&key)), Err(Refusal::Revoked));
    }

    #[test]
    fn roles_are_ordered_and_routes_need_theirs() {
        use warp::http::Method;
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Read);
        assert_eq!(required_role(&Method::GET, "/health", false), None);
        assert_eq!(required_role(&Method::GET, "/metrics", true), None);
        assert_eq!(required_role(&Method::GET, "/metrics", false), Some(Role::Read));
        assert_eq!(required_role(&Method::GET, "/api/v1/devices", true), Some(Role::Read));
        assert_eq!(
            required_role(&Method::PUT, "/api/v1/devices/{instance}/points/{object}", true),
            Some(Role::Operator)
        );
        assert_eq!(required_role(&Method::POST, "/api/v1/discovery", true), Some(Role::Operator));
        assert_eq!(required_role(&Method::GET, "/api/v1/audit", true), Some(Role::Admin));
        assert_eq!(required_role(&Method::DELETE, "/api/v1/keys/{id}", true), Some(Role::Admin));
        assert_eq!(required_role(&Method::DELETE, "unknown", true), Some(Role::Operator));
    }

    #[test]
    fn keys_come_from_headers_only() {
        let mut h = warp::http::HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert("authorization", "Bearer pw_abc".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("pw_abc"));
        h.insert("authorization", "Basic pw_abc".parse().unwrap());
        assert_eq!(presented(&h), None);
        h.insert("x-api-key", "pw_def".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("pw_def"));
    }
}
