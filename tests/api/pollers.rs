//! Keep-alive pollers: many HTTP clients on one thread, each asking for a path every period
//! on a connection it keeps, as dashboards and health checkers do, without a thread each
//! (non-blocking sockets and poll(2)). A poller whose connection the server has closed opens
//! a new one at its next poll; one the server has not accepted yet just waits for its
//! answer; a poll whose connection ends before any of its answer is sent again, once, on a
//! new connection, as HTTP clients do. Shared with examples/bench.rs (`#[path]`), so it
//! depends on nothing else of the tests.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the pollers saw, counted as it happens.
#[derive(Debug, Default)]
pub struct Counts {
    /// Polls answered 200.
    pub answered: AtomicU64,
    /// Polls answered with another status, or with something that is no HTTP answer.
    pub failed: AtomicU64,
    /// Connections opened (each poller's first included).
    pub opened: AtomicU64,
    /// Kept connections the server closed between polls.
    pub closed: AtomicU64,
    /// Polls sent again because their connection ended before any of the answer.
    pub resent: AtomicU64,
    /// Polls whose connection ended before their answer twice, or mid-answer: no answer.
    pub lost: AtomicU64,
}

/// The counts once the pollers have stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub answered: u64,
    pub failed: u64,
    pub opened: u64,
    pub closed: u64,
    pub resent: u64,
    pub lost: u64,
}

/// Pollers running on a thread of their own until `stop`.
pub struct Pollers {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pollers {
    /// `count` pollers of `GET path` on 127.0.0.1:`port`, from the loopback addresses
    /// `from` in turn, each every `period`; the first polls spread evenly over `spread`.
    pub fn start(
        port: u16,
        count: usize,
        from: &[Ipv4Addr],
        path: &str,
        period: Duration,
        spread: Duration,
    ) -> Pollers {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes();
        let started = Instant::now();
        let pollers: Vec<Poller> = (0..count)
            .map(|k| Poller {
                from: from[k % from.len()],
                socket: None,
                state: State::Waiting,
                due: started + spread.mul_f64(k as f64 / count.max(1) as f64),
                answer: Vec::new(),
                resent: false,
            })
            .collect();
        let run = Run { port, request, period, counts: counts.clone(), stop: stop.clone() };
        let thread = Some(std::thread::spawn(move || run.run(pollers)));
        Pollers { stop, counts, thread }
    }

    /// What they saw so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Polls answered 200 so far.
    pub fn answered(&self) -> u64 {
        self.counts.answered.load(Ordering::Relaxed)
    }

    /// Stops them, closing their connections, and says what they saw.
    pub fn stop(mut self) -> Tally {
        self.halt();
        let c = &self.counts;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Tally {
            answered: get(&c.answered),
            failed: get(&c.failed),
            opened: get(&c.opened),
            closed: get(&c.closed),
            resent: get(&c.resent),
            lost: get(&c.lost),
        }
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the pollers' thread");
        }
    }
}

impl Drop for Pollers {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Raises this process's soft limit on open files to its hard limit when it is below
/// `needed`; an error saying so when even the hard limit is.
pub fn allow_open_files(needed: u64) -> Result<(), String> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(format!("{needed} open files are needed; the hard limit is {hard} (ulimit -Hn)"));
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct it is given; a soft limit up to the hard one needs
    // no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

enum State {
    /// Until its next poll is due (its kept connection, if any, open meanwhile).
    Waiting,
    /// A new connection not yet established (the server's queue of connections to accept
    /// may be full: the kernel then retries).
    Connecting,
    /// Its request sent, reading the answer.
    Awaiting,
}

struct Poller {
    from: Ipv4Addr,
    socket: Option<TcpStream>,
    state: State,
    due: Instant,
    /// The answer so far.
    answer: Vec<u8>,
    /// Whether this poll was sent again already.
    resent: bool,
}

struct Run {
    port: u16,
    request: Vec<u8>,
    period: Duration,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

/// How an answer read so far stands.
enum Progress {
    /// Not all of it yet.
    Partial,
    /// Whole: its status, and whether the server closes the connection after it.
    Whole { status: u16, close: bool },
}

impl Run {
    fn run(&self, mut pollers: Vec<Poller>) {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(pollers.len());
        let mut owners: Vec<usize> = Vec::with_capacity(pollers.len());
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut next = now + Duration::from_millis(100);
            for p in pollers.iter_mut() {
                if matches!(p.state, State::Waiting) {
                    if p.due <= now {
                        self.begin(p);
                    } else {
                        next = next.min(p.due);
                    }
                }
            }
            fds.clear();
            owners.clear();
            for (k, p) in pollers.iter().enumerate() {
                let Some(s) = &p.socket else { continue };
                let events = if matches!(p.state, State::Connecting) { libc::POLLOUT } else { libc::POLLIN };
                fds.push(libc::pollfd { fd: s.as_raw_fd(), events, revents: 0 });
                owners.push(k);
            }
            let wait = next.saturating_duration_since(Instant::now()).as_millis().clamp(1, 100) as libc::c_int;
            // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
            if ready <= 0 {
                continue;
            }
            for (fd, &k) in fds.iter().zip(&owners) {
                if fd.revents != 0 {
                    self.ready(&mut pollers[k]);
                }
            }
        }
    }

