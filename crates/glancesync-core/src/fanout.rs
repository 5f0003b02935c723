//! One read of a source, many readers: the bytes of one master image are
//! read once and handed to every target's upload at the same time.
//!
//! Memory is bounded whatever the image size: each target has a queue of at
//! most [`FanoutConfig::queue_chunks`] chunks of at most
//! [`FanoutConfig::chunk`] bytes. The slowest target paces the read only
//! for [`FanoutConfig::lag_wait`]: a target whose queue stays full that long
//! while others wait is detached, and reads the source on its own from the
//! start (skipping what it already has), so one region's slowness never
//! holds the others back for long. A target whose reader is dropped (its
//! upload failed) is simply removed; the others go on. A source error
//! reaches every target still attached.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;

/// A byte stream of the source.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Opens the source (again): the shared read, and the own read of a target
/// that fell behind.
pub type Opener = Arc<dyn Fn() -> BoxFuture<'static, std::io::Result<ByteStream>> + Send + Sync>;

/// Bounds of a fan-out.
#[derive(Debug, Clone, Copy)]
pub struct FanoutConfig {
    /// Largest chunk handed to a target (bigger source chunks are split, without copying).
    pub chunk: usize,
    /// Chunks queued per target.
    pub queue_chunks: usize,
    /// How long a full queue may hold the shared read back before its target is detached.
    pub lag_wait: Duration,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            chunk: 256 * 1024,
            queue_chunks: 16,
            lag_wait: Duration::from_millis(500),
        }
    }
}

const ATTACHED: u8 = 0;
const DETACHED: u8 = 1;
const FAILED: u8 = 2;

/// What happened to the targets of a fan-out (for logs and tests).
#[derive(Debug, Default)]
pub struct FanoutStats {
    /// Times the source was opened (1 + the targets that read on their own).
    pub opens: std::sync::atomic::AtomicU64,
    /// Bytes read by the shared read.
    pub shared_bytes: std::sync::atomic::AtomicU64,
}

/// Fan `opener`'s stream out to `n` readers. Returns the readers (one per
/// target, as streams) and the future that drives the shared read (run it
/// concurrently with the consumers).
pub fn fan_out(
    opener: Opener,
    n: usize,
    cfg: FanoutConfig,
    stats: Arc<FanoutStats>,
) -> (Vec<ByteStream>, BoxFuture<'static, ()>) {
    let mut senders = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(cfg.queue_chunks.max(1));
        let state = Arc::new(AtomicU8::new(ATTACHED));
        senders.push((tx, state.clone()));
        readers.push(target_stream(rx, state, opener.clone(), stats.clone()));
    }
    let driver = Box::pin(drive(opener, senders, cfg, stats));
    (readers, driver)
}

type Target = (mpsc::Sender<std::io::Result<Bytes>>, Arc<AtomicU8>);

