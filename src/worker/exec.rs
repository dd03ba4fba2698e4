//! Running one run's command: `sh -c CMD` in a process group of its own, started by the
//! worker's keeper (`keeper`), with the run's environment and its JSON on standard input,
//! its standard output and error on one pipe (as `2>&1`: one stream, in the order the
//! command wrote it), and killing the whole group when asked (a timeout, a cancel, a stop).
//!
//! The output is read as it comes: its tail kept (`metrics.output_tail`), put in the run's
//! outbox for the server (`output::Outbox`), its lines shown (`output::Lines`). The run's own
//! thread reads it while it waits for the command's end (which the keeper's reading thread
//! hands over, writing the run's eventfd), until it has to call the server while the command runs (a
//! heartbeat, a ship): then a thread of its own takes the pipe over (`detach`), so that the
//! command's pipe never waits for the server. A command that ends before that, most short
//! ones, costs no thread.

use std::io::{ErrorKind, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::keeper::{Keeper, SpawnError, Spawned};
use super::output::{Lines, Outbox, Printer};
use super::plan::Tail;

/// The output's sink, and the reader's wait for room in the outbox.
struct Shared {
    sink: Mutex<Sink>,
    room: Condvar,
}

/// What the reading thread keeps of the output.
struct Sink {
    tail: Tail,
    outbox: Outbox,
    /// The lines shown on the worker's standard error, unless `--quiet`.
    lines: Option<(Lines, Printer)>,
    /// Whether the output has ended (the reader read its end, or failed).
    ended: bool,
}

/// The output's pipe while the run's thread reads it itself (non-blocking), with what the
/// outbox had no room for yet (already shown and kept in the tail).
struct Inline {
    pipe: PipeReader,
    carry: Vec<u8>,
}

/// A command started and not yet waited for.
pub struct Running {
    pid: i32,
    /// Its end, as the keeper says it.
    exit: Mutex<Receiver<std::io::Result<ExitStatus>>>,
    /// How it ended, once seen.
    ended: Mutex<Option<ExitStatus>>,
    shared: Arc<Shared>,
    /// An eventfd, written when output is ready to ship, when the output has ended, or (by the
    /// keeper's reading thread) when the command has ended.
    wake: Arc<OwnedFd>,
    /// The pipe, until a reading thread takes it over.
    inline: Mutex<Option<Inline>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// How a command ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited, or a signal ended it.
    Status(ExitStatus),
    /// Its end cannot be known: the keeper has ended (which kills it).
    Lost(String),
}

/// What is left of a command's output once it has ended.
pub struct Output {
    /// The tail as text, and how many bytes came before it.
    pub tail: (String, u64),
    /// What was not yet shipped.
    pub outbox: Outbox,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Sink> {
    shared.sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn held<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sink {
    /// New output: kept in the tail and shown; then as much as the outbox takes. Returns the
    /// bytes it did not take (it is full and shipping works), and whether to wake the shipper.
    fn take<'b>(&mut self, bytes: &'b [u8]) -> (&'b [u8], bool) {
        self.tail.push(bytes);
        if let Some((lines, printer)) = &mut self.lines {
            lines.feed(bytes, &mut |l| printer.print(l));
        }
        let (took, ship) = self.outbox.push(bytes);
        (&bytes[took..], ship)
    }
}

/// How much output the run's thread reads at once.
const READ_BYTES: usize = 64 * 1024;

/// The reading thread: what the outbox had no room for first, then the pipe to its end.
/// While shipping works, a full outbox waits for the next ship (a command writing faster than
/// the server takes it waits that long); while it fails, the outbox drops what does not fit.
fn read_to_end(shared: &Shared, waker: &OwnedFd, mut pipe: PipeReader, carry: Vec<u8>) {
    let put = |mut rest: &[u8]| {
        let mut s = lock(shared);
        loop {
            let (took, ship) = s.outbox.push(rest);
            rest = &rest[took..];
            if ship || !rest.is_empty() {
                signal(waker);
            }
            if rest.is_empty() {
                return;
            }
            s = shared.room.wait_timeout(s, Duration::from_millis(100)).map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    };
    put(&carry);
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let bytes = &buf[..n];
        {
            let mut s = lock(shared);
            s.tail.push(bytes);
            if let Some((lines, printer)) = &mut s.lines {
                lines.feed(bytes, &mut |l| printer.print(l));
            }
        }
        put(bytes);
    }
    // The output has ended: whoever waits for that (`finish`) goes on at once.
    lock(shared).ended = true;
    signal(waker);
}

impl Running {
    /// Starts `sh -c command` through the worker's keeper (`keeper`), with `env` added to
    /// the worker's environment (less the worker's own credentials) and `input` on its
    /// standard input, in a new process group; its lines are shown through `lines` unless
    /// that is `None`.
    pub fn start(
        keeper: &Keeper,
        command: &str,
        env: &[(String, String)],
        input: Vec<u8>,
        lines: Option<(Lines, Printer)>,
    ) -> Result<Running, SpawnError> {
        let (reader, writer) = std::io::pipe()?;
        let (stdin_reader, stdin) = std::io::pipe()?;
        // SAFETY: eventfd(2) makes a new fd, owned by nobody else.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: as above.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let Spawned { pid, ended } = keeper.spawn(command, env, stdin_reader.into(), writer.into(), wake.clone())?;
        let shared = Arc::new(Shared {
            sink: Mutex::new(Sink { tail: Tail::default(), outbox: Outbox::default(), lines, ended: false }),
            room: Condvar::new(),
        });
        let running = Running {
            pid,
            exit: Mutex::new(ended),
            ended: Mutex::new(None),
            shared,
            wake,
            inline: Mutex::new(None),
            threads: Mutex::new(vec![]),
        };
        match feed(stdin, input) {
            Ok(writer) => held(&running.threads).extend(writer),
            Err(e) => {
                // Nobody will wait for it: its group is killed (the keeper reaps it).
                running.signal_group();
                return Err(e.into());
            }
        }
        set_nonblocking(reader.as_raw_fd(), true);
        *held(&running.inline) = Some(Inline { pipe: reader, carry: vec![] });
        Ok(running)
    }

    /// Waits until the command ends (then its end), `until` passes, or output is ready to
    /// ship (then `None`, early).
    pub fn wait_until(&self, until: Instant) -> Option<Ended> {
        if let Some(status) = *self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Some(Ended::Status(status));
        }
        // Output read here first: while the outbox cannot take it, back to the caller to ship.
        if self.pump() {
            return None;
        }
        let pipe = held(&self.inline).as_ref().map(|i| i.pipe.as_raw_fd());
        let exit = self.exit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let check = |rx: &Receiver<std::io::Result<ExitStatus>>| match rx.try_recv() {
            Ok(Ok(status)) => Some(Ended::Status(status)),
            Ok(Err(e)) => Some(Ended::Lost(e.to_string())),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Ended::Lost("the keeper's reading thread ended".into())),
        };
        let ended = check(&exit).or_else(|| {
            poll(&[self.wake.as_raw_fd()].into_iter().chain(pipe).collect::<Vec<_>>(), until);
            drain(&self.wake);
            self.pump();
            check(&exit)
        });
        if let Some(Ended::Status(status)) = ended {
            *self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
        }
        ended
    }

    /// Reads what the pipe holds now, while the run's thread reads it itself. Returns true
    /// when the caller should ship (the outbox is full, or has reached `SHIP_AT`).
    fn pump(&self) -> bool {
        let mut inline = held(&self.inline);
        let Some(i) = inline.as_mut() else { return false };
        let mut s = lock(&self.shared);
        if !i.carry.is_empty() {
            let (took, _) = s.outbox.push(&i.carry);
            i.carry.drain(..took);
            if !i.carry.is_empty() {
                return true;
            }
        }
        let mut ship = false;
        let mut buf = [0u8; 16 * 1024];
        // At most this much at once, so that a command writing without pause is still
        // heartbeaten (its next wait reads on).
        for _ in 0..(READ_BYTES / buf.len()) {
            match i.pipe.read(&mut buf) {
                Ok(0) => {
                    s.ended = true;
                    *inline = None;
                    return ship;
                }
                Ok(n) => {
                    let (rest, wake) = s.take(&buf[..n]);
                    ship |= wake;
                    if !rest.is_empty() {
                        i.carry.extend_from_slice(rest);
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    s.ended = true;
                    *inline = None;
                    return ship;
                }
            }
        }
        ship
    }

    /// Before a call to the server while the command runs: a thread of its own takes the
    /// pipe over, so that the command's output does not wait for the call.
    pub fn detach(&self) {
        let Some(Inline { pipe, carry }) = held(&self.inline).take() else { return };
        set_nonblocking(pipe.as_raw_fd(), false);
        let (shared, waker) = (self.shared.clone(), self.wake.clone());
        match thread("run-output", move || read_to_end(&shared, &waker, pipe, carry)) {
            Ok(t) => held(&self.threads).push(t),
            // No thread: the output is no longer read; the command may block on it, and its
            // timeout or lease will end it.
            Err(e) => log::warn!("no thread could be started to read a command's output: {e}"),
        }
    }

    /// The output waiting to be shipped: where it starts in the stream, and a copy of it.
    pub fn waiting(&self) -> (u64, Vec<u8>) {
        let s = lock(&self.shared);
        let (offset, bytes) = s.outbox.waiting();
        (offset, bytes.to_vec())
    }

    /// How a ship went: the server has the stream up to `received`, or it did not answer
    /// (then, until a ship goes through, output that does not fit is dropped).
    pub fn shipped(&self, received: Option<u64>) {
        let mut s = lock(&self.shared);
        s.outbox.set_failing(received.is_none());
        if let Some(r) = received {
            s.outbox.shipped(r);
        }
        drop(s);
        self.shared.room.notify_all();
    }

    /// Kills the command's whole process group (SIGKILL) and waits for the command itself.
    /// Callers ask `wait_until(now)` first, so that a command that has just ended is not
    /// reported killed.
    pub fn kill(&self) -> Option<Ended> {
        self.signal_group();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(e) = self.wait_until(deadline) {
                return Some(e);
            }
        }
        None
    }

    /// SIGKILL to the command's process group: after its end too, so that what it left
    /// running in the background does not outlive it (and hold its output open).
    fn signal_group(&self) {
        // SAFETY: kill(2) with a negative pid signals that process group, the command's own
        // (the keeper made its leader's pid the group id). Linux does not give a new
        // process an id that still names a live group, so while any process of the group
        // lives the id is the group's; once none does, the call fails with ESRCH, unless in
        // the moment since the id was reused, which the pid allocator makes take a wrap of
        // the whole pid space.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
    }

    /// What is left of the output, once it has ended or `grace` has passed without any
    /// (`ship` ships what waits meanwhile: the reader may wait for room); what the command
    /// left running in its process group is killed first. The last line without a newline
    /// is shown now.
    pub fn finish(self, grace: Duration, mut ship: impl FnMut(u64, Vec<u8>) -> Option<u64>) -> Output {
        self.signal_group();
        let mut deadline = Instant::now() + grace;
        while !lock(&self.shared).ended && Instant::now() < deadline {
            let full = self.pump();
            if lock(&self.shared).ended {
                break;
            }
            let (offset, bytes) = self.waiting();
            if full || bytes.len() >= super::output::SHIP_AT {
                let received = ship(offset, bytes);
                if received.is_some() {
                    deadline = Instant::now() + grace;
                }
                self.shipped(received);
            } else {
                // Woken when the pipe has more (read here), or when the reading thread has
                // read its end or waits for room in the outbox.
                let pipe = held(&self.inline).as_ref().map(|i| i.pipe.as_raw_fd());
                poll(&[self.wake.as_raw_fd()].into_iter().chain(pipe).collect::<Vec<_>>(), deadline);
                drain(&self.wake);
            }
        }
        // Read here to its end, or given up past the grace: the pipe is closed either way.
        if let Some(i) = held(&self.inline).take() {
            // What the outbox still had no room for (shipping failed meanwhile): dropped, and
            // said in the log.
            let mut s = lock(&self.shared);
            s.outbox.set_failing(true);
            s.outbox.push(&i.carry);
        }
        let ended = lock(&self.shared).ended;
        for t in std::mem::take(&mut *held(&self.threads)) {
            // The reader, once it has said the output ended, is about to return; a writer of
            // the command's input is waited for only if it is done.
            if ended && t.thread().name() == Some("run-output") || t.is_finished() {
                let _ = t.join();
            }
        }
        let mut s = lock(&self.shared);
        if let Some((lines, printer)) = &mut s.lines {
            lines.finish(&mut |l| printer.print(l));
        }
        Output { tail: s.tail.text(), outbox: std::mem::take(&mut s.outbox) }
    }
}

