//! One read of a source, many readers: the bytes of one master image are
//! read once and handed to every target's upload at the same time.
//!
//! Memory is bounded whatever the image size: each target has a queue of at
//! most [`FanoutConfig::queue_bytes`] bytes (counted in bytes, not chunks:
//! a download yields chunks of any size, from a few KiB to the
//! [`FanoutConfig::chunk`] they are split to), and the chunks queued for
//! several targets are the same buffers. The slowest target paces the read only
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
use tokio::sync::{mpsc, Semaphore};

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
    /// Bytes queued per target at most (the lead the fastest target may
    /// take over the slowest one before the read waits).
    pub queue_bytes: usize,
    /// How long a full queue may hold the shared read back before its target is detached.
    pub lag_wait: Duration,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            chunk: 256 * 1024,
            queue_bytes: 8 * 1024 * 1024,
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
    /// Chunks the shared read yielded (before splitting).
    pub chunks: std::sync::atomic::AtomicU64,
    /// Times the shared read waited for room in a target's queue.
    pub waits: std::sync::atomic::AtomicU64,
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
        // The queue itself is unbounded; the semaphore holds its bytes to
        // `queue_bytes` (the driver takes permits for a chunk before queueing
        // it, the reader gives them back when it takes the chunk).
        let (tx, rx) = mpsc::unbounded_channel::<std::io::Result<Bytes>>();
        let room = Arc::new(Semaphore::new(cfg.queue_bytes.max(1)));
        let state = Arc::new(AtomicU8::new(ATTACHED));
        senders.push(Target {
            tx,
            state: state.clone(),
            room: room.clone(),
        });
        readers.push(target_stream(
            rx,
            state,
            room,
            opener.clone(),
            stats.clone(),
        ));
    }
    let driver = Box::pin(drive(opener, senders, cfg, stats));
    (readers, driver)
}

/// The driver's end of one target's queue.
struct Target {
    tx: mpsc::UnboundedSender<std::io::Result<Bytes>>,
    state: Arc<AtomicU8>,
    /// Free bytes of the queue.
    room: Arc<Semaphore>,
}

fn copy_err(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

async fn drive(opener: Opener, mut live: Vec<Target>, cfg: FanoutConfig, stats: Arc<FanoutStats>) {
    stats.opens.fetch_add(1, Ordering::Relaxed);
    let mut source = match opener().await {
        Ok(s) => s,
        Err(e) => {
            for t in &live {
                let _ = t.tx.send(Err(copy_err(&e)));
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
                stats.chunks.fetch_add(1, Ordering::Relaxed);
                let most = cfg.chunk.clamp(1, cfg.queue_bytes.max(1));
                while !bytes.is_empty() {
                    let piece = bytes.split_to(bytes.len().min(most));
                    deliver(&mut live, piece, &cfg, &stats).await;
                }
            }
            Err(e) => {
                for t in &live {
                    // The error is queued after what the target has not
                    // read yet; the flag covers a reader that finds its queue
                    // closed.
                    t.state.store(FAILED, Ordering::SeqCst);
                    let _ = t.tx.send(Err(copy_err(&e)));
                }
                return;
            }
        }
        if live.is_empty() {
            return;
        }
    }
}

async fn deliver(live: &mut Vec<Target>, piece: Bytes, cfg: &FanoutConfig, stats: &FanoutStats) {
    // A piece is at most `queue_bytes` (see drive), so it always fits.
    let need = u32::try_from(piece.len()).unwrap_or(u32::MAX);
    let mut i = 0;
    while i < live.len() {
        let t = &live[i];
        let keep = match t.room.clone().try_acquire_many_owned(need) {
            Ok(permit) => {
                permit.forget();
                t.tx.send(Ok(piece.clone())).is_ok()
            }
            Err(_) => {
                stats.waits.fetch_add(1, Ordering::Relaxed);
                // The queue is full: wait for room, without holding the
                // others back longer than lag_wait.
                let room = t.room.clone();
                let wait = async {
                    tokio::select! {
                        p = room.acquire_many_owned(need) => p.ok(),
                        () = t.tx.closed() => None,
                    }
                };
                let waited = if live.len() == 1 {
                    Ok(wait.await)
                } else {
                    tokio::time::timeout(cfg.lag_wait, wait).await
                };
                match waited {
                    Ok(Some(permit)) => {
                        permit.forget();
                        t.tx.send(Ok(piece.clone())).is_ok()
                    }
                    Ok(None) => false,
                    Err(_) => {
                        tracing::info!(
                            "a target fell behind the shared read; it reads the source on its own"
                        );
                        t.state.store(DETACHED, Ordering::SeqCst);
                        false
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
        rx: mpsc::UnboundedReceiver<std::io::Result<Bytes>>,
        state: Arc<AtomicU8>,
        room: Arc<Semaphore>,
        got: u64,
    },
    Own {
        stream: ByteStream,
        skip: u64,
    },
    Done,
}

fn target_stream(
    rx: mpsc::UnboundedReceiver<std::io::Result<Bytes>>,
    state: Arc<AtomicU8>,
    room: Arc<Semaphore>,
    opener: Opener,
    stats: Arc<FanoutStats>,
) -> ByteStream {
    let init = ReadState::Shared {
        rx,
        state,
        room,
        got: 0,
    };
    futures::stream::unfold(init, move |st| {
        let opener = opener.clone();
        let stats = stats.clone();
        async move {
            let mut st = st;
            loop {
                match st {
                    ReadState::Shared {
                        mut rx,
                        state,
                        room,
                        got,
                    } => match rx.recv().await {
                        Some(Ok(b)) => {
                            room.add_permits(b.len());
                            let got = got + b.len() as u64;
                            return Some((
                                Ok(b),
                                ReadState::Shared {
                                    rx,
                                    state,
                                    room,
                                    got,
                                },
                            ));
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
            queue_bytes: 2000,
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
    async fn the_queue_is_counted_in_bytes_not_chunks() {
        // 200 chunks of 100 bytes fit a 50,000-byte queue: the reader that
        // takes nothing until the other one is done is not detached (one
        // read of the source), however many small chunks the source yields.
        let d = Arc::new(data(20_000));
        let stats = Arc::new(FanoutStats::default());
        let cfg = FanoutConfig {
            chunk: 1000,
            queue_bytes: 50_000,
            lag_wait: Duration::from_millis(50),
        };
        let (mut readers, driver) = fan_out(opener_of(d.clone(), 100, None), 2, cfg, stats.clone());
        let later = readers.pop().unwrap();
        let first = readers.pop().unwrap();
        let driver = tokio::spawn(driver);
        assert_eq!(collect(first).await.unwrap(), *d);
        assert_eq!(collect(later).await.unwrap(), *d);
        driver.await.unwrap();
        assert_eq!(stats.opens.load(Ordering::Relaxed), 1);
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
