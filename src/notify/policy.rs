//! Delivery policy, in one place: what the outcome of one send attempt means for its
//! outbox row (delivered, retried when, or given up) and how it is counted.
//!
//! Receivers only format and send; they answer an [`Attempt`]. The sender claims, sends
//! and records; this module decides.
//!
//! | attempt | verdict | `watchpost_notifications_total{outcome}` |
//! |---|---|---|
//! | delivered | delivered | `delivered` |
//! | rejected (4xx but 429) | failed, never retried | `rejected` |
//! | transient (5xx, 429, refused) | retry after backoff or `retry_after` | `transient` |
//! | ambiguous (no answer after the request went out) | retry once, or fail (`notify.ambiguous`) | `ambiguous` |
//! | transient past `max_retry` | failed | `failed` |

use std::time::Duration;

use rand::Rng;

use super::outbox::{OutboxRow, Verdict};
use crate::config::AmbiguousPolicy;

/// The outcome of one send attempt, as a receiver reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Accepted; what the receiver answered (e.g. a message id).
    Delivered(Option<String>),
    /// Rate limited: wait at least this long.
    RetryAfter(Duration, String),
    /// Not delivered and safe to retry: a server error, the connection refused.
    Transient(String),
    /// Refused for good (400, 403, …): never retried.
    Rejected(String),
    /// The request went out but no answer came back (timeout, connection cut): it may
    /// or may not have been delivered.
    Ambiguous(String),
}

impl Attempt {
    /// A failed HTTP request: nothing was sent when the connection could not be made
    /// (safe to retry); after that the receiver may have the message (ambiguous).
    /// The error's URL is reduced to its endpoint (it may hold a token or a secret path).
    pub fn network(e: &reqwest::Error) -> Attempt {
        let why = crate::redact::http_error(e);
        if e.is_connect() {
            Attempt::Transient(format!("cannot connect: {why}"))
        } else if e.is_timeout() {
            Attempt::Ambiguous(format!("no answer in time after sending: {why}"))
        } else {
            Attempt::Ambiguous(format!("connection failed after sending: {why}"))
        }
    }

    /// The same attempt with URLs and passwords in its text redacted: it is logged,
    /// stored as `last_error` and shown to every role.
    pub fn redacted(self) -> Attempt {
        self.map_text(crate::redact::text)
    }

    /// The same attempt with `f` applied to its text.
    pub fn map_text(self, f: impl Fn(&str) -> String) -> Attempt {
        match self {
            Attempt::Delivered(r) => Attempt::Delivered(r.map(|r| f(&r))),
            Attempt::RetryAfter(d, e) => Attempt::RetryAfter(d, f(&e)),
            Attempt::Transient(e) => Attempt::Transient(f(&e)),
            Attempt::Rejected(e) => Attempt::Rejected(f(&e)),
            Attempt::Ambiguous(e) => Attempt::Ambiguous(f(&e)),
        }
    }
}

/// Retry settings.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Give up this long after a row was written (`telegram.max_retry`).
    pub max_retry: Duration,
    /// First backoff step (`notify.min_backoff`).
    pub min_backoff: Duration,
    /// Largest backoff step (`notify.max_backoff`).
    pub max_backoff: Duration,
    /// What an ambiguous send becomes (`notify.ambiguous`).
    pub ambiguous: AmbiguousPolicy,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retry: Duration::from_secs(3600),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            ambiguous: AmbiguousPolicy::Retry,
        }
    }
}

/// Ambiguous sends retried at most this many times under `notify.ambiguous = "retry"`.
pub const AMBIGUOUS_RETRIES: i64 = 1;

/// Exponential backoff with equal jitter: `d/2 + rand(0..=d/2)`, `d = base·2^attempt`.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let d = base
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(max)
        .min(max);
    let half = d / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
}

/// Every outcome an attempt is counted under (`watchpost_notifications_total{outcome}`).
pub const OUTCOMES: [&str; 5] = ["delivered", "rejected", "transient", "ambiguous", "failed"];

