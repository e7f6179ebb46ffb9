//! One in-memory series: its labels and its chunks (sealed ones plus the open head).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use super::chunk::{HeadChunk, SealedChunk};
use super::{Labels, is_stale_nan};

/// Samples per chunk before it is sealed (as in Prometheus' head).
pub(crate) const CHUNK_SAMPLES: u16 = 120;

/// A series held by the store; shared with readers through [`SeriesRef`].
pub(crate) struct MemSeries {
    pub(crate) id: u32,
    pub(crate) labels: Labels,
    data: Mutex<SeriesData>,
}

/// The samples of a series, guarded by the series' own lock.
pub(crate) struct SeriesData {
    sealed: VecDeque<SealedChunk>,
    head: HeadChunk,
    last: Option<(i64, f64)>,
}

/// What happened to one appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored.
    Appended,
    /// Not stored, and not an error: the series holds a sample with this timestamp and
    /// this value already (a resend).
    Repeated,
    /// Refused: its timestamp is before the series' latest sample, or equal to it with
    /// another value (Prometheus' out-of-order and duplicate-sample errors).
    OutOfOrder,
    /// Refused: older than the store's retention (Prometheus' out-of-bounds).
    TooOld,
    /// Refused: it would create a series beyond `tsdb.max_series`.
    SeriesLimit,
}

impl MemSeries {
    pub(crate) fn new(id: u32, labels: Labels) -> Self {
        Self {
            id,
            labels,
            data: Mutex::new(SeriesData {
                sealed: VecDeque::new(),
                head: HeadChunk::new(),
                last: None,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SeriesData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SeriesData {
    /// Appends `(t, v)` unless `t` is not after the latest sample; cuts the head chunk
    /// when it is full or spans more than `max_span` ms.
    pub(crate) fn append(&mut self, t: i64, v: f64, max_span: i64) -> AppendOutcome {
        if let Some((last_t, last_v)) = self.last
            && t <= last_t
        {
            let same = |(st, sv): (i64, f64)| st == t && sv.to_bits() == v.to_bits();
            // A resend of a stored sample (a retried request) is no error.
            return if same((last_t, last_v)) || self.latest_at_or_before(t).is_some_and(same) {
                AppendOutcome::Repeated
            } else {
                AppendOutcome::OutOfOrder
            };
        }
        let n = self.head.count();
        if n >= CHUNK_SAMPLES || (n > 0 && t - self.head.first_t() > max_span) {
            let full = std::mem::replace(&mut self.head, HeadChunk::new());
            self.sealed.push_back(full.seal());
        }
        self.head.append(t, v);
        self.last = Some((t, v));
        AppendOutcome::Appended
    }

    /// The latest sample at or before `t`, including stale markers.
    pub(crate) fn latest_at_or_before(&self, t: i64) -> Option<(i64, f64)> {
        let last = self.last?;
        if last.0 <= t {
            return Some(last);
        }
        if self.head.count() > 0 && self.head.first_t() <= t {
            return self.head.iter().take_while(|s| s.0 <= t).last();
        }
        let chunk = self.sealed.iter().rev().find(|c| c.min_t() <= t)?;
        chunk.iter().take_while(|s| s.0 <= t).last()
    }

    /// Appends the samples with `mint <= t <= maxt` to `out`, in time order, stale
    /// markers included.
    pub(crate) fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        if mint > maxt {
            return;
        }
        let start = self.sealed.partition_point(|c| c.max_t() < mint);
        for chunk in self.sealed.range(start..) {
            if chunk.min_t() > maxt {
                return;
            }
            out.extend(chunk.iter().filter(|s| s.0 >= mint && s.0 <= maxt));
        }
        if self.head.count() > 0 && self.head.first_t() <= maxt && self.head.last_t() >= mint {
            out.extend(
                self.head
                    .iter()
                    .skip_while(|s| s.0 < mint)
                    .take_while(|s| s.0 <= maxt),
            );
        }
    }

    /// First and last sample timestamps.
    pub(crate) fn time_range(&self) -> Option<(i64, i64)> {
        let (last_t, _) = self.last?;
        let first = self
            .sealed
            .front()
            .map(|c| c.min_t())
            .unwrap_or_else(|| self.head.first_t());
        Some((first, last_t))
    }

    /// Drops sealed chunks that end before `cutoff`, and the head too when the whole
    /// series ends before it. Returns the number of samples dropped.
    pub(crate) fn truncate(&mut self, cutoff: i64) -> usize {
        let mut dropped = 0;
        while self.sealed.front().is_some_and(|c| c.max_t() < cutoff) {
            if let Some(c) = self.sealed.pop_front() {
                dropped += usize::from(c.count());
            }
        }
        if self.sealed.is_empty() && self.head.count() > 0 && self.head.last_t() < cutoff {
            dropped += usize::from(self.head.count());
            self.head = HeadChunk::new();
            self.last = None;
        }
        dropped
    }

    /// True when the series holds no samples.
    pub(crate) fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Samples held.
    pub(crate) fn sample_count(&self) -> usize {
        self.sealed
            .iter()
            .map(|c| usize::from(c.count()))
            .sum::<usize>()
            + usize::from(self.head.count())
    }

    /// Bytes held by chunks (sealed data and headers, head buffer).
    pub(crate) fn chunk_bytes(&self) -> usize {
        self.sealed.iter().map(SealedChunk::data_len).sum::<usize>()
            + self.sealed.capacity() * std::mem::size_of::<SealedChunk>()
            + self.head.heap_bytes()
    }

    /// Sealed chunks held (the head not counted).
    pub(crate) fn sealed_chunks(&self) -> usize {
        self.sealed.len()
    }
}

/// A reader's handle on one series (cheap to clone).
#[derive(Clone)]
pub struct SeriesRef(pub(crate) std::sync::Arc<MemSeries>);

impl SeriesRef {
    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.0.labels
    }

    /// The value an instant selector sees at `t`: the latest sample in
    /// `(t - lookback, t]`, or `None` when there is none or it is a stale marker.
    pub fn sample_at(&self, t: i64, lookback: i64) -> Option<(i64, f64)> {
        let data = self.0.lock();
        let (st, v) = data.latest_at_or_before(t)?;
        if st <= t - lookback || is_stale_nan(v) {
            return None;
        }
        Some((st, v))
    }

    /// Appends samples with `mint <= t <= maxt` (stale markers included) to `out`.
    pub fn samples_into(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        self.0.lock().samples(mint, maxt, out);
    }

    /// Samples with `mint <= t <= maxt`, stale markers included.
    pub fn samples(&self, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        self.samples_into(mint, maxt, &mut out);
        out
    }

    /// Timestamps of the first and last sample held.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        self.0.lock().time_range()
    }

    /// True when the series has samples in `[mint, maxt]` (by its time range).
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.time_range()
            .is_some_and(|(first, last)| first <= maxt && last >= mint)
    }
}
