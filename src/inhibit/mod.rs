//! Inhibition with Alertmanager's semantics: a firing alert matching a rule's source
//! matchers mutes every firing alert matching its target matchers whose `equal` labels
//! have the same values (a missing label counts as empty). An alert never inhibits
//! itself. Without `inhibit_rules` in the config, the default rule mutes a `warning`
//! while a `critical` with the same `alertname` and `instance` fires.
//!
//! The [`Inhibitor`] indexes the firing alerts that match any rule by the values of
//! their `equal` labels, so each change costs a few hash lookups, not a scan.

use std::collections::{BTreeSet, HashMap};

use crate::alerts::model::Labels;
use crate::config::InhibitRule as InhibitRuleConfig;
use crate::silence::matcher::{Matcher, all_match};

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// What an inhibiting alert matches.
    pub source: Vec<Matcher>,
    /// What an inhibited alert matches.
    pub target: Vec<Matcher>,
    /// Labels that must be equal in both.
    pub equal: Vec<String>,
}

/// The rules of the config, or the default rule when `inhibit_rules` is unset; an
/// invalid matcher is an error naming it (`inhibit_rules[0].source_matchers[1]: …`).
pub fn rules_from_config(cfg: Option<&[InhibitRuleConfig]>) -> Result<Vec<InhibitRule>, String> {
    let Some(cfg) = cfg else {
        return Ok(vec![default_rule()]);
    };
    let parse = |list: &[String], i: usize, field: &str| -> Result<Vec<Matcher>, String> {
        list.iter()
            .enumerate()
            .map(|(j, m)| {
                Matcher::parse(m).map_err(|e| format!("inhibit_rules[{i}].{field}[{j}]: {e}"))
            })
            .collect()
    };
    cfg.iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(InhibitRule {
                source: parse(&r.source_matchers, i, "source_matchers")?,
                target: parse(&r.target_matchers, i, "target_matchers")?,
                equal: r.equal.clone(),
            })
        })
        .collect()
}

/// `severity="critical"` inhibits `severity="warning"` with equal `alertname`, `instance`.
pub fn default_rule() -> InhibitRule {
    use crate::silence::matcher::MatchOp;
    InhibitRule {
        source: vec![Matcher::new("severity", MatchOp::Eq, "critical").expect("static matcher")],
        target: vec![Matcher::new("severity", MatchOp::Eq, "warning").expect("static matcher")],
        equal: vec!["alertname".into(), "instance".into()],
    }
}

type Key = Vec<String>;

/// Where one alert sits in the index.
#[derive(Debug, Clone, Default, PartialEq)]
struct Membership {
    source: Vec<(usize, Key)>,
    target: Vec<(usize, Key)>,
}

/// Index of firing alerts for inhibition.
#[derive(Debug, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    sources: Vec<HashMap<Key, BTreeSet<String>>>,
    targets: Vec<HashMap<Key, BTreeSet<String>>>,
    members: HashMap<String, Membership>,
}

