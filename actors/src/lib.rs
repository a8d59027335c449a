//! plantwatch internals.
//!
//! # Layout
//!
//! - [`bacnet`]: the BACnet codec. Vocabulary, tag-level reader and writer,
//!   BACnet/IP datagrams (BVLC, NPDU, APDU) and service parameters. Every
//!   decode of received bytes lives here and is fallible.
//! - [`transport`]: the async BACnet/IP client transport. One UDP socket per
//!   network owned by one task; invoke ids, timeouts and retries, segmentation
//!   reassembly and routed devices, built from sans-IO pieces.
//! - [`sim`]: a BACnet/IP device simulator for demos, tests and benchmarks.
//! - [`store`]: the persistent store (sled behind one small `Store` type):
//!   device snapshots, point history, audit log, API keys, backup/restore.

pub mod bacnet;
#[doc(hidden)]
pub mod fuzzing;
pub mod plant;
/// The actor framework, for callers that address actors by name.
pub use ractor;
pub mod sim;
pub mod store;
pub mod transport;
