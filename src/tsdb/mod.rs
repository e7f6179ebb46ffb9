//! The in-memory time-series store.
//!
//! * Samples live in Gorilla-compressed chunks ([`chunk`]) of at most 120 samples per
//!   series; retention drops whole chunks that end before the cutoff.
//! * A label index maps every `name=value` pair to the sorted ids of its series
//!   (postings), so selecting `{__name__="x", job="y"}` intersects two short lists
//!   instead of scanning every series.
//! * Concurrency: the index is behind one `RwLock` (read-locked by every query and by
//!   appends to existing series, write-locked only to create or drop series); each
//!   series has its own mutex held for the few hundred nanoseconds of an append or a
//!   chunk decode. Readers never wait for each other.
//! * Staleness follows Prometheus: a series that disappears gets a stale-NaN sample
//!   ([`STALE_NAN`]), and instant selectors ignore samples older than the lookback.

mod chunk;
mod labels;
pub mod metrics;
pub mod scrape;
mod series;
mod tap;

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use rustc_hash::{FxHashMap, FxHashSet};

pub use labels::{
    Labels, LabelsBuilder, METRIC_NAME, Prehashed, PrehashedHasher, is_valid_label_name,
    is_valid_metric_name,
};
pub use series::{AppendOutcome, SeriesRef};
pub use tap::Appended;

use series::MemSeries;

/// The bit pattern Prometheus uses for stale markers (a NaN no computation yields).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The stale marker value.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// True for the stale marker (and only for it; ordinary NaNs are values).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Size statistics of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsdbStats {
    /// Series held.
    pub series: usize,
    /// Samples held.
    pub samples: usize,
    /// Sealed chunks held.
    pub chunks: usize,
    /// Bytes held by chunk data, chunk headers and open head buffers.
    pub chunk_bytes: usize,
}

/// The store. Cheap to clone (one `Arc`); every clone is the same store.
#[derive(Clone)]
pub struct Tsdb {
    inner: Arc<Inner>,
}

struct Inner {
    index: RwLock<Index>,
    retention_ms: i64,
    /// Longest time one chunk may span before it is cut (bounds retention overshoot).
    max_chunk_span_ms: i64,
    /// Latest timestamp appended to any series.
    max_time: AtomicI64,
    /// Most series held at once (`tsdb.max_series`); creating one more is refused.
    max_series: AtomicUsize,
    /// Samples refused because their series would have passed `max_series`.
    series_limit_refused: AtomicU64,
    /// Appended samples kept for remote write out.
    tap: tap::Tap,
}

/// What [`Tsdb::append_samples`] did with one series' samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendCounts {
    /// The series did not exist before.
    pub created: bool,
    /// Samples stored.
    pub appended: usize,
    /// Resends of the latest sample (same time and value): not stored, not an error.
    pub repeated: usize,
    /// Before the series' latest sample, or at its time with another value.
    pub out_of_order: usize,
    /// Older than the retention.
    pub too_old: usize,
    /// Refused because the series would pass `tsdb.max_series`.
    pub series_limit: usize,
}

impl AppendCounts {
    fn add(&mut self, outcome: AppendOutcome) {
        match outcome {
            AppendOutcome::Appended => self.appended += 1,
            AppendOutcome::Repeated => self.repeated += 1,
            AppendOutcome::OutOfOrder => self.out_of_order += 1,
            AppendOutcome::TooOld => self.too_old += 1,
            AppendOutcome::SeriesLimit => self.series_limit += 1,
        }
    }
}

#[derive(Default)]
struct Index {
    by_labels: std::collections::HashMap<Labels, Arc<MemSeries>, Prehashed>,
    /// Slot per series id; `None` once the series was dropped by retention.
    series: Vec<Option<Arc<MemSeries>>>,
    live: usize,
    /// label name → label value → sorted series ids.
    postings: FxHashMap<Arc<str>, FxHashMap<Arc<str>, Vec<u32>>>,
    /// Interned label names and values, shared by series labels and postings keys.
    symbols: FxHashSet<Arc<str>>,
}

