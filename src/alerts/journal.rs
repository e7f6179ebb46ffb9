//! The receipt journal: a write-ahead log for receipts that only refresh a firing alert
//! (count, last seen, `ends_at`, rate, risk).
//!
//! Prometheus resends every firing alert on each evaluation, so most receipts are such
//! repeats. Writing each into the database would update a row and all its indexes per
//! receipt; instead the writer appends a fixed 64-byte record per repeat to this journal,
//! `fdatasync`s once per batch (group commit) and answers. It writes the latest state of
//! each repeated alert to the database on a checkpoint (every
//! `alerts.checkpoint_interval`, before any read that needs it, and at shutdown).
//!
//! * Files (segments) are `<db>-<pid>-<nanos>.jnl`, each held under an exclusive lock
//!   (`flock`) while its process lives, so several processes (or several services in one
//!   process) can share the directory. A checkpoint starts a new segment ([`Journal::rotate`])
//!   and, once its rows are committed, deletes the sealed ones ([`Journal::release`]);
//!   appends go on meanwhile.
//! * At start, files of the same database whose lock is free belong to a process that
//!   died: their records are replayed into the database, then the files are removed.
//! * A record is `id, added, last_seen, ends_at, starts_at, risk` as little-endian i64,
//!   the rate as f64 and a CRC-32 of the rest; replay stops at the first torn record.
//!   `added` is the receipts the record counts: several nodes add to one alert's count,
//!   so counts travel as increments, never as totals.
//! * Increments are not idempotent: a checkpoint lists the segments it covers in
//!   `journal_applied` in its own transaction, and replay skips a listed segment.
//!   Files of the older format (`.wal`, totals) are replayed as totals.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::model::{Alert, AlertState};

/// Bytes of one record.
const RECORD: usize = 64;
/// Bytes of a record's payload (before its CRC).
const PAYLOAD: usize = 56;
/// Segment files (increments).
const EXT: &str = "jnl";
/// Segment files of the older format (totals).
const LEGACY_EXT: &str = "wal";
/// `ends_at` absent.
const NONE: i64 = i64::MIN;

/// The volatile fields of a firing alert, as a repeat leaves them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refresh {
    /// Alert id.
    pub id: i64,
    /// Receipts counted since the alert was last written or journaled.
    pub added: i64,
    /// Last receipt (Unix ms).
    pub last_seen_ms: i64,
    /// When it resolves unless refreshed.
    pub ends_at_ms: Option<i64>,
    /// Start of the incident.
    pub starts_at_ms: i64,
    /// Risk score.
    pub risk_score: i64,
    /// Receipts per hour, decayed.
    pub recent_rate: f64,
}

impl Refresh {
    /// The volatile fields of `a`, which counted `a.count - base_count` receipts.
    pub fn of(a: &Alert, base_count: i64) -> Refresh {
        Refresh {
            id: a.id,
            added: a.count - base_count,
            last_seen_ms: a.last_seen_ms,
            ends_at_ms: a.ends_at_ms,
            starts_at_ms: a.starts_at_ms,
            risk_score: a.risk_score,
            recent_rate: a.storable_rate(),
        }
    }

    /// Adds this record's receipts to `a` (a row read from the database, which does not
    /// hold them yet) and its fields when they are newer than the row's.
    pub fn apply_to(&self, a: &mut Alert) {
        if a.id != self.id {
            return;
        }
        a.count += self.added;
        if a.state == AlertState::Firing && self.last_seen_ms >= a.last_seen_ms {
            a.last_seen_ms = self.last_seen_ms;
            a.ends_at_ms = self.ends_at_ms;
            a.starts_at_ms = self.starts_at_ms;
            a.risk_score = self.risk_score;
            a.recent_rate = self.recent_rate;
        }
    }

    /// Folds a later record of the same alert into this one.
    pub fn absorb(&mut self, later: &Refresh) {
        self.added += later.added;
        if later.last_seen_ms >= self.last_seen_ms {
            let added = self.added;
            *self = *later;
            self.added = added;
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        for v in [
            self.id,
            self.added,
            self.last_seen_ms,
            self.ends_at_ms.unwrap_or(NONE),
            self.starts_at_ms,
            self.risk_score,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.recent_rate.to_le_bytes());
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&[0; RECORD - PAYLOAD - 4]);
    }

