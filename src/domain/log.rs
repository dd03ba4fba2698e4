//! A run's log as the server keeps it: the whole output while it is short; past that, its
//! head and its tail with a marker line between them saying how many bytes were cut. Pure
//! arithmetic over positions, shared by the store (which keeps the pieces) and the service
//! (which appends and reads): where an append's bytes are split into pieces, and where a
//! position in the stored log falls.
//!
//! Two kinds of position: in the run's whole *output* (what the worker shipped, from 0: where
//! a chunk starts, `POST ...?offset=`), and in the *stored* log (the head, the marker, the
//! tail, as `GET` answers it: `Range`, `?offset=`).

/// The first bytes of a run's output, always kept.
pub const HEAD_BYTES: u64 = 512 * 1024;
/// Past the head, at least this many of the last bytes are kept: with the head, a run's first
/// 1 MiB is kept whole, and of a longer one 1 MiB or a little more.
pub const TAIL_BYTES: u64 = 512 * 1024;
/// The largest piece stored: the tail is trimmed a piece at a time, so it holds at most
/// `TAIL_BYTES + PIECE_BYTES` bytes, and reading a few KiB reads at most a piece or two.
pub const PIECE_BYTES: u64 = 64 * 1024;
/// The most a stored log holds, marker aside.
pub const MAX_STORED_BYTES: u64 = HEAD_BYTES + TAIL_BYTES + PIECE_BYTES;

/// What is known of a run's log without reading its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogMeta {
    /// Bytes of output received in all (where the next chunk starts).
    pub received: u64,
    /// Bytes dropped between the head and the tail.
    pub cut: u64,
}

impl LogMeta {
    /// Bytes of the head stored.
    pub fn head(&self) -> u64 {
        self.received.min(HEAD_BYTES)
    }

    /// Bytes of the tail stored.
    pub fn tail(&self) -> u64 {
        self.received - self.head() - self.cut
    }

    /// Where the tail starts in the output.
    pub fn tail_start(&self) -> u64 {
        self.head() + self.cut
    }

    /// Bytes of output stored (head and tail).
    pub fn stored_bytes(&self) -> u64 {
        self.received - self.cut
    }

    /// The line between the head and the tail: empty unless bytes were cut.
    pub fn marker(&self) -> String {
        if self.cut == 0 {
            String::new()
        } else {
            format!("\n[backfilld: {} bytes of output cut here; the first and the last are kept]\n", self.cut)
        }
    }

    /// The length of the log as stored and answered: head, marker and tail.
    pub fn len(&self) -> u64 {
        self.stored_bytes() + self.marker().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Where the stored log's bytes from `from` on come from: the rest of the head (an output
    /// range), the rest of the marker, and the rest of the tail (an output range).
    pub fn parts_from(&self, from: u64) -> Parts {
        let head = self.head();
        let marker = self.marker();
        let m = marker.len() as u64;
        let head_range = (from.min(head), head);
        let marker_from = usize::try_from(from.saturating_sub(head).min(m)).unwrap_or(marker.len());
        let tail_skip = from.saturating_sub(head + m).min(self.tail());
        Parts {
            head: head_range,
            marker: marker.as_bytes()[marker_from..].to_vec(),
            tail: (self.tail_start() + tail_skip, self.received),
        }
    }

    /// The stored position of the output's byte `at` (or, when it was cut, of the marker's
    /// start): what a follower that has read the output up to `at` asks for next.
    pub fn stored_position(&self, at: u64) -> u64 {
        let at = at.min(self.received);
        if at <= self.head() {
            at
        } else if at < self.tail_start() {
            self.head()
        } else {
            self.head() + self.marker().len() as u64 + (at - self.tail_start())
        }
    }
}

/// Where a read's bytes come from, in order (see `LogMeta::parts_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// Output positions `[start, end)` of the head.
    pub head: (u64, u64),
    pub marker: Vec<u8>,
    /// Output positions `[start, end)` of the tail.
    pub tail: (u64, u64),
}

/// How `len` new bytes starting at output position `at` are stored: pieces as (output
/// position, start and end in the new bytes), none crossing the head's end or longer than
/// `PIECE_BYTES`.
pub fn pieces(at: u64, len: usize) -> Vec<(u64, usize, usize)> {
    let mut out = vec![];
    let mut i = 0usize;
    while i < len {
        let pos = at + i as u64;
        let mut room = PIECE_BYTES;
        if pos < HEAD_BYTES {
            room = room.min(HEAD_BYTES - pos);
        }
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(len - i);
        out.push((pos, i, i + n));
        i += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_stop_at_the_head_s_end_and_at_the_piece_size() {
        assert_eq!(pieces(0, 10), vec![(0, 0, 10)]);
        assert!(pieces(5, 0).is_empty());
        let at = HEAD_BYTES - 10;
        assert_eq!(pieces(at, 30), vec![(at, 0, 10), (HEAD_BYTES, 10, 30)]);
        let p = PIECE_BYTES as usize;
        assert_eq!(
            pieces(HEAD_BYTES, 2 * p + 1),
            vec![
                (HEAD_BYTES, 0, p),
                (HEAD_BYTES + PIECE_BYTES, p, 2 * p),
                (HEAD_BYTES + 2 * PIECE_BYTES, 2 * p, 2 * p + 1)
            ]
        );
    }

    #[test]
    fn a_short_log_is_its_output_and_a_cut_one_has_a_marker_between_head_and_tail() {
        let short = LogMeta { received: 100, cut: 0 };
        assert_eq!((short.head(), short.tail(), short.len()), (100, 0, 100));
        assert_eq!(short.parts_from(40), Parts { head: (40, 100), marker: vec![], tail: (100, 100) });
        assert_eq!(short.stored_position(70), 70);

        let long = LogMeta { received: 3 << 20, cut: (3 << 20) - HEAD_BYTES - TAIL_BYTES };
        let m = long.marker();
        assert!(m.contains(&format!("{} bytes", long.cut)) && m.starts_with('\n') && m.ends_with('\n'), "{m}");
        let m = m.len() as u64;
        assert_eq!(long.len(), HEAD_BYTES + TAIL_BYTES + m);
        assert_eq!(long.tail_start(), (3 << 20) - TAIL_BYTES);
        // From inside the head: the rest of it, the whole marker, the whole tail.
        let p = long.parts_from(10);
        assert_eq!((p.head, p.marker.len() as u64, p.tail), ((10, HEAD_BYTES), m, (long.tail_start(), 3 << 20)));
        // From inside the marker, and from inside the tail.
        let p = long.parts_from(HEAD_BYTES + 3);
        assert_eq!((p.head, p.marker.len() as u64), ((HEAD_BYTES, HEAD_BYTES), m - 3));
        let p = long.parts_from(HEAD_BYTES + m + 5);
        assert_eq!((p.marker.len(), p.tail.0), (0, long.tail_start() + 5));
        // Past the end: nothing.
        let p = long.parts_from(u64::MAX);
        assert_eq!((p.head.0, p.marker.len(), p.tail.0), (HEAD_BYTES, 0, 3 << 20));
        // A follower's place: in the head, in the cut (the marker), in the tail.
        assert_eq!(long.stored_position(7), 7);
        assert_eq!(long.stored_position(HEAD_BYTES + 1), HEAD_BYTES);
        assert_eq!(long.stored_position(long.tail_start() + 9), HEAD_BYTES + m + 9);
        assert_eq!(long.stored_position(u64::MAX), long.len());
    }
}
