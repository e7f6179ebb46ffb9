//! The agent's batches between collection and the server's ack: everything not yet
//! acked, bounded by age (`agent.buffer`) and bytes, oldest dropped first.

use std::collections::VecDeque;

/// One collected batch, ready to send.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Its sequence number.
    pub seq: u64,
    /// When it was collected (Unix ms).
    pub ts_ms: i64,
    /// The whole message (sequence number and compressed request).
    pub frame: bytes::Bytes,
}

/// Batches not yet acked, in collection order.
#[derive(Debug)]
pub struct Buffer {
    batches: VecDeque<Batch>,
    bytes: usize,
    max_age_ms: i64,
    max_bytes: usize,
    next_seq: u64,
    /// Batches dropped for age or size since the start.
    pub dropped: u64,
}

impl Buffer {
    /// A buffer keeping at most `max_age_ms` of batches and `max_bytes` in all.
    pub fn new(max_age_ms: i64, max_bytes: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            bytes: 0,
            max_age_ms,
            max_bytes,
            next_seq: 1,
            dropped: 0,
        }
    }

    /// Adds a batch collected at `ts_ms` (`frame_for(seq)` builds its message), then
    /// drops the oldest past the bounds. Returns its sequence number.
    pub fn push(&mut self, ts_ms: i64, frame_for: impl FnOnce(u64) -> Vec<u8>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = bytes::Bytes::from(frame_for(seq));
        self.bytes += frame.len();
        self.batches.push_back(Batch { seq, ts_ms, frame });
        while let Some(front) = self.batches.front() {
            let too_old = front.ts_ms < ts_ms.saturating_sub(self.max_age_ms);
            if !(too_old || self.bytes > self.max_bytes) || self.batches.len() == 1 {
                break;
            }
            self.pop_front();
            self.dropped += 1;
        }
        seq
    }

    fn pop_front(&mut self) {
        if let Some(b) = self.batches.pop_front() {
            self.bytes -= b.frame.len();
        }
    }

    /// Forgets every batch up to and including `seq` (acks arrive in order).
    pub fn ack(&mut self, seq: u64) {
        while self.batches.front().is_some_and(|b| b.seq <= seq) {
            self.pop_front();
        }
    }

    /// The first batch after `seq` (0: the oldest), to send next.
    pub fn after(&self, seq: u64) -> Option<&Batch> {
        let i = self.batches.partition_point(|b| b.seq <= seq);
        self.batches.get(i)
    }

    /// Drops the oldest batch (the server refused it as a whole); its sequence number.
    pub fn drop_first(&mut self) -> Option<u64> {
        let seq = self.batches.front().map(|b| b.seq);
        self.pop_front();
        seq
    }

    /// Batches up to and including `seq` still held: sent and not acked yet.
    pub fn in_flight(&self, seq: u64) -> usize {
        self.batches.partition_point(|b| b.seq <= seq)
    }

    /// Batches held.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_age_and_bytes_and_acked_in_order() {
        let mut b = Buffer::new(10_000, 1_000);
        for t in 0..20 {
            b.push(t * 1_000, |_| vec![0; 10]);
        }
        // 10 s of age: batches at 9..19 s stay (the one at exactly now - 10 s too).
        assert_eq!(b.len(), 11);
        assert_eq!(b.dropped, 9);
        assert_eq!(b.after(0).unwrap().seq, 10);
        assert_eq!(b.after(13).unwrap().seq, 14);
        b.ack(14);
        assert_eq!(b.len(), 6);
        assert_eq!(b.after(0).unwrap().seq, 15);
        assert!(b.after(20).is_none());
        // Bytes: a 950-byte batch pushes out the oldest to stay within 1,000.
        b.push(19_000, |_| vec![0; 950]);
        assert_eq!(b.bytes(), 1_000);
        assert_eq!(b.after(0).unwrap().ts_ms, 15_000);
        // A single batch over the limit is still kept (it is all there is to send).
        let mut one = Buffer::new(10_000, 5);
        one.push(0, |_| vec![0; 10]);
        assert_eq!(one.len(), 1);
    }
}
