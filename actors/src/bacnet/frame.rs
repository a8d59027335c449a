//! BACnet/IP datagrams: BVLC (Annex J), NPDU (clause 6) and APDU headers
//! (clause 20.1).
//!
//! [`parse`] is the single entry point for received bytes. It borrows from
//! the datagram, allocates nothing, and answers `Err` for anything malformed
//! (a BVLC length that disagrees with the datagram, a truncated NPDU address,
//! an APDU header cut short...). Outgoing frames are built with
//! [`begin`]/[`finish`] around the APDU writers below; the NPDU itself is
//! encoded by bacnet-rs, whose NPDU encoder (DNET/DADR, SNET/SADR) is right.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bacnet_rs::network::{NetworkAddress, Npdu, NpduControl};

use super::codec::{DecodeError, DecodeResult};
use super::types::{Mac, Route};

/// BVLC type byte for BACnet/IP.
pub const BVLC_TYPE: u8 = 0x81;
/// The largest BACnet/IP datagram: a 1476-octet APDU behind the BVLC header
/// and an NPDU carrying both DNET/DADR and SNET/SADR with 8-octet MACs.
pub const MAX_DATAGRAM: usize = 4 + 2 + 2 * (3 + 8) + 1 + 1476;

/// BVLC functions (Annex J.2).
pub mod bvlc {
    pub const RESULT: u8 = 0x00;
    pub const FORWARDED_NPDU: u8 = 0x04;
    pub const DISTRIBUTE_BROADCAST_TO_NETWORK: u8 = 0x09;
    pub const ORIGINAL_UNICAST_NPDU: u8 = 0x0A;
    pub const ORIGINAL_BROADCAST_NPDU: u8 = 0x0B;
}

/// APDU types (high nibble of the first APDU octet).
pub mod pdu {
    pub const CONFIRMED_REQUEST: u8 = 0;
    pub const UNCONFIRMED_REQUEST: u8 = 1;
    pub const SIMPLE_ACK: u8 = 2;
    pub const COMPLEX_ACK: u8 = 3;
    pub const SEGMENT_ACK: u8 = 4;
    pub const ERROR: u8 = 5;
    pub const REJECT: u8 = 6;
    pub const ABORT: u8 = 7;
}

/// Network layer message types (clause 6.2.4).
pub mod network_message {
    pub const WHO_IS_ROUTER_TO_NETWORK: u8 = 0x00;
    pub const I_AM_ROUTER_TO_NETWORK: u8 = 0x01;
    pub const REJECT_MESSAGE_TO_NETWORK: u8 = 0x03;
}

/// Segment information of a segmented confirmed request or complex ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub sequence: u8,
    pub window: u8,
    pub more_follows: bool,
}

/// A decoded APDU, borrowing its service data from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apdu<'a> {
    ConfirmedRequest {
        invoke_id: u8,
        service: u8,
        segmented_response_accepted: bool,
        /// Largest APDU the requester accepts, in octets.
        max_apdu: u16,
        /// Largest number of segments the requester accepts (`None`: unspecified).
        max_segments: Option<u16>,
        segment: Option<Segment>,
        data: &'a [u8],
    },
    UnconfirmedRequest {
        service: u8,
        data: &'a [u8],
    },
    SimpleAck {
        invoke_id: u8,
        service: u8,
    },
    ComplexAck {
        invoke_id: u8,
        service: u8,
        segment: Option<Segment>,
        data: &'a [u8],
    },
    SegmentAck {
        negative: bool,
        server: bool,
        invoke_id: u8,
        sequence: u8,
        window: u8,
    },
    Error {
        invoke_id: u8,
        service: u8,
        data: &'a [u8],
    },
    Reject {
        invoke_id: u8,
        reason: u8,
    },
    Abort {
        server: bool,
        invoke_id: u8,
        reason: u8,
    },
}

/// What an NPDU carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    Apdu(Apdu<'a>),
    /// A network layer message (Who-Is-Router-To-Network, ...).
    NetworkMessage {
        kind: u8,
        data: &'a [u8],
    },
}

