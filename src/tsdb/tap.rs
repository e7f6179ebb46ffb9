//! The append tap: while a consumer (remote write out) is attached, every sample the
//! store appends — stale markers included — is also kept here, in append order, until
//! the consumer drains it. Bounded: past `capacity` new samples are counted, not kept.
//! Appenders record while holding their series' lock (the tap's mutex is a leaf), so
//! each series' samples are kept in time order.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Labels;

/// One appended sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The series.
    pub labels: Labels,
    /// Unix ms.
    pub t: i64,
    /// The value (stale markers keep their bits).
    pub v: f64,
}

#[derive(Default)]
pub(super) struct Tap {
    on: AtomicBool,
    buf: Mutex<Vec<Appended>>,
    capacity: AtomicU64,
    overflowed: AtomicU64,
}

impl Tap {
    pub(super) fn attach(&self, capacity: usize) {
        self.capacity.store(capacity as u64, Ordering::Relaxed);
        self.on.store(true, Ordering::Release);
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Keeps `samples` of `labels` if a consumer is attached.
    pub(super) fn record(&self, labels: &Labels, samples: impl IntoIterator<Item = (i64, f64)>) {
        if !self.is_on() {
            return;
        }
        let cap = self.capacity.load(Ordering::Relaxed) as usize;
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        for (t, v) in samples {
            if buf.len() >= cap {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            buf.push(Appended {
                labels: labels.clone(),
                t,
                v,
            });
        }
    }

    /// Moves everything kept into `out` (in append order).
    pub(super) fn drain_into(&self, out: &mut Vec<Appended>) {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if out.is_empty() {
            std::mem::swap(&mut *buf, out);
        } else {
            out.append(&mut buf);
        }
    }

    pub(super) fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}
