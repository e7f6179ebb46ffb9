//! Time series buffers for live charts: bounded, time-ordered, mergeable with backfill,
//! and a min/max decimation so drawing costs one segment per pixel column whatever the
//! number of points.

use std::collections::{BTreeMap, VecDeque};

/// One sample: Unix milliseconds and value.
pub type Point = (i64, f64);

/// A bounded, time-ordered buffer of samples.
#[derive(Debug, Clone)]
pub struct SeriesBuffer {
    points: VecDeque<Point>,
    capacity: usize,
}

impl SeriesBuffer {
    /// An empty buffer holding at most `capacity` points (older ones fall out).
    pub fn new(capacity: usize) -> Self {
        Self {
            points: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no point is held.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The newest point.
    pub fn last(&self) -> Option<Point> {
        self.points.back().copied()
    }

    /// The oldest point.
    pub fn first(&self) -> Option<Point> {
        self.points.front().copied()
    }

    /// Changes the capacity, dropping the oldest points if needed.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.points.len() > self.capacity {
            self.points.pop_front();
        }
    }

    /// Appends a live sample. A sample at or before the newest timestamp replaces the
    /// point with the same timestamp or is merged in order (late delivery), so the
    /// buffer stays strictly increasing in time.
    pub fn push(&mut self, t: i64, v: f64) {
        match self.points.back() {
            Some(&(last, _)) if t <= last => self.merge(&[(t, v)]),
            _ => {
                self.points.push_back((t, v));
                if self.points.len() > self.capacity {
                    self.points.pop_front();
                }
            }
        }
    }

    /// Merges `points` (any order; e.g. a `query_range` backfill): same timestamps are
    /// replaced, the result is sorted and trimmed to capacity keeping the newest.
    pub fn merge(&mut self, points: &[Point]) {
        if points.is_empty() {
            return;
        }
        let mut all: BTreeMap<i64, f64> = self.points.iter().copied().collect();
        for &(t, v) in points {
            all.insert(t, v);
        }
        let skip = all.len().saturating_sub(self.capacity);
        self.points = all.into_iter().skip(skip).collect();
    }

    /// Drops points older than `t`.
    pub fn trim_before(&mut self, t: i64) {
        while self.points.front().is_some_and(|p| p.0 < t) {
            self.points.pop_front();
        }
    }

    /// Iterates over the points in time order.
    pub fn iter(&self) -> impl Iterator<Item = Point> + '_ {
        self.points.iter().copied()
    }

    /// Min and max finite value of the points within `[from, to]`.
    pub fn range_min_max(&self, from: i64, to: i64) -> Option<(f64, f64)> {
        let start = self.points.partition_point(|p| p.0 < from);
        let mut mm: Option<(f64, f64)> = None;
        for &(t, v) in self.points.range(start..) {
            if t > to {
                break;
            }
            if v.is_finite() {
                mm = Some(match mm {
                    None => (v, v),
                    Some((lo, hi)) => (lo.min(v), hi.max(v)),
                });
            }
        }
        mm
    }

    /// The point nearest in time to `t`, within `max_gap` ms.
    pub fn nearest(&self, t: i64, max_gap: i64) -> Option<Point> {
        let i = self.points.partition_point(|p| p.0 < t);
        let after = self.points.get(i).copied();
        let before = i.checked_sub(1).and_then(|j| self.points.get(j).copied());
        let best = match (before, after) {
            (Some(b), Some(a)) => Some(if t - b.0 <= a.0 - t { b } else { a }),
            (b, a) => b.or(a),
        };
        best.filter(|p| (p.0 - t).abs() <= max_gap)
    }

    /// The first gap between consecutive points longer than `gap` ms after `since`:
    /// returns `(last_before_gap, first_after_gap)`. Used to find what to backfill.
    pub fn find_gap(&self, since: i64, gap: i64) -> Option<(i64, i64)> {
        let start = self.points.partition_point(|p| p.0 < since);
        let mut prev: Option<i64> = None;
        for &(t, _) in self.points.range(start..) {
            if let Some(p) = prev
                && t - p > gap
            {
                return Some((p, t));
            }
            prev = Some(t);
        }
        None
    }

    /// Reduces the points in `[from, to]` to at most one [`Column`] per pixel column of a
    /// `width`-pixel plot: first, min, max and last value of the points falling in it.
    /// Drawing first→min→max→last per column keeps every spike visible. A gap of more
    /// than `max_gap` ms between points starts a new run (drawn as a break in the line).
    pub fn decimate(&self, from: i64, to: i64, width: usize, max_gap: i64) -> Vec<Column> {
        let mut out: Vec<Column> = Vec::new();
        if width == 0 || to <= from {
            return out;
        }
        // Include one point either side so lines reach the plot edges.
        let start = self
            .points
            .partition_point(|p| p.0 < from)
            .saturating_sub(1);
        let span = (to - from) as f64;
        let mut prev_t: Option<i64> = None;
        for &(t, v) in self.points.range(start..) {
            if !v.is_finite() {
                prev_t = None;
                continue;
            }
            let x = ((t - from) as f64 / span * width as f64).floor() as i64;
            let new_run = prev_t.is_none_or(|p| t - p > max_gap);
            prev_t = Some(t);
            match out.last_mut() {
                Some(c) if c.x == x && !new_run => {
                    c.min = c.min.min(v);
                    c.max = c.max.max(v);
                    c.last = v;
                    c.t_last = t;
                }
                _ => out.push(Column {
                    x,
                    first: v,
                    min: v,
                    max: v,
                    last: v,
                    t_last: t,
                    break_before: new_run,
                }),
            }
            if t > to {
                break;
            }
        }
        out
    }
}

