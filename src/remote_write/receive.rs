//! Remote write in: a snappy-compressed protobuf `WriteRequest` decoded within limits,
//! each series checked alone and appended with its own timestamps. One bad series never
//! costs its neighbours their samples; what was refused is counted and named.

use prost::Message;

use super::proto::{TimeSeries, WriteRequest};
use crate::tsdb::{AppendCounts, Labels, Tsdb, is_valid_label_name, is_valid_metric_name};

/// Limits on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest decompressed body (`tsdb.max_write_bytes`).
    pub max_decoded_bytes: usize,
    /// Most labels on one series (`tsdb.max_labels_per_series`).
    pub max_labels: usize,
    /// Longest label name or value in bytes (`tsdb.max_label_length`).
    pub max_label_bytes: usize,
}

/// A body that is not a remote-write request: it will never be accepted (400).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not snappy's block format.
    #[error("body is not snappy block-compressed (Content-Encoding: snappy): {0}")]
    Snappy(#[from] snap::Error),
    /// Decompresses to more than the limit.
    #[error(
        "decompressed body of {size} bytes exceeds the limit of {limit} bytes (tsdb.max_write_bytes)"
    )]
    TooLarge {
        /// Decompressed size the body declares.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The decoding task failed (a bug; answered 500).
    #[error("remote write decoding failed: {0}")]
    Internal(String),
    /// Decoding would take more memory than allowed.
    #[error(
        "request holds too many series, labels or samples: about {need} bytes decoded, over the limit of {limit} (2 × tsdb.max_write_bytes)"
    )]
    TooManyItems {
        /// Bytes the decoded request would take.
        need: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a `WriteRequest`.
    #[error("body is not a protobuf prometheus.WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decompresses and decodes a request body, refusing decompression past the limit
/// before allocating for it.
pub fn decode(body: &[u8], max_decoded_bytes: usize) -> Result<WriteRequest, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size > max_decoded_bytes {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_decoded_bytes,
        });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    // Decoded structures outweigh their wire bytes (an empty series: 2 bytes on the
    // wire, ~100 in memory): count them first and refuse what would not fit.
    if let Some(c) = census(&raw) {
        let need = c.memory(raw.len());
        let limit = max_decoded_bytes.saturating_mul(2);
        if need > limit {
            return Err(DecodeError::TooManyItems { need, limit });
        }
    }
    Ok(WriteRequest::decode(raw.as_slice())?)
}

/// What a `WriteRequest` holds, counted on the wire without decoding it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Census {
    timeseries: usize,
    labels: usize,
    samples: usize,
    other: usize,
}

impl Census {
    /// Bytes the decoded request takes, about.
    fn memory(&self, raw: usize) -> usize {
        use std::mem::size_of;
        self.timeseries * size_of::<TimeSeries>()
            + self.labels * size_of::<super::proto::Label>()
            + self.samples * size_of::<super::proto::Sample>()
            + self.other * size_of::<super::proto::Opaque>().max(8)
            + raw
    }
}

/// Counts series, labels and samples of a `WriteRequest`; `None` when the bytes are
/// not well-formed protobuf (the decoder then says why).
fn census(buf: &[u8]) -> Option<Census> {
    let mut c = Census::default();
    for_each_field(buf, |field, inner| {
        match (field, inner) {
            (1, Some(series)) => {
                c.timeseries += 1;
                for_each_field(series, |f, _| {
                    match f {
                        1 => c.labels += 1,
                        2 => c.samples += 1,
                        _ => c.other += 1,
                    }
                    Some(())
                })?;
            }
            _ => c.other += 1,
        }
        Some(())
    })?;
    Some(c)
}

