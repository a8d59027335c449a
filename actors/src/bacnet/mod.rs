//! The BACnet codec: vocabulary ([`types`]), tag-level encoding ([`codec`]),
//! BACnet/IP datagrams ([`frame`]) and service parameters ([`services`]).
//!
//! Every decode of received bytes goes through this module and is fallible;
//! bacnet-rs is used for its enums and for the encoders that are right.

pub mod codec;
pub mod frame;
pub mod services;
pub mod types;

pub use codec::{DecodeError, Value};
pub use services::ErrorClassCode;
pub use types::{Address, Mac, ObjectId, Route, Segmentation};