/// One parsed BACnet/IP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub bvlc_function: u8,
    /// For Forwarded-NPDU: the address of the original sender.
    pub origin: Option<SocketAddr>,
    pub destination: Option<Route>,
    pub source: Option<Route>,
    pub expecting_reply: bool,
    pub body: Body<'a>,
}

fn get(b: &[u8], i: usize, what: &'static str) -> DecodeResult<u8> {
    b.get(i).copied().ok_or(DecodeError::Truncated(what))
}

/// Largest APDU size for the 4-bit code in a confirmed request.
pub fn max_apdu_from_code(code: u8) -> Option<u16> {
    [50, 128, 206, 480, 1024, 1476].get(usize::from(code)).copied()
}

pub fn max_apdu_code(octets: u16) -> u8 {
    match octets {
        0..=127 => 0,
        128..=205 => 1,
        206..=479 => 2,
        480..=1023 => 3,
        1024..=1475 => 4,
        _ => 5,
    }
}

/// Parses a received BACnet/IP datagram.
pub fn parse(datagram: &[u8]) -> DecodeResult<Frame<'_>> {
    if get(datagram, 0, "BVLC")? != BVLC_TYPE {
        return Err(DecodeError::Invalid("not a BACnet/IP frame"));
    }
    let function = get(datagram, 1, "BVLC")?;
    let len = usize::from(u16::from_be_bytes([get(datagram, 2, "BVLC")?, get(datagram, 3, "BVLC")?]));
    if len != datagram.len() || len < 4 {
        return Err(DecodeError::BadLength("BVLC length disagrees with the datagram"));
    }
    let (origin, npdu) = match function {
        bvlc::ORIGINAL_UNICAST_NPDU | bvlc::ORIGINAL_BROADCAST_NPDU | bvlc::DISTRIBUTE_BROADCAST_TO_NETWORK => {
            (None, &datagram[4..])
        }
        bvlc::FORWARDED_NPDU => {
            let o = datagram.get(4..10).ok_or(DecodeError::Truncated("forwarded origin"))?;
            let ip = Ipv4Addr::new(o[0], o[1], o[2], o[3]);
            let port = u16::from_be_bytes([o[4], o[5]]);
            (Some(SocketAddr::V4(SocketAddrV4::new(ip, port))), &datagram[10..])
        }
        _ => return Err(DecodeError::Invalid("BVLC function that carries no NPDU")),
    };
    parse_npdu(function, origin, npdu)
}

fn parse_route(b: &[u8], pos: &mut usize, what: &'static str) -> DecodeResult<Route> {
    let net = u16::from_be_bytes([get(b, *pos, what)?, get(b, *pos + 1, what)?]);
    let len = usize::from(get(b, *pos + 2, what)?);
    let mac_bytes = b.get(*pos + 3..*pos + 3 + len).ok_or(DecodeError::Truncated(what))?;
    let mac = Mac::new(mac_bytes).ok_or(DecodeError::BadLength("MAC address longer than 8 octets"))?;
    *pos += 3 + len;
    Ok(Route { network: net, mac })
}

fn parse_npdu(bvlc_function: u8, origin: Option<SocketAddr>, b: &[u8]) -> DecodeResult<Frame<'_>> {
    if get(b, 0, "NPDU")? != 1 {
        return Err(DecodeError::Invalid("NPDU version is not 1"));
    }
    let control = get(b, 1, "NPDU")?;
    let mut pos = 2;
    let destination = if control & 0x20 != 0 { Some(parse_route(b, &mut pos, "NPDU destination")?) } else { None };
    let source = if control & 0x08 != 0 {
        let s = parse_route(b, &mut pos, "NPDU source")?;
        if s.network == 0xFFFF || s.mac.as_bytes().is_empty() {
            return Err(DecodeError::Invalid("NPDU source is a broadcast address"));
        }
        Some(s)
    } else {
        None
    };
    if destination.is_some() {
        get(b, pos, "hop count")?;
        pos += 1;
    }
    let rest = &b[pos..];
    let body = if control & 0x80 != 0 {
        let kind = get(rest, 0, "network message type")?;
        // Proprietary message types (0x80+) carry a vendor id.
        let skip = if kind >= 0x80 { 3 } else { 1 };
        Body::NetworkMessage { kind, data: rest.get(skip..).ok_or(DecodeError::Truncated("network message"))? }
    } else {
        Body::Apdu(parse_apdu(rest)?)
    };
    Ok(Frame { bvlc_function, origin, destination, source, expecting_reply: control & 0x04 != 0, body })
}