impl Index {
    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(existing) = self.symbols.get(s) {
            return existing.clone();
        }
        self.symbols.insert(s.clone());
        s.clone()
    }

    fn insert(&mut self, labels: &Labels) -> Arc<MemSeries> {
        let mut b = LabelsBuilder::default();
        for (k, v) in labels.pairs() {
            let (k, v) = (self.intern(k), self.intern(v));
            b.set_shared(&k, &v);
        }
        let labels = b.build();
        let id = u32::try_from(self.series.len()).unwrap_or(u32::MAX);
        let series = Arc::new(MemSeries::new(id, labels.clone()));
        for (k, v) in labels.pairs() {
            // New ids are the largest so far: pushing keeps each list sorted.
            self.postings
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .push(id);
        }
        self.series.push(Some(series.clone()));
        self.by_labels.insert(labels, series.clone());
        self.live += 1;
        series
    }

    fn remove(&mut self, id: u32) {
        let Some(series) = self.series.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.by_labels.remove(&series.labels);
        self.live -= 1;
        for (k, v) in series.labels.pairs() {
            let Some(values) = self.postings.get_mut(k) else {
                continue;
            };
            if let Some(ids) = values.get_mut(v) {
                if let Ok(i) = ids.binary_search(&id) {
                    ids.remove(i);
                }
                if ids.is_empty() {
                    values.remove(v);
                    self.symbols.remove(v);
                }
            }
            if values.is_empty() {
                self.postings.remove(k);
                self.symbols.remove(k);
            }
        }
        // Drop the slot vector's tail of dead ids is not possible (ids are positions);
        // dead slots cost 8 bytes each until the process restarts.
    }

    fn get(&self, id: u32) -> Option<&Arc<MemSeries>> {
        self.series.get(id as usize).and_then(Option::as_ref)
    }

    /// Candidate ids for `matchers` (a superset of the answer, sorted).
    fn candidates(&self, matchers: &[Matcher]) -> Vec<u32> {
        // Equality matchers on non-empty values: intersect their postings.
        let mut lists: Vec<&Vec<u32>> = Vec::new();
        for m in matchers {
            if matches!(m.op, MatchOp::Equal) && !m.value.is_empty() {
                match self
                    .postings
                    .get(m.name.as_str())
                    .and_then(|vals| vals.get(m.value.as_str()))
                {
                    Some(ids) => lists.push(ids),
                    None => return Vec::new(),
                }
            }
        }
        if !lists.is_empty() {
            lists.sort_by_key(|l| l.len());
            let mut out = lists[0].clone();
            for other in &lists[1..] {
                out = intersect(&out, other);
                if out.is_empty() {
                    break;
                }
            }
            return out;
        }
        // Otherwise a matcher that needs the label present: union of matching values.
        if let Some(m) = matchers.iter().find(|m| !m.is_match("")) {
            let Some(values) = self.postings.get(m.name.as_str()) else {
                return Vec::new();
            };
            let mut out: Vec<u32> = values
                .iter()
                .filter(|(v, _)| m.is_match(v))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect();
            out.sort_unstable();
            out.dedup();
            return out;
        }
        self.series
            .iter()
            .flatten()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    }
}