/// Calls `f(field number, Some(bytes) for length-delimited fields)` for each field of
/// one protobuf message.
fn for_each_field(
    mut buf: &[u8],
    mut f: impl FnMut(u64, Option<&[u8]>) -> Option<()>,
) -> Option<()> {
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).ok()?;
        let body = match key & 7 {
            0 => {
                prost::encoding::decode_varint(&mut buf).ok()?;
                None
            }
            1 => {
                buf = buf.get(8..)?;
                None
            }
            5 => {
                buf = buf.get(4..)?;
                None
            }
            2 => {
                let len = usize::try_from(prost::encoding::decode_varint(&mut buf).ok()?).ok()?;
                let (inner, rest) = (buf.get(..len)?, buf.get(len..)?);
                buf = rest;
                Some(inner)
            }
            _ => return None,
        };
        f(key >> 3, body)?;
    }
    Some(())
}

/// What became of one request's samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Samples stored.
    pub appended: usize,
    /// Resends of a series' latest sample: not stored, not an error.
    pub repeated: usize,
    /// Before their series' latest sample (or at its time with another value).
    pub out_of_order: usize,
    /// Older than `tsdb.retention`.
    pub too_old: usize,
    /// Their series would have passed `tsdb.max_series`.
    pub series_limit: usize,
    /// Their series' labels are invalid or over the limits.
    pub invalid: usize,
    /// Native-histogram samples (not supported).
    pub unsupported: usize,
    /// Series created by this request.
    pub series_created: usize,
    /// The first refusals, each naming its series (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<String>,
    /// Refusals beyond those listed.
    pub more_problems: usize,
}

/// Refusals named in one answer; the rest are counted.
pub const MAX_PROBLEMS: usize = 5;

impl Receipt {
    /// Samples refused (anything but stored or repeated).
    pub fn refused(&self) -> usize {
        self.out_of_order + self.too_old + self.series_limit + self.invalid + self.unsupported
    }

    /// Every outcome with its count, in the metric's label values.
    pub fn outcomes(&self) -> [(&'static str, usize); 7] {
        [
            ("appended", self.appended),
            ("repeated", self.repeated),
            ("out_of_order", self.out_of_order),
            ("too_old", self.too_old),
            ("series_limit", self.series_limit),
            ("invalid", self.invalid),
            ("unsupported", self.unsupported),
        ]
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        } else {
            self.more_problems += 1;
        }
    }

    /// One message naming the refusals, for the 400 answer.
    pub fn message(&self) -> String {
        let mut text = format!(
            "{} of {} samples refused: {}",
            self.refused(),
            self.refused() + self.appended + self.repeated,
            self.problems.join("; ")
        );
        if self.more_problems > 0 {
            text.push_str(&format!("; and {} more", self.more_problems));
        }
        text
    }
}

/// Why a series' labels are refused by [`apply_mapped`]'s mapping.
#[derive(Debug, Clone)]
pub enum SeriesRefusal {
    /// The labels are not acceptable (counted as `invalid`).
    Invalid(String),
    /// A series limit of the sender (counted as `series_limit`).
    Limit(String),
}

/// Appends every acceptable sample of `req` to `tsdb`: samples before `min_t` are too old.
pub fn apply(tsdb: &Tsdb, req: &WriteRequest, limits: &Limits, min_t: i64) -> Receipt {
    apply_mapped(tsdb, req, limits, min_t, Ok)
}

/// [`apply`], with each valid series' labels passed through `map` first (agents set
/// `instance` and `job`, and count their series).
pub fn apply_mapped(
    tsdb: &Tsdb,
    req: &WriteRequest,
    limits: &Limits,
    min_t: i64,
    mut map: impl FnMut(Labels) -> Result<Labels, SeriesRefusal>,
) -> Receipt {
    let mut receipt = Receipt::default();
    let mut samples = Vec::new();
    for (i, ts) in req.timeseries.iter().enumerate() {
        if !ts.histograms.is_empty() {
            receipt.unsupported += ts.histograms.len();
            receipt.problem(format!(
                "timeseries[{i}].histograms: native histograms are not supported"
            ));
        }
        let labels = match series_labels(ts, limits)
            .map_err(SeriesRefusal::Invalid)
            .and_then(&mut map)
        {
            Ok(l) => l,
            Err(SeriesRefusal::Invalid(why)) => {
                receipt.invalid += ts.samples.len();
                receipt.problem(format!("timeseries[{i}].labels: {why}"));
                continue;
            }
            Err(SeriesRefusal::Limit(why)) => {
                receipt.series_limit += ts.samples.len();
                receipt.problem(format!("timeseries[{i}]: {why}"));
                continue;
            }
        };
        samples.clear();
        samples.extend(ts.samples.iter().map(|s| (s.timestamp, s.value)));
        let counts = tsdb.append_samples(&labels, &samples, min_t);
        record(&mut receipt, i, &labels, &counts);
    }
    receipt
}

