//! Transfer progress on a terminal (bytes, rate, ETA), one bar per upload.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use glancesync_core::{NoProgress, TransferObserver};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress bars on standard error.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<(String, String), ProgressBar>>,
}

impl Bars {
    /// Bars when standard error is a terminal, nothing otherwise.
    pub fn for_stderr() -> Arc<dyn TransferObserver> {
        if std::io::stderr().is_terminal() {
            Arc::new(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            })
        } else {
            Arc::new(NoProgress)
        }
    }
}

impl TransferObserver for Bars {
    fn start(&self, region: &str, image: &str, total: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(format!("{region}: {image}"));
        if let Ok(mut b) = self.bars.lock() {
            b.insert((region.to_string(), image.to_string()), bar);
        }
    }

    fn advance(&self, region: &str, image: &str, bytes: u64) {
        if let Ok(b) = self.bars.lock() {
            if let Some(bar) = b.get(&(region.to_string(), image.to_string())) {
                bar.inc(bytes);
            }
        }
    }

    fn finish(&self, region: &str, image: &str, _ok: bool) {
        if let Ok(mut b) = self.bars.lock() {
            if let Some(bar) = b.remove(&(region.to_string(), image.to_string())) {
                bar.finish_and_clear();
            }
        }
    }
}
