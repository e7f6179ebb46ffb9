//! Quantiles: `quantile`/`quantile_over_time` over values and `histogram_quantile` over
//! classic `_bucket{le}` series, as Prometheus computes them (`promql/quantile.go`).

use std::collections::HashMap;

use super::Sample;
use crate::tsdb::{Labels, Prehashed};

/// The φ-quantile of `values` with linear interpolation between the closest ranks
/// (sorts `values`; NaN sorts first, as Prometheus').
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Parses a float as Go's `strconv.ParseFloat` accepts `le` values (`+Inf`, `1e3`, …).
pub(super) fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.replace('_', "").parse().ok(),
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    upper_bound: f64,
    count: f64,
}

/// `histogram_quantile(q, v)` over classic buckets: samples are grouped by their labels
/// without `le`; each group's result carries those labels without `__name__`. Samples
/// without a parsable `le` are ignored.
pub(super) fn histogram_quantile(q: f64, input: Vec<Sample>) -> Vec<Sample> {
    let mut order: Vec<u64> = Vec::new();
    let mut groups: HashMap<u64, (Labels, Vec<Bucket>), Prehashed> = HashMap::default();
    for s in input {
        let Some(upper_bound) = s.labels.get("le").and_then(parse_go_float) else {
            continue;
        };
        let mut b = s.labels.to_builder();
        b.del("le");
        let key_labels = b.build();
        let key = key_labels.hash_value();
        let entry = groups.entry(key).or_insert_with(|| {
            order.push(key);
            (key_labels.without_metric_name(), Vec::new())
        });
        entry.1.push(Bucket {
            upper_bound,
            count: s.value,
        });
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .map(|(labels, mut buckets)| Sample {
            labels,
            value: bucket_quantile(q, &mut buckets),
        })
        .collect()
}

/// Prometheus' `BucketQuantile` for classic buckets.
fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1].partition_point(|bk| bk.count < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].upper_bound;
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return buckets[0].upper_bound;
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    if b > 0 {
        bucket_start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// Merges buckets with the same upper bound (summing their counts).
fn coalesce(buckets: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper_bound == b.upper_bound => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

/// Forces cumulative counts to be non-decreasing, as Prometheus 2.42 (no tolerance for
/// float noise: that came in later versions).
fn ensure_monotonic(buckets: &mut [Bucket]) {
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(le: &str, v: f64) -> Sample {
        Sample {
            labels: Labels::new([("__name__", "h_bucket"), ("job", "a"), ("le", le)]),
            value: v,
        }
    }

    #[test]
    fn interpolates_within_the_bucket() {
        let input = vec![
            bucket("0.1", 10.0),
            bucket("0.5", 60.0),
            bucket("1", 90.0),
            bucket("+Inf", 100.0),
        ];
        let out = histogram_quantile(0.5, input.clone());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].labels, Labels::new([("job", "a")]));
        // rank 50 falls in (0.1, 0.5]: 0.1 + 0.4 × (40 / 50).
        assert!((out[0].value - 0.42).abs() < 1e-12, "{}", out[0].value);
        // rank 99 is in the +Inf bucket → the largest finite bound.
        assert_eq!(histogram_quantile(0.99, input.clone())[0].value, 1.0);
        // rank 5 in the first bucket interpolates from 0.
        assert!((histogram_quantile(0.05, input.clone())[0].value - 0.05).abs() < 1e-12);
        assert_eq!(
            histogram_quantile(-1.0, input.clone())[0].value,
            f64::NEG_INFINITY
        );
        assert_eq!(histogram_quantile(2.0, input)[0].value, f64::INFINITY);
    }

    #[test]
    fn missing_inf_bucket_or_no_observations_is_nan() {
        assert!(
            histogram_quantile(0.5, vec![bucket("1", 1.0)])[0]
                .value
                .is_nan()
        );
        let zero = vec![bucket("1", 0.0), bucket("+Inf", 0.0)];
        assert!(histogram_quantile(0.5, zero)[0].value.is_nan());
    }

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(0.0, &mut v), 1.0);
        assert_eq!(quantile(1.0, &mut v), 4.0);
        assert!(quantile(0.5, &mut []).is_nan());
    }
}
