//! A simulated BACnet router with devices behind it on one remote network,
//! sans-IO like [`Device`].
//!
//! Requests for a device carry DNET = the network and DADR = its MAC; its
//! answers carry SNET/SADR. A global Who-Is (DNET 0xFFFF) or one broadcast on
//! the network (DNET = the network, no DADR) reaches every device, and the
//! router answers Who-Is-Router-To-Network with I-Am-Router-To-Network.
//!
//! During a [`Router::with_outage`] outage the remote network is unreachable:
//! a confirmed request for it is answered with Reject-Message-To-Network
//! (reason 1: no route to DNET), nothing else is forwarded either way, and
//! Who-Is-Router-To-Network goes unanswered. The devices behind it run on.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::device::Device;
use super::fault::Outage;
use super::outbox::Outbox;
use crate::bacnet::frame::{self, network_message, Apdu, Body, Frame};
use crate::bacnet::types::Mac;

/// Reject-Message-To-Network reason 1: the router is not directly connected
/// to DNET and cannot find a router to it.
pub const REJECT_NO_ROUTE: u8 = 1;

#[derive(Debug)]
pub struct Router {
    network: u16,
    devices: Vec<Device>,
    outage: Option<(Outage, Duration, Instant)>,
}

impl Router {
    /// The devices are in MAC order: device k has [`Router::mac`]`(k, n)`.
    pub fn new(network: u16, devices: Vec<Device>) -> Self {
        Self { network, devices, outage: None }
    }

    /// Periodic outages of the remote network, counted from `epoch` (the
    /// outage offset is keyed by the network number).
    pub fn with_outage(mut self, outage: Option<Outage>, epoch: Instant) -> Self {
        self.outage = outage.map(|o| (o, o.offset(u32::from(self.network)), epoch));
        self
    }