impl RetryPolicy {
    /// The verdict on `row` after `attempt` at `now_ms`, and the outcome to count.
    pub fn decide(
        &self,
        row: &OutboxRow,
        attempt: Attempt,
        now_ms: i64,
    ) -> (Verdict, &'static str) {
        let (wait, error, ambiguous) = match attempt {
            Attempt::Delivered(response) => return (Verdict::Delivered { response }, "delivered"),
            Attempt::Rejected(error) => {
                let error = format!("rejected: {error}");
                return (
                    Verdict::Failed {
                        error,
                        ambiguous: false,
                    },
                    "rejected",
                );
            }
            Attempt::Ambiguous(error) => {
                if let Some(v) = self.ambiguous_verdict(row.ambiguous + 1, &error) {
                    return (v, "ambiguous");
                }
                (self.backoff(row), format!("ambiguous: {error}"), true)
            }
            // A receiver asking for longer than max_retry gets max_retry (then: failed).
            Attempt::RetryAfter(d, error) => (d.min(self.max_retry), error, false),
            Attempt::Transient(error) => (self.backoff(row), error, false),
        };
        // Round up so that "retry after N seconds" is never early.
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let at_ms = now_ms.saturating_add(wait_ms).saturating_add(1);
        let deadline = row
            .created_ms
            .saturating_add(i64::try_from(self.max_retry.as_millis()).unwrap_or(i64::MAX));
        if at_ms > deadline {
            let error = format!(
                "gave up after {} attempts (max_retry {}): {error}",
                row.attempts + 1,
                humantime::format_duration(self.max_retry)
            );
            let outcome = if ambiguous { "ambiguous" } else { "failed" };
            return (Verdict::Failed { error, ambiguous }, outcome);
        }
        let outcome = if ambiguous { "ambiguous" } else { "transient" };
        (
            Verdict::Retry {
                at_ms,
                error,
                ambiguous,
            },
            outcome,
        )
    }

    /// The verdict on a row whose sender died or was cut mid-send, found claimed: `None`
    /// when it may be sent again now (its `ambiguous` count already includes that send).
    pub fn takeover(&self, row: &OutboxRow) -> Option<Verdict> {
        let error =
            "the previous sender stopped during the send (crash, kill or shutdown deadline)";
        self.ambiguous_verdict(row.ambiguous, error)
    }

    /// `Some(failed)` when an ambiguous send number `n` must not be followed by another.
    fn ambiguous_verdict(&self, n: i64, error: &str) -> Option<Verdict> {
        let why = match self.ambiguous {
            AmbiguousPolicy::Drop => "not resent (notify.ambiguous = \"drop\")",
            AmbiguousPolicy::Retry if n > AMBIGUOUS_RETRIES => "resent once already; not again",
            AmbiguousPolicy::Retry => return None,
        };
        Some(Verdict::Failed {
            error: format!("ambiguous: {error}; {why}"),
            ambiguous: true,
        })
    }

