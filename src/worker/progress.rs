//! What the worker shows while it works: on a terminal, a bar per backfill (done of total,
//! failed, rate, time left) drawn by indicatif; elsewhere, a log line per finished run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::client::Api;

/// The most backfills shown with a bar at once; runs of others are still counted.
const MAX_BARS: usize = 12;
/// How often the bars' counts are read from the server (a request per bar).
const REFRESH: Duration = Duration::from_secs(1);

pub struct Progress {
    bars: Option<Bars>,
    /// Lines at debug level only (the demo's worker, whose runs are the page to look at).
    quiet: bool,
}

struct Bars {
    multi: MultiProgress,
    by_backfill: BTreeMap<i64, ProgressBar>,
    refreshed: Instant,
}

impl Progress {
    /// Bars when `terminal`, log lines otherwise.
    pub fn new(terminal: bool) -> Progress {
        let bars = terminal.then(|| Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            by_backfill: BTreeMap::new(),
            refreshed: Instant::now(),
        });
        Progress { bars, quiet: false }
    }

    /// No bars, and a run's line at debug level only.
    pub fn quiet() -> Progress {
        Progress { bars: None, quiet: true }
    }

    /// A line about one run: logged at `level`, or, with bars, printed above them unless it
    /// is routine (`quiet`).
    pub fn line(&self, level: log::Level, quiet: bool, text: &str) {
        match &self.bars {
            None if self.quiet => log::debug!("{text}"),
            None => log::log!(level, "{text}"),
            Some(b) if !quiet => {
                let _ = b.multi.println(text);
            }
            Some(_) => {}
        }
    }

    /// A run of `backfill` finished: its bar appears if it had none.
    pub fn ran(&mut self, api: &Api, backfill: Option<i64>) {
        let (Some(bars), Some(id)) = (&mut self.bars, backfill) else { return };
        if !bars.by_backfill.contains_key(&id) && bars.by_backfill.len() < MAX_BARS {
            let style =
                ProgressStyle::with_template("{prefix:>14} [{bar:32.cyan/blue}] {pos}/{len} {msg} {per_sec} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            let bar = bars.multi.add(ProgressBar::new(0).with_style(style).with_prefix(format!("backfill {id}")));
            bars.by_backfill.insert(id, bar);
            update(api, id, &bars.by_backfill[&id]);
        }
    }

    /// Reads the bars' counts again, at most every `REFRESH`.
    pub fn tick(&mut self, api: &Api) {
        let Some(bars) = &mut self.bars else { return };
        if bars.refreshed.elapsed() < REFRESH {
            return;
        }
        bars.refreshed = Instant::now();
        for (id, bar) in &bars.by_backfill {
            update(api, *id, bar);
        }
    }

    /// The bars left as they are, with their last counts.
    pub fn finish(&mut self, api: &Api) {
        if let Some(bars) = &mut self.bars {
            for (id, bar) in &bars.by_backfill {
                update(api, *id, bar);
                bar.abandon();
            }
        }
    }
}

/// A backfill's bar from its counts on the server: finished dates (completed, failed or
/// cancelled newest runs) of its total, and how many failed.
fn update(api: &Api, id: i64, bar: &ProgressBar) {
    let Ok(b) = api.backfill(id) else { return };
    let count = |s: &str| b["run_status_counts"][s].as_u64().unwrap_or(0);
    bar.set_length(b["total_run_count"].as_u64().unwrap_or(0));
    bar.set_position(count("completed") + count("failed") + count("cancelled"));
    let status = b["status"].as_str().unwrap_or("not started");
    bar.set_message(format!("{status}, {} failed", count("failed")));
}
