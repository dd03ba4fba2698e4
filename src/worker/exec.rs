//! Running one run's command: `sh -c CMD` in a process group of its own, with the run's
//! environment and its JSON on standard input, its standard output and error on one pipe
//! (as `2>&1`: one stream, in the order the command wrote it), and killing the whole group
//! when asked (a timeout, a cancel, a stop).
//!
//! One thread per command reads the pipe: it keeps the output's tail (`metrics.output_tail`),
//! puts the output in the run's outbox for the server (`output::Outbox`), and shows its
//! lines (`output::Lines`); it never waits for the server, so the command's pipe never
//! blocks on it. The run's own thread waits for the command's end on a pidfd (a waiting
//! thread where the kernel has none), woken early when output is ready to ship.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
}

/// How the command's end is seen.
enum Exit {
    /// A pidfd, readable once the command has ended; the command is reaped here.
    Pidfd { fd: OwnedFd, child: Box<Child> },
    /// A thread that waits for the command and sends its status.
    Thread(Receiver<std::io::Result<ExitStatus>>),
}

/// A command started and not yet waited for.
pub struct Running {
    pid: i32,
    exit: Mutex<Exit>,
    /// How it ended, once seen.
    ended: Mutex<Option<ExitStatus>>,
    shared: Arc<Shared>,
    /// An eventfd, written when output is ready to ship or (with a waiting thread) the
    /// command has ended.
    wake: Arc<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
}

/// How a command ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited, or a signal ended it.
    Status(ExitStatus),
    /// Waiting for it failed (not expected on Linux).
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

impl Running {
    /// Starts `sh -c command` with `env` added to the worker's environment (less the
    /// worker's own credentials) and `input` on its standard input, in a new process group;
    /// its lines are shown through `lines` unless that is `None`.
    pub fn start(
        command: &str,
        env: &[(String, String)],
        input: Vec<u8>,
        lines: Option<(Lines, Printer)>,
    ) -> std::io::Result<Running> {
        let (reader, writer) = std::io::pipe()?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .env_remove("BACKFILLD_API_KEY")
            .env_remove("BACKFILLD_TOKEN")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .process_group(0);
        let spawned = cmd.spawn();
        // The command holds the pipe's writing end: only the child's copies may keep it
        // open, so that reading ends when the command (and what it started) has closed it.
        drop(cmd);
        let mut child = spawned?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let shared = Arc::new(Shared {
            sink: Mutex::new(Sink { tail: Tail::default(), outbox: Outbox::default(), lines }),
            room: Condvar::new(),
        });
        let started = Self::watch(&mut child, reader, input, &shared);
        let (wake, threads) = match started {
            Ok(t) => t,
            Err(e) => {
                // Nobody will wait for it: kill its group (not reaped, its id is still the
                // group's) and reap it here.
                // SAFETY: as in `signal_group`.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut running = Running {
            pid,
            exit: Mutex::new(Exit::Thread(mpsc::channel().1)),
            ended: Mutex::new(None),
            shared,
            wake,
            threads,
        };
        // SAFETY: pidfd_open(2) on our own child, not yet reaped; the fd it returns is ours.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd >= 0 {
            // SAFETY: a new fd, owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
            running.exit = Mutex::new(Exit::Pidfd { fd, child: Box::new(child) });
            return Ok(running);
        }
        let (tx, rx) = mpsc::channel();
        let wake = running.wake.clone();
        match thread("run-wait", move || {
            let _ = tx.send(child.wait());
            signal(&wake);
        }) {
            Ok(t) => {
                running.threads.push(t);
                running.exit = Mutex::new(Exit::Thread(rx));
                Ok(running)
            }
            Err(e) => {
                running.signal_group();
                Err(e)
            }
        }
    }

    /// Feeds the command its input and starts the thread that reads its output.
    fn watch(
        child: &mut Child,
        mut output: std::io::PipeReader,
        input: Vec<u8>,
        shared: &Arc<Shared>,
    ) -> std::io::Result<(Arc<OwnedFd>, Vec<JoinHandle<()>>)> {
        // SAFETY: eventfd(2) makes a new fd, owned by nobody else.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let mut threads = vec![];
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input must not block the worker: what the pipe
            // does not take at once is written by a thread of its own; a closed pipe is no
            // error. A run's JSON is small, so that thread is seldom needed.
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
                        threads.push(thread("run-stdin", move || {
                            let _ = stdin.write_all(&rest);
                        })?);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        let (shared, waker) = (shared.clone(), wake.clone());
        threads.push(thread("run-output", move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match output.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let bytes = &buf[..n];
                let mut s = lock(&shared);
                s.tail.push(bytes);
                if let Some((lines, printer)) = &mut s.lines {
                    lines.feed(bytes, &mut |l| printer.print(l));
                }
                // While shipping works, a full outbox waits for the next ship (a command
                // writing faster than the server takes it waits that long); while it fails,
                // the outbox drops what does not fit instead.
                let mut rest = bytes;
                loop {
                    let (took, ship) = s.outbox.push(rest);
                    rest = &rest[took..];
                    if ship || !rest.is_empty() {
                        signal(&waker);
                    }
                    if rest.is_empty() {
                        break;
                    }
                    s = shared
                        .room
                        .wait_timeout(s, Duration::from_millis(100))
                        .map_or_else(|e| e.into_inner().0, |r| r.0);
                }
            }
        })?);
        Ok((wake, threads))
    }

    /// Waits until the command ends (then its end), `until` passes, or output is ready to
    /// ship (then `None`, early).
    pub fn wait_until(&self, until: Instant) -> Option<Ended> {
        if let Some(status) = *self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Some(Ended::Status(status));
        }
        let mut exit = self.exit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ended = match &mut *exit {
            Exit::Pidfd { fd, child } => {
                poll(&[fd.as_raw_fd(), self.wake.as_raw_fd()], until);
                drain(&self.wake);
                match child.try_wait() {
                    Ok(Some(status)) => Some(Ended::Status(status)),
                    Ok(None) => None,
                    Err(e) => Some(Ended::Lost(e.to_string())),
                }
            }
            Exit::Thread(rx) => {
                let check = |rx: &Receiver<std::io::Result<ExitStatus>>| match rx.try_recv() {
                    Ok(Ok(status)) => Some(Ended::Status(status)),
                    Ok(Err(e)) => Some(Ended::Lost(e.to_string())),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => Some(Ended::Lost("the waiting thread ended".into())),
                };
                check(rx).or_else(|| {
                    poll(&[self.wake.as_raw_fd()], until);
                    drain(&self.wake);
                    check(rx)
                })
            }
        };
        if let Some(Ended::Status(status)) = ended {
            *self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
        }
        ended
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
        // (process_group(0) made its leader's pid the group id). Linux does not give a new
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
        for t in &self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                let (offset, bytes) = self.waiting();
                if bytes.len() >= super::output::SHIP_AT {
                    let received = ship(offset, bytes);
                    if received.is_some() {
                        deadline = Instant::now() + grace;
                    }
                    self.shipped(received);
                } else {
                    poll(&[self.wake.as_raw_fd()], Instant::now() + Duration::from_millis(20));
                    drain(&self.wake);
                }
            }
        }
        for t in self.threads {
            if t.is_finished() {
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
fn signal(efd: &OwnedFd) {
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
