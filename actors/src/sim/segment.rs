//! Server-side segmentation of a ComplexAck (clause 5.4.5), sans-IO.
//!
//! A [`SegmentedAnswer`] holds the whole service data of one answer and says
//! which segments to (re)send: the first segment alone (the actual window
//! size is 1 until the client's first Segment-ACK), then windows of the size
//! the client acknowledges with. Segments are numbered absolutely here and
//! sent modulo 256. The device owns the transactions and writes the segments.

use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;

use crate::bacnet::frame::{self, Segment};
use crate::bacnet::types::error;

/// Window size proposed in every segment.
pub const PROPOSED_WINDOW: u8 = 16;
/// APDU_Segment_Timeout: how long to wait for a Segment-ACK.
pub const SEGMENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Retransmissions of a window before the answer is given up.
pub const SEGMENT_RETRIES: u8 = 3;
/// Octets of a segmented ComplexAck header.
const HEADER: usize = 5;

/// What a Segment-ACK leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Send these segments.
    Send(Range<usize>),
    /// The client has every segment: the transaction is over.
    Done,
    /// A duplicate or out-of-window acknowledgement.
    Ignored,
    /// Abort the transaction with this reason.
    Abort(u8),
}

#[derive(Debug)]
pub struct SegmentedAnswer {
    pub invoke_id: u8,
    service: u8,
    data: Vec<u8>,
    chunk: usize,
    total: usize,
    /// Actual window size.
    window: usize,
    /// Segments `[0, acked)` are acknowledged.
    acked: usize,
    /// Segments `[0, sent)` were sent at least once.
    sent: usize,
    deadline: Instant,
    retries: u8,
}

/// Segments sent to a client that does not say how many it accepts.
const UNSPECIFIED_MAX_SEGMENTS: u16 = 64;

impl SegmentedAnswer {
    /// Prepares a segmented answer of `data` for a client that accepts APDUs
    /// of `max_apdu` octets and `max_segments` segments (`None`: unspecified).
    /// `Err` is the abort reason when it cannot be sent.
    pub fn new(
        invoke_id: u8,
        service: u8,
        data: Vec<u8>,
        max_apdu: usize,
        max_segments: Option<u16>,
        now: Instant,
    ) -> Result<Self, u8> {
        let chunk = max_apdu.checked_sub(HEADER).filter(|&c| c > 0).ok_or(error::ABORT_BUFFER_OVERFLOW)?;
        let total = data.len().div_ceil(chunk).max(1);
        // An unspecified maximum is taken as 64 segments, which bounds what a
        // hostile request can make a device buffer (about 94 kB per answer).
        if total > usize::from(max_segments.unwrap_or(UNSPECIFIED_MAX_SEGMENTS)) {
            return Err(error::ABORT_BUFFER_OVERFLOW);
        }
        Ok(Self { invoke_id, service, data, chunk, total, window: 1, acked: 0, sent: 0, deadline: now, retries: 0 })
    }

    pub fn segments(&self) -> usize {
        self.total
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The first window: segment 0 alone.
    pub fn start(&mut self, now: Instant) -> Range<usize> {
        self.send_from(0, now)
    }

    fn send_from(&mut self, from: usize, now: Instant) -> Range<usize> {
        let end = (self.acked + self.window).min(self.total);
        self.sent = self.sent.max(end);
        self.deadline = now + SEGMENT_TIMEOUT;
        from.min(end)..end
    }

    /// Handles a Segment-ACK from the client.
    pub fn on_ack(&mut self, negative: bool, sequence: u8, window: u8, now: Instant) -> AckOutcome {
        if window == 0 || window > 127 {
            return AckOutcome::Abort(error::ABORT_WINDOW_SIZE_OUT_OF_RANGE);
        }
        // The acknowledged segment, searched from the last one acknowledged
        // (a repeated acknowledgement) to the last one sent.
        let base = self.acked.saturating_sub(1);
        let offset = usize::from(sequence.wrapping_sub((base % 256) as u8));
        let acked = base + offset;
        if acked >= self.sent {
            return AckOutcome::Ignored;
        }
        let repeat = acked + 1 == self.acked;
        if repeat && !negative {
            return AckOutcome::Ignored;
        }
        self.acked = acked + 1;
        self.window = usize::from(window);
        self.retries = 0;
        if self.acked >= self.total {
            return AckOutcome::Done;
        }
        // A negative acknowledgement asks for everything after `acked` again;
        // a positive one slides the window over what was not sent yet.
        let from = if negative { self.acked } else { self.sent.max(self.acked) };
        AckOutcome::Send(self.send_from(from, now))
    }

    /// The segment timer expired: the window to send again, or `None` when
    /// the retries are used up.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Range<usize>> {
        if self.retries >= SEGMENT_RETRIES {
            return None;
        }
        self.retries += 1;
        Some(self.send_from(self.acked, now))
    }