/// Adds one series' counts to the receipt, naming its refusals.
fn record(receipt: &mut Receipt, i: usize, labels: &Labels, c: &AppendCounts) {
    receipt.appended += c.appended;
    receipt.repeated += c.repeated;
    receipt.out_of_order += c.out_of_order;
    receipt.too_old += c.too_old;
    receipt.series_limit += c.series_limit;
    receipt.series_created += usize::from(c.created);
    let series = || format!("timeseries[{i}] {labels}");
    if c.out_of_order > 0 {
        receipt.problem(format!(
            "{}: {} samples out of order (before the series' latest sample, or at its time with another value)",
            series(),
            c.out_of_order
        ));
    }
    if c.too_old > 0 {
        receipt.problem(format!(
            "{}: {} samples older than the retention (tsdb.retention)",
            series(),
            c.too_old
        ));
    }
    if c.series_limit > 0 {
        receipt.problem(format!(
            "{}: new series refused, the store holds tsdb.max_series series",
            series()
        ));
    }
}

/// The series' labels, or why they are refused (Prometheus' validity rules, plus the
/// limits). Labels with empty values do not exist, as in Prometheus.
fn series_labels(ts: &TimeSeries, limits: &Limits) -> Result<Labels, String> {
    let mut seen = std::collections::HashSet::with_capacity(ts.labels.len());
    for l in &ts.labels {
        if !seen.insert(l.name.as_str()) {
            return Err(format!("label {:?} given twice", l.name));
        }
        if l.name.len() > limits.max_label_bytes || l.value.len() > limits.max_label_bytes {
            return Err(format!(
                "label {:?} longer than {} bytes (tsdb.max_label_length)",
                truncate(&l.name),
                limits.max_label_bytes
            ));
        }
        if !is_valid_label_name(&l.name) {
            return Err(format!("invalid label name {:?}", l.name));
        }
        if l.name == crate::tsdb::METRIC_NAME && !is_valid_metric_name(&l.value) {
            return Err(format!("invalid metric name {:?}", truncate(&l.value)));
        }
    }
    let labels = Labels::new(ts.labels.iter().map(|l| (&l.name, &l.value)));
    if labels.is_empty() {
        return Err("a series needs at least one label with a value".into());
    }
    if labels.len() > limits.max_labels {
        return Err(format!(
            "{} labels, more than {} (tsdb.max_labels_per_series)",
            labels.len(),
            limits.max_labels
        ));
    }
    Ok(labels)
}

/// At most 64 characters of `s`, for messages.
fn truncate(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::proto::{Label, Sample};

    #[test]
    fn census_counts_without_decoding_and_bombs_are_refused() {
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        Label {
                            name: "__name__".into(),
                            value: "up".into()
                        };
                        3
                    ],
                    samples: vec![
                        Sample {
                            value: 1.0,
                            timestamp: 5
                        };
                        4
                    ],
                    ..TimeSeries::default()
                };
                2
            ],
            metadata: vec![],
        };
        let raw = req.encode_to_vec();
        let c = census(&raw).unwrap();
        assert_eq!((c.timeseries, c.labels, c.samples), (2, 6, 8));
        assert!(census(&[0x0a, 0x05, 0x01]).is_none(), "truncated");
        let body = |raw: &[u8]| snap::raw::Encoder::new().compress_vec(raw).unwrap();
        assert_eq!(decode(&body(&raw), 1 << 20).unwrap(), req);
        // 1 MiB of empty series: ~50 MiB decoded.
        let bomb: Vec<u8> = [0x0a, 0x00].repeat(512 * 1024);
        let err = decode(&body(&bomb), 2 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::TooManyItems { .. }), "{err}");
    }
}
