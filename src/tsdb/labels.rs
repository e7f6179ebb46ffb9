//! Label sets: sorted by name, immutable, cheap to clone (one `Arc`), hashed once.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Whether `s` is a valid Prometheus metric name.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` is a valid Prometheus label name.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An immutable label set, sorted by label name, without empty values.
///
/// Cloning is one atomic increment; hashing uses a hash computed once at construction,
/// so label sets are cheap map keys.
#[derive(Clone)]
pub struct Labels(Arc<Inner>);

struct Inner {
    hash: u64,
    pairs: Box<[(Arc<str>, Arc<str>)]>,
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels::from_sorted(Vec::new())
    }

    /// A label set from `(name, value)` pairs in any order. Empty values are dropped (a
    /// label with an empty value does not exist, as in Prometheus); for a name given twice
    /// the last value wins.
    pub fn new<I, K, V>(pairs: I) -> Labels
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut b = LabelsBuilder::default();
        for (k, v) in pairs {
            b.set(k.as_ref(), v.as_ref());
        }
        b.build()
    }

    /// Builds from pairs already sorted by name, unique and without empty values.
    fn from_sorted(pairs: Vec<(Arc<str>, Arc<str>)>) -> Labels {
        let hash = hash_pairs(pairs.iter().map(|(k, v)| (&**k, &**v)));
        Labels(Arc::new(Inner {
            hash,
            pairs: pairs.into_boxed_slice(),
        }))
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .pairs
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.0.pairs[i].1)
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.pairs.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The pairs with their shared strings (for interning by the store).
    pub(crate) fn pairs(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.0.pairs
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.pairs.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.pairs.is_empty()
    }

    /// The hash computed at construction (xxh3 over names and values).
    pub fn hash_value(&self) -> u64 {
        self.0.hash
    }

    /// Hash of only the labels named in `names` (absent ones are skipped), for
    /// `by (...)` grouping and `on (...)` matching.
    pub fn hash_for_labels<S: AsRef<str>>(&self, names: &[S]) -> u64 {
        hash_pairs(
            self.iter()
                .filter(|(k, _)| names.iter().any(|n| n.as_ref() == *k)),
        )
    }

    /// Hash of the labels except `__name__` and those named in `names`, for
    /// `without (...)` grouping and `ignoring (...)` matching.
    pub fn hash_without_labels<S: AsRef<str>>(&self, names: &[S]) -> u64 {
        hash_pairs(
            self.iter()
                .filter(|(k, _)| *k != METRIC_NAME && !names.iter().any(|n| n.as_ref() == *k)),
        )
    }

    /// True when both handles share the same allocation.
    pub fn ptr_eq(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A builder starting from this set.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            pairs: self.0.pairs.to_vec(),
        }
    }

    /// This set without `__name__` (the same handle when there is none).
    pub fn without_metric_name(&self) -> Labels {
        if self.get(METRIC_NAME).is_none() {
            return self.clone();
        }
        let mut b = self.to_builder();
        b.del(METRIC_NAME);
        b.build()
    }

    /// A `BTreeMap` copy.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Hash of name/value pairs, with separators so that `a="bc"` and `ab="c"` differ.
