//! A command's output on its way out of the worker: to the server, as the run's log
//! (`Outbox`: what is not yet shipped, bounded), and to the worker's standard error, a line
//! at a time with the run's pipeline and date in front (`Lines`, `Printer`). Pure but for
//! `Printer`, which writes.

use indicatif::MultiProgress;

/// Ship the log once this much is waiting (or `SHIP_EVERY` after the last ship).
pub const SHIP_AT: usize = 64 * 1024;
/// Ship what is waiting at least this often while a command runs.
pub const SHIP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// The most output a run holds unshipped (the server unreachable): past it, what comes is
/// dropped until shipping resumes, and a line in the log says how much.
pub const OUTBOX_BYTES: usize = 512 * 1024;
/// The most output left at a command's end that goes with the report (as base64 in its
/// JSON) rather than in a request of its own before it.
pub const WITH_REPORT: usize = 256 * 1024;
/// A line longer than this is shown in pieces of this length.
const LINE_BYTES: usize = 8 * 1024;

/// A run's output not yet shipped: the bytes from `offset` on of the stream the server gets
/// (the output, with a line where bytes were dropped).
#[derive(Debug, Default)]
pub struct Outbox {
    /// Where `pending` starts in the stream: what the server has acknowledged.
    offset: u64,
    pending: Vec<u8>,
    /// Bytes dropped since the outbox filled, not yet said in the stream.
    dropped: u64,
    /// Whether the waiting bytes have reached `SHIP_AT` since the last ship (said once).
    full_said: bool,
    /// Whether shipping fails (the server away, or refusing): then what does not fit is
    /// dropped, where otherwise the reader waits for room.
    failing: bool,
}

impl Outbox {
    /// Takes `bytes` of output, as much as fits; while shipping fails, the rest is dropped
    /// (and counted) too. Returns how many bytes it took, and whether the bytes waiting have
    /// just reached `SHIP_AT` (time to wake the shipper).
    pub fn push(&mut self, bytes: &[u8]) -> (usize, bool) {
        let room = OUTBOX_BYTES.saturating_sub(self.pending.len());
        let (kept, lost) = if self.dropped > 0 { (&[][..], bytes) } else { bytes.split_at(bytes.len().min(room)) };
        self.pending.extend_from_slice(kept);
        let mut took = kept.len();
        if self.failing || self.dropped > 0 {
            self.dropped += lost.len() as u64;
            took = bytes.len();
        }
        let wake = self.pending.len() >= SHIP_AT && !self.full_said;
        self.full_said |= wake;
        (took, wake)
    }

    /// Whether shipping fails now (see `push`).
    pub fn set_failing(&mut self, failing: bool) {
        self.failing = failing;
    }

    /// Where the waiting bytes start in the stream, and the bytes.
    pub fn waiting(&self) -> (u64, &[u8]) {
        (self.offset, &self.pending)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.dropped == 0
    }

    /// What is left to ship, if it may go with the report (at most `WITH_REPORT` bytes, and
    /// no drop left to say): where it starts in the stream, and the bytes.
    pub fn with_report(&self) -> Option<(u64, &[u8])> {
        (self.dropped == 0 && !self.pending.is_empty() && self.pending.len() <= WITH_REPORT)
            .then_some((self.offset, self.pending.as_slice()))
    }

    /// The server has the stream up to `received`: those bytes go; once there is room
    /// again, a line says how many were dropped meanwhile.
    pub fn shipped(&mut self, received: u64) {
        let n = usize::try_from(received.saturating_sub(self.offset)).unwrap_or(usize::MAX).min(self.pending.len());
        self.pending.drain(..n);
        self.offset += n as u64;
        self.full_said = self.pending.len() >= SHIP_AT;
        if self.dropped > 0 && self.pending.len() < OUTBOX_BYTES / 2 {
            let line = format!(
                "\n[backfilld worker: {} bytes of output dropped here: the server could not take them in time]\n",
                self.dropped
            );
            self.pending.extend_from_slice(line.as_bytes());
            self.dropped = 0;
        }
    }
}

/// Splits output into lines and puts the run's prefix before each.
#[derive(Debug)]
pub struct Lines {
    prefix: String,
    partial: Vec<u8>,
}

impl Lines {
    pub fn new(prefix: String) -> Lines {
        Lines { prefix, partial: vec![] }
    }

    /// Takes `bytes` of output, and gives each line it completes to `out`, prefixed (bytes
    /// that are not UTF-8 shown as U+FFFD, a carriage return at the end dropped).
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(&str)) {
        while let Some(i) = bytes.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&bytes[..i]);
            self.emit(out);
            bytes = &bytes[i + 1..];
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= LINE_BYTES {
            let rest = self.partial.split_off(LINE_BYTES);
            self.emit(out);
            self.partial = rest;
        }
    }

    /// The last line, if the output did not end with a newline.
    pub fn finish(&mut self, out: &mut impl FnMut(&str)) {
        if !self.partial.is_empty() {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut impl FnMut(&str)) {
        let line = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
        out(&format!("{}{}", self.prefix, String::from_utf8_lossy(line)));
        self.partial.clear();
    }
}

