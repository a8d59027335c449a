//! Rate limits: token buckets per API key (callers with a key) and per client
//! IP (callers without), with separate budgets for reads, writes and failed
//! authentications (a brute-force guard, per IP). Every answer reports its bucket in `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset`; a refused request gets 429
//! with `Retry-After`.
//!
//! Written here rather than taken from governor because the answers need
//! each bucket's remaining tokens and reset time, and memory must stay
//! bounded under many distinct keys or addresses: buckets that are full again
//! carry no information and are dropped, and past `MAX_BUCKETS` the stalest
//! half goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept per budget before the stalest are dropped.
pub const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    Key(String),
    Ip(IpAddr),
}

/// One budget: `rate` tokens per second, at most `capacity`.
#[derive(Debug)]
pub struct Budget {
    rate: f64,
    capacity: f64,
    buckets: Mutex<HashMap<Who, Bucket>>,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
    /// Seconds until one request is allowed (when refused).
    pub retry_after: u64,
}

impl Budget {
    pub fn new(per_second: f64, burst: f64) -> Self {
        let rate = per_second.max(f64::MIN_POSITIVE);
        Self { rate, capacity: (per_second * burst).max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `who` at `now`.
    pub fn take(&self, who: &Who, now: Instant) -> Verdict {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(who) {
            self.evict(&mut buckets, now);
        }
        let b = buckets.entry(who.clone()).or_insert(Bucket { tokens: self.capacity, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.capacity);
        b.at = now;
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        let missing = self.capacity - b.tokens;
        Verdict {
            allowed,
            limit: self.capacity as u64,
            remaining: b.tokens.floor() as u64,
            reset: (missing / self.rate).ceil() as u64,
            retry_after: if allowed { 0 } else { ((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64 },
        }
    }

    /// Drops buckets that are full again (they say nothing), then, if still
    /// too many, the least recently used half.
    fn evict(&self, buckets: &mut HashMap<Who, Bucket>, now: Instant) {
        let full_after = Duration::from_secs_f64(self.capacity / self.rate);
        buckets.retain(|_, b| now.saturating_duration_since(b.at) < full_after);
        if buckets.len() >= MAX_BUCKETS {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            buckets.retain(|_, b| b.at > cutoff);
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Read,
    Write,
}

/// Every budget of the API.
#[derive(Debug)]
pub struct Limits {
    pub reads: Budget,
    pub writes: Budget,
    pub auth_failures: Budget,
}

impl Limits {
    pub fn new(read_per_s: f64, write_per_s: f64, auth_failures_per_min: f64, burst: f64) -> Self {
        Self {
            reads: Budget::new(read_per_s, burst),
            writes: Budget::new(write_per_s, burst),
            // A minute's worth at once, then one every 60/n seconds.
            auth_failures: Budget::new(auth_failures_per_min / 60.0, 60.0),
        }
    }

    /// Spends one request of `class`: from the key's bucket when the caller
    /// has a key (so one key's burst never limits another, even from the same
    /// address), else from the client address's.
    pub fn spend(&self, class: Class, key: Option<&str>, ip: IpAddr, now: Instant) -> Verdict {
        let budget = match class {
            Class::Read => &self.reads,
            Class::Write => &self.writes,
        };
        match key {
            Some(k) => budget.take(&Who::Key(k.to_string()), now),
            None => budget.take(&Who::Ip(ip), now),
        }
    }

    /// True when this IP has failed authentication too often.
    pub fn auth_blocked(&self, ip: IpAddr, now: Instant) -> Option<Verdict> {
        let b = &self.auth_failures;
        let buckets = b.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.get(&Who::Ip(ip))?;
        let tokens = (bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * b.rate).min(b.capacity);
        (tokens < 1.0).then(|| Verdict {
            allowed: false,
            limit: b.capacity as u64,
            remaining: 0,
            reset: ((b.capacity - tokens) / b.rate).ceil() as u64,
            retry_after: ((1.0 - tokens) / b.rate).ceil().max(1.0) as u64,
        })
    }

    /// Records a failed authentication from `ip`.
    pub fn auth_failed(&self, ip: IpAddr, now: Instant) {
        self.auth_failures.take(&Who::Ip(ip), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_burst_past_the_capacity_is_refused_and_refills() {
        let b = Budget::new(5.0, 2.0);
        let now = Instant::now();
        let who = Who::Key("k".into());
        let verdicts: Vec<Verdict> = (0..11).map(|_| b.take(&who, now)).collect();
        assert!(verdicts[..10].iter().all(|v| v.allowed));
        assert_eq!((verdicts[0].limit, verdicts[0].remaining), (10, 9));
        let refused = verdicts[10];
        assert!(!refused.allowed);
        assert_eq!((refused.remaining, refused.retry_after, refused.reset), (0, 1, 2));
        // a fifth of a second later one token is back
        assert!(b.take(&who, now + Duration::from_millis(200)).allowed);
    }

    #[test]
    fn one_keys_burst_does_not_limit_another() {
        let l = Limits::new(2.0, 1.0, 20.0, 1.0);
        let now = Instant::now();
        assert!(l.spend(Class::Read, Some("a"), ip(1), now).allowed);
        assert!(l.spend(Class::Read, Some("a"), ip(2), now).allowed);
        assert!(!l.spend(Class::Read, Some("a"), ip(3), now).allowed, "key a is spent");
        assert!(l.spend(Class::Read, Some("b"), ip(1), now).allowed, "key b is not, from the same address");
        // callers without a key share their address's bucket
        assert!(l.spend(Class::Read, None, ip(7), now).allowed);
        assert!(l.spend(Class::Read, None, ip(7), now).allowed);
        assert!(!l.spend(Class::Read, None, ip(7), now).allowed);
        // writes have their own budget
        assert!(l.spend(Class::Write, Some("a"), ip(5), now).allowed);
    }

    #[test]
    fn the_brute_force_guard_trips_after_the_failures_per_minute() {
        let l = Limits::new(100.0, 10.0, 3.0, 1.0);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(l.auth_blocked(ip(9), now).is_none());
            l.auth_failed(ip(9), now);
        }
        let v = l.auth_blocked(ip(9), now).expect("blocked");
        assert_eq!(v.retry_after, 20);
        assert!(l.auth_blocked(ip(8), now).is_none(), "another address is not");
        assert!(l.auth_blocked(ip(9), now + Duration::from_secs(21)).is_none());
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let b = Budget::new(1.0, 1.0);
        let now = Instant::now();
        for n in 0..(MAX_BUCKETS as u32 + 5_000) {
            b.take(&Who::Ip(ip(n)), now);
        }
        assert!(b.len() <= MAX_BUCKETS, "{}", b.len());
        // once they are full again they are dropped at the next eviction
        b.take(&Who::Ip(ip(u32::MAX)), now + Duration::from_secs(5));
        let later = now + Duration::from_secs(5);
        for n in 0..(MAX_BUCKETS as u32) {
            b.take(&Who::Ip(ip(n + 1_000_000)), later);
        }
        assert!(b.len() <= MAX_BUCKETS);
    }
}
