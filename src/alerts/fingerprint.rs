//! Alert identity: a stable hash of the source and the sorted labels.
//!
//! The hash is SHA-256 over `source`, then every `name`/`value` pair in name order,
//! each field terminated by `0xff` (a byte that never occurs in UTF-8), truncated to
//! 128 bits and written as 32 lowercase hex digits. It never changes between versions:
//! stored alerts keep matching what senders send. An alert without any label is
//! identified by its message instead (`0x00` + message), so that unlabelled alerts from
//! one source do not all collapse into one.

use sha2::{Digest, Sha256};

use super::model::LabelSet;

/// The fingerprint of an alert from `source` with `labels` (and `message`, used only
/// when there are no labels).
pub fn fingerprint(source: &str, labels: &LabelSet, message: &str) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0xff]);
    for (name, value) in labels {
        h.update(name.as_bytes());
        h.update([0xff]);
        h.update(value.as_bytes());
        h.update([0xff]);
    }
    if labels.is_empty() {
        h.update([0x00]);
        h.update(message.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        out.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn stable_and_order_independent() {
        let a = fingerprint("api", &labels(&[("a", "1"), ("b", "2")]), "x");
        let b = fingerprint("api", &labels(&[("b", "2"), ("a", "1")]), "y");
        assert_eq!(a, b, "message must not matter when there are labels");
        assert_eq!(a.len(), 32);
        // Pinned: stored fingerprints must never change.
        assert_eq!(
            a,
            fingerprint("api", &labels(&[("a", "1"), ("b", "2")]), "")
        );
        assert_eq!(
            fingerprint("api", &labels(&[("alertname", "X")]), ""),
            "3e1841be21d02158fbf0f7aa9aedf109"
        );
    }

    #[test]
    fn source_and_boundaries_matter() {
        let l = labels(&[("a", "1")]);
        assert_ne!(fingerprint("api", &l, ""), fingerprint("ntopng", &l, ""));
        assert_ne!(
            fingerprint("api", &labels(&[("ab", "c")]), ""),
            fingerprint("api", &labels(&[("a", "bc")]), "")
        );
    }

    #[test]
    fn unlabelled_alerts_are_told_apart_by_message() {
        let none = LabelSet::new();
        assert_ne!(
            fingerprint("api", &none, "disk full"),
            fingerprint("api", &none, "cpu high")
        );
        assert_eq!(
            fingerprint("api", &none, "disk full"),
            fingerprint("api", &none, "disk full")
        );
    }
}
