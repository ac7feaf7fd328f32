//! The duplicate cache: a retransmitted Accounting-Request (same source address and port,
//! identifier and Request Authenticator) is answered with the response already sent, or
//! ignored while the original is still being stored. It is never applied twice.
//!
//! Bounded by [`DEDUP_CAPACITY`] entries and [`DEDUP_TTL`], its arrival-order records by
//! `ORDER_SWEEP_AT`; entries still being stored are never evicted (there are at most as many
//! as the writer queue and the batches being committed hold, far fewer than the capacity).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::packet::Header;

/// How many requests the cache remembers.
pub const DEDUP_CAPACITY: usize = 131_072;
/// How long an answered request is remembered (NAS retransmit windows are seconds long).
pub const DEDUP_TTL: Duration = Duration::from_secs(60);
/// Records in the arrival order past which the dead ones (requests forgotten after a drop) are
/// swept out. While the database is down the oldest request stays in flight and eviction stops
/// at it, and every retransmit dropped behind it (queue full) leaves a record: without the
/// sweep they piled up for as long as the outage lasted (45 MB in a 60 s outage at 10,000
/// drops/s).
const ORDER_SWEEP_AT: usize = 2 * DEDUP_CAPACITY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub peer: SocketAddr,
    pub header: Header,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// First sight: the caller must store it and then call [`DedupCache::answered`].
    New,
    /// The original is still being stored: ignore the retransmit.
    InFlight,
    /// Already answered: send this response again.
    Answered([u8; 20]),
    /// The cache is full of requests still in flight (cannot happen while the capacity is
    /// larger than the writer queue and the batches in flight): drop.
    Full,
}

#[derive(Debug)]
enum State {
    InFlight,
    Answered([u8; 20]),
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// The sequence number of this entry's record in `Inner::order`.
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Requests in arrival order: key, when, sequence number. A record is live while its key's
    /// entry carries its sequence number; once the entry is gone (forgotten, evicted) or newer
    /// (forgotten, then seen again) the record is dead and only waits to be dropped.
    order: VecDeque<(Key, Instant, u64)>,
    next_seq: u64,
}

#[derive(Debug, Default)]
pub struct DedupCache {
    inner: Mutex<Inner>,
}