    fn backoff(&self, row: &OutboxRow) -> Duration {
        backoff(self.min_backoff, self.max_backoff, row.attempts as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(attempts: i64, ambiguous: i64) -> OutboxRow {
        OutboxRow {
            id: 1,
            idempotency_key: "k".into(),
            receiver: "r".into(),
            kind: "telegram".into(),
            target: "telegram:1".into(),
            group_key: "g".into(),
            status: "firing".into(),
            part: 1,
            parts: 1,
            payload: "{}".into(),
            alert_ids: vec![],
            state: "pending".into(),
            attempts,
            created_ms: 0,
            next_attempt_ms: 0,
            updated_ms: 0,
            delivered_ms: None,
            last_error: None,
            response: None,
            claimed_by: Some("n#1".into()),
            lease_until_ms: None,
            ambiguous,
            claim_epoch: None,
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 0..10 {
            let d = backoff(base, max, attempt);
            let full = (base * (1 << attempt)).min(max);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(backoff(base, max, 40) <= max);
    }

    #[test]
    fn outcomes_map_to_verdicts() {
        let p = RetryPolicy::default();
        let (v, o) = p.decide(&row(0, 0), Attempt::Delivered(Some("m".into())), 10);
        assert_eq!(o, "delivered");
        assert_eq!(
            v,
            Verdict::Delivered {
                response: Some("m".into())
            }
        );

        let (v, o) = p.decide(
            &row(0, 0),
            Attempt::Rejected("403 Forbidden: bot was blocked".into()),
            10,
        );
        assert_eq!(o, "rejected");
        assert!(
            matches!(v, Verdict::Failed { ref error, ambiguous: false } if error.contains("bot was blocked"))
        );

        let (v, o) = p.decide(
            &row(0, 0),
            Attempt::RetryAfter(Duration::from_secs(7), "429".into()),
            10,
        );
        assert_eq!(o, "transient");
        assert!(
            matches!(v, Verdict::Retry { at_ms, ambiguous: false, .. } if at_ms == 10 + 7000 + 1)
        );

        let (v, o) = p.decide(&row(3, 0), Attempt::Transient("502".into()), 10);
        assert_eq!(o, "transient");
        assert!(matches!(v, Verdict::Retry { at_ms, .. } if (4010..=8011).contains(&at_ms)));
    }

    #[test]
    fn transient_gives_up_after_max_retry() {
        let p = RetryPolicy {
            max_retry: Duration::from_secs(5),
            ..Default::default()
        };
        let (v, o) = p.decide(
            &row(2, 0),
            Attempt::RetryAfter(Duration::from_secs(9), "429".into()),
            0,
        );
        assert_eq!(o, "failed");
        assert!(
            matches!(v, Verdict::Failed { ref error, .. } if error.contains("gave up after 3 attempts"))
        );
    }

    #[test]
    fn a_huge_retry_after_gives_up_instead_of_overflowing() {
        let p = RetryPolicy::default();
        let huge = Duration::from_secs(99_999_999_999_999_999);
        let (v, o) = p.decide(&row(0, 0), Attempt::RetryAfter(huge, "429".into()), 10);
        assert_eq!(o, "failed");
        assert!(matches!(v, Verdict::Failed { .. }));
    }

    #[test]
    fn ambiguous_is_retried_once_or_dropped() {
        let retry = RetryPolicy::default();
        let (v, o) = retry.decide(&row(0, 0), Attempt::Ambiguous("timed out".into()), 0);
        assert_eq!(o, "ambiguous");
        assert!(matches!(
            v,
            Verdict::Retry {
                ambiguous: true,
                ..
            }
        ));
        let (v, _) = retry.decide(&row(1, 1), Attempt::Ambiguous("timed out".into()), 0);
        assert!(
            matches!(v, Verdict::Failed { ambiguous: true, ref error } if error.contains("resent once"))
        );

        let drop = RetryPolicy {
            ambiguous: AmbiguousPolicy::Drop,
            ..Default::default()
        };
        let (v, o) = drop.decide(&row(0, 0), Attempt::Ambiguous("timed out".into()), 0);
        assert_eq!(o, "ambiguous");
        assert!(
            matches!(v, Verdict::Failed { ambiguous: true, ref error } if error.contains("drop"))
        );
    }

    #[test]
    fn takeover_follows_the_ambiguous_policy() {
        let retry = RetryPolicy::default();
        assert_eq!(
            retry.takeover(&row(0, 1)),
            None,
            "first ambiguous send: resend"
        );
        assert!(retry.takeover(&row(1, 2)).is_some(), "second: give up");
        let drop = RetryPolicy {
            ambiguous: AmbiguousPolicy::Drop,
            ..Default::default()
        };
        assert!(matches!(
            drop.takeover(&row(0, 1)),
            Some(Verdict::Failed {
                ambiguous: true,
                ..
            })
        ));
    }
}
