//! The sans-IO heart of a device actor: which points are due, how they are
//! batched, what an answer or a silence does to values, quality and status,
//! when an offline device is probed again, and which values go to history.
//! The actor only moves these decisions onto the network and back.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::model::{DeviceSnapshot, DeviceStatus, Millis, Point, Quality};
use crate::bacnet::codec::Value;
use crate::bacnet::services::{ErrorClassCode, PropertyResult};
use crate::bacnet::types::{object_type, property, BitString, ObjectId, StatusFlags};
use crate::transport::BacnetError;

/// Estimated octets one polled point adds to a ReadPropertyMultiple answer
/// (Present_Value and Status_Flags with their tags), with room for short strings.
const OCTETS_PER_POINT: usize = 40;

/// Points per ReadPropertyMultiple request for a device with this max-APDU.
pub fn batch_size(max_apdu: u32) -> usize {
    ((max_apdu as usize).saturating_sub(16) / OCTETS_PER_POINT).clamp(1, 64)
}

/// The polling schedule of one device: when each point is next due.
///
/// A new schedule polls every point within its first second (values soon
/// after a start or an enrolment), then moves each point to a random phase
/// of its interval, so that a plant of many devices never polls in lock-step.
#[derive(Debug, Clone)]
pub struct Schedule {
    next_due: Vec<Instant>,
    /// Still in the first round: the next due time gets the device's phase.
    first_round: Vec<bool>,
    /// Where in each interval this device polls (0..1). One phase for the
    /// whole device keeps points of one interval due together, so they share
    /// one ReadPropertyMultiple.
    phase: f64,
}

/// What [`Schedule::take_due`] found due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The points to read now, in request-sized batches.
    pub batches: Vec<Vec<ObjectId>>,
    /// The poll starts later than a point's due time plus its
    /// [`overrun_window`]: an overrun (the previous poll was still running,
    /// or the actor or its network could not keep up).
    pub late: bool,
}

/// How late a poll may start before it counts as an overrun: a tenth of the
/// interval, at least 100 ms (the jitter of timers and of a busy mailbox).
pub fn overrun_window(interval: Duration) -> Duration {
    (interval / 10).max(Duration::from_millis(100))
}

/// The first round of a new schedule is spread over at most this long.
const FIRST_ROUND: Duration = Duration::from_secs(1);

fn random_within(d: Duration, rng: &mut impl Rng) -> Duration {
    Duration::from_millis(rng.random_range(0..=d.as_millis().max(1) as u64))
}

impl Schedule {
    pub fn new(points: &[Point], now: Instant, rng: &mut impl Rng) -> Self {
        let first = random_within(FIRST_ROUND, rng);
        let next_due = points.iter().map(|p| now + first.min(Duration::from_millis(p.poll_ms))).collect();
        Self { next_due, first_round: vec![true; points.len()], phase: rng.random_range(0.0..1.0) }
    }

    /// The points due at `now` (skipping those served by COV), in batches of
    /// at most `batch` points; their next due time moves one interval on.
    pub fn take_due(&mut self, points: &[Point], cov_active: &[bool], now: Instant, batch: usize) -> Due {
        let mut due = Vec::new();
        let mut late = false;
        for (i, p) in points.iter().enumerate() {
            let (Some(at), Some(first)) = (self.next_due.get_mut(i), self.first_round.get_mut(i)) else { continue };
            if *at > now {
                continue;
            }
            let interval = Duration::from_millis(p.poll_ms.max(1));
            let polled = !cov_active.get(i).copied().unwrap_or(false);
            late |= polled && now > *at + overrun_window(interval);
            if *first {
                *first = false;
                *at = now + interval / 2 + interval.mul_f64(self.phase);
            } else {
                // A late tick does not cause a burst of catch-up polls.
                *at = (*at + interval).max(now + interval / 2);
            }
            if polled {
                due.push(p.object);
            }
        }
        Due { batches: due.chunks(batch.max(1)).map(<[ObjectId]>::to_vec).collect(), late }
    }

    /// The earliest time a point is due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.next_due.iter().min().copied()
    }
}