impl Inhibitor {
    /// An empty index for `rules`.
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        let n = rules.len();
        Self {
            rules,
            sources: vec![HashMap::new(); n],
            targets: vec![HashMap::new(); n],
            members: HashMap::new(),
        }
    }

    /// Forgets every alert (before a rebuild).
    pub fn clear(&mut self) {
        let rules = std::mem::take(&mut self.rules);
        *self = Inhibitor::new(rules);
    }

    /// Records that alert `fp` fires with `labels` (`Some`) or does not (`None`).
    /// Returns the fingerprints whose inhibition may have changed: `fp` itself and the
    /// targets of any source set that changed.
    pub fn update(&mut self, fp: &str, labels: Option<&dyn Labels>) -> Vec<String> {
        let new = labels.map(|l| self.membership(l)).unwrap_or_default();
        let old = self.members.get(fp).cloned().unwrap_or_default();
        if old == new {
            return vec![fp.to_string()];
        }
        let mut affected: BTreeSet<String> = BTreeSet::new();
        affected.insert(fp.to_string());
        for (r, key) in &old.source {
            if let Some(set) = self.sources[*r].get_mut(key) {
                set.remove(fp);
                if set.is_empty() {
                    self.sources[*r].remove(key);
                }
            }
            if let Some(t) = self.targets[*r].get(key) {
                affected.extend(t.iter().cloned());
            }
        }
        for (r, key) in &old.target {
            if let Some(set) = self.targets[*r].get_mut(key) {
                set.remove(fp);
                if set.is_empty() {
                    self.targets[*r].remove(key);
                }
            }
        }
        for (r, key) in &new.source {
            self.sources[*r]
                .entry(key.clone())
                .or_default()
                .insert(fp.to_string());
            if let Some(t) = self.targets[*r].get(key) {
                affected.extend(t.iter().cloned());
            }
        }
        for (r, key) in &new.target {
            self.targets[*r]
                .entry(key.clone())
                .or_default()
                .insert(fp.to_string());
        }
        if new == Membership::default() {
            self.members.remove(fp);
        } else {
            self.members.insert(fp.to_string(), new);
        }
        affected.into_iter().collect()
    }

    /// The fingerprint of a firing alert inhibiting `fp`, if any.
    pub fn inhibitor_of(&self, fp: &str) -> Option<String> {
        let m = self.members.get(fp)?;
        m.target.iter().find_map(|(r, key)| {
            self.sources[*r]
                .get(key)?
                .iter()
                .find(|s| s.as_str() != fp)
                .cloned()
        })
    }

    /// How many firing alerts the index holds.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn membership(&self, labels: &dyn Labels) -> Membership {
        let mut m = Membership::default();
        for (r, rule) in self.rules.iter().enumerate() {
            let is_source = all_match(&rule.source, labels);
            let is_target = all_match(&rule.target, labels);
            if !is_source && !is_target {
                continue;
            }
            let key: Key = rule
                .equal
                .iter()
                .map(|l| labels.label(l).unwrap_or_default().to_string())
                .collect();
            if is_source {
                m.source.push((r, key.clone()));
            }
            if is_target {
                m.target.push((r, key));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::LabelSet;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_rule_inhibits_warning_under_critical() {
        let mut i = Inhibitor::new(vec![default_rule()]);
        let warn = labels(&[
            ("alertname", "Disk"),
            ("instance", "a"),
            ("severity", "warning"),
        ]);
        let other = labels(&[
            ("alertname", "Disk"),
            ("instance", "b"),
            ("severity", "warning"),
        ]);
        let crit = labels(&[
            ("alertname", "Disk"),
            ("instance", "a"),
            ("severity", "critical"),
        ]);
        i.update("w", Some(&warn as &dyn Labels));
        i.update("o", Some(&other as &dyn Labels));
        assert_eq!(i.inhibitor_of("w"), None);
        let affected = i.update("c", Some(&crit as &dyn Labels));
        assert!(affected.contains(&"w".to_string()), "{affected:?}");
        assert!(!affected.contains(&"o".to_string()));
        assert_eq!(i.inhibitor_of("w"), Some("c".into()));
        assert_eq!(i.inhibitor_of("o"), None, "different instance");
        assert_eq!(i.inhibitor_of("c"), None, "sources are not targets");
        // Repeating the source changes nothing.
        assert_eq!(
            i.update("c", Some(&crit as &dyn Labels)),
            vec!["c".to_string()]
        );
        let affected = i.update("c", None);
        assert!(affected.contains(&"w".to_string()));
        assert_eq!(i.inhibitor_of("w"), None);
        i.update("w", None);
        i.update("o", None);
        assert!(i.is_empty());
    }

    #[test]
    fn config_rules_and_errors() {
        let cfg = vec![InhibitRuleConfig {
            source_matchers: vec![r#"alertname="NodeDown""#.into()],
            target_matchers: vec![r#"alertname=~".+""#.into()],
            equal: vec!["instance".into()],
        }];
        let rules = rules_from_config(Some(&cfg)).unwrap();
        let mut i = Inhibitor::new(rules);
        let down = labels(&[("alertname", "NodeDown"), ("instance", "a")]);
        let cpu = labels(&[("alertname", "Cpu"), ("instance", "a")]);
        i.update("cpu", Some(&cpu as &dyn Labels));
        i.update("down", Some(&down as &dyn Labels));
        assert_eq!(i.inhibitor_of("cpu"), Some("down".into()));
        assert_eq!(i.inhibitor_of("down"), None, "never inhibits itself");
        let bad = vec![InhibitRuleConfig {
            source_matchers: vec![],
            target_matchers: vec!["a=~\"(\"".into()],
            equal: vec![],
        }];
        let e = rules_from_config(Some(&bad)).unwrap_err();
        assert!(e.starts_with("inhibit_rules[0].target_matchers[0]"), "{e}");
        assert_eq!(rules_from_config(Some(&[])).unwrap().len(), 0);
    }
}
