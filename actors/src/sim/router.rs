//! A simulated BACnet router with devices behind it on one remote network,
//! sans-IO like [`Device`].
//!
//! Requests for a device carry DNET = the network and DADR = its MAC; its
//! answers carry SNET/SADR. A global Who-Is (DNET 0xFFFF) or one broadcast on
//! the network (DNET = the network, no DADR) reaches every device, and the
//! router answers Who-Is-Router-To-Network with I-Am-Router-To-Network.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::device::Device;
use super::outbox::Outbox;
use crate::bacnet::frame::{self, network_message, Apdu, Body, Frame};
use crate::bacnet::types::Mac;

#[derive(Debug)]
pub struct Router {
    network: u16,
    devices: Vec<Device>,
}

impl Router {
    /// The devices are in MAC order: device k has [`Router::mac`]`(k, n)`.
    pub fn new(network: u16, devices: Vec<Device>) -> Self {
        Self { network, devices }
    }

    /// MAC address of device `k` (0-based) of `n` behind a router: one
    /// octet k+1, or two octets when there are more than 255 devices (one
    /// length for the whole network, like a real data link).
    pub fn mac(k: usize, n: usize) -> Mac {
        let v = (k + 1) as u16;
        let mac = if n <= 255 { Mac::new(&[v as u8]) } else { Mac::new(&v.to_be_bytes()) };
        mac.unwrap_or_default()
    }

    fn device_index(&self, mac: &Mac) -> Option<usize> {
        let n = self.devices.len();
        let v = match (mac.as_bytes(), n <= 255) {
            ([b], true) => usize::from(*b),
            ([hi, lo], false) => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => return None,
        };
        (1..=n).contains(&v).then(|| v - 1)
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn device_mut(&mut self, instance: u32) -> Option<&mut Device> {
        self.devices.iter_mut().find(|d| d.instance() == instance)
    }

    pub fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant, out: &mut Outbox) {
        let f = match frame::parse(datagram) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%from, error = %e, "malformed frame dropped");
                return;
            }
        };
        match f.body {
            Body::NetworkMessage { kind: network_message::WHO_IS_ROUTER_TO_NETWORK, data } => {
                let net = self.network.to_be_bytes();
                if data.is_empty() || data.get(..2) == Some(&net[..]) {
                    out.push_network_message(f.origin.unwrap_or(from), network_message::I_AM_ROUTER_TO_NETWORK, &net);
                }
            }
            Body::NetworkMessage { .. } => {}
            Body::Apdu(apdu) => self.route(&f, apdu, from, now, out),
        }
    }

    fn route(&mut self, f: &Frame<'_>, apdu: Apdu<'_>, from: SocketAddr, now: Instant, out: &mut Outbox) {
        let Some(dest) = f.destination else {
            // Addressed to the router itself, which is no device.
            return;
        };
        let broadcast = dest.network == 0xFFFF || (dest.network == self.network && dest.mac.as_bytes().is_empty());
        if broadcast {
            if matches!(apdu, Apdu::UnconfirmedRequest { .. }) {
                self.devices.iter_mut().for_each(|d| d.handle_frame(f, from, now, out));
            }
            return;
        }
        if dest.network != self.network {
            tracing::debug!(%from, network = dest.network, "frame for an unknown network dropped");
            return;
        }
        match self.device_index(&dest.mac) {
            Some(i) => self.devices[i].handle_frame(f, from, now, out),
            None => tracing::debug!(%from, mac = %dest.mac, "frame for an unknown MAC dropped"),
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.devices.iter().filter_map(Device::next_deadline).min()
    }

    pub fn on_timer(&mut self, now: Instant, out: &mut Outbox) {
        for d in &mut self.devices {
            if d.next_deadline().is_some_and(|at| at <= now) {
                d.on_timer(now, out);
            }
        }
    }
}
