//! The simulator's fault schedules, sans-IO: periodic outages (a device that
//! vanishes and comes back, a router whose remote network goes unreachable),
//! answer jitter, and garbled answers. The device and router models ask these
//! with the time since the simulator started; nothing here reads a clock.

use std::cell::Cell;
use std::time::Duration;

/// A periodic outage: down for `length` every `every`. Outage k (k = 1, 2,
/// ...) starts at `k * every + offset`, so nothing is down in the first
/// period (plantwatch enrols the device first), and a per-device (per-router)
/// offset keeps a group of devices from going down together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub every: Duration,
    pub length: Duration,
}

impl Outage {
    /// Checks that the outage leaves the thing up part of the time.
    pub fn check(&self, what: &str) -> Result<(), String> {
        if self.every.is_zero() || self.length.is_zero() {
            return Err(format!("{what}: the period and the length must be more than 0"));
        }
        if self.length >= self.every {
            return Err(format!(
                "{what}: down for {:?} every {:?} leaves it never up; the length must be shorter than the period",
                self.length, self.every
            ));
        }
        Ok(())
    }

    /// The offset of the thing keyed `key` (a device instance, a network
    /// number) in `[0, every)`: spread by the golden ratio, so consecutive
    /// keys are far apart.
    pub fn offset(&self, key: u32) -> Duration {
        self.every.mul_f64((f64::from(key) * 0.618_033_988_749_895).fract())
    }

    /// How many outages have begun by `t` (time since start).
    pub fn begun(&self, t: Duration, offset: Duration) -> u64 {
        let every = self.every.as_nanos().max(1);
        match t.checked_sub(offset) {
            Some(since) => u64::try_from(since.as_nanos() / every).unwrap_or(u64::MAX),
            None => 0,
        }
    }

    /// Whether it is down at `t`.
    pub fn down(&self, t: Duration, offset: Duration) -> bool {
        let n = self.begun(t, offset);
        if n == 0 {
            return false;
        }
        let into = t.saturating_sub(offset).as_nanos() - u128::from(n) * self.every.as_nanos();
        into < self.length.as_nanos()
    }
}

/// What a device is like when it comes back from an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnReturn {
    /// As it was: only the network between was gone.
    #[default]
    Same,
    /// Restarted: its priority arrays are empty (every output back to its
    /// Relinquish_Default), its COV subscriptions and transactions forgotten.
    Restart,
    /// Restarted with a new configuration: as `Restart`, and its
    /// Database_Revision is one higher and its object list changed (every
    /// other revision has one more analog-value and one binary-input fewer).
    NewRevision,
}

/// A device that vanishes periodically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Churn {
    pub outage: Outage,
    pub on_return: OnReturn,
}