/// Re-probe delay of an offline device: exponential from `base`, capped at
/// `max`, with up to 20% jitter.
pub fn probe_delay(attempt: u32, base: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    let jitter = exp.mul_f64(rng.random_range(0.0..0.2));
    (exp + jitter).min(max + max / 5)
}

/// Applies a successful poll answer.
pub fn apply_results(snap: &mut DeviceSnapshot, results: &[PropertyResult], now: Millis) {
    for r in results {
        let Some(p) = snap.point_mut(r.object) else { continue };
        match (r.property.property, &r.value) {
            (property::PRESENT_VALUE, Ok(v)) => set_value(p, v.clone(), now),
            (property::PRESENT_VALUE, Err(e)) => set_error(p, *e, now),
            (property::STATUS_FLAGS, Ok(Value::BitString(b))) => p.status_flags = Some(StatusFlags::from_bits(b)),
            _ => {}
        }
    }
    answered(snap, now);
}

/// Whether a value read from a point under COV shows that a notification
/// was missed: a number that moved by more than the point's COV increment
/// (any move when it has none), or any other value (a binary or multi-state
/// state) that changed. Nothing cached, nothing missed.
pub fn cov_missed(p: &Point, read: &Value) -> bool {
    let Some(cached) = &p.value else { return false };
    let number = |v: &Value| match v {
        Value::Real(x) => Some(f64::from(*x)),
        Value::Double(x) => Some(*x),
        _ => None,
    };
    match (number(cached), number(read)) {
        (Some(a), Some(b)) => (a - b).abs() > p.cov_increment.map_or(0.0, f64::from),
        _ => cached != read,
    }
}

pub fn set_value(p: &mut Point, v: Value, now: Millis) {
    p.value = Some(v);
    p.quality = Quality::Good;
    p.error = None;
    p.updated_at = now;
}

pub fn set_error(p: &mut Point, e: ErrorClassCode, now: Millis) {
    p.quality = Quality::Error;
    p.error = Some(e);
    p.updated_at = now;
}

/// The device answered something: it is online (or degraded when some
/// points fail).
pub fn answered(snap: &mut DeviceSnapshot, now: Millis) {
    snap.consecutive_timeouts = 0;
    snap.last_seen = Some(now);
    if snap.status != DeviceStatus::Enrolling {
        snap.status = if snap.points.iter().any(|p| p.quality == Quality::Error) {
            DeviceStatus::Degraded
        } else {
            DeviceStatus::Online
        };
    }
}

/// A request failed. Returns true when the device just went offline.
pub fn failed(
    snap: &mut DeviceSnapshot,
    objects: &[ObjectId],
    err: &BacnetError,
    offline_after: u32,
    now: Millis,
) -> bool {
    snap.last_error = Some(err.to_string());
    match err {
        BacnetError::Timeout { .. } => {
            snap.counters.timeouts += 1;
            snap.consecutive_timeouts += 1;
            for o in objects {
                if let Some(p) = snap.point_mut(*o) {
                    p.quality = Quality::CommFailure;
                }
            }
            let was_offline = snap.status == DeviceStatus::Offline;
            if snap.consecutive_timeouts >= offline_after.max(1) {
                snap.status = DeviceStatus::Offline;
                !was_offline
            } else {
                if snap.status == DeviceStatus::Online {
                    snap.status = DeviceStatus::Degraded;
                }
                false
            }
        }
        // The device answered, if only to refuse.
        _ => {
            answered(snap, now);
            false
        }
    }
}

/// When a value is worth a history row: it moved by more than the point's
/// COV increment (any change for non-analog values), or `max_interval` has
/// passed since the last row.
pub fn history_due(p: &Point, value: f64, last: Option<(f64, Millis)>, max_interval: Duration, now: Millis) -> bool {
    let Some((prev, at)) = last else { return true };
    if now.saturating_sub(at) >= max_interval.as_millis() as u64 {
        return true;
    }
    match p.cov_increment {
        Some(inc) if is_analog(p.object) => (value - prev).abs() > f64::from(inc.max(0.0)),
        _ if is_analog(p.object) => value != prev,
        _ => value != prev,
    }
}

