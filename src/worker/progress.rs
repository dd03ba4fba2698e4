//! What the worker shows while it works: on a terminal, a bar per backfill (done of total,
//! failed, rate, time left) drawn by indicatif; elsewhere, a log line per finished run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::client::Api;

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

    /// Where the commands' output lines go: above the bars, or to standard error.
    pub fn printer(&self) -> super::output::Printer {
        super::output::Printer::new(self.bars.as_ref().map(|b| b.multi.clone()))
    }

    /// A run of `backfill` finished: its bar appears if it had none.
    pub fn ran(&mut self, api: &Api, backfill: Option<i64>) {
        let (Some(bars), Some(id)) = (&mut self.bars, backfill) else { return };
        if !bars.by_backfill.contains_key(&id) && bars.by_backfill.len() < MAX_BARS {
            // The rate is ours (`rate`): indicatif's `{per_sec}` has four decimals.
            let style =
                ProgressStyle::with_template("{prefix:>14} [{bar:32.cyan/blue}] {pos}/{len} {msg} {rate} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate(state.per_sec()));
                    })
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

/// A rate as people read it: three significant figures, thousands grouped, no trailing zeros
/// (`5,020/s`, `12.3/s`, `0.52/s`); `0/s` for none (or no estimate yet).
fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second <= 0.0 {
        return "0/s".into();
    }
    // Digits before the point (0 or fewer below 1): three figures need the rest as decimals,
    // and above 999 the figures past the third are rounded away.
    let digits = per_second.log10().floor() as i32 + 1;
    let decimals = usize::try_from(3 - digits).unwrap_or(0);
    let rounded = if digits > 3 {
        let unit = 10f64.powi(digits - 3);
        (per_second / unit).round() * unit
    } else {
        per_second
    };
    let text = format!("{rounded:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { text.as_str() };
    let (whole, fraction) = text.split_once('.').map_or((text, None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(f) => format!("{grouped}.{f}/s"),
        None => format!("{grouped}/s"),
    }
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rates_have_three_significant_figures_for_people() {
        for (per_second, shown) in [
            (5022.1353, "5,020/s"),
            (12.3456, "12.3/s"),
            (0.52, "0.52/s"),
            (0.5249, "0.525/s"),
            (1.0, "1/s"),
            (100.04, "100/s"),
            (999.6, "1,000/s"),
            (0.9996, "1/s"),
            (123_456.7, "123,000/s"),
            (3_455_000.0, "3,460,000/s"),
            (0.001234, "0.00123/s"),
            (0.0, "0/s"),
            (f64::NAN, "0/s"),
            (f64::INFINITY, "0/s"),
        ] {
            assert_eq!(rate(per_second), shown, "{per_second}");
        }
    }
}