    /// Whether the remote network is unreachable at `now`.
    pub fn unreachable(&self, now: Instant) -> bool {
        self.outage.is_some_and(|(o, offset, epoch)| o.down(now.saturating_duration_since(epoch), offset))
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
        let unreachable = self.unreachable(now);
        match f.body {
            Body::NetworkMessage { kind: network_message::WHO_IS_ROUTER_TO_NETWORK, .. } if unreachable => {}
            Body::Apdu(apdu) if unreachable => self.reject(&f, apdu, from, out),
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

    /// During an outage: a confirmed request for the remote network gets a
    /// Reject-Message-To-Network; everything else is dropped.
    fn reject(&self, f: &Frame<'_>, apdu: Apdu<'_>, from: SocketAddr, out: &mut Outbox) {
        let Some(dest) = f.destination else { return };
        if dest.network != self.network || !matches!(apdu, Apdu::ConfirmedRequest { .. }) {
            return;
        }
        let [hi, lo] = self.network.to_be_bytes();
        out.push_network_message(
            f.origin.unwrap_or(from),
            network_message::REJECT_MESSAGE_TO_NETWORK,
            &[REJECT_NO_ROUTE, hi, lo],
        );
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
        let before = out.frames.len();
        for d in &mut self.devices {
            if d.next_deadline().is_some_and(|at| at <= now) {
                d.on_timer(now, out);
            }
        }
        if self.unreachable(now) {
            // COV notifications and segments do not get out either.
            out.frames.truncate(before);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bacnet::codec::Value;
    use crate::bacnet::services::{IAm, PropertyRef};
    use crate::bacnet::types::{object_type, property, service, ObjectId, Route};
    use crate::sim::object::Counts;
    use crate::sim::testing::{self, rp_value};
    use crate::sim::Faults;

    fn router(n: usize) -> (Router, Instant) {
        let now = Instant::now();
        let devices = (0..n)
            .map(|k| {
                let route = Route { network: 100, mac: Router::mac(k, n) };
                Device::new(1001 + k as u32, Counts::per_kind(1), Some(route), Faults::default(), now)
            })
            .collect();
        (Router::new(100, devices), now)
    }

    fn send(r: &mut Router, datagram: &[u8], now: Instant) -> Vec<Vec<u8>> {
        let mut out = Outbox::default();
        r.handle(datagram, "127.0.0.1:47808".parse().unwrap(), now, &mut out);
        out.frames.into_iter().map(|f| f.bytes).collect()
    }

    #[test]
    fn requests_are_routed_by_dnet_and_dadr() {
        let (mut r, now) = router(3);
        let route = Route { network: 100, mac: Router::mac(1, 3) };
        let request =
            testing::rp_routed(1, route, ObjectId::device(4_194_303), PropertyRef::new(property::OBJECT_IDENTIFIER));
        let answers = send(&mut r, &request, now);
        assert_eq!(answers.len(), 1);
        let f = frame::parse(&answers[0]).unwrap();
        assert_eq!(f.source, Some(route));
        assert_eq!(f.destination, None);
        assert_eq!(rp_value(&answers[0]), Value::ObjectId(ObjectId::device(1002)));
        // unknown MAC, other network, no DNET: nothing
        let nowhere = Route { network: 100, mac: Router::mac(5, 3) };
        let pv = PropertyRef::new(property::PRESENT_VALUE);
        let ai = ObjectId::new(object_type::ANALOG_INPUT, 1);
        assert!(send(&mut r, &testing::rp_routed(2, nowhere, ai, pv), now).is_empty());
        assert!(send(&mut r, &testing::rp_routed(2, Route { network: 7, ..route }, ai, pv), now).is_empty());
        assert!(send(&mut r, &testing::rp(3, ai, pv), now).is_empty());
    }

    #[test]
    fn global_who_is_reaches_every_device_behind_the_router() {
        let (mut r, now) = router(4);
        let global = Route { network: 0xFFFF, mac: Mac::default() };
        let answers = send(&mut r, &testing::who_is(None, Some(global)), now);
        assert_eq!(answers.len(), 4);
        for (k, a) in answers.iter().enumerate() {
            let f = frame::parse(a).unwrap();
            assert_eq!(f.source, Some(Route { network: 100, mac: Router::mac(k, 4) }));
            let Body::Apdu(Apdu::UnconfirmedRequest { service: service::I_AM, data }) = f.body else { panic!() };
            assert_eq!(IAm::decode(data).unwrap().device, ObjectId::device(1001 + k as u32));
        }
        // a broadcast on network 100, ranged
        let on_net = Route { network: 100, mac: Mac::default() };
        assert_eq!(send(&mut r, &testing::who_is(Some((1002, 1003)), Some(on_net)), now).len(), 2);
        // a local Who-Is does not cross the router
        assert!(send(&mut r, &testing::who_is(None, None), now).is_empty());
    }

    #[test]
    fn who_is_router_to_network() {
        let (mut r, now) = router(1);
        for data in [&[][..], &100u16.to_be_bytes()[..]] {
            let mut buf = Vec::new();
            frame::begin_network_message(&mut buf, true, network_message::WHO_IS_ROUTER_TO_NETWORK);
            buf.extend_from_slice(data);
            frame::finish(&mut buf).unwrap();
            let answers = send(&mut r, &buf, now);
            assert_eq!(answers.len(), 1);
            let f = frame::parse(&answers[0]).unwrap();
            assert_eq!(f.body, Body::NetworkMessage { kind: network_message::I_AM_ROUTER_TO_NETWORK, data: &[0, 100] });
        }
        let mut buf = Vec::new();
        frame::begin_network_message(&mut buf, true, network_message::WHO_IS_ROUTER_TO_NETWORK);
        buf.extend_from_slice(&5u16.to_be_bytes());
        frame::finish(&mut buf).unwrap();
        assert!(send(&mut r, &buf, now).is_empty());
    }

    #[test]
    fn an_unreachable_network_is_rejected_and_forwards_nothing_then_comes_back() {
        let (r, now) = router(2);
        let outage = Outage { every: std::time::Duration::from_secs(60), length: std::time::Duration::from_secs(10) };
        let mut r = r.with_outage(Some(outage), now);
        let offset = outage.offset(100);
        let route = Route { network: 100, mac: Router::mac(0, 2) };
        let ai = ObjectId::new(object_type::ANALOG_INPUT, 1);
        let pv = PropertyRef::new(property::PRESENT_VALUE);
        let request = testing::rp_routed(1, route, ai, pv);
        assert_eq!(send(&mut r, &request, now).len(), 1);
        let down = now + outage.every + offset;
        assert!(r.unreachable(down) && !r.unreachable(down - std::time::Duration::from_millis(1)));
        let answers = send(&mut r, &request, down);
        assert_eq!(answers.len(), 1);
        let f = frame::parse(&answers[0]).unwrap();
        assert_eq!(
            f.body,
            Body::NetworkMessage { kind: network_message::REJECT_MESSAGE_TO_NETWORK, data: &[REJECT_NO_ROUTE, 0, 100] }
        );
        // no Who-Is-Router-To-Network answer, no I-Am through it
        let mut buf = Vec::new();
        frame::begin_network_message(&mut buf, true, network_message::WHO_IS_ROUTER_TO_NETWORK);
        frame::finish(&mut buf).unwrap();
        assert!(send(&mut r, &buf, down).is_empty());
        let global = Route { network: 0xFFFF, mac: Mac::default() };
        assert!(send(&mut r, &testing::who_is(None, Some(global)), down).is_empty());
        // a request for another network is not the router's to reject
        assert!(send(&mut r, &testing::rp_routed(2, Route { network: 7, ..route }, ai, pv), down).is_empty());
        // back after the outage, with the same devices
        let up = down + outage.length;
        assert_eq!(
            rp_value(
                &send(
                    &mut r,
                    &testing::rp_routed(
                        3,
                        route,
                        ObjectId::device(1001),
                        PropertyRef::new(property::OBJECT_IDENTIFIER)
                    ),
                    up
                )[0]
            ),
            Value::ObjectId(ObjectId::device(1001))
        );
    }

    proptest::proptest! {
        /// No input panics the router or the devices behind it.
        #[test]
        fn no_input_panics(flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..4), which in 0usize..3) {
            let (mut r, now) = router(3);
            let route = Route { network: 100, mac: Router::mac(0, 3) };
            let mut base = match which {
                0 => testing::rp_routed(1, route, ObjectId::device(1001), PropertyRef::new(property::OBJECT_LIST)),
                1 => testing::who_is(None, Some(Route { network: 0xFFFF, mac: Mac::default() })),
                _ => testing::segment_ack(1, 0, 4, true, Some(route)),
            };
            let len = base.len();
            for (at, byte) in flips {
                base[at % len] = byte;
            }
            send(&mut r, &base, now);
            let mut out = Outbox::default();
            r.on_timer(now + std::time::Duration::from_secs(5), &mut out);
        }
    }

    #[test]
    fn macs_are_one_octet_up_to_255_devices_then_two() {
        assert_eq!(Router::mac(0, 255).as_bytes(), &[1]);
        assert_eq!(Router::mac(254, 255).as_bytes(), &[255]);
        assert_eq!(Router::mac(0, 1000).as_bytes(), &[0, 1]);
        assert_eq!(Router::mac(999, 1000).as_bytes(), &[0x03, 0xE8]);
        let (r, _) = router(300);
        assert_eq!(r.device_index(&Router::mac(299, 300)), Some(299));
        assert_eq!(r.device_index(&Mac::new(&[1]).unwrap()), None);
        assert_eq!(r.device_index(&Mac::new(&[0, 0]).unwrap()), None);
    }
}