/// Parses an APDU header; the service data stays borrowed.
pub fn parse_apdu(b: &[u8]) -> DecodeResult<Apdu<'_>> {
    let first = get(b, 0, "APDU")?;
    let kind = first >> 4;
    let tail = |from: usize| b.get(from..).ok_or(DecodeError::Truncated("APDU"));
    Ok(match kind {
        pdu::CONFIRMED_REQUEST => {
            let segmented = first & 0x08 != 0;
            let info = get(b, 1, "APDU")?;
            let max_apdu = max_apdu_from_code(info & 0x0F).ok_or(DecodeError::Invalid("reserved max-APDU code"))?;
            let max_segments = match (info >> 4) & 0x07 {
                0 => None,
                7 => Some(u16::MAX),
                n => Some(1u16 << n),
            };
            let invoke_id = get(b, 2, "APDU")?;
            let (segment, at) = if segmented {
                let seg = Segment {
                    sequence: get(b, 3, "APDU")?,
                    window: get(b, 4, "APDU")?,
                    more_follows: first & 0x04 != 0,
                };
                (Some(seg), 5)
            } else {
                (None, 3)
            };
            Apdu::ConfirmedRequest {
                invoke_id,
                service: get(b, at, "service choice")?,
                segmented_response_accepted: first & 0x02 != 0,
                max_apdu,
                max_segments,
                segment,
                data: tail(at + 1)?,
            }
        }
        pdu::UNCONFIRMED_REQUEST => Apdu::UnconfirmedRequest { service: get(b, 1, "service choice")?, data: tail(2)? },
        pdu::SIMPLE_ACK => Apdu::SimpleAck { invoke_id: get(b, 1, "APDU")?, service: get(b, 2, "service choice")? },
        pdu::COMPLEX_ACK => {
            let invoke_id = get(b, 1, "APDU")?;
            let (segment, at) = if first & 0x08 != 0 {
                let seg = Segment {
                    sequence: get(b, 2, "APDU")?,
                    window: get(b, 3, "APDU")?,
                    more_follows: first & 0x04 != 0,
                };
                (Some(seg), 4)
            } else {
                (None, 2)
            };
            Apdu::ComplexAck { invoke_id, service: get(b, at, "service choice")?, segment, data: tail(at + 1)? }
        }
        pdu::SEGMENT_ACK => Apdu::SegmentAck {
            negative: first & 0x02 != 0,
            server: first & 0x01 != 0,
            invoke_id: get(b, 1, "APDU")?,
            sequence: get(b, 2, "APDU")?,
            window: get(b, 3, "APDU")?,
        },
        pdu::ERROR => {
            Apdu::Error { invoke_id: get(b, 1, "APDU")?, service: get(b, 2, "service choice")?, data: tail(3)? }
        }
        pdu::REJECT => Apdu::Reject { invoke_id: get(b, 1, "APDU")?, reason: get(b, 2, "reject reason")? },
        pdu::ABORT => {
            Apdu::Abort { server: first & 0x01 != 0, invoke_id: get(b, 1, "APDU")?, reason: get(b, 2, "abort reason")? }
        }
        _ => return Err(DecodeError::Invalid("reserved APDU type")),
    })
}

// ---------------------------------------------------------------- building frames

/// Network-layer addressing of an outgoing frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct NpduOut {
    pub destination: Option<Route>,
    pub source: Option<Route>,
    pub expecting_reply: bool,
}

fn network_address(r: &Route) -> NetworkAddress {
    NetworkAddress::new(r.network, r.mac.as_bytes().to_vec())
}

