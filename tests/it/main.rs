//! plantwatch's integration tests: one binary, so the suite links once.
//!
//! - `decode`: the receive path against hostile input (the bacnet-rs
//!   reproducers of DEPENDENCIES.md, and a property test of random and
//!   mutated frames).
//! - `transport`: the transport against a scripted UDP peer.

mod decode;
mod support;
mod transport;
