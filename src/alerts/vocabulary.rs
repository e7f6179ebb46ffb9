//! The classifier's vocabulary as data: `vocabulary.toml` (built in), extended or
//! replaced by `classify.vocabulary_file`. Words are matched after splitting CamelCase
//! and snake_case, lower-casing and folding plurals ([`stem`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use serde::Deserialize;

use super::classify::TYPES;

/// The built-in vocabulary's text.
pub const BUILTIN: &str = include_str!("vocabulary.toml");

/// A vocabulary file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VocabularyError {
    /// Unreadable file.
    #[error("classify.vocabulary_file: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not the expected TOML.
    #[error("classify.vocabulary_file: {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// What a vocabulary entry says about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Names the type `TYPES[i]`.
    Type(usize),
    /// Says it is critical now.
    Critical,
    /// Says it needs attention.
    Warning,
    /// Says it is for information.
    Info,
    /// Says a critical condition is only coming ("almost", "predicted").
    Soon,
}

/// How much the field a word was found in counts.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// The alert name.
    pub alertname: u32,
    /// The `job`, `service`, `component`, … labels.
    pub labels: u32,
    /// The summary (or message).
    pub summary: u32,
    /// The description.
    pub description: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    #[serde(default)]
    replace: bool,
    fields: Option<Fields>,
    #[serde(default)]
    types: BTreeMap<String, TypeDef>,
    #[serde(default)]
    severity: BTreeMap<String, WordsDef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeDef {
    /// Weight of `words` (default 1).
    word_weight: Option<u32>,
    #[serde(default)]
    products: Vec<String>,
    #[serde(default)]
    words: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WordsDef {
    #[serde(default)]
    words: Vec<String>,
}

/// One entry: its words (stemmed), as written, what it says and its weight.
#[derive(Debug, Clone)]
pub struct Entry {
    stems: Vec<String>,
    /// The entry as written in the vocabulary.
    pub term: String,
    /// What it says.
    pub class: Class,
    /// Products 4, words 1 (or their type's `word_weight`).
    pub weight: u32,
}

/// A loaded vocabulary: entries indexed by their first stemmed word.
#[derive(Debug)]
pub struct Vocabulary {
    /// Field weights.
    pub fields: Fields,
    index: HashMap<String, Vec<Entry>>,
}

/// Weight of a product name (a technology names the type strongly).
const PRODUCT_WEIGHT: u32 = 4;

impl Vocabulary {
    /// The built-in vocabulary.
    pub fn builtin() -> Vocabulary {
        match Self::parse(BUILTIN, None) {
            Ok(v) => v,
            // The built-in text is tested; an empty vocabulary is the safe fallback.
            Err(e) => {
                tracing::error!(error = %e, "built-in vocabulary invalid");
                Vocabulary {
                    fields: Fields {
                        alertname: 3,
                        labels: 2,
                        summary: 2,
                        description: 1,
                    },
                    index: HashMap::new(),
                }
            }
        }
    }

    /// The built-in vocabulary extended (or replaced) by the file at `path`.
    pub fn load(path: &Path) -> Result<Vocabulary, VocabularyError> {
        let text = std::fs::read_to_string(path).map_err(|source| VocabularyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let user: FileDef = toml::from_str(&text).map_err(|e| VocabularyError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(BUILTIN, Some(user)).map_err(|message| VocabularyError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    fn parse(builtin: &str, user: Option<FileDef>) -> Result<Vocabulary, String> {
        let base: FileDef = toml::from_str(builtin).map_err(|e| e.to_string())?;
        let mut defs = vec![];
        match user {
            Some(u) if u.replace => defs.push(u),
            Some(u) => {
                defs.push(base);
                defs.push(u);
            }
            None => defs.push(base),
        }
        let mut fields = None;
        let mut index: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut add = |term: &str, class: Class, weight: u32| {
            let stems = words(term);
            if let Some(first) = stems.first().cloned() {
                index.entry(first).or_default().push(Entry {
                    stems,
                    term: term.to_string(),
                    class,
                    weight,
                });
            }
        };
        for def in defs {
            fields = def.fields.or(fields);
            for (name, t) in &def.types {
                let i = TYPES
                    .iter()
                    .position(|k| k == name)
                    .or_else(|| (name == super::classify::OTHER).then_some(usize::MAX));
                let Some(i) = i else {
                    return Err(format!(
                        "types.{name}: unknown type (expected one of {}, other)",
                        TYPES.join(", ")
                    ));
                };
                if i == usize::MAX {
                    continue;
                }
                for p in &t.products {
                    add(p, Class::Type(i), PRODUCT_WEIGHT);
                }
                for w in &t.words {
                    add(w, Class::Type(i), t.word_weight.unwrap_or(1));
                }
            }
            for (name, w) in &def.severity {
                let class = match name.as_str() {
                    "critical" => Class::Critical,
                    "warning" => Class::Warning,
                    "info" => Class::Info,
                    "soon" => Class::Soon,
                    other => {
                        return Err(format!(
                            "severity.{other}: unknown (expected critical, warning, info, soon)"
                        ));
                    }
                };
                for t in &w.words {
                    add(t, class, 1);
                }
            }
        }
        let fields = fields.ok_or("fields: missing (alertname, labels, summary, description)")?;
        Ok(Vocabulary { fields, index })
    }

    /// Every entry occurring in `stems` (each once). A one-word entry also matches
    /// two or three words run together, as CamelCase splits product names
    /// (`MySQL` → `my sql` is `mysql`, `RabbitMQ` → `rabbit mq`).
    pub fn hits<'a>(&'a self, stems: &[String]) -> Vec<&'a Entry> {
        let mut out: Vec<&Entry> = Vec::new();
        let mut push = |e: &'a Entry| {
            if !out.iter().any(|o| std::ptr::eq(*o, e)) {
                out.push(e);
            }
        };
        let mut joined = String::new();
        for (i, w) in stems.iter().enumerate() {
            for e in self.index.get(w).into_iter().flatten() {
                let n = e.stems.len();
                if stems.get(i..i + n).is_some_and(|s| s == e.stems.as_slice()) {
                    push(e);
                }
            }
            joined.clear();
            joined.push_str(w);
            for next in stems.iter().skip(i + 1).take(2) {
                joined.push_str(next);
                let one_word = self.index.get(joined.as_str()).into_iter().flatten();
                for e in one_word.filter(|e| e.stems.len() == 1) {
                    push(e);
                }
            }
        }
        out
    }
}

/// Problems of `classify.vocabulary_file` (unreadable, not TOML, unknown type).
pub fn validate(config: &crate::config::Config) -> Vec<String> {
    match &config.classify.vocabulary_file {
        Some(p) => Vocabulary::load(p)
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}

fn active_cell() -> &'static RwLock<Arc<Vocabulary>> {
    static ACTIVE: OnceLock<RwLock<Arc<Vocabulary>>> = OnceLock::new();
    ACTIVE.get_or_init(|| RwLock::new(Arc::new(Vocabulary::builtin())))
}

/// The vocabulary in use.
pub fn active() -> Arc<Vocabulary> {
    active_cell()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Uses `v` from now on (at start, from `classify.vocabulary_file`).
pub fn set_active(v: Vocabulary) {
    *active_cell().write().unwrap_or_else(|p| p.into_inner()) = Arc::new(v);
    super::classify::clear_cache();
}

/// The words of `text`: split at non-alphanumerics and CamelCase humps, lower-cased,
/// plurals folded.
pub fn words(text: &str) -> Vec<String> {
    let mut spaced = String::new();
    super::classify::push_words(text, &mut spaced);
    spaced
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(stem)
        .collect()
}

/// Folds an English plural: `queries` → `query`, `connections` → `connection`,
/// `addresses` → `address`; short words and `-ss`, `-us`, `-is` endings stay.
pub fn stem(w: &str) -> String {
    let n = w.len();
    if n <= 3 || !w.is_ascii() {
        return w.to_string();
    }
    if let Some(b) = w.strip_suffix("ies").filter(|_| n > 4) {
        return format!("{b}y");
    }
    if let Some(b) = w.strip_suffix("sses") {
        return format!("{b}ss");
    }
    if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        return w[..n - 1].to_string();
    }
    w.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_folds_plurals() {
        let v = Vocabulary::parse(BUILTIN, None).unwrap();
        assert!(v.index.len() > 300, "{}", v.index.len());
        assert_eq!(
            words("PostgresqlTooManyConnections"),
            ["postgresql", "too", "many", "connection"]
        );
        assert_eq!(stem("queries"), "query");
        assert_eq!(stem("redis"), "redis");
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("dns"), "dns");
        let hits = v.hits(&words("Too many connections on PostgreSQL replicas"));
        let terms: Vec<&str> = hits.iter().map(|e| e.term.as_str()).collect();
        assert!(terms.contains(&"postgresql"), "joined CamelCase: {terms:?}");
        let mysql = v.hits(&words("MySQL restarted"));
        assert!(mysql.iter().any(|e| e.term == "mysql"), "{mysql:?}");
        assert!(terms.contains(&"too many"), "{terms:?}");
        assert!(terms.contains(&"replica"), "{terms:?}");
    }

    #[test]
    fn user_files_extend_or_replace_and_bad_ones_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.toml");
        std::fs::write(&p, "[types.database]\nproducts = [\"acmedb\"]\n").unwrap();
        let v = Vocabulary::load(&p).unwrap();
        assert!(!v.hits(&words("acmedb down")).is_empty());
        assert!(!v.hits(&words("postgres")).is_empty(), "built-in kept");
        std::fs::write(
            &p,
            "replace = true\n[fields]\nalertname = 1\nlabels = 1\nsummary = 1\ndescription = 1\n[types.network]\nwords = [\"acme\"]\n",
        )
        .unwrap();
        let v = Vocabulary::load(&p).unwrap();
        assert!(v.hits(&words("postgres")).is_empty(), "replaced");
        std::fs::write(&p, "[types.storage]\nwords = [\"x\"]\n").unwrap();
        let e = Vocabulary::load(&p).unwrap_err().to_string();
        assert!(e.contains("types.storage"), "{e}");
        std::fs::write(&p, "[severity.urgent]\nwords = [\"x\"]\n").unwrap();
        let e = Vocabulary::load(&p).unwrap_err().to_string();
        assert!(e.contains("severity.urgent"), "{e}");
    }
}