fn is_analog(o: ObjectId) -> bool {
    matches!(o.object_type, object_type::ANALOG_INPUT | object_type::ANALOG_OUTPUT | object_type::ANALOG_VALUE)
}

/// A value as a number for history (numbers, booleans, enumerations).
pub fn history_number(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Protocol_Services_Supported as a bit string (empty when not a bit string).
pub fn services(v: &Value) -> BitString {
    match v {
        Value::BitString(b) => b.clone(),
        _ => BitString::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bacnet::services::PropertyRef;
    use crate::bacnet::types::Address;
    use rand::SeedableRng;

    #[test]
    fn a_missed_notification_is_a_move_past_the_cov_increment_or_a_changed_state() {
        let mut p = Point::new(ObjectId::new(object_type::ANALOG_VALUE, 1), Duration::from_secs(10), true);
        // nothing cached: nothing to compare with
        assert!(!cov_missed(&p, &Value::Real(1.0)));
        p.value = Some(Value::Real(20.0));
        p.cov_increment = Some(0.5);
        assert!(!cov_missed(&p, &Value::Real(20.0)));
        assert!(!cov_missed(&p, &Value::Real(20.5)), "a move of exactly the increment may be unnotified");
        assert!(cov_missed(&p, &Value::Real(20.6)));
        assert!(cov_missed(&p, &Value::Double(19.0)));
        // no increment: any move
        p.cov_increment = None;
        assert!(cov_missed(&p, &Value::Real(20.01)));
        // binary and multi-state: any change of state
        p.value = Some(Value::Enumerated(0));
        assert!(!cov_missed(&p, &Value::Enumerated(0)));
        assert!(cov_missed(&p, &Value::Enumerated(1)));
        p.value = Some(Value::Unsigned(2));
        assert!(cov_missed(&p, &Value::Unsigned(3)));
    }

    fn device(points: usize, poll: Duration) -> DeviceSnapshot {
        let mut s = DeviceSnapshot::new(1, "n", Address::direct("127.0.0.1:1".parse().unwrap()), None);
        s.status = DeviceStatus::Online;
        s.points = (1..=points as u32).map(|i| Point::new(ObjectId::new(0, i), poll, false)).collect();
        s
    }

    #[test]
    fn batches_fit_the_max_apdu() {
        assert_eq!(batch_size(1476), 36);
        assert_eq!(batch_size(480), 11);
        assert_eq!(batch_size(50), 1);
    }

    #[test]
    fn the_first_round_is_quick_then_devices_spread_over_the_interval() {
        let now = Instant::now();
        let s = device(20, Duration::from_secs(10));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut phases = Vec::new();
        for _ in 0..100 {
            let mut sched = Schedule::new(&s.points, now, &mut rng);
            let first = sched.take_due(&s.points, &[], now + Duration::from_secs(1), 500);
            assert_eq!(first.batches.concat().len(), 20, "every point within the first second, in one batch");
            assert!(!first.late);
            // all points of a device share its phase: due together again
            let next = sched.next_wake().expect("due again");
            let again = sched.take_due(&s.points, &[], next, 500);
            assert_eq!((again.batches.concat().len(), again.late), (20, false));
            phases.push(next.duration_since(now).as_secs_f64());
        }
        // and devices are spread over the interval
        let early = phases.iter().filter(|p| **p < 10.0).count();
        assert!((20..=80).contains(&early), "{phases:?}");
    }

    #[test]
    fn due_points_come_in_batches_and_cov_points_are_skipped() {
        let now = Instant::now();
        let s = device(10, Duration::from_secs(1));
        let mut sched = Schedule { next_due: vec![now; 10], first_round: vec![false; 10], phase: 0.5 };
        let mut cov = vec![false; 10];
        cov[0] = true;
        let batches = sched.take_due(&s.points, &cov, now, 4).batches;
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 1]);
        assert!(!batches.concat().contains(&ObjectId::new(0, 1)));
        // a late wake-up does not poll twice to catch up
        assert!(sched.take_due(&s.points, &cov, now + Duration::from_millis(600), 4).batches.is_empty());
    }

    #[test]
    fn a_poll_later_than_its_window_is_an_overrun() {
        let now = Instant::now();
        let s = device(2, Duration::from_secs(10));
        let mut sched = Schedule { next_due: vec![now; 2], first_round: vec![false; 2], phase: 0.0 };
        // within the window (a tenth of 10 s): on time
        assert!(!sched.take_due(&s.points, &[], now + Duration::from_millis(999), 4).late);
        // due again at now+10 s; starting 1.5 s after that is an overrun
        let due = sched.take_due(&s.points, &[], now + Duration::from_millis(11_500), 4);
        assert_eq!((due.batches.concat().len(), due.late), (2, true));
        // a point served by COV is not polled, so it cannot overrun
        let mut sched = Schedule { next_due: vec![now; 2], first_round: vec![false; 2], phase: 0.0 };
        assert!(!sched.take_due(&s.points, &[true, true], now + Duration::from_secs(5), 4).late);
        assert_eq!(overrun_window(Duration::from_millis(200)), Duration::from_millis(100));
    }

    #[test]
    fn status_goes_degraded_then_offline_and_back_online() {
        let mut s = device(2, Duration::from_secs(1));
        let t = BacnetError::Timeout { attempts: 4 };
        let objects = [ObjectId::new(0, 1)];
        assert!(!failed(&mut s, &objects, &t, 3, 1));
        assert_eq!(s.status, DeviceStatus::Degraded);
        assert_eq!(s.point(objects[0]).unwrap().quality, Quality::CommFailure);
        assert!(!failed(&mut s, &objects, &t, 3, 2));
        assert!(failed(&mut s, &objects, &t, 3, 3), "the third timeout takes it offline");
        assert_eq!(s.status, DeviceStatus::Offline);
        assert!(!failed(&mut s, &objects, &t, 3, 4), "offline only once");
        let ok = PropertyResult { object: objects[0], property: PropertyRef::new(85), value: Ok(Value::Real(1.0)) };
        apply_results(&mut s, &[ok], 5);
        assert_eq!((s.status, s.consecutive_timeouts, s.last_seen), (DeviceStatus::Online, 0, Some(5)));
    }

    #[test]
    fn an_error_value_makes_the_device_degraded_with_the_class_and_code() {
        let mut s = device(2, Duration::from_secs(1));
        let e = ErrorClassCode { class: 2, code: 32 };
        let r = PropertyResult { object: ObjectId::new(0, 2), property: PropertyRef::new(85), value: Err(e) };
        apply_results(&mut s, &[r], 9);
        let p = s.point(ObjectId::new(0, 2)).unwrap();
        assert_eq!((p.quality, p.error), (Quality::Error, Some(e)));
        assert_eq!(s.status, DeviceStatus::Degraded);
    }

    #[test]
    fn probes_back_off_exponentially_with_a_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let d: Vec<Duration> = (0..10).map(|a| probe_delay(a, base, max, &mut rng)).collect();
        assert!(d[0] >= base && d[0] < base * 2);
        assert!(d[3] >= base * 8 && d[3] < base * 10);
        assert!(d[9] <= max + max / 5 && d[9] >= max);
    }

    #[test]
    fn history_follows_the_cov_increment_and_the_max_interval() {
        let mut p = Point::new(ObjectId::new(0, 1), Duration::from_secs(10), false);
        p.cov_increment = Some(0.5);
        let max = Duration::from_secs(900);
        assert!(history_due(&p, 20.0, None, max, 0));
        assert!(!history_due(&p, 20.4, Some((20.0, 0)), max, 1000));
        assert!(history_due(&p, 20.6, Some((20.0, 0)), max, 1000));
        assert!(history_due(&p, 20.0, Some((20.0, 0)), max, 900_000));
        let bi = Point::new(ObjectId::new(object_type::BINARY_INPUT, 1), Duration::from_secs(10), false);
        assert!(history_due(&bi, 1.0, Some((0.0, 0)), max, 1));
        assert!(!history_due(&bi, 0.0, Some((0.0, 0)), max, 1));
    }
}
