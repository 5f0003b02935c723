//! The one `main` skeleton of the workspace's binaries: command-line parse
//! errors on one line, logging, the tokio runtime, SIGINT/SIGTERM, and a
//! typed error mapped to the exit status.

use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::{init_logging_with, LogArgs, LogDefaults};

/// How long the runtime waits for blocking work (a libguestfs call, a
/// file copy) after an interrupted command before the process exits anyway.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// An error that ends a binary: its message and its exit status.
///
/// Each binary implements it for its own error enum (the orphan rule keeps
/// library errors out of `cli-common`, and library crates never depend on
/// it), so the mapping of each failure to an exit status is in one place.
pub trait Failure: fmt::Display {
    /// The process exit status for this failure (default 1).
    fn exit_code(&self) -> u8 {
        1
    }

    /// Write the failure on standard error: by default `<bin>: <message>`
    /// on one line (line breaks in the message become spaces).
    fn report(&self, bin: &str) {
        eprintln!("{bin}: {}", self.to_string().replace('\n', " "));
    }
}

impl Failure for String {}

impl Failure for std::convert::Infallible {}

/// What a successful command returns: nothing (exit 0) or an exit status of
/// its own (e.g. glancesync's 2 for a failed region).
pub trait Outcome {
    /// The exit status.
    fn code(self) -> u8;
}

impl Outcome for () {
    fn code(self) -> u8 {
        0
    }
}

impl Outcome for u8 {
    fn code(self) -> u8 {
        self
    }
}

/// How [`run_main`] starts a binary.
#[derive(Debug, Clone)]
pub struct MainSpec<'a> {
    bin: &'static str,
    log: LogArgs,
    log_defaults: LogDefaults<'a>,
    worker_threads: Option<usize>,
}

impl<'a> MainSpec<'a> {
    /// A binary named `bin` (the prefix of its error lines) with its parsed
    /// logging flags and the usual logging defaults (`warn`).
    pub fn new(bin: &'static str, log: LogArgs) -> Self {
        Self {
            bin,
            log,
            log_defaults: LogDefaults::default(),
            worker_threads: None,
        }
    }

    /// Logging defaults other than `warn` (a tool whose normal output is its
    /// INFO records).
    pub fn log_defaults(mut self, defaults: LogDefaults<'a>) -> Self {
        self.log_defaults = defaults;
        self
    }

    /// A fixed number of runtime worker threads (default: one per core).
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = Some(n);
        self
    }
}

/// The SIGINT/SIGTERM state handed to a command by [`run_main`].
///
/// By default the first signal cancels the command: its future is dropped
/// (so its destructors run), the runtime gets a few seconds to finish
/// blocking work, and the process exits `128 + signal number` (130 for
/// SIGINT, 143 for SIGTERM). A command that stops on its own (a service
/// finishing its running work, a transfer that cleans up) calls
/// [`Shutdown::graceful`] instead: the first signal then only resolves that
/// future and the command decides its exit status; a second signal cancels
/// it as above.
#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: watch::Receiver<bool>,
    graceful: Arc<AtomicBool>,
}

impl Shutdown {
    /// Take over the first SIGINT/SIGTERM: the returned future resolves when
    /// it arrives, and the command is no longer cancelled by it.
    pub fn graceful(&self) -> impl Future<Output = ()> + Send + 'static {
        self.graceful.store(true, Ordering::SeqCst);
        let mut rx = self.requested.clone();
        async move {
            // An error means run_main is gone: nothing is left to wait for.
            let _ = rx.wait_for(|requested| *requested).await;
        }
    }

    /// Whether a signal asked the command to stop.
    pub fn requested(&self) -> bool {
        *self.requested.borrow()
    }
}

