//! The restart policy of a supervisor, sans-IO: exponential back-off between
//! restarts, and a give-up after too many restarts in a window (restart
//! intensity, as in Erlang/OTP).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`; one more gives up.
    pub intensity: u32,
    pub window: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            intensity: 5,
            window: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RestartAfter(Duration),
    GiveUp,
}

/// The recent failures of one child.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    failures: VecDeque<Instant>,
}

impl RestartTracker {
    /// Records a failure at `now` and decides what to do.
    pub fn on_failure(&mut self, policy: &RestartPolicy, now: Instant) -> Decision {
        while self.failures.front().is_some_and(|&t| now.duration_since(t) > policy.window) {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        let n = self.failures.len() as u32;
        if n > policy.intensity {
            return Decision::GiveUp;
        }
        let backoff = policy.backoff_initial.saturating_mul(1 << (n - 1).min(16)).min(policy.backoff_max);
        Decision::RestartAfter(backoff)
    }

    pub fn reset(&mut self) {
        self.failures.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_then_gives_up_past_the_intensity() {
        let p = RestartPolicy::default();
        let mut t = RestartTracker::default();
        let now = Instant::now();
        let decisions: Vec<Decision> = (0..6).map(|i| t.on_failure(&p, now + Duration::from_secs(i))).collect();
        assert_eq!(decisions[0], Decision::RestartAfter(Duration::from_millis(200)));
        assert_eq!(decisions[1], Decision::RestartAfter(Duration::from_millis(400)));
        assert_eq!(decisions[4], Decision::RestartAfter(Duration::from_millis(3200)));
        assert_eq!(decisions[5], Decision::GiveUp);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let p = RestartPolicy::default();
        let mut t = RestartTracker::default();
        let now = Instant::now();
        for i in 0..5 {
            t.on_failure(&p, now + Duration::from_secs(i * 20));
        }
        // spread over 80 s: never more than 4 within 60 s
        assert!(matches!(t.on_failure(&p, now + Duration::from_secs(100)), Decision::RestartAfter(_)));
    }

    #[test]
    fn the_backoff_is_capped() {
        let p = RestartPolicy { intensity: 100, backoff_max: Duration::from_secs(1), ..RestartPolicy::default() };
        let mut t = RestartTracker::default();
        let now = Instant::now();
        let last = (0..50).map(|_| t.on_failure(&p, now)).last();
        assert_eq!(last, Some(Decision::RestartAfter(Duration::from_secs(1))));
    }
}
