//! Silences with Alertmanager's semantics: a set of label matchers (equality or
//! anchored regex, negatable), a start and an end, who created it and why. An active
//! silence mutes every firing alert all of whose matchers match; the alert is still
//! stored and listed (`silenced: true`) but not notified. `DELETE` expires a silence.
//!
//! The JSON shape is Alertmanager's v2 silence: `{"id", "matchers": [{"name", "value",
//! "isRegex", "isEqual"}], "startsAt", "endsAt", "createdBy", "comment", "status":
//! {"state": "active"|"pending"|"expired"}, "updatedAt"}`.

pub mod matcher;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sqlx::Row;

pub use matcher::{MatchOp, Matcher, MatcherError, Matchers, all_match};

use crate::alerts::ingest::MAX_UNIX_SECONDS;
use crate::alerts::model::{Labels, rfc3339};
use crate::store::{Db, StoreError};

/// A silence's state at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Muting now.
    Active,
    /// Starts in the future.
    Pending,
    /// Ended.
    Expired,
}

impl SilenceState {
    /// `active`, `pending` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Active => "active",
            SilenceState::Pending => "pending",
            SilenceState::Expired => "expired",
        }
    }

    /// Parses a state name.
    pub fn parse(s: &str) -> Option<SilenceState> {
        match s {
            "active" => Some(SilenceState::Active),
            "pending" => Some(SilenceState::Pending),
            "expired" => Some(SilenceState::Expired),
            _ => None,
        }
    }
}

/// A matcher as Alertmanager's JSON has it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct MatcherJson {
    /// Label name.
    pub name: String,
    /// Value or regex.
    pub value: String,
    /// Regex match.
    #[serde(rename = "isRegex", default)]
    pub is_regex: bool,
    /// `true` for `=`/`=~`, `false` for `!=`/`!~` (default `true`).
    #[serde(rename = "isEqual", default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl From<&Matcher> for MatcherJson {
    fn from(m: &Matcher) -> Self {
        MatcherJson {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: m.op.is_regex(),
            is_equal: m.op.is_equal(),
        }
    }
}

impl TryFrom<&MatcherJson> for Matcher {
    type Error = MatcherError;
    fn try_from(j: &MatcherJson) -> Result<Self, Self::Error> {
        Matcher::new(
            j.name.as_str(),
            MatchOp::from_flags(j.is_regex, j.is_equal),
            j.value.as_str(),
        )
    }
}

/// A silence as posted (`POST /api/v1/silences`, `POST /api/v2/silences`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostableSilence {
    /// Set to update an existing silence.
    #[serde(default)]
    pub id: Option<String>,
    /// At least one matcher.
    pub matchers: Vec<MatcherJson>,
    /// RFC 3339; default now.
    #[serde(rename = "startsAt", default)]
    pub starts_at: Option<String>,
    /// RFC 3339, after `startsAt` and in the future.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// Who; defaults to the caller.
    #[serde(rename = "createdBy", default)]
    pub created_by: Option<String>,
    /// Why.
    #[serde(default)]
    pub comment: Option<String>,
    /// Ignored (Alertmanager's GET shape may be posted back).
    #[serde(default)]
    pub status: Option<serde_json::Value>,
    /// Ignored.
    #[serde(rename = "updatedAt", default)]
    pub updated_at: Option<String>,
}

/// A silence.
#[derive(Debug, Clone)]
pub struct Silence {
    /// UUID.
    pub id: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Start (Unix ms).
    pub starts_at_ms: i64,
    /// End (Unix ms).
    pub ends_at_ms: i64,
    /// Creator.
    pub created_by: String,
    /// Comment.
    pub comment: String,
    /// Last change (Unix ms).
    pub updated_ms: i64,
}

/// A silence that cannot be accepted; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SilenceError(pub String);