/// Parse the command line of `bin`. `--help` and `--version` print and give
/// exit status 0; a bad command line is one line on standard error
/// (`<bin>: error: <what is wrong> (see --help)`) and exit status 2. `Err` carries
/// the status `main` returns.
pub fn parse_args<P: clap::Parser>(bin: &str) -> Result<P, ExitCode> {
    P::try_parse().map_err(|e| {
        if !e.use_stderr() {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        eprintln!("{bin}: {} (see --help)", one_line(&e.render().to_string()));
        ExitCode::from(2)
    })
}

/// The first paragraph of a clap message on one line (`error: …`, as
/// Python's argparse says it).
pub fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The whole `main` of a binary: install logging (per `spec`), start the
/// tokio runtime, listen for SIGINT/SIGTERM (see [`Shutdown`]), run `body`,
/// and turn its result into the exit status: an [`Outcome`]'s own status,
/// or a [`Failure`] reported on standard error with its status. Logging or
/// runtime set-up failing is one line and exit status 1.
pub fn run_main<F, Fut, T, E>(spec: MainSpec<'_>, body: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: Outcome,
    E: Failure,
{
    if let Err(e) = init_logging_with(&spec.log, &spec.log_defaults) {
        eprintln!("{}: {e}", spec.bin);
        return ExitCode::from(1);
    }
    ExitCode::from(run_in_runtime(&spec, body))
}

/// [`run_main`] after logging: the runtime, the signals and the exit status.
fn run_in_runtime<F, Fut, T, E>(spec: &MainSpec<'_>, body: F) -> u8
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: Outcome,
    E: Failure,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = spec.worker_threads {
        builder.worker_threads(n);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", spec.bin);
            return 1;
        }
    };
    let (tx, rx) = watch::channel(false);
    let graceful = Arc::new(AtomicBool::new(false));
    let shutdown = Shutdown {
        requested: rx,
        graceful: graceful.clone(),
    };
    let ended = rt.block_on(async move {
        // Listen before the command starts, so no signal finds the default
        // disposition in place.
        let mut signals = Signals::install();
        let body = body(shutdown);
        tokio::pin!(body);
        loop {
            tokio::select! {
                r = &mut body => return Ended::Done(r),
                signal = signals.next() => {
                    if graceful.load(Ordering::SeqCst) && !*tx.borrow() {
                        tracing::debug!(signal = signal.name(), "signal received: the command stops on its own");
                        let _ = tx.send(true);
                    } else {
                        return Ended::Interrupted(signal);
                    }
                }
            }
        }
    });
    match ended {
        Ended::Done(Ok(outcome)) => outcome.code(),
        Ended::Done(Err(e)) => {
            e.report(spec.bin);
            e.exit_code()
        }
        Ended::Interrupted(signal) => {
            rt.shutdown_timeout(INTERRUPT_GRACE);
            eprintln!("{}: interrupted ({})", spec.bin, signal.name());
            signal.exit_code()
        }
    }
}

enum Ended<R> {
    Done(R),
    Interrupted(Signal),
}

/// The signals that stop a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// The shell's convention: 128 + the signal number.
    fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

#[cfg(unix)]
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for {name}");
                None
            }
        };
        Self {
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }

    async fn next(&mut self) -> Signal {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            let received = match s {
                Some(s) => s.recv().await.is_some(),
                None => false,
            };
            if !received {
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => Signal::Interrupt,
            () = recv(&mut self.terminate) => Signal::Terminate,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Self {
        Signals
    }

    async fn next(&mut self) -> Signal {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Signal::Interrupt,
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Odd;

    impl fmt::Display for Odd {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("odd\nthing")
        }
    }

    impl Failure for Odd {
        fn exit_code(&self) -> u8 {
            3
        }
    }

    /// The signal listeners are process-wide: tests that run commands take turns.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn spec() -> MainSpec<'static> {
        MainSpec::new("test", LogArgs::default()).worker_threads(1)
    }

    #[test]
    fn outcomes_and_failures_give_their_exit_status() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(run_in_runtime(&spec(), |_| async { Ok::<_, Odd>(()) }), 0);
        assert_eq!(run_in_runtime(&spec(), |_| async { Ok::<_, Odd>(2u8) }), 2);
        assert_eq!(run_in_runtime(&spec(), |_| async { Err::<(), _>(Odd) }), 3);
        assert_eq!(
            run_in_runtime(&spec(), |_| async { Err::<(), _>("bad".to_string()) }),
            1
        );
    }

    fn send_to_self(signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(std::process::id().to_string())
            .status();
        assert!(matches!(status, Ok(s) if s.success()), "kill -{signal}");
    }

    // One test for every signal case: the listeners are process-wide.
    #[test]
    fn signals_cancel_a_command_unless_it_stops_gracefully() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // Not graceful: the first signal cancels the command (its future is
        // dropped, so the flag below is never set).
        let finished = Arc::new(AtomicBool::new(false));
        let seen = finished.clone();
        let code = run_in_runtime(&spec(), move |_| async move {
            send_to_self("TERM");
            tokio::time::sleep(Duration::from_secs(3600)).await;
            seen.store(true, Ordering::SeqCst);
            Ok::<_, Odd>(())
        });
        assert_eq!(code, 143);
        assert!(!finished.load(Ordering::SeqCst));

        // Graceful: the command sees the signal and picks its own status.
        let code = run_in_runtime(&spec(), |shutdown| async move {
            let stop = shutdown.graceful();
            send_to_self("INT");
            stop.await;
            assert!(shutdown.requested());
            Ok::<_, Odd>(7u8)
        });
        assert_eq!(code, 7);

        // Graceful, but a second signal while it is still stopping cancels it.
        let code = run_in_runtime(&spec(), |shutdown| async move {
            let stop = shutdown.graceful();
            send_to_self("TERM");
            stop.await;
            send_to_self("INT");
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Odd>(0u8)
        });
        assert_eq!(code, 130);
    }

    #[test]
    fn clap_messages_become_one_line() {
        let rendered =
            "error: unexpected argument '--x' found\n\n  tip: try '-- --x'\n\nUsage: t [OPTIONS]\n";
        assert_eq!(one_line(rendered), "error: unexpected argument '--x' found");
        let rendered = "error: the following required arguments were not provided:\n  --personality <P>\n\nUsage: t\n";
        assert_eq!(
            one_line(rendered),
            "error: the following required arguments were not provided: --personality <P>"
        );
    }
}
