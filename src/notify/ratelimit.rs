//! Telegram's limits, kept before Telegram complains: at most one message a second per
//! chat, twenty a minute per group chat (negative chat id), thirty a second overall.
//!
//! Per-chat spacing is measured from the *completion* of the previous request to the
//! start of the next, so arrivals at Telegram are spaced at least as much whatever the
//! network latency.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Minimum spacing of messages to one chat.
    pub per_chat: Duration,
    /// Messages per minute to one group chat.
    pub group_per_minute: usize,
    /// Messages per second overall.
    pub global_per_second: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_chat: Duration::from_secs(1),
            group_per_minute: 20,
            global_per_second: 30,
        }
    }
}

#[derive(Default)]
struct Chat {
    busy: bool,
    last_done: Option<Instant>,
    /// Completion times of recent messages (group chats: the last minute).
    recent: VecDeque<Instant>,
    /// Telegram asked us to wait until then (429).
    blocked_until: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    chats: HashMap<i64, Chat>,
    global: VecDeque<Instant>,
}

/// A shared limiter for every sender of one bot (notifications and bot replies).
pub struct RateLimiter {
    limits: Limits,
    inner: Mutex<Inner>,
}

/// Held while a request to a chat is in flight; dropping it records the completion.
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
    chat: i64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut inner = self.limiter.lock();
        let chat = inner.chats.entry(self.chat).or_default();
        chat.busy = false;
        chat.last_done = Some(now);
        if self.chat < 0 {
            chat.recent.push_back(now);
            while chat.recent.len() > self.limiter.limits.group_per_minute {
                chat.recent.pop_front();
            }
        }
    }
}

impl RateLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: Limits) -> Self {
        RateLimiter {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a message to `chat` is allowed; the permit records its completion.
    pub async fn acquire(&self, chat: i64) -> Permit<'_> {
        loop {
            let wait_until = {
                let mut inner = self.lock();
                let now = Instant::now();
                let limits = self.limits;
                let mut earliest = now;
                let c = inner.chats.entry(chat).or_default();
                let busy = c.busy;
                if let Some(last) = c.last_done {
                    earliest = earliest.max(last + limits.per_chat);
                }
                if let Some(b) = c.blocked_until {
                    earliest = earliest.max(b);
                }
                if chat < 0 && c.recent.len() >= limits.group_per_minute {
                    let oldest = c.recent[c.recent.len() - limits.group_per_minute];
                    earliest = earliest.max(oldest + Duration::from_secs(60));
                }
                while inner
                    .global
                    .front()
                    .is_some_and(|t| *t + Duration::from_secs(1) <= now)
                {
                    inner.global.pop_front();
                }
                if inner.global.len() >= limits.global_per_second {
                    earliest = earliest.max(inner.global[0] + Duration::from_secs(1));
                }
                if !busy && earliest <= now {
                    inner.global.push_back(now);
                    inner.chats.entry(chat).or_default().busy = true;
                    return Permit {
                        limiter: self,
                        chat,
                    };
                }
                if busy {
                    now + Duration::from_millis(20)
                } else {
                    earliest
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Telegram answered 429 for `chat`: nothing goes to it before `until`.
    pub fn block(&self, chat: i64, until: Instant) {
        let mut inner = self.lock();
        let c = inner.chats.entry(chat).or_default();
        c.blocked_until = Some(c.blocked_until.map_or(until, |b| b.max(until)));
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(Limits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_per_second_per_chat() {
        let l = RateLimiter::default();
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..5 {
            let p = l.acquire(7).await;
            times.push(Instant::now());
            drop(p);
        }
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_secs(1));
        }
        assert!(Instant::now() - start < Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn twenty_per_minute_per_group() {
        let l = RateLimiter::default();
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..25 {
            let p = l.acquire(-100).await;
            times.push(Instant::now() - start);
            drop(p);
        }
        for i in 20..25 {
            assert!(
                times[i] - times[i - 20] >= Duration::from_secs(60),
                "{i}: {times:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn thirty_per_second_overall() {
        let l = std::sync::Arc::new(RateLimiter::default());
        let start = Instant::now();
        let mut times = Vec::new();
        for chat in 0..45 {
            let p = l.acquire(chat).await;
            times.push(Instant::now() - start);
            drop(p);
        }
        assert!(times[29] < Duration::from_secs(1));
        assert!(times[30] >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn blocked_chat_waits() {
        let l = RateLimiter::default();
        let start = Instant::now();
        l.block(5, start + Duration::from_secs(3));
        let _p = l.acquire(5).await;
        assert!(Instant::now() - start >= Duration::from_secs(3));
    }
}
