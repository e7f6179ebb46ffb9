//! Loads rule files and runs their groups; reloads keep what did not change.
//!
//! A reload reads every file matched by `rules.files`. If any file has a problem, nothing
//! changes: the running groups keep evaluating with their state, the problems are
//! returned (`file:line: message`) and `watchpost_rules_last_reload_success` drops to 0.
//! Otherwise unchanged groups keep running untouched, changed groups restart with the
//! alerts of their matching rules, and removed groups stop with stale markers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::file::{Problems, RuleFile, load_globs};
use super::group::Group;
use super::{EvalDeps, now_ms};

/// What a successful reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReloadOutcome {
    /// Rule files loaded.
    pub files: usize,
    /// Groups running now.
    pub groups: usize,
    /// Rules running now.
    pub rules: usize,
    /// Groups left running untouched.
    pub unchanged: usize,
}

struct Running {
    group: Arc<Group>,
    token: CancellationToken,
    handle: JoinHandle<()>,
}

impl Running {
    async fn stop(self) -> Arc<Group> {
        self.token.cancel();
        if let Err(e) = self.handle.await {
            tracing::error!(group = %self.group.name(), error = %e, "rule group task failed");
        }
        self.group
    }
}

struct Inner {
    deps: Arc<EvalDeps>,
    patterns: Vec<String>,
    default_interval: Duration,
    shutdown: CancellationToken,
    running: Mutex<Vec<Running>>,
    /// What the API sees; replaced whole at the end of a reload.
    groups: Mutex<Vec<Arc<Group>>>,
    reload_lock: tokio::sync::Mutex<()>,
    last_error: Mutex<Option<String>>,
}

/// Owns the rule groups of one app. Cheap to clone.
#[derive(Clone)]
pub struct RuleManager {
    inner: Arc<Inner>,
}

impl RuleManager {
    /// A manager with no groups yet; call [`RuleManager::reload`] to load.
    pub fn new(
        deps: EvalDeps,
        patterns: Vec<String>,
        default_interval: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                deps: Arc::new(deps),
                patterns,
                default_interval,
                shutdown,
                running: Mutex::new(Vec::new()),
                groups: Mutex::new(Vec::new()),
                reload_lock: tokio::sync::Mutex::new(()),
                last_error: Mutex::new(None),
            }),
        }
    }

    fn running(&self) -> MutexGuard<'_, Vec<Running>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The groups running now, in file and file order.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.inner
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The problems of the last failed reload, if the last reload failed.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the rule files and applies them (see the module docs).
    pub async fn reload(&self) -> Result<ReloadOutcome, Problems> {
        let _serial = self.inner.reload_lock.lock().await;
        let patterns = self.inner.patterns.clone();
        let loaded = tokio::task::spawn_blocking(move || load_globs(&patterns))
            .await
            .unwrap_or_else(|e| {
                Err(Problems(vec![super::Problem {
                    file: "rules.files".into(),
                    line: 0,
                    message: format!("loading rule files panicked: {e}"),
                }]))
            });
        let metrics = &self.inner.deps.metrics;
        let files = match loaded {
            Ok(files) => files,
            Err(problems) => {
                metrics.rules_last_reload_success.set(0);
                for p in &problems.0 {
                    tracing::error!(problem = %p, "rule file problem; keeping the rules already running");
                }
                *self
                    .inner
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(problems.to_string());
                return Err(problems);
            }
        };
        let outcome = self.apply(files).await;
        metrics.rules_last_reload_success.set(1);
        metrics
            .rules_last_reload_success_timestamp
            .set(now_ms() as f64 / 1000.0);
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        tracing::info!(
            files = outcome.files,
            groups = outcome.groups,
            rules = outcome.rules,
            unchanged = outcome.unchanged,
            "rules loaded"
        );
        Ok(outcome)
    }

    async fn apply(&self, files: Vec<RuleFile>) -> ReloadOutcome {
        let deps = self.inner.deps.clone();
        let mut old: HashMap<(String, String), Running> = self
            .running()
            .drain(..)
            .map(|r| ((r.group.file.clone(), r.group.name().to_string()), r))
            .collect();
        let mut next = Vec::new();
        let mut unchanged = 0;
        let file_count = files.len();
        for file in files {
            for def in file.groups {
                let key = (file.path.clone(), def.name.clone());
                let previous = old.remove(&key);
                let interval = def.interval.unwrap_or(self.inner.default_interval);
                if let Some(p) = previous {
                    if p.group.def.same_as(&def) && p.group.interval == interval {
                        unchanged += 1;
                        next.push(p);
                        continue;
                    }
                    let group = Arc::new(Group::new(def, &file.path, self.inner.default_interval));
                    let stopped = p.stop().await;
                    group.copy_state(&stopped, &deps);
                    next.push(self.start(group));
                } else {
                    let group = Arc::new(Group::new(def, &file.path, self.inner.default_interval));
                    next.push(self.start(group));
                }
            }
        }
        for (_, removed) in old {
            let group = removed.stop().await;
            group.mark_stale(&deps);
        }
        let outcome = ReloadOutcome {
            files: file_count,
            groups: next.len(),
            rules: next.iter().map(|r| r.group.rules.len()).sum(),
            unchanged,
        };
        let groups = next.iter().map(|r| r.group.clone()).collect();
        *self.running() = next;
        *self.inner.groups.lock().unwrap_or_else(|p| p.into_inner()) = groups;
        outcome
    }

    fn start(&self, group: Arc<Group>) -> Running {
        let token = self.inner.shutdown.child_token();
        let handle = tokio::spawn(group.clone().run(self.inner.deps.clone(), token.clone()));
        Running {
            group,
            token,
            handle,
        }
    }
}