/// The prefix of a run's lines: its pipeline and date (`etl 2024-03-01 | `, the time too
/// unless midnight), as `docker compose` prefixes a service's lines.
pub fn prefix(run: &serde_json::Value) -> String {
    let pipeline = run["pipeline_uuid"].as_str().unwrap_or("?");
    let date = run["execution_date"].as_str().unwrap_or("no date");
    let date = date.strip_suffix("+00:00").unwrap_or(date);
    let date = date.strip_suffix(" 00:00:00").or_else(|| date.strip_suffix(":00")).unwrap_or(date);
    format!("{pipeline} {date} | ")
}

/// Where the lines go: above the progress bars on a terminal, else straight to standard
/// error, a whole line per write so that runs' lines do not mix mid-line.
#[derive(Clone)]
pub struct Printer {
    bars: Option<MultiProgress>,
}

impl Printer {
    pub fn new(bars: Option<MultiProgress>) -> Printer {
        Printer { bars }
    }

    pub fn print(&self, line: &str) {
        match &self.bars {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => {
                use std::io::Write;
                let mut text = String::with_capacity(line.len() + 1);
                text.push_str(line);
                text.push('\n');
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut l = Lines::new("p 2024-03-01 | ".into());
        let mut out = vec![];
        for c in chunks {
            l.feed(c, &mut |s| out.push(s.to_string()));
        }
        l.finish(&mut |s| out.push(s.to_string()));
        out
    }

    #[test]
    fn output_is_shown_a_prefixed_line_at_a_time_whatever_its_chunks_and_bytes() {
        assert_eq!(
            lines(&[b"loading 2024", b"-03-01\nok\r\n"]),
            ["p 2024-03-01 | loading 2024-03-01", "p 2024-03-01 | ok"]
        );
        // No final newline; bytes that are not UTF-8.
        assert_eq!(lines(&[b"a\n\xff\xfe end"]), ["p 2024-03-01 | a", "p 2024-03-01 | \u{fffd}\u{fffd} end"]);
        assert_eq!(lines(&[b"\n"]), ["p 2024-03-01 | "]);
        assert!(lines(&[b""]).is_empty());
        // A line without end is shown in pieces.
        let long = vec![b'x'; LINE_BYTES * 2 + 1];
        assert_eq!(lines(&[&long]).len(), 3);
    }

    #[test]
    fn the_prefix_is_the_pipeline_and_the_date() {
        let run = serde_json::json!({"pipeline_uuid": "etl", "execution_date": "2024-03-01 00:00:00"});
        assert_eq!(prefix(&run), "etl 2024-03-01 | ");
        let run = serde_json::json!({"pipeline_uuid": "etl", "execution_date": "2024-03-01 04:30:00"});
        assert_eq!(prefix(&run), "etl 2024-03-01 04:30 | ");
        assert_eq!(prefix(&serde_json::json!({})), "? no date | ");
    }

    #[test]
    fn the_outbox_keeps_the_head_drops_the_middle_and_says_so() {
        let mut o = Outbox::default();
        assert_eq!(o.push(&[b'a'; 10]), (10, false));
        assert_eq!(o.waiting(), (0, &[b'a'; 10][..]));
        // Shipped in part (the server took 4), then whole.
        o.shipped(4);
        assert_eq!(o.waiting().0, 4);
        assert_eq!(o.push(&vec![b'b'; SHIP_AT]), (SHIP_AT, true), "reaching SHIP_AT wakes the shipper");
        assert_eq!(o.push(b"c"), (1, false), "once");
        o.shipped(10 + SHIP_AT as u64 + 1);
        assert!(o.is_empty());
        // Shipping works: a full outbox takes what fits, the rest waits for room.
        assert_eq!(o.push(&vec![b'd'; OUTBOX_BYTES + 100]).0, OUTBOX_BYTES);
        // The server away: the rest is dropped and counted.
        o.set_failing(true);
        assert_eq!(o.push(&[b'd'; 100]).0, 100);
        o.push(b"more");
        assert_eq!(o.waiting().1.len(), OUTBOX_BYTES);
        let start = o.waiting().0;
        o.shipped(start + OUTBOX_BYTES as u64);
        let (at, bytes) = o.waiting();
        assert_eq!(at, start + OUTBOX_BYTES as u64);
        let said = String::from_utf8_lossy(bytes);
        assert!(said.contains("104 bytes of output dropped"), "{said}");
        o.push(b"after\n");
        assert!(o.waiting().1.ends_with(b"after\n"));
    }
}