    /// A poll is due: on the kept connection, or on a new one.
    fn begin(&self, p: &mut Poller) {
        p.answer.clear();
        p.resent = false;
        if p.socket.is_some() {
            self.send(p);
        } else {
            self.connect(p);
        }
    }

    fn connect(&self, p: &mut Poller) {
        let socket = (|| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.set_nonblocking(true)?;
            s.bind(&SocketAddr::from((p.from, 0)).into())?;
            match s.connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)).into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) => return Err(e),
            }
            Ok::<TcpStream, std::io::Error>(s.into())
        })();
        match socket {
            Ok(s) => {
                self.counts.opened.fetch_add(1, Ordering::Relaxed);
                p.socket = Some(s);
                p.state = State::Connecting;
            }
            // Out of ports or files for a moment: tried again shortly, the same poll.
            Err(_) => {
                p.socket = None;
                p.state = State::Waiting;
                p.due = Instant::now() + Duration::from_millis(100);
            }
        }
    }

    fn send(&self, p: &mut Poller) {
        let sent =
            p.socket.as_mut().is_some_and(|s| matches!(s.write(&self.request), Ok(n) if n == self.request.len()));
        if sent {
            p.state = State::Awaiting;
        } else {
            self.ended_before_answer(p);
        }
    }

    /// The poller's socket is ready: connected, answered, or closed.
    fn ready(&self, p: &mut Poller) {
        match p.state {
            State::Connecting => {
                let failed = p.socket.as_ref().is_none_or(|s| !matches!(s.take_error(), Ok(None)));
                if failed {
                    // Refused or timed out: a new connection for the same poll, shortly.
                    p.socket = None;
                    p.state = State::Waiting;
                    p.due = Instant::now() + Duration::from_millis(100);
                } else {
                    self.send(p);
                }
            }
            State::Awaiting => match self.read(p) {
                Some(Progress::Whole { status, close }) => {
                    let count = if status == 200 { &self.counts.answered } else { &self.counts.failed };
                    count.fetch_add(1, Ordering::Relaxed);
                    if close {
                        p.socket = None;
                    }
                    self.next_poll(p);
                }
                Some(Progress::Partial) => {}
                None => self.ended_before_answer(p),
            },
            State::Waiting => {
                // Readable between polls: the server closed the kept connection.
                self.counts.closed.fetch_add(1, Ordering::Relaxed);
                p.socket = None;
            }
        }
    }

    /// Reads what has come of the answer; None when the connection ended first.
    fn read(&self, p: &mut Poller) -> Option<Progress> {
        let s = p.socket.as_mut()?;
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => p.answer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
        Some(parse(&p.answer))
    }

    /// The connection ended before the whole answer: sent again on a new connection when
    /// none of it came, once; else the poll is lost.
    fn ended_before_answer(&self, p: &mut Poller) {
        p.socket = None;
        if p.answer.is_empty() && !p.resent {
            self.counts.resent.fetch_add(1, Ordering::Relaxed);
            self.connect(p);
            p.resent = true;
        } else {
            self.counts.lost.fetch_add(1, Ordering::Relaxed);
            self.next_poll(p);
        }
    }

    /// Waits for the next poll, a period after this one was due (at once when late).
    fn next_poll(&self, p: &mut Poller) {
        p.state = State::Waiting;
        p.answer.clear();
        p.due = (p.due + self.period).max(Instant::now());
    }
}

/// How the answer `raw` stands: whole once its head and its Content-Length of body have come.
fn parse(raw: &[u8]) -> Progress {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return Progress::Partial };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim()))
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if raw.len() < end + 4 + length {
        return Progress::Partial;
    }
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Progress::Whole { status, close: header("connection") == Some("close") }
}