    fn decode(rec: &[u8]) -> Option<Refresh> {
        let payload = rec.get(..PAYLOAD)?;
        let crc = u32::from_le_bytes(rec.get(PAYLOAD..PAYLOAD + 4)?.try_into().ok()?);
        if crc32fast::hash(payload) != crc {
            return None;
        }
        let word = |i: usize| {
            let b: [u8; 8] = payload[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]);
            b
        };
        let int = |i| i64::from_le_bytes(word(i));
        Some(Refresh {
            id: int(0),
            added: int(1),
            last_seen_ms: int(2),
            ends_at_ms: Some(int(3)).filter(|v| *v != NONE),
            starts_at_ms: int(4),
            risk_score: int(5),
            recent_rate: f64::from_le_bytes(word(6)),
        })
    }
}

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The directory or a file could not be used.
    #[error("receipt journal {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One locked journal file.
struct Segment {
    path: PathBuf,
    file: File,
    /// Order of sealing (0 until sealed).
    seq: u64,
    /// Bytes of whole records written.
    len: u64,
}

/// This process's journal: the segment appended to, the sealed segments awaiting a
/// checkpoint, and the files of dead processes awaiting replay.
pub struct Journal {
    dir: PathBuf,
    key: String,
    current: Arc<Mutex<Segment>>,
    sealed: Mutex<Vec<Segment>>,
    orphans: Mutex<Vec<Segment>>,
    sealed_count: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates a new locked segment in `dir`.
fn new_segment(dir: &Path, key: &str) -> Result<Segment, JournalError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{key}-{}-{nanos}", std::process::id());
    // Created and locked under a name no other process looks at, then renamed: a
    // starting process never mistakes a segment being created for an orphan.
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(format!("{name}.{EXT}"));
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.try_lock().map_err(|e| JournalError::Io {
        path: tmp.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    // The new name must survive a power loss too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(Segment {
        path,
        file,
        seq: 0,
        len: 0,
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A short stable name for a database URL (journal files of one database share it).
pub fn database_key(url: &str) -> String {
    format!("{:08x}", crc32fast::hash(url.as_bytes()))
}

impl Journal {
    /// Creates `dir` if needed and this process's locked file in it, and takes the
    /// files of `key` that no live process holds (see [`Journal::orphaned`]).
    pub fn open(dir: &Path, key: &str) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let orphans = Self::claim_orphans(dir, key)?;
        let current = new_segment(dir, key)?;
        tracing::debug!(path = %current.path.display(), orphans = orphans.len(), "receipt journal opened");
        Ok(Journal {
            dir: dir.to_path_buf(),
            key: key.to_string(),
            current: Arc::new(Mutex::new(current)),
            sealed: Mutex::new(Vec::new()),
            orphans: Mutex::new(orphans),
            sealed_count: Default::default(),
        })
    }

    /// Files of `key` in `dir` whose lock is free, locked now by us.
    fn claim_orphans(dir: &Path, key: &str) -> Result<Vec<Segment>, JournalError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let orphan =
                name.ends_with(&format!(".{EXT}")) || name.ends_with(&format!(".{LEGACY_EXT}"));
            if !name.starts_with(key) || !(orphan || name.ends_with(".tmp")) {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            if file.try_lock().is_err() {
                continue;
            }
            if !orphan {
                // Left by a process that died creating a segment: empty.
                let _ = remove_file(&path);
            } else {
                out.push(Segment {
                    path,
                    file,
                    seq: 0,
                    len: 0,
                });
            }
        }
        Ok(out)
    }

    /// The records in the files of dead processes: per segment (by file name) the
    /// increments of the current format, and the totals of older-format files.
    pub fn orphaned(&self) -> Orphans {
        let mut orphans = guard(&self.orphans);
        let mut out = Orphans::default();
        let mut totals = std::collections::HashMap::new();
        for Segment { path, file, .. } in orphans.iter_mut() {
            let mut bytes = Vec::new();
            if let Err(e) = file.read_to_end(&mut bytes) {
                tracing::warn!(path = %path.display(), error = %e, "cannot read an orphaned receipt journal");
                continue;
            }
            let records = decode_all(&bytes);
            tracing::info!(path = %path.display(), records = records.len(), "replaying the receipt journal of a stopped process");
            if path.extension().is_some_and(|e| e == LEGACY_EXT) {
                for r in records {
                    match totals.get(&r.id) {
                        Some(Refresh { added, .. }) if *added >= r.added => {}
                        _ => {
                            totals.insert(r.id, r);
                        }
                    }
                }
            } else {
                out.segments.push((file_name(path), records));
            }
        }
        out.totals = totals.into_values().collect();
        out
    }

    /// Removes the files of dead processes (after their records are committed);
    /// returns the names of those removed.
    pub fn remove_orphans(&self) -> Vec<String> {
        remove(guard(&self.orphans).drain(..))
    }

    /// Appends `records` and waits until they are on disk.
    pub async fn append(&self, records: &[Refresh]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * RECORD);
        for r in records {
            r.encode(&mut buf);
        }
        let current = self.current.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut seg = guard(&current);
            let written = seg
                .file
                .write_all(&buf)
                .and_then(|()| seg.file.sync_data());
            match written {
                Ok(()) => seg.len += buf.len() as u64,
                // Cut a partial record off, so later records stay readable at replay.
                Err(_) => {
                    let len = seg.len;
                    if let Err(e) = seg.file.set_len(len) {
                        tracing::error!(path = %seg.path.display(), error = %e, "cannot cut a failed append off the receipt journal");
                    }
                }
            }
            written
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(io_err(&dir))
    }