pub(crate) fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, v) in pairs {
        h.update(k.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

/// Builds a [`Labels`] by setting and deleting labels.
#[derive(Default, Clone, Debug)]
pub struct LabelsBuilder {
    pairs: Vec<(Arc<str>, Arc<str>)>,
}

impl LabelsBuilder {
    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        if value.is_empty() {
            return self.del(name);
        }
        match self.pairs.binary_search_by(|(k, _)| (**k).cmp(name)) {
            Ok(i) => self.pairs[i].1 = value.into(),
            Err(i) => self.pairs.insert(i, (name.into(), value.into())),
        }
        self
    }

    /// Sets `name` to a shared value (no copy of the string).
    pub(crate) fn set_shared(&mut self, name: &Arc<str>, value: &Arc<str>) -> &mut Self {
        match self.pairs.binary_search_by(|(k, _)| (**k).cmp(name)) {
            Ok(i) => self.pairs[i].1 = value.clone(),
            Err(i) => self.pairs.insert(i, (name.clone(), value.clone())),
        }
        self
    }

    /// Removes `name`.
    pub fn del(&mut self, name: &str) -> &mut Self {
        if let Ok(i) = self.pairs.binary_search_by(|(k, _)| (**k).cmp(name)) {
            self.pairs.remove(i);
        }
        self
    }

    /// Keeps only the labels whose names are in `names`.
    pub fn keep<S: AsRef<str>>(&mut self, names: &[S]) -> &mut Self {
        self.pairs
            .retain(|(k, _)| names.iter().any(|n| n.as_ref() == &**k));
        self
    }

    /// The value of `name` in the builder.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.pairs[i].1)
    }

    /// The finished label set.
    pub fn build(&self) -> Labels {
        Labels::from_sorted(self.pairs.clone())
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || (self.0.hash == other.0.hash && self.0.pairs == other.0.pairs)
    }
}

impl Eq for Labels {}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    /// Prometheus' order: pairwise by name, then value; a prefix sorts first.
    fn cmp(&self, other: &Self) -> Ordering {
        for ((ak, av), (bk, bv)) in self.iter().zip(other.iter()) {
            match ak.cmp(bk).then_with(|| av.cmp(bv)) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        self.len().cmp(&other.len())
    }
}

impl Default for Labels {
    fn default() -> Self {
        Labels::empty()
    }
}

impl fmt::Display for Labels {
    /// `{__name__="up", job="x"}` as Prometheus prints label sets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Labels::from(&map)
    }
}

impl From<&BTreeMap<String, String>> for Labels {
    fn from(map: &BTreeMap<String, String>) -> Self {
        let pairs = map
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
            .collect();
        Labels::from_sorted(pairs)
    }
}

impl From<&Labels> for BTreeMap<String, String> {
    fn from(labels: &Labels) -> Self {
        labels.to_map()
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(labels: Labels) -> Self {
        labels.to_map()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Labels::new(iter)
    }
}

impl Serialize for Labels {
    /// A JSON object, as in Prometheus' API (`"metric": {...}`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Labels, A::Error> {
                let mut b = LabelsBuilder::default();
                while let Some((k, v)) = access.next_entry::<String, String>()? {
                    b.set(&k, &v);
                }
                Ok(b.build())
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// A hasher for keys that already carry a good 64-bit hash (like [`Labels`]).
#[derive(Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys that do not write a single u64; mix bytes in.
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// `BuildHasher` for [`PrehashedHasher`].
pub type Prehashed = BuildHasherDefault<PrehashedHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_deduplicated_and_without_empty_values() {
        let l = Labels::new([("b", "2"), ("a", "1"), ("c", ""), ("b", "3")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.to_string(), r#"{a="1", b="3"}"#);
    }

    #[test]
    fn equality_and_hash_follow_content_not_construction() {
        let a = Labels::new([("x", "1"), ("y", "2")]);
        let mut m = BTreeMap::new();
        m.insert("y".to_string(), "2".to_string());
        m.insert("x".to_string(), "1".to_string());
        let b = Labels::from(&m);
        assert_eq!(a, b);
        assert_eq!(a.hash_value(), b.hash_value());
        assert_eq!(BTreeMap::from(&a), m);
        assert_ne!(a, Labels::new([("x", "1"), ("y", "3")]));
        assert_ne!(
            Labels::new([("a", "bc")]).hash_value(),
            Labels::new([("ab", "c")]).hash_value()
        );
    }

    #[test]
    fn order_is_prometheus_order() {
        let a = Labels::new([("a", "1")]);
        let b = Labels::new([("a", "1"), ("b", "1")]);
        let c = Labels::new([("a", "2")]);
        assert!(a < b && b < c);
    }

    #[test]
    fn drop_metric_name() {
        let l = Labels::new([(METRIC_NAME, "up"), ("job", "x")]);
        assert_eq!(l.metric_name(), Some("up"));
        assert_eq!(l.without_metric_name(), Labels::new([("job", "x")]));
    }
}
