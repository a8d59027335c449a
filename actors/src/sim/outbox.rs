//! Frames a device or router wants sent: the sans-IO output of the simulator.
//!
//! Buffers are recycled, so answering a ReadProperty allocates nothing once
//! the outbox has warmed up.

use std::net::SocketAddr;

use tokio::time::Instant;

use crate::bacnet::frame::{self, NpduOut, MAX_DATAGRAM};

/// One datagram to send.
#[derive(Debug)]
pub struct OutFrame {
    pub to: SocketAddr,
    /// The whole BACnet/IP datagram.
    pub bytes: Vec<u8>,
    /// Not before this instant (the `slow` fault); `None`: now.
    pub send_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Outbox {
    pub frames: Vec<OutFrame>,
    spare: Vec<Vec<u8>>,
}

/// Spare buffers kept for reuse.
const SPARE: usize = 64;

impl Outbox {
    fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(MAX_DATAGRAM))
    }

    /// Gives a sent frame's buffer back for reuse.
    pub fn recycle(&mut self, mut bytes: Vec<u8>) {
        if self.spare.len() < SPARE {
            bytes.clear();
            self.spare.push(bytes);
        }
    }

    /// Queues a frame: the NPDU header from `npdu`, then what `apdu` writes.
    pub fn push(&mut self, to: SocketAddr, npdu: &NpduOut, send_at: Option<Instant>, apdu: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = self.buffer();
        frame::begin(&mut buf, false, npdu);
        apdu(&mut buf);
        self.finish(to, buf, send_at);
    }

    /// Queues a network layer message.
    pub fn push_network_message(&mut self, to: SocketAddr, kind: u8, data: &[u8]) {
        let mut buf = self.buffer();
        frame::begin_network_message(&mut buf, false, kind);
        buf.extend_from_slice(data);
        self.finish(to, buf, None);
    }

    fn finish(&mut self, to: SocketAddr, mut bytes: Vec<u8>, send_at: Option<Instant>) {
        match frame::finish(&mut bytes) {
            Ok(()) => self.frames.push(OutFrame { to, bytes, send_at }),
            Err(e) => {
                tracing::warn!(%to, len = bytes.len(), error = %e, "answer not sent");
                self.recycle(bytes);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}
