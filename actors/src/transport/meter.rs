//! Per-service request counts and latency of one transport, recorded through
//! the `metrics` facade (`plantwatch_bacnet_requests_total` and
//! `plantwatch_bacnet_request_duration_seconds`, docs/metrics.md). Handles are
//! made once per (service, outcome) and kept, so recording costs an atomic
//! add, not a registry lookup. Without a recorder installed (the simulator,
//! `bench`, most tests) they do nothing.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{Counter, Histogram};

use super::BacnetError;
use crate::bacnet::types::confirmed_service_name;

pub const REQUESTS: &str = "plantwatch_bacnet_requests_total";
pub const DURATION: &str = "plantwatch_bacnet_request_duration_seconds";

/// How a confirmed request ended; a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Timeout,
    Error,
    Reject,
    Abort,
    /// Not sent, or its answer could not be decoded.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] =
        [Outcome::Ok, Outcome::Timeout, Outcome::Error, Outcome::Reject, Outcome::Abort, Outcome::Failed];

    pub fn of<T>(result: &Result<T, BacnetError>) -> Self {
        match result {
            Ok(_) => Outcome::Ok,
            Err(BacnetError::Timeout { .. }) => Outcome::Timeout,
            Err(BacnetError::Error(_)) => Outcome::Error,
            Err(BacnetError::Reject { .. }) => Outcome::Reject,
            Err(BacnetError::Abort { .. }) => Outcome::Abort,
            Err(_) => Outcome::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::Reject => "reject",
            Outcome::Abort => "abort",
            Outcome::Failed => "failed",
        }
    }
}

pub struct Meter {
    network: String,
    requests: HashMap<(u8, Outcome), Counter>,
    durations: HashMap<u8, Histogram>,
}

impl Meter {
    pub fn new(network: &str) -> Self {
        Self { network: network.to_string(), requests: HashMap::new(), durations: HashMap::new() }
    }

    /// Counts one finished request; `elapsed` is `None` when it was never sent.
    pub fn record(&mut self, service: u8, outcome: Outcome, elapsed: Option<Duration>) {
        let network = &self.network;
        self.requests
            .entry((service, outcome))
            .or_insert_with(|| {
                metrics::counter!(REQUESTS, "network" => network.clone(), "service" => confirmed_service_name(service), "outcome" => outcome.as_str())
            })
            .increment(1);
        if let Some(elapsed) = elapsed {
            self.durations
                .entry(service)
                .or_insert_with(|| {
                    metrics::histogram!(DURATION, "network" => network.clone(), "service" => confirmed_service_name(service))
                })
                .record(elapsed.as_secs_f64());
        }
    }
}