    /// Seals the current segment and starts a new one; returns the sealed segment's
    /// number (pass it to [`Journal::release`] once its records are committed).
    /// An empty current segment is kept (the number returned is then the last sealed).
    pub fn rotate(&self) -> Result<u64, JournalError> {
        if guard(&self.current).len == 0 {
            return Ok(self.sealed_count.load(std::sync::atomic::Ordering::Relaxed));
        }
        let fresh = new_segment(&self.dir, &self.key)?;
        let mut old = std::mem::replace(&mut *guard(&self.current), fresh);
        old.seq = 1 + self
            .sealed_count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seq = old.seq;
        guard(&self.sealed).push(old);
        Ok(seq)
    }

    /// The file names of the sealed segments up to number `upto` (what a checkpoint
    /// of that number covers).
    pub fn sealed_names(&self, upto: u64) -> Vec<String> {
        guard(&self.sealed)
            .iter()
            .filter(|s| s.seq <= upto)
            .map(|s| file_name(&s.path))
            .collect()
    }

    /// Deletes the sealed segments up to number `upto` (their records are committed);
    /// returns the names of those removed.
    pub fn release(&self, upto: u64) -> Vec<String> {
        let mut sealed = guard(&self.sealed);
        let (done, keep): (Vec<Segment>, Vec<Segment>) =
            sealed.drain(..).partition(|s| s.seq <= upto);
        *sealed = keep;
        drop(sealed);
        remove(done.into_iter())
    }

    /// Removes this process's files (at a clean shutdown, after a final checkpoint).
    pub fn close(&self) {
        let _ = remove(guard(&self.sealed).drain(..));
        let seg = guard(&self.current);
        let _ = remove_file(&seg.path);
    }

    /// The segment appended to now.
    pub fn path(&self) -> PathBuf {
        guard(&self.current).path.clone()
    }
}

/// Removes the segments' files; returns the names of those removed.
fn remove(segments: impl Iterator<Item = Segment>) -> Vec<String> {
    segments
        .filter(|seg| remove_file(&seg.path))
        .map(|seg| file_name(&seg.path))
        .collect()
}

fn remove_file(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a receipt journal file");
            false
        }
    }
}

/// Every intact record of a file, in order, up to the first torn or corrupt one.
fn decode_all(bytes: &[u8]) -> Vec<Refresh> {
    bytes
        .chunks(RECORD)
        .map_while(|c| (c.len() == RECORD).then(|| Refresh::decode(c)).flatten())
        .collect()
}

/// A segment's file name (its identity in `journal_applied`).
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One record per alert: the increments of `records` summed, the latest fields.
pub fn merge(records: impl IntoIterator<Item = Refresh>) -> Vec<Refresh> {
    let mut by_id: std::collections::HashMap<i64, Refresh> = std::collections::HashMap::new();
    for r in records {
        match by_id.get_mut(&r.id) {
            Some(old) => old.absorb(&r),
            None => {
                by_id.insert(r.id, r);
            }
        }
    }
    by_id.into_values().collect()
}

