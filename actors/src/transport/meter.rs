//! Per-service request counts and latency of one transport, and its invoke
//! ids in use and held back, recorded through the `metrics` facade
//! (`plantwatch_bacnet_requests_total`,
//! `plantwatch_bacnet_request_duration_seconds`,
//! `plantwatch_bacnet_invoke_ids_in_use`, `plantwatch_bacnet_invoke_ids_held`;
//! docs/metrics.md). Handles are
//! made once per (service, outcome) and kept, so recording costs an atomic
//! add, not a registry lookup. Without a recorder installed (the simulator,
//! `bench`, most tests) they do nothing.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::BacnetError;
use crate::bacnet::types::confirmed_service_name;

pub const REQUESTS: &str = "plantwatch_bacnet_requests_total";
pub const DURATION: &str = "plantwatch_bacnet_request_duration_seconds";
pub const INVOKE_IDS_IN_USE: &str = "plantwatch_bacnet_invoke_ids_in_use";
pub const INVOKE_IDS_HELD: &str = "plantwatch_bacnet_invoke_ids_held";

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
    ids_in_use: Gauge,
    ids_held: Gauge,
}

impl Meter {
    pub fn new(network: &str) -> Self {
        metrics::describe_gauge!(
            INVOKE_IDS_IN_USE,
            "Invoke ids allocated to confirmed requests in flight, over all peers of the network."
        );
        metrics::describe_gauge!(
            INVOKE_IDS_HELD,
            "Invoke ids held back after a timeout or retransmission until a late answer can no longer come."
        );
        Self {
            network: network.to_string(),
            requests: HashMap::new(),
            durations: HashMap::new(),
            ids_in_use: metrics::gauge!(INVOKE_IDS_IN_USE, "network" => network.to_string()),
            ids_held: metrics::gauge!(INVOKE_IDS_HELD, "network" => network.to_string()),
        }
    }

    /// The invoke ids in use now.
    pub fn ids_in_use(&self, n: usize) {
        self.ids_in_use.set(n as f64);
    }

    /// The invoke ids held back now.
    pub fn ids_held(&self, n: usize) {
        self.ids_held.set(n as f64);
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