/// Writes the command's input: what the pipe does not take at once is written by a thread
/// of its own (returned), so that a command that does not read its input never blocks the
/// worker; a closed pipe is no error. A run's JSON is small, so that thread is seldom needed.
fn feed(mut stdin: PipeWriter, input: Vec<u8>) -> std::io::Result<Option<JoinHandle<()>>> {
    set_nonblocking(stdin.as_raw_fd(), true);
    let mut written = 0;
    while written < input.len() {
        match stdin.write(&input[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                set_nonblocking(stdin.as_raw_fd(), false);
                let rest = input[written..].to_vec();
                return thread("run-stdin", move || {
                    let _ = stdin.write_all(&rest);
                })
                .map(Some);
            }
            Err(_) => break,
        }
    }
    Ok(None)
}

fn thread(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

fn set_nonblocking(fd: RawFd, on: bool) {
    // SAFETY: fcntl(2) on an fd we hold, changing only its O_NONBLOCK flag.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
            libc::fcntl(fd, libc::F_SETFL, flags);
        }
    }
}

/// Wakes whoever polls the eventfd.
pub(super) fn signal(efd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: an 8-byte write of a u64 to an eventfd we hold.
    unsafe {
        libc::write(efd.as_raw_fd(), (&raw const one).cast(), 8);
    }
}

/// Resets the eventfd (non-blocking: nothing to read is fine).
fn drain(efd: &OwnedFd) {
    let mut n: u64 = 0;
    // SAFETY: an 8-byte read into a u64 from an eventfd we hold.
    unsafe {
        libc::read(efd.as_raw_fd(), (&raw mut n).cast(), 8);
    }
}

/// Waits until one of `fds` is readable or `until` passes (or a signal interrupts).
fn poll(fds: &[RawFd], until: Instant) {
    let mut set: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }).collect();
    let left = until.saturating_duration_since(Instant::now());
    // Rounded up, so that a wait for 0.3 ms does not spin.
    let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
    // SAFETY: poll(2) over a slice of pollfds we own, its length given.
    unsafe {
        libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, ms);
    }
}

/// The exit code or the signal of a finished command, as the run's metrics say them.
pub fn describe(status: &ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}
