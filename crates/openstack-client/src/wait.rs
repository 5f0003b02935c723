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
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
