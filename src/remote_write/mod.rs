//! Prometheus remote write 1.0: the receiver (`POST /api/v1/write` into the tsdb) and
//! the senders (`send.rs`: every appended sample to each `[[remote_write]]` endpoint).
//!
//! Samples keep their timestamps, history within `tsdb.retention` included; each
//! series must arrive in time order, as Prometheus' own receiver requires. Answers
//! follow Prometheus': 204 when everything was stored, 400 for data that will never
//! be accepted (so senders drop it instead of retrying) — after storing every
//! acceptable series of the request.

pub mod proto;
pub mod receive;
pub mod send;

use prometheus::{IntCounter, IntCounterVec, Opts};

use crate::metrics::Metrics;
use crate::tsdb::Tsdb;
pub use receive::{DecodeError, Limits, Receipt};
pub use send::{start as start_senders, validate};

/// The receiver: decodes requests and appends them to the store, counting outcomes.
#[derive(Clone)]
pub struct Receiver {
    tsdb: Tsdb,
    limits: Limits,
    metrics: ReceiverMetrics,
    /// Requests decoded at once (each may take up to 2 × `tsdb.max_write_bytes`).
    decoding: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Requests decoded at once; more wait their turn.
const DECODING_AT_ONCE: usize = 4;

/// `watchpost_remote_write_received_*`.
#[derive(Clone)]
struct ReceiverMetrics {
    /// `watchpost_remote_write_received_samples_total{outcome}`.
    samples: IntCounterVec,
    /// `watchpost_remote_write_series_created_total`.
    series_created: IntCounter,
}

impl ReceiverMetrics {
    fn new(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let samples = IntCounterVec::new(
            Opts::new(
                "watchpost_remote_write_received_samples_total",
                "Samples received by remote write, by outcome: appended, repeated (a resend of \
                 the latest sample), out_of_order, too_old, series_limit, invalid, unsupported.",
            ),
            &["outcome"],
        )?;
        let series_created = IntCounter::new(
            "watchpost_remote_write_series_created_total",
            "Series created in the store by remote write.",
        )?;
        for (outcome, _) in Receipt::default().outcomes() {
            samples.with_label_values(&[outcome]);
        }
        metrics.register_all(
            "remote write",
            vec![Box::new(samples.clone()), Box::new(series_created.clone())],
        );
        Ok(Self {
            samples,
            series_created,
        })
    }
}

impl Receiver {
    /// A receiver appending to `tsdb` within `limits`.
    pub fn new(tsdb: Tsdb, limits: Limits, metrics: &Metrics) -> Result<Self, prometheus::Error> {
        Ok(Self {
            tsdb,
            limits,
            metrics: ReceiverMetrics::new(metrics)?,
            decoding: std::sync::Arc::new(tokio::sync::Semaphore::new(DECODING_AT_ONCE)),
        })
    }

    /// [`Receiver::receive`] on a blocking thread, at most [`DECODING_AT_ONCE`] at a
    /// time (memory stays bounded whatever the number of senders).
    pub async fn receive_blocking(
        &self,
        body: bytes::Bytes,
        now_ms: i64,
    ) -> Result<Receipt, DecodeError> {
        let _permit = self.decoding.acquire().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.receive(&body, now_ms))
            .await
            .unwrap_or_else(|e| Err(DecodeError::Internal(e.to_string())))
    }

    /// Decodes `body` and appends its samples; samples older than the retention
    /// before `now_ms` are refused.
    pub fn receive(&self, body: &[u8], now_ms: i64) -> Result<Receipt, DecodeError> {
        let req = receive::decode(body, self.limits.max_decoded_bytes)?;
        let min_t = now_ms.saturating_sub(self.tsdb.retention_ms());
        let receipt = receive::apply(&self.tsdb, &req, &self.limits, min_t);
        for (outcome, n) in receipt.outcomes() {
            if n > 0 {
                self.metrics
                    .samples
                    .with_label_values(&[outcome])
                    .inc_by(n as u64);
            }
        }
        self.metrics
            .series_created
            .inc_by(receipt.series_created as u64);
        if receipt.refused() > 0 {
            tracing::debug!(
                refused = receipt.refused(),
                appended = receipt.appended,
                "remote write: {}",
                receipt.message()
            );
        }
        Ok(receipt)
    }
}