    /// Appends segment `i` (header and its share of the data) to `buf`.
    pub fn write_segment(&self, i: usize, buf: &mut Vec<u8>) {
        let start = (i * self.chunk).min(self.data.len());
        let end = (start + self.chunk).min(self.data.len());
        let segment = Segment { sequence: (i % 256) as u8, window: PROPOSED_WINDOW, more_follows: i + 1 < self.total };
        frame::write_complex_ack(buf, self.invoke_id, self.service, Some(segment));
        buf.extend_from_slice(&self.data[start..end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(len: usize, max_apdu: usize) -> (SegmentedAnswer, Instant) {
        let now = Instant::now();
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        (SegmentedAnswer::new(1, 12, data, max_apdu, Some(u16::MAX), now).unwrap(), now)
    }

    #[test]
    fn windows_follow_the_clients_acknowledgements() {
        // 100 octets in chunks of 5: 20 segments
        let (mut a, now) = answer(100, 10);
        assert_eq!(a.segments(), 20);
        assert_eq!(a.start(now), 0..1);
        assert_eq!(a.on_ack(false, 0, 4, now), AckOutcome::Send(1..5));
        // an acknowledgement in the middle of the window slides it
        assert_eq!(a.on_ack(false, 2, 4, now), AckOutcome::Send(5..7));
        assert_eq!(a.on_ack(false, 2, 4, now), AckOutcome::Ignored);
        // a negative acknowledgement resends after the last good segment
        assert_eq!(a.on_ack(true, 3, 4, now), AckOutcome::Send(4..8));
        assert_eq!(a.on_ack(false, 7, 16, now), AckOutcome::Send(8..20));
        assert_eq!(a.on_ack(false, 200, 16, now), AckOutcome::Ignored);
        assert_eq!(a.on_ack(false, 19, 16, now), AckOutcome::Done);
    }

    #[test]
    fn sequence_numbers_wrap_at_256() {
        let (mut a, now) = answer(600, 6);
        assert_eq!(a.segments(), 600);
        a.start(now);
        let mut next = 0usize;
        let mut last_range = 0..1;
        while next < 599 {
            let seq = (last_range.end - 1) as u8;
            match a.on_ack(false, seq, 127, now) {
                AckOutcome::Send(r) => {
                    assert_eq!(r.start, last_range.end);
                    next = r.end;
                    last_range = r;
                }
                other => panic!("{other:?} at {next}"),
            }
        }
        assert_eq!(a.on_ack(false, (599 % 256) as u8, 127, now), AckOutcome::Done);
    }

    #[test]
    fn timeouts_resend_the_window_then_give_up() {
        let (mut a, now) = answer(100, 10);
        a.start(now);
        assert_eq!(a.on_ack(false, 0, 3, now), AckOutcome::Send(1..4));
        let later = now + SEGMENT_TIMEOUT;
        assert_eq!(a.deadline(), later);
        for _ in 0..SEGMENT_RETRIES {
            assert_eq!(a.on_timeout(later), Some(1..4));
        }
        assert_eq!(a.on_timeout(later), None);
    }

    #[test]
    fn limits_are_checked() {
        let now = Instant::now();
        assert_eq!(
            SegmentedAnswer::new(1, 12, vec![0; 100], 10, Some(4), now).err(),
            Some(error::ABORT_BUFFER_OVERFLOW)
        );
        // a client that leaves the maximum unspecified gets at most 64 segments
        let big = 65 * (1476 - HEADER);
        assert_eq!(
            SegmentedAnswer::new(1, 12, vec![0; big], 1476, None, now).err(),
            Some(error::ABORT_BUFFER_OVERFLOW)
        );
        assert!(SegmentedAnswer::new(1, 12, vec![0; big - 1476], 1476, None, now).is_ok());
        let (mut a, now) = answer(100, 10);
        a.start(now);
        assert_eq!(a.on_ack(false, 0, 0, now), AckOutcome::Abort(error::ABORT_WINDOW_SIZE_OUT_OF_RANGE));
    }

    #[test]
    fn segments_carry_their_header_and_share() {
        let (a, _) = answer(12, 10);
        let mut buf = Vec::new();
        a.write_segment(2, &mut buf);
        assert_eq!(buf, [0x38, 1, 2, PROPOSED_WINDOW, 12, 10, 11]);
        buf.clear();
        a.write_segment(0, &mut buf);
        assert_eq!(buf, [0x3C, 1, 0, PROPOSED_WINDOW, 12, 0, 1, 2, 3, 4]);
    }
}