/// Starts a frame in `buf` (cleared first): BVLC header with its length to be
/// patched by [`finish`], then the NPDU.
pub fn begin(buf: &mut Vec<u8>, broadcast: bool, npdu: &NpduOut) {
    buf.clear();
    let function = if broadcast { bvlc::ORIGINAL_BROADCAST_NPDU } else { bvlc::ORIGINAL_UNICAST_NPDU };
    buf.extend_from_slice(&[BVLC_TYPE, function, 0, 0]);
    if npdu.destination.is_none() && npdu.source.is_none() {
        // The common case needs no allocation: version 1 and the control byte.
        buf.extend_from_slice(&[1, if npdu.expecting_reply { 0x04 } else { 0x00 }]);
        return;
    }
    let mut n = Npdu::new();
    n.control = NpduControl {
        destination_present: npdu.destination.is_some(),
        source_present: npdu.source.is_some(),
        expecting_reply: npdu.expecting_reply,
        ..NpduControl::default()
    };
    n.destination = npdu.destination.as_ref().map(network_address);
    n.source = npdu.source.as_ref().map(network_address);
    n.hop_count = npdu.destination.map(|_| 255);
    buf.extend_from_slice(&n.encode());
}

/// Starts a frame in `buf` (cleared first) that carries a network layer
/// message of type `kind` instead of an APDU; its data follows, then [`finish`].
pub fn begin_network_message(buf: &mut Vec<u8>, broadcast: bool, kind: u8) {
    buf.clear();
    let function = if broadcast { bvlc::ORIGINAL_BROADCAST_NPDU } else { bvlc::ORIGINAL_UNICAST_NPDU };
    buf.extend_from_slice(&[BVLC_TYPE, function, 0, 0, 1, 0x80, kind]);
}

/// Patches the BVLC length; refuses a frame too large for BACnet/IP.
pub fn finish(buf: &mut [u8]) -> DecodeResult<()> {
    if buf.len() > MAX_DATAGRAM || buf.len() < 6 {
        return Err(DecodeError::BadLength("outgoing frame"));
    }
    let len = (buf.len() as u16).to_be_bytes();
    buf[2] = len[0];
    buf[3] = len[1];
    Ok(())
}

/// Max-segments code (clause 20.1.2.4) for a segment count we accept.
pub fn max_segments_code(segments: u16) -> u8 {
    match segments {
        0 | 1 => 0,
        2..=3 => 1,
        4..=7 => 2,
        8..=15 => 3,
        16..=31 => 4,
        32..=63 => 5,
        64 => 6,
        _ => 7,
    }
}

pub fn write_confirmed_request(buf: &mut Vec<u8>, invoke_id: u8, service: u8, max_apdu: u16, max_segments: u16) {
    let seg_accepted = if max_segments > 1 { 0x02 } else { 0x00 };
    buf.extend_from_slice(&[
        (pdu::CONFIRMED_REQUEST << 4) | seg_accepted,
        (max_segments_code(max_segments) << 4) | max_apdu_code(max_apdu),
        invoke_id,
        service,
    ]);
}

pub fn write_unconfirmed_request(buf: &mut Vec<u8>, service: u8) {
    buf.extend_from_slice(&[pdu::UNCONFIRMED_REQUEST << 4, service]);
}

pub fn write_simple_ack(buf: &mut Vec<u8>, invoke_id: u8, service: u8) {
    buf.extend_from_slice(&[pdu::SIMPLE_ACK << 4, invoke_id, service]);
}

pub fn write_complex_ack(buf: &mut Vec<u8>, invoke_id: u8, service: u8, segment: Option<Segment>) {
    match segment {
        None => buf.extend_from_slice(&[pdu::COMPLEX_ACK << 4, invoke_id, service]),
        Some(s) => buf.extend_from_slice(&[
            (pdu::COMPLEX_ACK << 4) | 0x08 | if s.more_follows { 0x04 } else { 0 },
            invoke_id,
            s.sequence,
            s.window,
            service,
        ]),
    }
}

pub fn write_segment_ack(buf: &mut Vec<u8>, negative: bool, server: bool, invoke_id: u8, sequence: u8, window: u8) {
    let flags = if negative { 0x02 } else { 0 } | if server { 0x01 } else { 0 };
    buf.extend_from_slice(&[(pdu::SEGMENT_ACK << 4) | flags, invoke_id, sequence, window]);
}

