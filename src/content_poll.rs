//! Following a file by polling its content: read it again every interval, act only when the
//! bytes changed. Polling the content (not inotify) follows kubelet's atomic `..data` symlink
//! swap of a mounted Secret or ConfigMap and bind mounts alike, on every filesystem and volume
//! type, for one small read per interval.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// The ticks to read on, and the content last handed out.
pub struct ContentPoll<T> {
    tick: Interval,
    last: Option<T>,
}

impl<T: PartialEq> ContentPoll<T> {
    /// Reads every `interval`, the first time at once. `in_force`: content already acted on,
    /// not handed out again.
    pub fn new(interval: Duration, in_force: Option<T>) -> Self {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ContentPoll {
            tick,
            last: in_force,
        }
    }

    /// Reads on each tick until the content differs from the last handed out, and returns it;
    /// or returns the first read's error (what was handed out last stays the one to compare).
    pub async fn changed<E, F>(&mut self, mut read: impl FnMut() -> F) -> Result<&T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        loop {
            self.tick.tick().await;
            let current = read().await?;
            if self.last.as_ref() != Some(&current) {
                return Ok(self.last.insert(current));
            }
        }
    }
}