fn copy_err(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

async fn drive(opener: Opener, mut live: Vec<Target>, cfg: FanoutConfig, stats: Arc<FanoutStats>) {
    stats.opens.fetch_add(1, Ordering::Relaxed);
    let mut source = match opener().await {
        Ok(s) => s,
        Err(e) => {
            for (tx, _) in &live {
                let _ = tx.send(Err(copy_err(&e))).await;
            }
            return;
        }
    };
    while let Some(item) = source.next().await {
        match item {
            Ok(mut bytes) => {
                stats
                    .shared_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                while !bytes.is_empty() {
                    let piece = bytes.split_to(bytes.len().min(cfg.chunk.max(1)));
                    deliver(&mut live, piece, &cfg).await;
                }
            }
            Err(e) => {
                for (tx, state) in &live {
                    // A target that cannot take the error within lag_wait
                    // finds the failure flag when its queue runs dry.
                    state.store(FAILED, Ordering::SeqCst);
                    let _ = tokio::time::timeout(cfg.lag_wait, tx.send(Err(copy_err(&e)))).await;
                }
                return;
            }
        }
        if live.is_empty() {
            return;
        }
    }
}

async fn deliver(live: &mut Vec<Target>, piece: Bytes, cfg: &FanoutConfig) {
    let mut i = 0;
    while i < live.len() {
        let keep = match live[i].0.try_send(Ok(piece.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(item)) => {
                if live.len() == 1 {
                    live[i].0.send(item).await.is_ok()
                } else {
                    match tokio::time::timeout(cfg.lag_wait, live[i].0.send(item)).await {
                        Ok(sent) => sent.is_ok(),
                        Err(_) => {
                            tracing::info!("a target fell behind the shared read; it reads the source on its own");
                            live[i].1.store(DETACHED, Ordering::SeqCst);
                            false
                        }
                    }
                }
            }
        };
        if keep {
            i += 1;
        } else {
            live.swap_remove(i);
        }
    }
}

enum ReadState {
    Shared {
        rx: mpsc::Receiver<std::io::Result<Bytes>>,
        state: Arc<AtomicU8>,
        got: u64,
    },
    Own {
        stream: ByteStream,
        skip: u64,
    },
    Done,
}

fn target_stream(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    state: Arc<AtomicU8>,
    opener: Opener,
    stats: Arc<FanoutStats>,
) -> ByteStream {
    let init = ReadState::Shared { rx, state, got: 0 };
    futures::stream::unfold(init, move |st| {
        let opener = opener.clone();
        let stats = stats.clone();
        async move {
            let mut st = st;
            loop {
                match st {
                    ReadState::Shared { mut rx, state, got } => match rx.recv().await {
                        Some(Ok(b)) => {
                            let got = got + b.len() as u64;
                            return Some((Ok(b), ReadState::Shared { rx, state, got }));
                        }
                        Some(Err(e)) => return Some((Err(e), ReadState::Done)),
                        None if state.load(Ordering::SeqCst) == DETACHED => {
                            stats.opens.fetch_add(1, Ordering::Relaxed);
                            match opener().await {
                                Ok(stream) => st = ReadState::Own { stream, skip: got },
                                Err(e) => return Some((Err(e), ReadState::Done)),
                            }
                        }
                        None if state.load(Ordering::SeqCst) == FAILED => {
                            return Some((
                                Err(std::io::Error::other(
                                    "the shared read of the source failed",
                                )),
                                ReadState::Done,
                            ));
                        }
                        None => return None,
                    },
                    ReadState::Own { mut stream, skip } => match stream.next().await {
                        Some(Ok(mut b)) => {
                            let len = b.len() as u64;
                            if len <= skip {
                                st = ReadState::Own {
                                    stream,
                                    skip: skip - len,
                                };
                                continue;
                            }
                            // skip < len, so it fits in usize.
                            let cut = usize::try_from(skip).unwrap_or(0);
                            let rest = b.split_off(cut);
                            return Some((Ok(rest), ReadState::Own { stream, skip: 0 }));
                        }
                        Some(Err(e)) => return Some((Err(e), ReadState::Done)),
                        None => return None,
                    },
                    ReadState::Done => return None,
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn opener_of(data: Arc<Vec<u8>>, chunk: usize, fail_at: Option<usize>) -> Opener {
        Arc::new(move || {
            let data = data.clone();
            Box::pin(async move {
                let chunks: Vec<std::io::Result<Bytes>> = data
                    .chunks(chunk)
                    .enumerate()
                    .map(|(i, c)| {
                        if fail_at == Some(i) {
                            Err(std::io::Error::other("source broke"))
                        } else {
                            Ok(Bytes::copy_from_slice(c))
                        }
                    })
                    .collect();
                Ok(futures::stream::iter(chunks).boxed())
            }) as BoxFuture<'static, std::io::Result<ByteStream>>
        })
    }

    async fn collect(s: ByteStream) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    fn small() -> FanoutConfig {
        FanoutConfig {
            chunk: 1000,
            queue_chunks: 2,
            lag_wait: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn every_reader_gets_every_byte_from_one_read() {
        let d = Arc::new(data(100_000));
        let stats = Arc::new(FanoutStats::default());
        let (readers, driver) =
            fan_out(opener_of(d.clone(), 4096, None), 3, small(), stats.clone());
        let driver = tokio::spawn(driver);
        let results = futures::future::join_all(readers.into_iter().map(collect)).await;
        driver.await.unwrap();
        for r in results {
            assert_eq!(r.unwrap(), *d);
        }
        assert_eq!(stats.opens.load(Ordering::Relaxed), 1);
        assert_eq!(stats.shared_bytes.load(Ordering::Relaxed), 100_000);
    }

    #[tokio::test]
    async fn a_stalled_reader_is_detached_and_reads_on_its_own() {
        let d = Arc::new(data(200_000));
        let stats = Arc::new(FanoutStats::default());
        let (mut readers, driver) =
            fan_out(opener_of(d.clone(), 3000, None), 2, small(), stats.clone());
        let slow = readers.pop().unwrap();
        let fast = readers.pop().unwrap();
        let driver = tokio::spawn(driver);
        // The slow reader takes nothing until the fast one has everything:
        // the shared read cannot wait for it.
        let fast_data = collect(fast).await.unwrap();
        assert_eq!(fast_data, *d);
        let slow_data = collect(slow).await.unwrap();
        assert_eq!(slow_data, *d);
        driver.await.unwrap();
        assert_eq!(stats.opens.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_reader_that_goes_away_does_not_stop_the_others() {
        let d = Arc::new(data(50_000));
        let stats = Arc::new(FanoutStats::default());
        let (mut readers, driver) = fan_out(opener_of(d.clone(), 1000, None), 2, small(), stats);
        let mut failing = readers.pop().unwrap();
        let ok = readers.pop().unwrap();
        let driver = tokio::spawn(driver);
        let consumer = tokio::spawn(collect(ok));
        // Take one chunk, then fail (as an upload that the target refused).
        failing.next().await.unwrap().unwrap();
        drop(failing);
        assert_eq!(consumer.await.unwrap().unwrap(), *d);
        driver.await.unwrap();
    }

    #[tokio::test]
    async fn a_source_error_reaches_every_reader() {
        let d = Arc::new(data(20_000));
        let stats = Arc::new(FanoutStats::default());
        let (readers, driver) = fan_out(opener_of(d, 1000, Some(5)), 2, small(), stats);
        let driver = tokio::spawn(driver);
        let results = futures::future::join_all(readers.into_iter().map(collect)).await;
        driver.await.unwrap();
        for r in results {
            assert!(r.unwrap_err().to_string().contains("source broke"));
        }
    }
}