/// Sorted intersection of two sorted lists. A short list against a long one (a metric
/// name's few series against `job="x"`'s many) binary-searches instead of merging, so the
/// cost follows the short list.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.len().saturating_mul(16) < long.len() {
        let mut rest = long;
        let mut out = Vec::with_capacity(short.len());
        for &x in short {
            match rest.binary_search(&x) {
                Ok(i) => {
                    out.push(x);
                    rest = &rest[i + 1..];
                }
                Err(i) => rest = &rest[i..],
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// True when every matcher accepts the series' labels (a missing label reads as "").
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
}

impl Tsdb {
    /// An empty store keeping `retention` of samples.
    pub fn new(retention: Duration) -> Tsdb {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let max_chunk_span_ms = (retention_ms / 4).clamp(60_000, 2 * 3_600_000);
        Tsdb {
            inner: Arc::new(Inner {
                index: RwLock::new(Index::default()),
                retention_ms,
                max_chunk_span_ms,
                max_time: AtomicI64::new(i64::MIN),
                max_series: AtomicUsize::new(usize::MAX),
                series_limit_refused: AtomicU64::new(0),
                tap: tap::Tap::default(),
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.inner.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.inner.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        self.inner.retention_ms
    }

    /// Sets `tsdb.max_series`: past it, samples of new series are refused and counted.
    pub fn set_max_series(&self, max: usize) {
        self.inner.max_series.store(max, Ordering::Relaxed);
    }

    /// The series limit (`tsdb.max_series`).
    pub fn max_series(&self) -> usize {
        self.inner.max_series.load(Ordering::Relaxed)
    }

    /// Samples refused so far because their series would have passed `tsdb.max_series`.
    pub fn series_limit_refused(&self) -> u64 {
        self.inner.series_limit_refused.load(Ordering::Relaxed)
    }

    /// The series of `labels`, created unless that would pass `max_series` (`None`);
    /// `true` when it was created now.
    fn series_for(&self, labels: &Labels) -> Option<(Arc<MemSeries>, bool)> {
        if let Some(s) = self.read().by_labels.get(labels) {
            return Some((s.clone(), false));
        }
        let mut index = self.write();
        if let Some(s) = index.by_labels.get(labels) {
            return Some((s.clone(), false));
        }
        if index.live >= self.inner.max_series.load(Ordering::Relaxed) {
            return None;
        }
        Some((index.insert(labels), true))
    }

    /// Appends one sample. Samples at or before the series' latest timestamp
    /// (out of order or duplicate) are dropped and reported as such.
    pub fn append(&self, labels: &Labels, ts_ms: i64, value: f64) -> AppendOutcome {
        let Some((series, _)) = self.series_for(labels) else {
            self.inner
                .series_limit_refused
                .fetch_add(1, Ordering::Relaxed);
            return AppendOutcome::SeriesLimit;
        };
        let mut data = series.lock();
        let outcome = data.append(ts_ms, value, self.inner.max_chunk_span_ms);
        if outcome == AppendOutcome::Appended {
            self.inner.max_time.fetch_max(ts_ms, Ordering::Relaxed);
            // Under the series lock, so the tap keeps each series in time order.
            self.inner.tap.record(&series.labels, [(ts_ms, value)]);
        }
        outcome
    }

    /// Appends one series' samples in the order given, under one lock: samples before
    /// `min_t` are too old, the rest as [`Tsdb::append`]. A series is not created for
    /// samples that are all too old.
    pub fn append_samples(
        &self,
        labels: &Labels,
        samples: &[(i64, f64)],
        min_t: i64,
    ) -> AppendCounts {
        let mut counts = AppendCounts::default();
        let too_old = samples.iter().filter(|(t, _)| *t < min_t).count();
        counts.too_old = too_old;
        if too_old == samples.len() {
            return counts;
        }
        let Some((series, created)) = self.series_for(labels) else {
            counts.series_limit = samples.len() - too_old;
            self.inner
                .series_limit_refused
                .fetch_add(counts.series_limit as u64, Ordering::Relaxed);
            return counts;
        };
        counts.created = created;
        let mut stored = Vec::with_capacity(samples.len());
        let mut data = series.lock();
        for &(t, v) in samples.iter().filter(|(t, _)| *t >= min_t) {
            let outcome = data.append(t, v, self.inner.max_chunk_span_ms);
            if outcome == AppendOutcome::Appended {
                stored.push((t, v));
            }
            counts.add(outcome);
        }
        if let Some(latest) = stored.iter().map(|s| s.0).max() {
            self.inner.max_time.fetch_max(latest, Ordering::Relaxed);
            self.inner.tap.record(&series.labels, stored);
        }
        drop(data);
        counts
    }

    /// Appends a stale marker for `labels` at `ts_ms` (only if the series exists).
    pub fn mark_stale(&self, labels: &Labels, ts_ms: i64) -> bool {
        let series = self.read().by_labels.get(labels).cloned();
        series.is_some_and(|s| {
            let mut data = s.lock();
            let stored = data.append(ts_ms, STALE_NAN, self.inner.max_chunk_span_ms)
                == AppendOutcome::Appended;
            if stored {
                self.inner.tap.record(&s.labels, [(ts_ms, STALE_NAN)]);
            }
            stored
        })
    }

    /// From now on keeps every appended sample (at most `capacity` between two drains)
    /// for [`Tsdb::drain_appended`].
    pub fn attach_tap(&self, capacity: usize) {
        self.inner.tap.attach(capacity);
    }

    /// Moves the samples appended since the last drain into `out`, in append order.
    pub fn drain_appended(&self, out: &mut Vec<Appended>) {
        self.inner.tap.drain_into(out);
    }

    /// Appended samples the tap could not keep (it was full).
    pub fn tap_overflowed(&self) -> u64 {
        self.inner.tap.overflowed()
    }

    /// The series whose labels satisfy every matcher, sorted by label set (as
    /// Prometheus' selections are). Matchers
    /// follow Prometheus: a missing label matches like the empty string.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let index = self.read();
        let mut out: Vec<SeriesRef> = index
            .candidates(matchers)
            .into_iter()
            .filter_map(|id| index.get(id))
            .filter(|s| matches_all(&s.labels, matchers))
            .map(|s| SeriesRef(s.clone()))
            .collect();
        drop(index);
        // Prometheus' storage merges sorted series sets: its selections come sorted by
        // label set, which decides the order of sums and of ties in topk/bottomk.
        out.sort_unstable_by(|a, b| a.labels().cmp(b.labels()));
        out
    }

    /// The series with exactly these labels, if held.
    pub fn get(&self, labels: &Labels) -> Option<SeriesRef> {
        self.read().by_labels.get(labels).cloned().map(SeriesRef)
    }

    /// Sorted label names of all series (`matchers` empty) or of the selected series
    /// that have samples in `[mint, maxt]`.
    pub fn label_names(&self, matchers: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        if matchers.is_empty() {
            let mut names: Vec<String> =
                self.read().postings.keys().map(|k| k.to_string()).collect();
            names.sort();
            return names;
        }
        let mut names = std::collections::BTreeSet::new();
        for set in matchers {
            for s in self.select(set) {
                if s.overlaps(mint, maxt) {
                    names.extend(s.labels().iter().map(|(k, _)| k.to_string()));
                }
            }
        }
        names.into_iter().collect()
    }

    /// Sorted values of label `name` over all series (`matchers` empty) or over the
    /// selected series that have samples in `[mint, maxt]`.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        if matchers.is_empty() {
            let index = self.read();
            let mut values: Vec<String> = index
                .postings
                .get(name)
                .map(|vals| vals.keys().map(|v| v.to_string()).collect())
                .unwrap_or_default();
            values.sort();
            return values;
        }
        let mut values = std::collections::BTreeSet::new();
        for set in matchers {
            for s in self.select(set) {
                if let Some(v) = s.labels().get(name)
                    && s.overlaps(mint, maxt)
                {
                    values.insert(v.to_string());
                }
            }
        }
        values.into_iter().collect()
    }

    /// Latest timestamp appended to any series (`None` before the first append).
    pub fn max_time(&self) -> Option<i64> {
        let t = self.inner.max_time.load(Ordering::Relaxed);
        (t != i64::MIN).then_some(t)
    }

    /// Drops chunks that end before `cutoff_ms` and series left without samples.
    /// Returns the number of samples dropped.
    pub fn truncate(&self, cutoff_ms: i64) -> usize {
        let all: Vec<Arc<MemSeries>> = self.read().series.iter().flatten().cloned().collect();
        let mut dropped = 0;
        let mut empty = Vec::new();
        for s in &all {
            let mut data = s.lock();
            dropped += data.truncate(cutoff_ms);
            if data.is_empty() {
                empty.push(s.id);
            }
        }
        if !empty.is_empty() {
            let mut index = self.write();
            for id in empty {
                // An append may have revived the series since; keep it then.
                let still_empty = index.get(id).is_some_and(|s| s.lock().is_empty());
                if still_empty {
                    index.remove(id);
                }
            }
        }
        if dropped > 0 {
            tracing::debug!(dropped, cutoff_ms, "tsdb retention dropped samples");
        }
        dropped
    }

    /// Applies retention relative to `now_ms`.
    pub fn apply_retention(&self, now_ms: i64) -> usize {
        self.truncate(now_ms.saturating_sub(self.inner.retention_ms))
    }

    /// Counts series, samples, chunks and chunk bytes (walks every series).
    pub fn stats(&self) -> TsdbStats {
        let all: Vec<Arc<MemSeries>> = self.read().series.iter().flatten().cloned().collect();
        let mut stats = TsdbStats {
            series: all.len(),
            ..TsdbStats::default()
        };
        for s in &all {
            let data = s.lock();
            stats.samples += data.sample_count();
            stats.chunks += data.sealed_chunks();
            stats.chunk_bytes += data.chunk_bytes();
        }
        stats
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.read().live
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn intersect_short_against_long_is_exact() {
        let long: Vec<u32> = (0..1000).map(|i| i * 2).collect();
        assert_eq!(
            super::intersect(&[1, 4, 5, 998, 1998, 3000], &long),
            vec![4, 998, 1998]
        );
        assert_eq!(super::intersect(&long, &[0, 2, 7]), vec![0, 2]);
        assert_eq!(super::intersect(&[1, 2, 3], &[2, 3, 4]), vec![2, 3]);
        assert!(super::intersect(&[], &long).is_empty());
    }

    use super::*;

    fn eq(name: &str, value: &str) -> Matcher {
        Matcher::new(MatchOp::Equal, name, value)
    }

    fn re(name: &str, pattern: &str) -> Matcher {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
        Matcher::new(MatchOp::Re(regex), name, pattern)
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied())
    }

    #[test]
    fn append_select_and_read_back() {
        let db = Tsdb::new(Duration::from_secs(3600));
        let a = l(&[(METRIC_NAME, "up"), ("job", "a")]);
        let b = l(&[(METRIC_NAME, "up"), ("job", "b")]);
        let c = l(&[(METRIC_NAME, "other"), ("job", "a")]);
        for t in 0..300 {
            db.append(&a, t * 1000, t as f64);
            db.append(&b, t * 1000, 1.0);
            db.append(&c, t * 1000, 2.0);
        }
        assert_eq!(db.series_count(), 3);
        let sel = db.select(&[eq(METRIC_NAME, "up")]);
        assert_eq!(sel.len(), 2);
        let sel = db.select(&[eq(METRIC_NAME, "up"), eq("job", "a")]);
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].labels(), &a);
        assert_eq!(sel[0].sample_at(150_500, 300_000), Some((150_000, 150.0)));
        let got = sel[0].samples(10_000, 12_000);
        assert_eq!(got, vec![(10_000, 10.0), (11_000, 11.0), (12_000, 12.0)]);
        assert_eq!(sel[0].samples(0, i64::MAX).len(), 300);

        let sel = db.select(&[
            re("job", "a|b"),
            Matcher::new(MatchOp::NotEqual, METRIC_NAME, "up"),
        ]);
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].labels(), &c);
        // A missing label matches "".
        assert_eq!(
            db.select(&[eq(METRIC_NAME, "up"), eq("instance", "")])
                .len(),
            2
        );
        assert_eq!(db.select(&[eq("instance", "x")]).len(), 0);
        assert_eq!(db.label_values("job", &[], 0, i64::MAX), vec!["a", "b"]);
        assert_eq!(db.label_names(&[], 0, i64::MAX), vec![METRIC_NAME, "job"]);
    }

    #[test]
    fn out_of_order_and_duplicates_are_dropped() {
        let db = Tsdb::new(Duration::from_secs(3600));
        let a = l(&[(METRIC_NAME, "x")]);
        assert_eq!(db.append(&a, 2000, 1.0), AppendOutcome::Appended);
        assert_eq!(db.append(&a, 2000, 5.0), AppendOutcome::OutOfOrder);
        assert_eq!(db.append(&a, 2000, 1.0), AppendOutcome::Repeated);
        assert_eq!(db.append(&a, 1000, 5.0), AppendOutcome::OutOfOrder);
        assert_eq!(db.get(&a).unwrap().samples(0, 10_000), vec![(2000, 1.0)]);
        // A stale marker resent is a repeat too (NaN compared by bits).
        db.append(&a, 3000, STALE_NAN);
        assert_eq!(db.append(&a, 3000, STALE_NAN), AppendOutcome::Repeated);
        assert_eq!(db.append(&a, 3000, f64::NAN), AppendOutcome::OutOfOrder);
        // So is an older stored sample resent; another value at its time is not.
        assert_eq!(db.append(&a, 2000, 1.0), AppendOutcome::Repeated);
        assert_eq!(db.append(&a, 2000, 1.5), AppendOutcome::OutOfOrder);
    }

    #[test]
    fn new_series_past_max_series_are_refused_and_counted() {
        let db = Tsdb::new(Duration::from_secs(3600));
        db.set_max_series(2);
        let (a, b, c) = (
            l(&[(METRIC_NAME, "a")]),
            l(&[(METRIC_NAME, "b")]),
            l(&[(METRIC_NAME, "c")]),
        );
        assert_eq!(db.append(&a, 1000, 1.0), AppendOutcome::Appended);
        let got = db.append_samples(&b, &[(1000, 1.0), (2000, 2.0)], 0);
        assert_eq!((got.created, got.appended), (true, 2));
        let refused = db.append_samples(&c, &[(1000, 1.0), (2000, 2.0)], 0);
        assert_eq!((refused.created, refused.series_limit), (false, 2));
        assert_eq!(db.append(&c, 3000, 1.0), AppendOutcome::SeriesLimit);
        assert_eq!(db.series_limit_refused(), 3);
        // Existing series still take samples; a dropped one makes room.
        assert_eq!(db.append(&a, 2000, 1.0), AppendOutcome::Appended);
        db.truncate(2001);
        assert_eq!(db.series_count(), 0);
        assert_eq!(db.append(&c, 3000, 1.0), AppendOutcome::Appended);
    }

    #[test]
    fn append_samples_sorts_out_too_old_out_of_order_and_repeats() {
        let db = Tsdb::new(Duration::from_secs(3600));
        let a = l(&[(METRIC_NAME, "a")]);
        let got = db.append_samples(
            &a,
            &[
                (500, 0.0),
                (1000, 1.0),
                (3000, 3.0),
                (2000, 2.0),
                (3000, 3.0),
            ],
            1000,
        );
        assert_eq!(
            got,
            AppendCounts {
                created: true,
                appended: 2,
                repeated: 1,
                out_of_order: 1,
                too_old: 1,
                series_limit: 0
            }
        );
        assert_eq!(db.max_time(), Some(3000));
        let none = db.append_samples(&l(&[(METRIC_NAME, "b")]), &[(1, 1.0)], 1000);
        assert!(!none.created && none.too_old == 1 && db.series_count() == 1);
    }

    #[test]
    fn lookback_and_stale_markers() {
        let db = Tsdb::new(Duration::from_secs(3600));
        let a = l(&[(METRIC_NAME, "x")]);
        db.append(&a, 10_000, 1.0);
        let s = db.get(&a).unwrap();
        assert_eq!(s.sample_at(10_000, 300_000), Some((10_000, 1.0)));
        assert_eq!(s.sample_at(309_999, 300_000), Some((10_000, 1.0)));
        assert_eq!(s.sample_at(310_000, 300_000), None, "lookback is left-open");
        assert_eq!(s.sample_at(9_999, 300_000), None);
        assert!(db.mark_stale(&a, 20_000));
        assert_eq!(s.sample_at(25_000, 300_000), None);
        assert_eq!(s.sample_at(19_999, 300_000), Some((10_000, 1.0)));
    }

    #[test]
    fn retention_drops_whole_chunks_and_empty_series() {
        let db = Tsdb::new(Duration::from_secs(3600));
        let a = l(&[(METRIC_NAME, "x")]);
        let gone = l(&[(METRIC_NAME, "gone"), ("job", "j")]);
        db.append(&gone, 0, 1.0);
        for t in 0..1000 {
            db.append(&a, t * 1000, t as f64);
        }
        let before = db.stats();
        assert_eq!(before.samples, 1001);
        let dropped = db.truncate(500_000);
        // Chunks of 120 samples: [0,119], …, [360,479] end before 500 s; [480,599] does not.
        assert_eq!(dropped, 480 + 1);
        assert_eq!(db.series_count(), 1);
        assert!(db.get(&gone).is_none());
        assert_eq!(db.label_names(&[], 0, i64::MAX), vec![METRIC_NAME]);
        assert_eq!(db.select(&[eq("job", "j")]).len(), 0);
        let s = db.get(&a).unwrap();
        assert_eq!(s.time_range(), Some((480_000, 999_000)));
        assert_eq!(s.sample_at(490_000, 1000), Some((490_000, 490.0)));
        // Appending again after the series vanished starts a fresh one.
        db.append(&gone, 2_000_000, 3.0);
        assert_eq!(db.select(&[eq("job", "j")]).len(), 1);
    }

    #[test]
    fn concurrent_appends_and_reads() {
        let db = Tsdb::new(Duration::from_secs(3600));
        std::thread::scope(|scope| {
            for w in 0..4 {
                let db = db.clone();
                scope.spawn(move || {
                    for t in 0..2000 {
                        let labels = l(&[
                            (METRIC_NAME, "m"),
                            ("w", &w.to_string()),
                            ("k", &(t % 10).to_string()),
                        ]);
                        db.append(&labels, t as i64 * 1000, 1.0);
                    }
                });
            }
            let db = db.clone();
            scope.spawn(move || {
                for _ in 0..200 {
                    let _ = db.select(&[eq(METRIC_NAME, "m")]);
                }
            });
        });
        assert_eq!(db.series_count(), 40);
        assert_eq!(db.stats().samples, 8000);
    }
}