/// What dead processes left in the journal directory.
#[derive(Debug, Default)]
pub struct Orphans {
    /// Per segment file name, its records (increments).
    pub segments: Vec<(String, Vec<Refresh>)>,
    /// The latest record per alert of older-format files (totals).
    pub totals: Vec<Refresh>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: i64, added: i64) -> Refresh {
        Refresh {
            id,
            added,
            last_seen_ms: 1_700_000_000_000 + added,
            ends_at_ms: (added % 2 == 0).then_some(1_700_000_100_000),
            starts_at_ms: 1_699_999_000_000,
            risk_score: 40,
            recent_rate: 2.5,
        }
    }

    #[test]
    fn records_round_trip_and_stop_at_a_torn_tail() {
        let mut buf = Vec::new();
        for r in [rec(1, 2), rec(1, 3), rec(2, 7)] {
            r.encode(&mut buf);
        }
        assert_eq!(buf.len(), 3 * RECORD);
        assert_eq!(decode_all(&buf), vec![rec(1, 2), rec(1, 3), rec(2, 7)]);
        // A torn last record and a flipped bit both end the replay there.
        assert_eq!(decode_all(&buf[..buf.len() - 5]).len(), 2);
        buf[RECORD + 3] ^= 1;
        assert_eq!(decode_all(&buf), vec![rec(1, 2)]);
    }

    #[tokio::test]
    async fn a_dead_process_file_is_replayed_once_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = database_key("sqlite://x.db");
        let first = Journal::open(dir.path(), &key).expect("open");
        first
            .append(&[rec(1, 2), rec(1, 5), rec(2, 3)])
            .await
            .expect("append");
        let name = file_name(&first.path());
        // While the first holds its lock, a second journal sees no orphans.
        let second = Journal::open(dir.path(), &key).expect("open");
        assert!(second.orphaned().segments.is_empty());
        let other_db = Journal::open(dir.path(), &database_key("postgres://y")).expect("open");
        // The first "dies": its lock goes with its file handle.
        drop(first);
        let third = Journal::open(dir.path(), &key).expect("open");
        let got = third.orphaned();
        assert_eq!(got.segments.len(), 1);
        assert_eq!(got.segments[0].0, name);
        let mut merged = merge(got.segments[0].1.clone());
        merged.sort_by_key(|r| r.id);
        // Increments add up; the fields are the latest record's.
        let mut one = rec(1, 5);
        one.added = 7;
        assert_eq!(merged, vec![one, rec(2, 3)]);
        assert!(got.totals.is_empty());
        assert_eq!(third.remove_orphans(), vec![name.clone()]);
        drop((second, third));
        let fourth = Journal::open(dir.path(), &key).expect("open");
        // The second's file was empty; nothing is replayed twice.
        assert!(fourth.orphaned().segments.iter().all(|(_, r)| r.is_empty()));
        assert!(other_db.orphaned().segments.is_empty());
    }

    #[test]
    fn an_older_format_file_is_replayed_as_totals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = database_key("sqlite://old.db");
        let mut buf = Vec::new();
        for r in [rec(1, 4), rec(1, 9), rec(1, 6)] {
            r.encode(&mut buf);
        }
        std::fs::write(dir.path().join(format!("{key}-1-2.{LEGACY_EXT}")), &buf).expect("write");
        let j = Journal::open(dir.path(), &key).expect("open");
        let got = j.orphaned();
        assert!(got.segments.is_empty());
        assert_eq!(got.totals, vec![rec(1, 9)]);
    }

    #[tokio::test]
    async fn rotation_seals_segments_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "k").expect("open");
        let first = j.path();
        j.append(&[rec(1, 2)]).await.expect("append");
        assert_eq!(
            std::fs::metadata(&first).expect("meta").len(),
            RECORD as u64
        );
        assert_eq!(j.rotate().expect("rotate"), 1);
        j.append(&[rec(1, 3)]).await.expect("append");
        let second = j.path();
        assert_ne!(first, second);
        assert_eq!(j.rotate().expect("rotate"), 2);
        // Nothing appended since: no new segment.
        let third = j.path();
        assert_eq!(j.rotate().expect("rotate"), 2);
        assert_eq!(j.path(), third);
        assert_eq!(j.sealed_names(1), vec![file_name(&first)]);
        assert_eq!(j.sealed_names(2).len(), 2);
        assert_eq!(j.release(1), vec![file_name(&first)]);
        assert!(j.release(0).is_empty());
        assert!(!first.exists() && second.exists());
        j.close();
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }
}