impl Silence {
    /// Its state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if self.ends_at_ms <= now_ms {
            SilenceState::Expired
        } else if self.starts_at_ms > now_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether all matchers match `labels` (regardless of time).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        all_match(&self.matchers, labels)
    }

    /// Alertmanager's gettable silence.
    pub fn to_json(&self, now_ms: i64) -> serde_json::Value {
        let matchers: Vec<MatcherJson> = self.matchers.iter().map(MatcherJson::from).collect();
        serde_json::json!({
            "id": self.id,
            "matchers": matchers,
            "startsAt": rfc3339(self.starts_at_ms),
            "endsAt": rfc3339(self.ends_at_ms),
            "createdBy": self.created_by,
            "comment": self.comment,
            "status": {"state": self.state(now_ms).as_str()},
            "updatedAt": rfc3339(self.updated_ms),
        })
    }

    /// Validates a posted silence the way Alertmanager does; errors name the field
    /// (`matchers[1]`, `endsAt`, …).
    pub fn from_postable(
        p: &PostableSilence,
        default_creator: &str,
        now_ms: i64,
    ) -> Result<Silence, SilenceError> {
        if p.matchers.is_empty() {
            return Err(SilenceError(
                "matchers: at least one matcher is required".into(),
            ));
        }
        let mut matchers = Vec::with_capacity(p.matchers.len());
        for (i, m) in p.matchers.iter().enumerate() {
            let op = MatchOp::from_flags(m.is_regex, m.is_equal);
            let built = Matcher::new(&m.name, op, &m.value)
                .map_err(|e| SilenceError(format!("matchers[{i}] ({}): {e}", m.name)))?;
            matchers.push(built);
        }
        if matchers.iter().all(|m| m.matches_value("")) {
            return Err(SilenceError(
                "matchers: at least one matcher must not match the empty string (this silence would mute every alert)"
                    .into(),
            ));
        }
        let starts_at_ms = match &p.starts_at {
            Some(s) if !s.is_empty() => parse_time(s, "startsAt")?,
            _ => now_ms,
        };
        let ends_at_ms = parse_time(&p.ends_at, "endsAt")?;
        if ends_at_ms <= starts_at_ms {
            return Err(SilenceError("endsAt: must be after startsAt".into()));
        }
        if ends_at_ms <= now_ms {
            return Err(SilenceError("endsAt: must be in the future".into()));
        }
        let created_by = p
            .created_by
            .clone()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| default_creator.to_string());
        Ok(Silence {
            id: p.id.clone().unwrap_or_default(),
            matchers,
            // A silence never starts in the past of its creation (Alertmanager).
            starts_at_ms: starts_at_ms.max(now_ms),
            ends_at_ms,
            created_by,
            comment: p.comment.clone().unwrap_or_default(),
            updated_ms: now_ms,
        })
    }
}

/// An RFC 3339 time as Unix ms, at most the end of 9999 (the last time RFC 3339 can
/// write, so the silence can be written back; a negative offset could pass it).
fn parse_time(s: &str, field: &str) -> Result<i64, SilenceError> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| SilenceError(format!("{field}: {s:?} is not an RFC 3339 time: {e}")))?;
    if t.timestamp() > MAX_UNIX_SECONDS {
        return Err(SilenceError(format!(
            "{field}: {s:?} is after 9999-12-31T23:59:59Z, the latest time accepted"
        )));
    }
    Ok(t.timestamp_millis())
}