pub fn write_error(buf: &mut Vec<u8>, invoke_id: u8, service: u8, class: u32, code: u32) {
    buf.extend_from_slice(&[pdu::ERROR << 4, invoke_id, service]);
    super::codec::write_application(buf, &super::codec::Value::Enumerated(class));
    super::codec::write_application(buf, &super::codec::Value::Enumerated(code));
}

pub fn write_reject(buf: &mut Vec<u8>, invoke_id: u8, reason: u8) {
    buf.extend_from_slice(&[pdu::REJECT << 4, invoke_id, reason]);
}

pub fn write_abort(buf: &mut Vec<u8>, server: bool, invoke_id: u8, reason: u8) {
    buf.extend_from_slice(&[(pdu::ABORT << 4) | u8::from(server), invoke_id, reason]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_request_round_trips() {
        let route = Route { network: 100, mac: Mac::new(&[5]).unwrap() };
        let mut buf = Vec::new();
        begin(&mut buf, false, &NpduOut { destination: Some(route), source: None, expecting_reply: true });
        write_confirmed_request(&mut buf, 7, 12, 1476, 64);
        buf.extend_from_slice(&[0x0C, 0, 0, 0, 1, 0x19, 0x55]);
        finish(&mut buf).unwrap();
        let f = parse(&buf).unwrap();
        assert_eq!(f.destination, Some(route));
        assert!(f.expecting_reply);
        let Body::Apdu(Apdu::ConfirmedRequest {
            invoke_id,
            service,
            max_apdu,
            max_segments,
            segmented_response_accepted,
            data,
            ..
        }) = f.body
        else {
            panic!("not a confirmed request: {f:?}");
        };
        assert_eq!(
            (invoke_id, service, max_apdu, max_segments, segmented_response_accepted),
            (7, 12, 1476, Some(64), true)
        );
        assert_eq!(data, &[0x0C, 0, 0, 0, 1, 0x19, 0x55]);
    }

    #[test]
    fn network_messages_round_trip() {
        let mut buf = Vec::new();
        begin_network_message(&mut buf, false, network_message::I_AM_ROUTER_TO_NETWORK);
        buf.extend_from_slice(&100u16.to_be_bytes());
        finish(&mut buf).unwrap();
        assert_eq!(buf, [0x81, 0x0A, 0x00, 0x09, 0x01, 0x80, 0x01, 0x00, 0x64]);
        let f = parse(&buf).unwrap();
        assert_eq!(
            f.body,
            Body::NetworkMessage { kind: network_message::I_AM_ROUTER_TO_NETWORK, data: &[0x00, 0x64][..] }
        );
    }

    #[test]
    fn bvlc_length_must_match() {
        assert!(parse(&[0x81, 0x0A, 0x00, 0x00]).is_err());
        assert!(parse(&[0x81, 0x0A, 0x00, 0x09, 0x01, 0x00, 0x30, 0x01]).is_err());
        assert!(parse(&[0x81, 0x0A, 0x00, 0x04]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn forwarded_npdu_keeps_its_origin() {
        let buf = [0x81, 0x04, 0x00, 0x0F, 127, 0, 0, 9, 0xBA, 0xC0, 0x01, 0x00, 0x10, 0x08, 0x00];
        let f = parse(&buf).unwrap();
        assert_eq!(f.origin, Some("127.0.0.9:47808".parse().unwrap()));
        assert_eq!(f.body, Body::Apdu(Apdu::UnconfirmedRequest { service: 8, data: &[0x00][..] }));
    }

    #[test]
    fn truncated_headers_are_errors() {
        // a segmented complex ack cut before its window size
        assert!(parse_apdu(&[0x38, 0x01, 0x00]).is_err());
        // a destination whose MAC runs past the end
        assert!(parse(&[0x81, 0x0A, 0x00, 0x09, 0x01, 0x20, 0x00, 0x05, 0x06]).is_err());
    }
}