/// One pixel column of a decimated series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    /// Pixel column (may be -1 or `width` for the points just outside the range).
    pub x: i64,
    /// First value in the column.
    pub first: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Last value.
    pub last: f64,
    /// Timestamp of the last value.
    pub t_last: i64,
    /// The line is broken before this column (a gap in the data).
    pub break_before: bool,
}

/// A stable key for one series of an expression: the expression plus its sorted labels.
pub fn series_key(expr: &str, labels: &BTreeMap<String, String>) -> String {
    let mut k = String::with_capacity(expr.len() + 32);
    k.push_str(expr);
    k.push('{');
    for (i, (n, v)) in labels.iter().filter(|(n, _)| *n != "__name__").enumerate() {
        if i > 0 {
            k.push(',');
        }
        k.push_str(n);
        k.push('=');
        k.push_str(v);
    }
    k.push('}');
    k
}

/// The legend name of a series: the values of `by` labels joined with " ", else the
/// non-name labels as `k=v`, else `fallback`.
pub fn legend(labels: &BTreeMap<String, String>, by: &[&str], fallback: &str) -> String {
    let picked: Vec<&str> = by
        .iter()
        .filter_map(|b| labels.get(*b).map(String::as_str))
        .collect();
    if !picked.is_empty() {
        return picked.join(" ");
    }
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if rest.is_empty() {
        fallback.to_string()
    } else {
        rest.join(", ")
    }
}

/// How many points a buffer needs for `window_ms` at `step_ms`, with 10 % headroom.
pub fn capacity_for(window_ms: i64, step_ms: i64) -> usize {
    let step = step_ms.max(1);
    ((window_ms / step) as usize + 1) * 11 / 10 + 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(points: &[Point]) -> SeriesBuffer {
        let mut b = SeriesBuffer::new(100);
        for &(t, v) in points {
            b.push(t, v);
        }
        b
    }

    #[test]
    fn ring_buffer_keeps_the_newest() {
        let mut b = SeriesBuffer::new(3);
        for t in 0..5 {
            b.push(t * 1000, t as f64);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.first(), Some((2000, 2.0)));
        assert_eq!(b.last(), Some((4000, 4.0)));
        b.set_capacity(2);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![(3000, 3.0), (4000, 4.0)]);
    }

    #[test]
    fn late_and_duplicate_samples_keep_order() {
        let mut b = buf(&[(1000, 1.0), (3000, 3.0)]);
        b.push(2000, 2.0);
        b.push(3000, 30.0);
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![(1000, 1.0), (2000, 2.0), (3000, 30.0)]
        );
    }

    #[test]
    fn backfill_merges_into_a_gap() {
        let mut b = buf(&[(1000, 1.0), (2000, 2.0), (9000, 9.0)]);
        assert_eq!(b.find_gap(0, 1500), Some((2000, 9000)));
        b.merge(&[
            (5000, 5.0),
            (3000, 3.0),
            (4000, 4.0),
            (6000, 6.0),
            (7000, 7.0),
            (8000, 8.0),
        ]);
        assert_eq!(b.len(), 9);
        assert_eq!(b.find_gap(0, 1500), None);
        let ts: Vec<i64> = b.iter().map(|p| p.0).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn merge_respects_capacity() {
        let mut b = SeriesBuffer::new(4);
        b.merge(&(0..10).map(|i| (i * 1000, i as f64)).collect::<Vec<_>>());
        assert_eq!(b.first(), Some((6000, 6.0)));
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn trim_min_max_and_nearest() {
        let mut b = buf(&[(1000, 5.0), (2000, f64::NAN), (3000, -1.0), (4000, 2.0)]);
        assert_eq!(b.range_min_max(0, 10_000), Some((-1.0, 5.0)));
        assert_eq!(b.range_min_max(3500, 10_000), Some((2.0, 2.0)));
        assert_eq!(b.range_min_max(5000, 10_000), None);
        assert_eq!(b.nearest(2900, 500), Some((3000, -1.0)));
        assert_eq!(b.nearest(10_000, 500), None);
        b.trim_before(2500);
        assert_eq!(b.first(), Some((3000, -1.0)));
    }

    #[test]
    fn decimation_keeps_spikes_and_bounds_work() {
        // 10 000 points over 100 px: at most ~102 columns, the spike survives.
        let mut b = SeriesBuffer::new(20_000);
        for i in 0..10_000 {
            b.push(i, if i == 5_555 { 100.0 } else { 1.0 });
        }
        let cols = b.decimate(0, 10_000, 100, 10);
        assert!(cols.len() <= 102, "{}", cols.len());
        assert!(cols.iter().any(|c| c.max == 100.0));
        assert!(cols.iter().skip(1).all(|c| !c.break_before));
    }

    #[test]
    fn decimation_breaks_lines_at_gaps() {
        let b = buf(&[(0, 1.0), (1000, 1.0), (10_000, 1.0), (11_000, 1.0)]);
        let cols = b.decimate(0, 11_000, 110, 2500);
        let breaks: Vec<bool> = cols.iter().map(|c| c.break_before).collect();
        assert_eq!(breaks, vec![true, false, true, false]);
    }

    #[test]
    fn keys_and_legends() {
        let mut l = BTreeMap::new();
        l.insert("__name__".to_string(), "x".to_string());
        l.insert("core".to_string(), "1".to_string());
        assert_eq!(series_key("x", &l), "x{core=1}");
        assert_eq!(legend(&l, &["core"], "cpu"), "1");
        assert_eq!(legend(&l, &["mount"], "cpu"), "core=1");
        assert_eq!(legend(&BTreeMap::new(), &[], "cpu"), "cpu");
        assert_eq!(capacity_for(300_000, 1000), 339);
    }
}