/// A new silence id (UUID v4 format).
pub fn new_id() -> String {
    let v: u128 = rand::random();
    let v = (v & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The silences the pipeline applies: everything not yet expired.
#[derive(Debug, Clone, Default)]
pub struct SilenceSet {
    silences: Vec<Silence>,
}

impl SilenceSet {
    /// A set over `silences`.
    pub fn new(silences: Vec<Silence>) -> Self {
        Self { silences }
    }

    /// Ids of the silences active at `now_ms` that match `labels`, sorted.
    pub fn muting<L: Labels + ?Sized>(&self, labels: &L, now_ms: i64) -> Vec<String> {
        if self.silences.is_empty() {
            return Vec::new();
        }
        let mut ids: Vec<String> = self
            .silences
            .iter()
            .filter(|s| s.state(now_ms) == SilenceState::Active && s.matches(labels))
            .map(|s| s.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Ids of the silences active at `now_ms`.
    pub fn active_ids(&self, now_ms: i64) -> BTreeSet<String> {
        self.silences
            .iter()
            .filter(|s| s.state(now_ms) == SilenceState::Active)
            .map(|s| s.id.clone())
            .collect()
    }

    /// Whether nothing can mute at any time from now.
    pub fn is_empty(&self) -> bool {
        self.silences.is_empty()
    }
}

const COLUMNS: &str = "id, matchers, starts_at_ms, ends_at_ms, created_by, comment, updated_ms";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Silence, StoreError> {
    let matchers_json: String = row.try_get("matchers")?;
    let specs: Vec<MatcherJson> = serde_json::from_str(&matchers_json).unwrap_or_default();
    let matchers = specs
        .iter()
        .filter_map(|m| {
            Matcher::new(
                &m.name,
                MatchOp::from_flags(m.is_regex, m.is_equal),
                &m.value,
            )
            .ok()
        })
        .collect();
    Ok(Silence {
        id: row.try_get("id")?,
        matchers,
        starts_at_ms: row.try_get("starts_at_ms")?,
        ends_at_ms: row.try_get("ends_at_ms")?,
        created_by: row.try_get("created_by")?,
        comment: row.try_get("comment")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

/// Stores `s` (insert, or replace when its id exists).
pub async fn save(db: &Db, s: &Silence) -> Result<(), StoreError> {
    let matchers: Vec<MatcherJson> = s.matchers.iter().map(MatcherJson::from).collect();
    let matchers = serde_json::to_string(&matchers).unwrap_or_else(|_| "[]".into());
    let sql = "INSERT INTO silences (id, matchers, starts_at_ms, ends_at_ms, created_by, comment, updated_ms) \
               VALUES ($1, $2, $3, $4, $5, $6, $7) \
               ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, starts_at_ms = excluded.starts_at_ms, \
               ends_at_ms = excluded.ends_at_ms, created_by = excluded.created_by, comment = excluded.comment, \
               updated_ms = excluded.updated_ms";
    db.timed("silences.save", async {
        sqlx::query(sql)
            .bind(&s.id)
            .bind(matchers)
            .bind(s.starts_at_ms)
            .bind(s.ends_at_ms)
            .bind(&s.created_by)
            .bind(&s.comment)
            .bind(s.updated_ms)
            .execute(db.pool())
            .await
            .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}

/// One silence.
pub async fn get(db: &Db, id: &str) -> Result<Option<Silence>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM silences WHERE id = $1");
    let row = db
        .timed("silences.get", async {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every silence, newest first.
pub async fn list(db: &Db) -> Result<Vec<Silence>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM silences ORDER BY updated_ms DESC, id");
    let rows = db
        .timed("silences.list", async {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// Silences that have not ended by `now_ms` (what the pipeline applies).
pub async fn unexpired(db: &Db, now_ms: i64) -> Result<Vec<Silence>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM silences WHERE ends_at_ms > $1");
    let rows = db
        .timed("silences.unexpired", async {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now_ms)
                .fetch_all(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes silences that ended before `cutoff_ms` (retention).
pub async fn delete_ended_before(db: &Db, cutoff_ms: i64) -> Result<u64, StoreError> {
    let r = db
        .timed("silences.retention", async {
            sqlx::query("DELETE FROM silences WHERE ends_at_ms < $1")
                .bind(cutoff_ms)
                .execute(db.pool())
                .await
                .map_err(StoreError::from)
        })
        .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::LabelSet;

    fn postable(matchers: serde_json::Value, ends: &str) -> PostableSilence {
        serde_json::from_value(serde_json::json!({
            "matchers": matchers, "endsAt": ends, "createdBy": "ann", "comment": "deploy"
        }))
        .unwrap()
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn json_shape_round_trips() {
        let m = Matcher::parse(r#"job!~"x.*""#).unwrap();
        let j = MatcherJson::from(&m);
        assert!(j.is_regex && !j.is_equal);
        assert_eq!(
            serde_json::to_value(&j).unwrap(),
            serde_json::json!({"name": "job", "value": "x.*", "isRegex": true, "isEqual": false})
        );
        assert_eq!(Matcher::try_from(&j).unwrap(), m);
        let j: MatcherJson =
            serde_json::from_value(serde_json::json!({"name": "a", "value": "b"})).unwrap();
        assert_eq!(Matcher::try_from(&j).unwrap().to_string(), r#"a="b""#);
    }

    #[test]
    fn validation_names_the_field() {
        let p = postable(
            serde_json::json!([{"name": "a", "value": "x"}, {"name": "b", "value": "(", "isRegex": true}]),
            "2099-01-01T00:00:00Z",
        );
        let e = Silence::from_postable(&p, "op", NOW).unwrap_err().0;
        assert!(e.starts_with("matchers[1] (b)"), "{e}");
        let p = postable(serde_json::json!([]), "2099-01-01T00:00:00Z");
        assert!(
            Silence::from_postable(&p, "op", NOW)
                .unwrap_err()
                .0
                .contains("matchers")
        );
        let p = postable(
            serde_json::json!([{"name": "a", "value": ".*", "isRegex": true}]),
            "2099-01-01T00:00:00Z",
        );
        assert!(
            Silence::from_postable(&p, "op", NOW)
                .unwrap_err()
                .0
                .contains("empty string")
        );
        let p = postable(
            serde_json::json!([{"name": "a", "value": "x"}]),
            "2001-01-01T00:00:00Z",
        );
        assert!(
            Silence::from_postable(&p, "op", NOW)
                .unwrap_err()
                .0
                .starts_with("endsAt")
        );
        let p = postable(serde_json::json!([{"name": "a", "value": "x"}]), "soon");
        assert!(
            Silence::from_postable(&p, "op", NOW)
                .unwrap_err()
                .0
                .starts_with("endsAt")
        );
    }

    #[test]
    fn extreme_times() {
        let m = serde_json::json!([{"name": "a", "value": "x"}]);
        // From the first to the last time RFC 3339 writes: accepted, written back as is.
        let mut p = postable(m.clone(), "9999-12-31T23:59:59Z");
        p.starts_at = Some("0000-01-01T00:00:00Z".into());
        let s = Silence::from_postable(&p, "op", NOW).unwrap();
        assert_eq!(
            (s.starts_at_ms, s.ends_at_ms),
            (NOW, MAX_UNIX_SECONDS * 1000)
        );
        assert_eq!(s.to_json(NOW)["endsAt"], "9999-12-31T23:59:59.000Z");
        assert_eq!(s.state(i64::MAX), SilenceState::Expired);
        assert_eq!(s.state(i64::MIN), SilenceState::Pending);
        for (field, starts, ends) in [
            ("endsAt", None, "9999-12-31T23:59:59-00:01"),
            ("endsAt", None, "10000-01-01T00:00:00Z"),
            (
                "startsAt",
                Some("9999-12-31T23:00:00-05:00"),
                "9999-12-31T23:59:59Z",
            ),
        ] {
            let mut p = postable(m.clone(), ends);
            p.starts_at = starts.map(str::to_string);
            let e = Silence::from_postable(&p, "op", NOW).unwrap_err().0;
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn states_and_muting() {
        let p = postable(
            serde_json::json!([{"name": "instance", "value": "web-.*", "isRegex": true}]),
            "2099-01-01T00:00:00Z",
        );
        let mut s = Silence::from_postable(&p, "op", NOW).unwrap();
        s.id = new_id();
        assert_eq!(s.state(NOW), SilenceState::Active);
        assert_eq!(s.created_by, "ann");
        let set = SilenceSet::new(vec![s.clone()]);
        let web: LabelSet = [("instance".to_string(), "web-1".to_string())].into();
        let db: LabelSet = [("instance".to_string(), "db-1".to_string())].into();
        assert_eq!(set.muting(&web, NOW), vec![s.id.clone()]);
        assert!(set.muting(&db, NOW).is_empty());
        assert!(set.muting(&web, s.ends_at_ms).is_empty(), "expired");
        let mut pending = s.clone();
        pending.starts_at_ms = NOW + 1000;
        assert_eq!(pending.state(NOW), SilenceState::Pending);
        assert_eq!(s.to_json(NOW)["status"]["state"], "active");
        assert_eq!(s.to_json(NOW)["matchers"][0]["isRegex"], true);
    }

    #[test]
    fn ids_look_like_uuids() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_id());
    }
}
