//! Background tasks that are never silently dead: a task that fails or panics before
//! shutdown is logged and restarted with backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Longest wait between restarts of a failing task.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Owns the background tasks of one app.
pub struct Supervisor {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Supervisor {
    /// A supervisor whose tasks stop when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            tasks: JoinSet::new(),
        }
    }

    /// Runs `make(token)` until shutdown, restarting it whenever it returns an error or
    /// panics; a task returning `Ok` before shutdown is considered finished.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let make = Arc::new(make);
        self.tasks.spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let run = tokio::spawn(make(shutdown.clone()));
                let outcome = run.await;
                if shutdown.is_cancelled() {
                    return;
                }
                match outcome {
                    Ok(Ok(())) => {
                        tracing::debug!(task = name, "background task finished");
                        return;
                    }
                    Ok(Err(e)) => tracing::error!(task = name, error = %format!("{e:#}"), retry_in = ?backoff, "background task failed; restarting"),
                    Err(e) => tracing::error!(task = name, error = %e, retry_in = ?backoff, "background task panicked; restarting"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }

    /// Like [`Supervisor::spawn`], for leader-only work: with a `cluster`,
    /// `make(term, shutdown)` runs once per leadership term of this node, `term`
    /// cancelled when the term ends (or at shutdown), `shutdown` only at shutdown.
    /// Without one, both are the shutdown token.
    pub fn spawn_leading<F, Fut>(
        &mut self,
        name: &'static str,
        cluster: Option<crate::cluster::Cluster>,
        make: F,
    ) where
        F: Fn(CancellationToken, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let make = Arc::new(make);
        let Some(cluster) = cluster else {
            return self.spawn(name, move |shutdown| make(shutdown.clone(), shutdown));
        };
        self.spawn(name, move |shutdown| {
            let make = make.clone();
            let process = shutdown.clone();
            crate::cluster::each_term(cluster.clone(), shutdown, move |term| {
                make(term, process.clone())
            })
        });
    }

    /// Waits for every task to stop after shutdown, at most `timeout`, then aborts the rest.
    pub async fn join(mut self, timeout: Duration) {
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("background tasks did not stop in time; aborting them");
            self.tasks.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn failing_task_is_restarted_until_it_succeeds() {
        let token = CancellationToken::new();
        let mut s = Supervisor::new(token.clone());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        s.spawn("flaky", move |_| {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    anyhow::bail!("boom");
                }
                Ok(())
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        token.cancel();
        s.join(Duration::from_secs(1)).await;
    }
}
