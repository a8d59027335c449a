//! Per-peer invoke-id allocation (clause 5.4): never two requests outstanding
//! with one peer under the same id, and never a late answer matched to a new
//! request.
//!
//! Ids rotate through 0..=255 per peer, so an id is reused as late as
//! possible. An id whose request timed out or was retransmitted may still get
//! an answer to an earlier transmission; it is held back (quarantined) for a
//! while before it is handed out again.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct PeerIds {
    next: u8,
    busy: [u64; 4],
    /// Ids held back, with the time each becomes free.
    held: Vec<(u8, Instant)>,
}

impl PeerIds {
    fn is_set(bits: &[u64; 4], id: u8) -> bool {
        bits[usize::from(id / 64)] & (1 << (id % 64)) != 0
    }

    fn set(bits: &mut [u64; 4], id: u8, v: bool) {
        let w = &mut bits[usize::from(id / 64)];
        if v {
            *w |= 1 << (id % 64);
        } else {
            *w &= !(1 << (id % 64));
        }
    }

    fn outstanding(&self) -> u32 {
        self.busy.iter().map(|w| w.count_ones()).sum()
    }
}

/// Invoke ids of every peer the transport talks to.
#[derive(Debug)]
pub struct InvokeIds<P> {
    peers: HashMap<P, PeerIds>,
    quarantine: Duration,
    /// Ids outstanding over all peers (kept as they change, for the metrics).
    in_use: usize,
}

impl<P: Hash + Eq + Copy> InvokeIds<P> {
    /// `quarantine`: how long an id that may still see a late answer is held back.
    pub fn new(quarantine: Duration) -> Self {
        Self { peers: HashMap::new(), quarantine, in_use: 0 }
    }

    /// Ids outstanding with every peer together: one per request in flight,
    /// unless one leaked.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Frees the held ids whose quarantine is over, for every peer, and
    /// returns how many stay held.
    pub fn sweep(&mut self, now: Instant) -> usize {
        self.peers
            .values_mut()
            .map(|ids| {
                ids.held.retain(|&(_, until)| until > now);
                ids.held.len()
            })
            .sum()
    }

    /// Peers in the table.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// A free id for `peer`, or `None` when all 256 are outstanding or held.
    pub fn allocate(&mut self, peer: P, now: Instant) -> Option<u8> {
        let ids = self.peers.entry(peer).or_default();
        ids.held.retain(|&(_, until)| until > now);
        for step in 0..=255u8 {
            let id = ids.next.wrapping_add(step);
            let held = ids.held.iter().any(|&(h, _)| h == id);
            if !PeerIds::is_set(&ids.busy, id) && !held {
                PeerIds::set(&mut ids.busy, id, true);
                self.in_use += 1;
                ids.next = id.wrapping_add(1);
                return Some(id);
            }
        }
        None
    }

    /// Whether `id` is outstanding with `peer`.
    pub fn is_outstanding(&self, peer: P, id: u8) -> bool {
        self.peers.get(&peer).is_some_and(|ids| PeerIds::is_set(&ids.busy, id))
    }

    /// Frees `id`. With `may_see_late_answer` (the request was retransmitted
    /// or timed out) the id is held back for the quarantine period.
    pub fn release(&mut self, peer: P, id: u8, may_see_late_answer: bool, now: Instant) {
        let Some(ids) = self.peers.get_mut(&peer) else { return };
        if PeerIds::is_set(&ids.busy, id) {
            self.in_use -= 1;
        }
        PeerIds::set(&mut ids.busy, id, false);
        if may_see_late_answer {
            ids.held.push((id, now + self.quarantine));
        } else {
            ids.held.retain(|&(_, until)| until > now);
        }
    }

    /// Requests outstanding with `peer`.
    pub fn outstanding(&self, peer: P) -> u32 {
        self.peers.get(&peer).map_or(0, PeerIds::outstanding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_rotate_and_never_collide() {
        let now = Instant::now();
        let mut t = InvokeIds::new(Duration::from_secs(10));
        let a = t.allocate(1u8, now).unwrap();
        let b = t.allocate(1u8, now).unwrap();
        assert_ne!(a, b);
        t.release(1, a, false, now);
        // the next id is not the one just freed
        let c = t.allocate(1, now).unwrap();
        assert_ne!(c, a);
        assert_ne!(c, b);
        // another peer has its own ids
        assert_eq!(t.allocate(2u8, now), Some(0));
    }

    #[test]
    fn all_256_outstanding_exhausts_the_peer() {
        let now = Instant::now();
        let mut t = InvokeIds::new(Duration::from_secs(10));
        let ids: Vec<u8> = (0..256).map(|_| t.allocate(7u8, now).unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
        assert_eq!(t.allocate(7, now), None);
        t.release(7, 42, false, now);
        assert_eq!(t.allocate(7, now), Some(42));
    }

    #[test]
    fn timed_out_ids_are_held_back() {
        let now = Instant::now();
        let q = Duration::from_secs(10);
        let mut t = InvokeIds::new(q);
        let first = t.allocate(1u8, now).unwrap();
        t.release(1, first, true, now);
        // cycle through every other id: the held one is skipped
        for _ in 0..255 {
            let id = t.allocate(1, now).unwrap();
            assert_ne!(id, first);
            t.release(1, id, false, now);
        }
        // after the quarantine it can be used again
        let later = now + q + Duration::from_millis(1);
        let seen: Vec<u8> = (0..256).filter_map(|_| t.allocate(1, later)).collect();
        assert!(seen.contains(&first));
    }

    #[test]
    fn ids_in_use_and_held_are_counted_over_all_peers() {
        let now = Instant::now();
        let q = Duration::from_secs(10);
        let mut t = InvokeIds::new(q);
        let a = t.allocate(1u8, now).unwrap();
        let b = t.allocate(2u8, now).unwrap();
        let c = t.allocate(2u8, now).unwrap();
        assert_eq!((t.in_use(), t.peers()), (3, 2));
        t.release(1, a, true, now);
        t.release(2, b, false, now);
        // a second release of the same id changes nothing
        t.release(2, b, false, now);
        assert_eq!(t.in_use(), 1);
        assert_eq!(t.sweep(now), 1);
        t.release(2, c, true, now + Duration::from_secs(5));
        assert_eq!(t.in_use(), 0);
        assert_eq!(t.sweep(now + Duration::from_secs(5)), 2);
        assert_eq!(t.sweep(now + q + Duration::from_millis(1)), 1);
        assert_eq!(t.sweep(now + q * 2), 0);
    }

    #[test]
    fn rotation_survives_idle_periods() {
        // A peer that went idle does not restart at id 0: a duplicated answer
        // to the last request cannot match the next one.
        let now = Instant::now();
        let mut t = InvokeIds::new(Duration::from_secs(1));
        let a = t.allocate(9u8, now).unwrap();
        t.release(9, a, false, now);
        assert_eq!(t.outstanding(9), 0);
        let b = t.allocate(9, now).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.outstanding(9), 1);
    }
}
