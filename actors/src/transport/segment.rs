//! Reassembly of segmented ComplexAck answers: the requesting side of the
//! segmentation protocol (clause 5.4.4, SEGMENTED_CONFIRMATION).
//!
//! The server sends a window of segments; we acknowledge segment 0 at once
//! (fixing the actual window size), then every segment that completes a
//! window, and the last one. A gap gets a negative Segment-ACK naming the last
//! segment received in order, so the server resends from there; a repeat of
//! the segment we last acknowledged (our ACK was lost) is acknowledged again.

use crate::bacnet::frame::Segment;
use crate::bacnet::types::error::{ABORT_BUFFER_OVERFLOW, ABORT_WINDOW_SIZE_OUT_OF_RANGE};

/// Abort reason: invalid-apdu-in-this-state.
const ABORT_INVALID_APDU: u8 = 2;

/// What the transport must do after a segment arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send a Segment-ACK and wait for more.
    Ack { negative: bool, sequence: u8, window: u8 },
    /// Nothing to send; more segments expected.
    Wait,
    /// The last segment arrived: send this final Segment-ACK and take the data.
    Done { sequence: u8, window: u8 },
    /// The server broke the protocol: abort the transaction with this reason.
    Abort(u8),
}

#[derive(Debug)]
pub struct Reassembly {
    data: Vec<u8>,
    service: u8,
    window: u8,
    initial: u8,
    last: u8,
    segments: u32,
    max_segments: u32,
    max_len: usize,
}

impl Reassembly {
    /// Starts from the first segment. `our_window` is the largest window we
    /// accept; `max_segments` and `max_len` bound what we buffer.
    pub fn start(
        seg: Segment,
        service: u8,
        data: &[u8],
        our_window: u8,
        max_segments: u32,
        max_len: usize,
    ) -> (Option<Self>, Step) {
        if seg.sequence != 0 {
            return (None, Step::Abort(ABORT_INVALID_APDU));
        }
        if !(1..=127).contains(&seg.window) {
            return (None, Step::Abort(ABORT_WINDOW_SIZE_OUT_OF_RANGE));
        }
        if data.len() > max_len {
            return (None, Step::Abort(ABORT_BUFFER_OVERFLOW));
        }
        let window = seg.window.min(our_window.max(1));
        let r = Self { data: data.to_vec(), service, window, initial: 0, last: 0, segments: 1, max_segments, max_len };
        let step = if seg.more_follows {
            Step::Ack { negative: false, sequence: 0, window }
        } else {
            Step::Done { sequence: 0, window }
        };
        (Some(r), step)
    }

    /// Takes the next segment.
    pub fn on_segment(&mut self, seg: Segment, service: u8, data: &[u8]) -> Step {
        if service != self.service {
            return Step::Abort(ABORT_INVALID_APDU);
        }
        let expected = self.last.wrapping_add(1);
        if seg.sequence != expected {
            // How far behind the expected segment: a repeat of what we have.
            let behind = expected.wrapping_sub(seg.sequence);
            if behind <= 128 {
                return if seg.sequence == self.initial {
                    Step::Ack { negative: false, sequence: self.last, window: self.window }
                } else {
                    Step::Wait
                };
            }
            self.initial = self.last;
            return Step::Ack { negative: true, sequence: self.last, window: self.window };
        }
        self.segments += 1;
        if self.segments > self.max_segments || self.data.len() + data.len() > self.max_len {
            return Step::Abort(ABORT_BUFFER_OVERFLOW);
        }
        self.data.extend_from_slice(data);
        self.last = seg.sequence;
        if !seg.more_follows {
            Step::Done { sequence: seg.sequence, window: self.window }
        } else if seg.sequence == self.initial.wrapping_add(self.window) {
            self.initial = seg.sequence;
            Step::Ack { negative: false, sequence: seg.sequence, window: self.window }
        } else {
            Step::Wait
        }
    }

