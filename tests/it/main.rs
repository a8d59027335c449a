//! plantwatch's integration tests: one binary, so the suite links once.
//!
//! - `api`: the HTTP API on a real listener in front of a plant and simulator.
//! - `cli`: errors on the terminal: one line with the fix and exit code 64
//!   or 1 (busy listen address, locked store, bad command line).
//! - `check_config`: `plantwatch check-config` run as a process: summary,
//!   exit code 64 and its one-line error.
//! - `discover`: `plantwatch discover` against simulated and bacpypes3
//!   devices: the table, `--json`, `--toml`, silent devices, a busy address.
//! - `decode`: the receive path against hostile input (the bacnet-rs
//!   reproducers of DEPENDENCIES.md, and a property test of random and
//!   mutated frames).
//! - `fuzz_corpus`: the fuzz corpora and crash regressions of `tests/fuzz/`
//!   replayed through the fuzzing functions: no input panics.
//! - `golden`: frames encoded by bacpypes3 against our decoder and encoder.
//! - `interop`: the transport against bacpypes3 devices in their own processes.
//! - `interop_bacpy`: the plant and a bac-py device, bac-py's client and
//!   `plantwatch simulate` (the second independent stack; skips without Python 3.13).
//! - `lease`: lease writes: expiry, renewal, end, restart on the same store, re-assert, the maximum.
//! - `metrics`: `GET /metrics` against a plant: well-formed, documented,
//!   equal to what the API shows, the point cap.
//! - `openapi`: the OpenAPI document against the running API: every answer
//!   matches the document, the documented filters are the ones taken.
//! - `plant`: the supervision tree against the simulator: enrolment, polling,
//!   fallbacks, offline and back, every supervision failure mode.
//! - `service`: the binary: demo online and drained on SIGTERM; serve killed
//!   with SIGKILL serves its last values at once from the store.
//! - `simulator`: the transport against the simulator, every service and fault.
//! - `transport`: the transport against a scripted UDP peer.

mod api;
mod check_config;
mod cli;
mod decode;
mod discover;
mod fuzz_corpus;
mod golden;
mod http;
mod interop;
mod interop_bacpy;
mod lease;
mod metrics;
mod openapi;
mod plant;
mod service;
mod simulator;
mod support;
mod transport;
