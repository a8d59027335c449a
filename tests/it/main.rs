//! plantwatch's integration tests: one binary, so the suite links once.
//!
//! - `check_config`: `plantwatch check-config` run as a process: summary,
//!   exit code 64 and its one-line error.
//! - `decode`: the receive path against hostile input (the bacnet-rs
//!   reproducers of DEPENDENCIES.md, and a property test of random and
//!   mutated frames).
//! - `golden`: frames encoded by bacpypes3 against our decoder and encoder.
//! - `interop`: the transport against bacpypes3 devices in their own processes.
//! - `simulator`: the transport against the simulator, every service and fault.
//! - `transport`: the transport against a scripted UDP peer.

mod check_config;
mod decode;
mod golden;
mod interop;
mod simulator;
mod support;
mod transport;