    /// The reassembled service data.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(sequence: u8, window: u8, more_follows: bool) -> Segment {
        Segment { sequence, window, more_follows }
    }

    #[test]
    fn windows_are_acknowledged_and_data_concatenated() {
        let (r, step) = Reassembly::start(seg(0, 4, true), 12, b"a", 16, 64, 10_000);
        let mut r = r.unwrap();
        assert_eq!(step, Step::Ack { negative: false, sequence: 0, window: 4 });
        assert_eq!(r.on_segment(seg(1, 4, true), 12, b"b"), Step::Wait);
        assert_eq!(r.on_segment(seg(2, 4, true), 12, b"c"), Step::Wait);
        assert_eq!(r.on_segment(seg(3, 4, true), 12, b"d"), Step::Wait);
        assert_eq!(r.on_segment(seg(4, 4, true), 12, b"e"), Step::Ack { negative: false, sequence: 4, window: 4 });
        assert_eq!(r.on_segment(seg(5, 4, false), 12, b"f"), Step::Done { sequence: 5, window: 4 });
        assert_eq!(r.into_data(), b"abcdef");
    }

    #[test]
    fn our_window_caps_the_proposed_one() {
        let (_, step) = Reassembly::start(seg(0, 100, true), 12, b"", 8, 64, 100);
        assert_eq!(step, Step::Ack { negative: false, sequence: 0, window: 8 });
    }

    #[test]
    fn a_gap_gets_a_negative_ack_and_the_resend_is_accepted() {
        let (r, _) = Reassembly::start(seg(0, 4, true), 12, b"a", 16, 64, 10_000);
        let mut r = r.unwrap();
        assert_eq!(r.on_segment(seg(1, 4, true), 12, b"b"), Step::Wait);
        // segment 2 lost
        assert_eq!(r.on_segment(seg(3, 4, true), 12, b"d"), Step::Ack { negative: true, sequence: 1, window: 4 });
        assert_eq!(r.on_segment(seg(2, 4, true), 12, b"c"), Step::Wait);
        assert_eq!(r.on_segment(seg(3, 4, false), 12, b"d"), Step::Done { sequence: 3, window: 4 });
        assert_eq!(r.into_data(), b"abcd");
    }

    #[test]
    fn a_lost_ack_is_repeated() {
        let (r, _) = Reassembly::start(seg(0, 2, true), 12, b"a", 16, 64, 10_000);
        let mut r = r.unwrap();
        assert_eq!(r.on_segment(seg(1, 2, true), 12, b"b"), Step::Wait);
        assert_eq!(r.on_segment(seg(2, 2, true), 12, b"c"), Step::Ack { negative: false, sequence: 2, window: 2 });
        // the server did not get that ACK and resends 1..=2
        assert_eq!(r.on_segment(seg(1, 2, true), 12, b"b"), Step::Wait);
        assert_eq!(r.on_segment(seg(2, 2, true), 12, b"c"), Step::Ack { negative: false, sequence: 2, window: 2 });
        assert_eq!(r.on_segment(seg(3, 2, false), 12, b"d"), Step::Done { sequence: 3, window: 2 });
        assert_eq!(r.into_data(), b"abcd");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (r, _) = Reassembly::start(seg(0, 1, true), 12, &[0], 1, 1000, 100_000);
        let mut r = r.unwrap();
        for i in 1..=300u32 {
            let step = r.on_segment(seg(i as u8, 1, i < 300), 12, &[i as u8]);
            if i < 300 {
                assert_eq!(step, Step::Ack { negative: false, sequence: i as u8, window: 1 });
            } else {
                assert_eq!(step, Step::Done { sequence: 300u32 as u8, window: 1 });
            }
        }
        assert_eq!(r.into_data().len(), 301);
    }

    #[test]
    fn limits_and_protocol_errors_abort() {
        assert_eq!(Reassembly::start(seg(1, 4, true), 12, b"", 16, 64, 100).1, Step::Abort(2));
        assert_eq!(Reassembly::start(seg(0, 0, true), 12, b"", 16, 64, 100).1, Step::Abort(7));
        let (r, _) = Reassembly::start(seg(0, 4, true), 12, b"aa", 16, 2, 100);
        let mut r = r.unwrap();
        assert_eq!(r.on_segment(seg(1, 4, true), 14, b"b"), Step::Abort(2));
        assert_eq!(r.on_segment(seg(1, 4, true), 12, b"b"), Step::Wait);
        assert_eq!(r.on_segment(seg(2, 4, true), 12, b"c"), Step::Abort(1));
    }
}