/// The delay of one answer: `slow` plus or minus up to `jitter` (uniform,
/// never below zero), from a small PRNG whose state lives in `state` (so a
/// model can delay answers from `&self`). `None`: no delay.
pub fn answer_delay(slow: Duration, jitter: Duration, state: &Cell<u64>) -> Option<Duration> {
    if jitter.is_zero() {
        return (!slow.is_zero()).then_some(slow);
    }
    let r = next(state);
    // A uniform fraction in [-1, 1].
    let f = (r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
    let d = slow.as_secs_f64() + jitter.as_secs_f64() * f;
    Some(Duration::from_secs_f64(d.max(0.0)))
}

/// xorshift64*: deterministic, and cheap enough for every answer.
fn next(state: &Cell<u64>) -> u64 {
    let mut x = state.get().max(1);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.set(x);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Ways an answer is garbled, picked by [`garble`]'s roll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// Cut short: the BVLC length no longer matches.
    Truncated,
    /// The BVLC length says more than there is.
    LengthLie,
    /// Not a BACnet/IP frame at all (BVLC type 0x82).
    NotBacnetIp,
    /// A reserved APDU type.
    ReservedApdu,
    /// A well-formed header (the right invoke id) over service data that
    /// does not decode: the request fails with a decode error instead of
    /// being retried.
    BadServiceData,
}

impl Garbage {
    pub const ALL: [Garbage; 5] =
        [Garbage::Truncated, Garbage::LengthLie, Garbage::NotBacnetIp, Garbage::ReservedApdu, Garbage::BadServiceData];
}

/// Where the APDU starts in a frame the simulator built (4-octet BVLC
/// header, NPDU with optional DNET/DADR, SNET/SADR and hop count); `None`
/// for a network layer message or a frame too short.
pub fn apdu_offset(frame: &[u8]) -> Option<usize> {
    let control = *frame.get(5)?;
    if control & 0x80 != 0 {
        return None;
    }
    let mut pos = 6;
    let route = |pos: &mut usize| -> Option<()> {
        let len = usize::from(*frame.get(*pos + 2)?);
        *pos += 3 + len;
        Some(())
    };
    if control & 0x20 != 0 {
        route(&mut pos)?;
    }
    if control & 0x08 != 0 {
        route(&mut pos)?;
    }
    if control & 0x20 != 0 {
        pos += 1;
    }
    (pos < frame.len()).then_some(pos)
}

/// Garbles an answer the way `roll` picks; returns how. Answers without
/// service data to spoil (Simple-ACK, Reject, Abort) get a reserved APDU
/// type instead of bad service data.
pub fn garble(frame: &mut Vec<u8>, roll: u64) -> Garbage {
    let kind = Garbage::ALL[(roll % Garbage::ALL.len() as u64) as usize];
    let noise = Cell::new(roll | 1);
    match kind {
        Garbage::Truncated if frame.len() > 1 => {
            let keep = 1 + (next(&noise) as usize) % (frame.len() - 1);
            frame.truncate(keep);
            kind
        }
        Garbage::LengthLie if frame.len() >= 4 => {
            let lie = (frame.len() as u16).wrapping_add(7).to_be_bytes();
            frame[2..4].copy_from_slice(&lie);
            kind
        }
        Garbage::NotBacnetIp if !frame.is_empty() => {
            frame[0] = 0x82;
            kind
        }
        Garbage::BadServiceData => match apdu_offset(frame) {
            // Complex-ACK (type, invoke id, [sequence, window,] service) or
            // Error (type, invoke id, service, then class and code).
            Some(at) if matches!(frame[at] >> 4, 3 | 5) && frame.len() > at + header(frame[at]) => {
                let data = at + header(frame[at]);
                let n = (frame.len() - data).clamp(1, 16);
                frame.truncate(data);
                // An opening tag 3 where an object identifier (or an error
                // class) belongs, then noise: never a valid answer.
                frame.push(0x3E);
                frame.extend((1..n).map(|_| next(&noise) as u8));
                fix_length(frame);
                kind
            }
            _ => reserved_apdu(frame),
        },
        _ => reserved_apdu(frame),
    }
}

/// Octets of a Complex-ACK or Error header before its service data.
fn header(first: u8) -> usize {
    if first >> 4 == 3 && first & 0x08 != 0 {
        5
    } else {
        3
    }
}

fn reserved_apdu(frame: &mut [u8]) -> Garbage {
    match apdu_offset(frame) {
        Some(at) => frame[at] = 0x90 | (frame[at] & 0x0F),
        None => {
            if let Some(b) = frame.first_mut() {
                *b = 0x82;
            }
        }
    }
    Garbage::ReservedApdu
}

fn fix_length(frame: &mut [u8]) {
    if frame.len() >= 4 {
        let len = (frame.len() as u16).to_be_bytes();
        frame[2..4].copy_from_slice(&len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bacnet::frame::{self, NpduOut};
    use crate::bacnet::types::{Mac, Route};

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn outages_repeat_after_the_first_period_at_their_offset() {
        let o = Outage { every: S * 10, length: S * 3 };
        let off = S * 2;
        let down: Vec<u64> = (0..45).filter(|&t| o.down(S * t as u32, off)).collect();
        assert_eq!(down, [12, 13, 14, 22, 23, 24, 32, 33, 34, 42, 43, 44]);
        assert_eq!((o.begun(S * 11, off), o.begun(S * 12, off), o.begun(S * 31, off)), (0, 1, 2));
        assert_eq!(o.begun(S, S * 5), 0);
        // offsets are in [0, every) and differ between neighbours
        let offsets: Vec<Duration> = (1001..1006).map(|k| o.offset(k)).collect();
        assert!(offsets.iter().all(|d| *d < o.every), "{offsets:?}");
        assert!(offsets.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn an_outage_must_leave_time_up() {
        assert!(Outage { every: S, length: S }.check("churn").is_err());
        assert!(Outage { every: S, length: Duration::ZERO }.check("churn").is_err());
        assert!(Outage { every: S * 2, length: S }.check("churn").is_ok());
    }

    #[test]
    fn jitter_spreads_answers_around_the_delay_and_never_below_zero() {
        let state = Cell::new(1001);
        let ms = Duration::from_millis;
        let delays: Vec<Duration> =
            (0..2000).map(|_| answer_delay(ms(200), ms(100), &state).expect("delayed")).collect();
        assert!(delays.iter().all(|d| (ms(100)..=ms(300)).contains(d)));
        let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
        assert!((ms(190)..=ms(210)).contains(&mean), "{mean:?}");
        assert!(delays.iter().any(|d| *d < ms(120)) && delays.iter().any(|d| *d > ms(280)));
        assert!((0..100).all(|_| answer_delay(ms(10), ms(50), &state).is_some()));
        assert_eq!(answer_delay(Duration::ZERO, Duration::ZERO, &state), None);
        assert_eq!(answer_delay(ms(5), Duration::ZERO, &state), Some(ms(5)));
    }

    fn answer(route: Option<Route>) -> Vec<u8> {
        let mut b = Vec::new();
        frame::begin(&mut b, false, &NpduOut { destination: route, source: route, expecting_reply: false });
        frame::write_complex_ack(&mut b, 7, 12, None);
        b.extend_from_slice(&[0x0C, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55, 0x3E, 0x44, 0x41, 0xA8, 0, 0, 0x3F]);
        frame::finish(&mut b).expect("fits");
        b
    }

    #[test]
    fn every_kind_of_garbage_fails_to_parse_or_to_decode() {
        let routed = Some(Route { network: 100, mac: Mac::new(&[3]).expect("mac") });
        for route in [None, routed] {
            let good = answer(route);
            let at = apdu_offset(&good).expect("apdu");
            assert_eq!(good[at] >> 4, 3);
            for roll in 0..50u64 {
                let mut bad = good.clone();
                let kind = garble(&mut bad, roll);
                assert_ne!(bad, good);
                match frame::parse(&bad) {
                    Err(_) => assert_ne!(kind, Garbage::BadServiceData),
                    Ok(f) => {
                        assert_eq!(kind, Garbage::BadServiceData, "{bad:02x?}");
                        let frame::Body::Apdu(frame::Apdu::ComplexAck { invoke_id: 7, data, .. }) = f.body else {
                            panic!("{f:?}")
                        };
                        assert!(crate::bacnet::services::ReadPropertyAck::decode(data).is_err());
                    }
                }
            }
        }
        // a Simple-ACK has no service data: its APDU type is spoilt instead
        let mut b = Vec::new();
        frame::begin(&mut b, false, &NpduOut::default());
        frame::write_simple_ack(&mut b, 1, 15);
        frame::finish(&mut b).expect("fits");
        assert_eq!(garble(&mut b, 4), Garbage::ReservedApdu);
        assert!(frame::parse(&b).is_err());
    }
}
