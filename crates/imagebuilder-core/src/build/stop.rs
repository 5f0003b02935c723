//! The stop signal of a build (SIGINT/SIGTERM): looked at between steps and
//! raced against the steps that may be abandoned.

use std::future::Future;

use crate::error::{Error, Result};

/// The stop signal of a build, looked at between steps ([`Stop::check`])
/// and raced against the steps that may be abandoned ([`Stop::race`]).
pub(super) struct Stop<'a> {
    signal: std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    pub(super) fired: bool,
}

impl<'a> Stop<'a> {
    pub(super) fn new(signal: impl Future<Output = ()> + Send + 'a) -> Self {
        Stop {
            signal: Box::pin(signal),
            fired: false,
        }
    }

    /// `Err(Interrupted)` once the signal came.
    pub(super) fn check(&mut self) -> Result<()> {
        use futures::FutureExt as _;
        if !self.fired && (&mut self.signal).now_or_never().is_some() {
            self.fired = true;
        }
        if self.fired {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// `work`, abandoned (dropped) when the signal comes first.
    pub(super) async fn race<T>(&mut self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.check()?;
        tokio::select! {
            r = work => r,
            () = &mut self.signal => {
                self.fired = true;
                Err(Error::Interrupted)
            }
        }
    }
}
