//! Polling a resource until it reaches a state, shared by the service clients.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What one look at a resource found.
pub(crate) enum Poll<T> {
    /// It is where it was wanted.
    Done(T),
    /// Not yet; the status it is in now.
    Waiting(String),
}

/// Look at resource `kind` `id` with `check` until it answers
/// [`Poll::Done`] or an error, waiting `first_delay` between looks and
/// doubling that up to 5 s (never past `timeout`). After `timeout` the
/// error is [`Error::WaitTimeout`] naming `wanted` and the last status seen.
pub(crate) async fn poll<T, F, Fut>(
    kind: &'static str,
    id: &str,
    wanted: &str,
    timeout: Duration,
    first_delay: Duration,
    check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>>>,
{
    poll_capped(kind, id, wanted, timeout, first_delay, MAX_DELAY, check).await
}

/// The longest wait between two looks of [`poll`].
const MAX_DELAY: Duration = Duration::from_secs(5);

/// [`poll`] with the wait between looks doubling up to `max_delay` only.
pub(crate) async fn poll_capped<T, F, Fut>(
    kind: &'static str,
    id: &str,
    wanted: &str,
    timeout: Duration,
    first_delay: Duration,
    max_delay: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>>>,
{
    let started = Instant::now();
    let mut delay = first_delay;
    loop {
        let last = match check().await? {
            Poll::Done(found) => return Ok(found),
            Poll::Waiting(last) => last,
        };
        if started.elapsed() >= timeout {
            return Err(Error::WaitTimeout {
                kind,
                id: id.to_owned(),
                wanted: wanted.to_owned(),
                last,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(delay.min(timeout.saturating_sub(started.elapsed()))).await;
        delay = next_delay(delay, first_delay, max_delay);
    }
}

/// The wait after `delay`: twice as long, at most `max_delay` (and never
/// below `first_delay`).
fn next_delay(delay: Duration, first_delay: Duration, max_delay: Duration) -> Duration {
    (delay * 2).min(max_delay.max(first_delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_cap() {
        let ms = Duration::from_millis;
        let waits = |first, max| {
            let mut d = first;
            let mut all = vec![d];
            for _ in 0..6 {
                d = next_delay(d, first, max);
                all.push(d);
            }
            all
        };
        assert_eq!(
            waits(ms(250), ms(1000)),
            [250, 500, 1000, 1000, 1000, 1000, 1000].map(ms)
        );
        assert_eq!(
            waits(ms(250), MAX_DELAY),
            [250, 500, 1000, 2000, 4000, 5000, 5000].map(ms)
        );
        // A cap below the first wait keeps the first wait.
        assert_eq!(waits(ms(300), ms(100)), [300; 7].map(ms));
    }
}