impl DedupCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks a request up and, when it is new, records it as in flight.
    pub fn check(&self, key: Key, now: Instant) -> Seen {
        let mut inner = self.lock();
        inner.evict(now);
        match inner.entries.get(&key).map(|e| &e.state) {
            Some(State::InFlight) => return Seen::InFlight,
            Some(State::Answered(r)) => return Seen::Answered(*r),
            None => {}
        }
        if inner.entries.len() >= DEDUP_CAPACITY {
            return Seen::Full;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.entries.insert(
            key,
            Entry {
                state: State::InFlight,
                seq,
            },
        );
        inner.order.push_back((key, now, seq));
        Seen::New
    }

    /// Records the response sent for a request.
    pub fn answered(&self, key: &Key, response: [u8; 20]) {
        if let Some(entry) = self.lock().entries.get_mut(key) {
            entry.state = State::Answered(response);
        }
    }

    /// Forgets a request that was not stored (queue full, rejected), so a retransmit may try
    /// again.
    pub fn forget(&self, key: &Key) {
        self.lock().entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding this lock; if something did, the map is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Drops answered entries past [`DEDUP_TTL`], oldest first, and, when the cache is full,
    /// the oldest answered entries whatever their age: under sustained load (more than
    /// capacity / TTL requests a second) a request is remembered for less than the TTL rather
    /// than new requests being refused. Entries still in flight are never dropped.
    fn evict(&mut self, now: Instant) {
        // In-flight entries met at the front while making room, moved behind the rest.
        let mut skipped = 0;
        while let Some((key, at, seq)) = self.order.front().copied() {
            let expired = now.duration_since(at) >= DEDUP_TTL;
            let full = self.entries.len() >= DEDUP_CAPACITY;
            let live = self.entries.get(&key).filter(|e| e.seq == seq);
            match live.map(|e| &e.state) {
                // Dead (forgotten, or seen again since): drop the record.
                None => {
                    self.order.pop_front();
                }
                Some(State::Answered(_)) if expired || full => {
                    self.entries.remove(&key);
                    self.order.pop_front();
                }
                Some(State::InFlight) if full && skipped < self.order.len() => {
                    self.order.pop_front();
                    self.order.push_back((key, at, seq));
                    skipped += 1;
                }
                Some(_) => break,
            }
        }
        if self.order.len() > ORDER_SWEEP_AT {
            // Leaves at most one live record per entry, so the next sweep is at least
            // DEDUP_CAPACITY requests away.
            let entries = &self.entries;
            self.order
                .retain(|(key, _, seq)| entries.get(key).is_some_and(|e| e.seq == *seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct keys for n up to 15 million.
    fn key_n(n: u32) -> Key {
        Key {
            peer: SocketAddr::from(([127, 0, 0, 1], (n % 60_000) as u16)),
            header: Header {
                identifier: (n / 60_000) as u8,
                authenticator: [0; 16],
            },
        }
    }

    #[test]
    fn requests_dropped_behind_one_still_in_flight_do_not_pile_up() {
        // A database outage: the oldest request stays in flight (its batch cannot commit)
        // while new requests and retransmits keep coming, are dropped (queue full) and
        // forgotten.
        let cache = DedupCache::new();
        let now = Instant::now();
        assert_eq!(cache.check(key_n(0), now), Seen::New);
        for n in 0..4 * DEDUP_CAPACITY as u32 {
            let k = key_n(1 + n % 50_000);
            assert_eq!(cache.check(k, now), Seen::New);
            cache.forget(&k);
        }
        // The sweep runs before each new record is added.
        assert!(cache.lock().order.len() <= ORDER_SWEEP_AT + 1);
        assert_eq!(
            cache.check(key_n(0), now),
            Seen::InFlight,
            "still in flight"
        );
        cache.answered(&key_n(0), [3; 20]);
        assert_eq!(cache.check(key_n(0), now), Seen::Answered([3; 20]));
    }

    #[test]
    fn an_old_record_of_a_request_seen_again_does_not_expire_it_early() {
        let cache = DedupCache::new();
        let t0 = Instant::now();
        cache.check(key(1), t0);
        cache.forget(&key(1));
        let t1 = t0 + DEDUP_TTL / 2;
        cache.check(key(1), t1);
        cache.answered(&key(1), [5; 20]);
        // The first record is past the TTL; the entry it named is gone, this one is younger.
        let t2 = t0 + DEDUP_TTL + Duration::from_secs(1);
        assert_eq!(cache.check(key(1), t2), Seen::Answered([5; 20]));
    }

    fn key(id: u8) -> Key {
        Key {
            peer: "127.0.0.1:1000".parse().unwrap(),
            header: Header {
                identifier: id,
                authenticator: [id; 16],
            },
        }
    }

    #[test]
    fn a_retransmit_is_in_flight_then_answered_from_the_cache() {
        let cache = DedupCache::new();
        let now = Instant::now();
        assert_eq!(cache.check(key(1), now), Seen::New);
        assert_eq!(cache.check(key(1), now), Seen::InFlight);
        cache.answered(&key(1), [7; 20]);
        assert_eq!(cache.check(key(1), now), Seen::Answered([7; 20]));
        assert_eq!(cache.check(key(2), now), Seen::New);
    }

    #[test]
    fn answered_entries_expire_but_in_flight_ones_do_not() {
        let cache = DedupCache::new();
        let t0 = Instant::now();
        cache.check(key(1), t0);
        cache.answered(&key(1), [1; 20]);
        cache.check(key(2), t0);
        let later = t0 + DEDUP_TTL + Duration::from_secs(1);
        assert_eq!(cache.check(key(1), later), Seen::New);
        assert_eq!(cache.check(key(2), later), Seen::InFlight);
    }

    #[test]
    fn forgotten_requests_can_be_tried_again() {
        let cache = DedupCache::new();
        let now = Instant::now();
        cache.check(key(1), now);
        cache.forget(&key(1));
        assert_eq!(cache.check(key(1), now), Seen::New);
    }

    #[test]
    fn a_full_cache_makes_room_by_forgetting_its_oldest_answered_requests() {
        let cache = DedupCache::new();
        let now = Instant::now();
        // The oldest request is still in flight; the rest are answered, well within the TTL.
        assert_eq!(cache.check(key_n(0), now), Seen::New);
        for n in 1..DEDUP_CAPACITY as u32 {
            assert_eq!(cache.check(key_n(n), now), Seen::New);
            cache.answered(&key_n(n), [1; 20]);
        }
        assert_eq!(cache.len(), DEDUP_CAPACITY);
        let next = DEDUP_CAPACITY as u32;
        assert_eq!(
            cache.check(key_n(next), now),
            Seen::New,
            "not refused when full"
        );
        assert_eq!(cache.len(), DEDUP_CAPACITY);
        assert_eq!(
            cache.check(key_n(0), now),
            Seen::InFlight,
            "in flight: kept"
        );
        assert_eq!(
            cache.check(key_n(1), now),
            Seen::New,
            "the oldest answered: forgotten"
        );
        assert_eq!(cache.check(key_n(2), now), Seen::New);
        assert_eq!(cache.check(key_n(next - 1), now), Seen::Answered([1; 20]));
    }
}
