//! The keeper: the process that starts a worker's commands, so that they end with the worker
//! however it ends, and so that what a command starts ends with the command.
//!
//! A worker with `--exec` starts one keeper (`backfilld worker-keeper`, the same binary,
//! with a socket on descriptor 3 as its only link to the worker). For each run the worker
//! sends it the command and its environment, with the two pipe ends the command gets (its
//! standard input, and its output); the keeper starts `/bin/sh -c COMMAND` as its own child,
//! in a process group of its own, says its pid back, and later its status when it ends. The
//! worker still writes the command's input and reads its output itself, and kills its group
//! for a timeout, a cancel or a stop.
//!
//! Why a process and not the worker itself: a process killed with SIGKILL can do nothing as
//! it dies, and `PR_SET_PDEATHSIG` is not enough (it fires when the spawning *thread* ends,
//! and what `sh -c` forks does not inherit it). The keeper's end of the socket closes only
//! when the worker has gone (no other process holds the worker's end), so the keeper learns
//! of the death and acts on it. Child subreapers (`PR_SET_CHILD_SUBREAPER`) keep every
//! process a command starts within reach, also one that leaves the command's process group
//! (`setsid`, a daemon's double fork): an orphan goes to its nearest subreaper ancestor
//! instead of init.
//!
//! - Each command's shell is a subreaper (set before exec, kept across it): while the
//!   command runs, what it starts stays below it, however it detaches.
//! - **A command ends** (or is killed): the keeper kills what is left of its process group;
//!   what its shell held comes to the keeper, a subreaper too, which kills every child that
//!   is not a running command's shell (only an ended command's processes come to it).
//! - **The worker ends**, however it ends: the keeper kills every command's group and every
//!   child, again as their children come to it, until none is left.
//! - **The keeper is killed**: its commands come to the worker, a subreaper as well, which
//!   kills them and what they started.
//!
//! Not contained: a process that a command has another service start (`systemd-run`, `at`,
//! `ssh`, a container runtime) is that service's child, not the command's; and if the worker
//! and the keeper are killed together with SIGKILL, their commands are left running. The
//! keeper is in a process group of its own: a Ctrl-C in the worker's terminal reaches the
//! worker (which stops as it is asked), not it.
//!
//! The worker's side (`Keeper`) has one thread that reads what the keeper says and hands it
//! to the run waiting for it. The messages are JSON, one per packet (`SOCK_SEQPACKET`: each
//! is read whole).

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The keeper's end of its socket, in the keeper.
const SOCKET_FD: RawFd = 3;

/// The largest message: a run's environment is at most a few hundred KiB (the kernel's
/// bound on one environment string is 128 KiB).
const MAX_MESSAGE: usize = 4 << 20;

/// How long the keeper, or the worker once the keeper has died, keeps killing what commands
/// left before it gives up (processes that do not die at SIGKILL are in an uninterruptible
/// wait).
const CLEAN_FOR: Duration = Duration::from_secs(5);

/// What the worker asks: start `command` with `env` added to the keeper's environment; the
/// command's standard input and output come with the message.
#[derive(Serialize, Deserialize)]
struct Spawn {
    id: u64,
    command: String,
    env: Vec<(String, String)>,
}

/// What the keeper says.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Event {
    /// The command runs, as `pid` (its process group's id too).
    Started { id: u64, pid: i32 },
    /// The command could not start.
    Failed { id: u64, error: String },
    /// The command has ended; `status` as wait(2) gives it.
    Ended { id: u64, status: i32 },
}

/// Why a command did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The keeper has ended: no command can start any more.
    #[error("the worker's keeper process has ended ({0}); no command can be started")]
    Gone(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A command the keeper started.
pub struct Spawned {
    /// Its pid, and its process group's id.
    pub pid: i32,
    /// Its end, once it comes (an error when the keeper ended first).
    pub ended: Receiver<io::Result<ExitStatus>>,
}

/// A run waiting to hear of its command.
struct Slot {
    /// The command's pid, once it runs.
    pid: Option<i32>,
    started: Option<Sender<Result<i32, SpawnError>>>,
    ended: Sender<io::Result<ExitStatus>>,
    /// Written when the command's end is in `ended`.
    wake: Arc<OwnedFd>,
}

#[derive(Default)]
struct Waiting {
    /// Why the keeper is gone, once it is.
    gone: Option<String>,
    runs: HashMap<u64, Slot>,
}

/// The worker's side: its end of the keeper's socket and the thread that reads it.
pub struct Keeper {
    socket: Arc<OwnedFd>,
    child: Mutex<Option<Child>>,
    next: AtomicU64,
    waiting: Arc<Mutex<Waiting>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper").field("socket", &self.socket.as_raw_fd()).finish_non_exhaustive()
    }
}

fn held<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Keeper {
    /// Starts the keeper: this same binary (`/proc/self/exe`, which still names it if the
    /// file was replaced since), with the worker's environment less its credentials.
    pub fn start() -> io::Result<Arc<Keeper>> {
        let mut fds = [0; 2];
        // SAFETY: socketpair(2) fills the two fds, new and owned by nobody else.
        cvt(unsafe {
            libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
        })?;
        // SAFETY: as above.
        let (mine, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Room for the largest message (the kernel may cap it lower: then a larger
        // environment fails to start, said so).
        let size = MAX_MESSAGE as libc::c_int;
        // SAFETY: setsockopt(2) with an int option on a socket we hold.
        unsafe {
            libc::setsockopt(
                mine.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let raw = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg0("backfilld")
            .arg("worker-keeper")
            .env_remove("BACKFILLD_API_KEY")
            .env_remove("BACKFILLD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: between fork and exec, only dup2(2) and fcntl(2), which are
        // async-signal-safe: the keeper's end becomes its descriptor 3, kept across exec.
        unsafe {
            cmd.pre_exec(move || {
                if raw == SOCKET_FD {
                    cvt(libc::fcntl(raw, libc::F_SETFD, 0))?;
                } else {
                    cvt(libc::dup2(raw, SOCKET_FD))?;
                }
                Ok(())
            });
        }
        // Should the keeper die, its commands come to the worker, which kills them (below,
        // `orphans_killed`) rather than leave them to init.
        // SAFETY: prctl(2) on this process.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        let child = cmd.spawn()?;
        drop(cmd);
        let pid = child.id() as i32;
        // Only the keeper holds its end now (its commands do not: close-on-exec): when it
        // ends, reading ours ends.
        drop(theirs);
        let keeper = Arc::new(Keeper {
            socket: Arc::new(mine),
            child: Mutex::new(Some(child)),
            next: AtomicU64::new(1),
            waiting: Arc::new(Mutex::new(Waiting::default())),
            reader: Mutex::new(None),
        });
        let (socket, waiting) = (keeper.socket.clone(), keeper.waiting.clone());
        let reader =
            std::thread::Builder::new().name("keeper".into()).spawn(move || read_events(pid, &socket, &waiting))?;
        *held(&keeper.reader) = Some(reader);
        Ok(keeper)
    }

    /// Starts `sh -c command` with `env` added, `stdin` as its standard input and `output`
    /// as its standard output and error, in a process group of its own; `wake` is written
    /// when it has ended.
    pub fn spawn(
        &self,
        command: &str,
        env: &[(String, String)],
        stdin: OwnedFd,
        output: OwnedFd,
        wake: Arc<OwnedFd>,
    ) -> Result<Spawned, SpawnError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (started_tx, started) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel();
        {
            let mut w = held(&self.waiting);
            if let Some(why) = &w.gone {
                return Err(SpawnError::Gone(why.clone()));
            }
            w.runs.insert(id, Slot { pid: None, started: Some(started_tx), ended: ended_tx, wake });
        }
        let message =
            serde_json::to_vec(&Spawn { id, command: command.to_string(), env: env.to_vec() }).unwrap_or_default();
        if let Err(e) = send(self.socket.as_raw_fd(), &message, &[stdin.as_raw_fd(), output.as_raw_fd()]) {
            held(&self.waiting).runs.remove(&id);
            return Err(match e.raw_os_error() {
                Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN) => SpawnError::Gone(e.to_string()),
                Some(libc::EMSGSIZE | libc::ENOBUFS) => SpawnError::Io(io::Error::other(format!(
                    "the run's environment is too large to hand to a command ({} bytes)",
                    message.len()
                ))),
                _ => SpawnError::Io(e),
            });
        }
        // The command's copies went with the message: the worker keeps none, so that its
        // output ends when the command's processes have closed it.
        drop((stdin, output));
        match started.recv() {
            Ok(Ok(pid)) => Ok(Spawned { pid, ended }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SpawnError::Gone("it stopped answering".into())),
        }
    }
}

impl Drop for Keeper {
    /// The worker is done with it: the keeper sees its socket end, cleans up (nothing is
    /// left by then, unless a stop left commands running) and exits; it is waited for a
    /// moment, so that it is not left a zombie.
    fn drop(&mut self) {
        // SAFETY: shutdown(2) on a socket we hold; the reading thread's recvmsg returns 0.
        unsafe {
            libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR);
        }
        if let Some(r) = held(&self.reader).take() {
            let _ = r.join();
        }
        if let Some(mut child) = held(&self.child).take() {
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// The worker's reading thread: each event to the run it is about, until the keeper ends
/// (then every run still waiting hears so).
fn read_events(keeper: i32, socket: &OwnedFd, waiting: &Mutex<Waiting>) {
    let mut buf = vec![0u8; 64 * 1024];
    let why = loop {
        let n = match recv(socket.as_raw_fd(), &mut buf, &mut vec![]) {
            Ok(0) => break "it exited".to_string(),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break e.to_string(),
        };
        let Ok(event) = serde_json::from_slice::<Event>(&buf[..n]) else { continue };
        let mut w = held(waiting);
        match event {
            Event::Started { id, pid } => {
                if let Some(slot) = w.runs.get_mut(&id) {
                    slot.pid = Some(pid);
                    if let Some(tx) = slot.started.take() {
                        let _ = tx.send(Ok(pid));
                    }
                }
            }
            Event::Failed { id, error } => {
                if let Some(tx) = w.runs.remove(&id).and_then(|s| s.started) {
                    let _ = tx.send(Err(SpawnError::Io(io::Error::other(error))));
                }
            }
            Event::Ended { id, status } => {
                if let Some(slot) = w.runs.remove(&id) {
                    let _ = slot.ended.send(Ok(ExitStatus::from_raw(status)));
                    super::exec::signal(&slot.wake);
                }
            }
        }
    };
    let mut w = held(waiting);
    // The keeper has ended: its commands, which came to the worker (a subreaper), are
    // killed, with what they started.
    let groups: Vec<i32> = w.runs.values().filter_map(|s| s.pid).collect();
    orphans_killed(keeper, &groups);
    for (_, slot) in w.runs.drain() {
        if let Some(tx) = slot.started {
            let _ = tx.send(Err(SpawnError::Gone(why.clone())));
        }
        let _ = slot.ended.send(Err(io::Error::other(format!("the worker's keeper process has ended ({why})"))));
        super::exec::signal(&slot.wake);
    }
    w.gone = Some(why);
}

/// In the worker, once its keeper has ended: kills the process groups `groups` (the
/// commands that were running) and every child of the worker but the keeper, again as
/// their children come to the worker, until none is left or `CLEAN_FOR` has passed.
fn orphans_killed(keeper: i32, groups: &[i32]) {
    let until = Instant::now() + CLEAN_FOR;
    // Its socket closes as it exits, before its children have come to the worker: they have
    // once it is a zombie (or reaped).
    while Instant::now() < until
        && std::fs::read_to_string(format!("/proc/{keeper}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_none_or(|(_, rest)| !rest.starts_with('Z')))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    loop {
        // SAFETY: kill(2) of the commands' process groups (their ids are reserved while a
        // process of the group lives); then of the worker's own children, each waited for
        // by its pid (never the keeper's, which its `Child` waits for).
        let left = unsafe {
            for g in groups {
                libc::kill(-g, libc::SIGKILL);
            }
            let mut left = false;
            for child in children().into_iter().filter(|c| *c != keeper) {
                left = true;
                libc::kill(child, libc::SIGKILL);
                libc::kill(-child, libc::SIGKILL);
                libc::waitpid(child, std::ptr::null_mut(), libc::WNOHANG);
            }
            left
        };
        if !left || Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `bytes` as one packet with `fds` (SCM_RIGHTS).
fn send(socket: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    let fd_bytes = std::mem::size_of_val(fds) as libc::c_uint;
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    // u64s, for the alignment cmsghdr needs.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: a zeroed msghdr is valid; its pointers are set below to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one header and `fds` (CMSG_SPACE), so the
        // first header and its data are inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), fds.len());
        }
    }
    loop {
        // SAFETY: sendmsg(2) with the msghdr built above, whose buffers outlive the call.
        let n = unsafe { libc::sendmsg(socket, &raw const msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one packet into `buf` (its length returned; 0 at the end) and the descriptors
/// that came with it into `fds` (close-on-exec). A packet longer than `buf` is an error.
fn recv(socket: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: as in `send`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg(2) into the buffers above, which outlive the call.
    let n = unsafe { libc::recvmsg(socket, &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages recvmsg filled, by the CMSG macros, within
    // msg_controllen; each SCM_RIGHTS payload is whole fds, now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::other("a message to the keeper was cut short"));
    }
    Ok(n as usize)
}

/// Sends an event; a worker that has gone does not hear it, which is no error.
fn tell(event: &Event) {
    let _ = send(SOCKET_FD, &serde_json::to_vec(event).unwrap_or_default(), &[]);
}

/// Blocks SIGCHLD and SIGTERM and reads them from a signalfd instead: the keeper waits for
/// its children and for a word to stop in one `poll`.
fn signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset calls on a local set; sigprocmask(2) and signalfd(2) with it; the fd
    // returned is new and ours.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGCHLD);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        cvt(libc::sigprocmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()))?;
        Ok(OwnedFd::from_raw_fd(cvt(libc::signalfd(-1, &raw const set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK))?))
    }
}

/// The signals read from `sfd` now (none when there are none).
fn read_signals(sfd: &OwnedFd) -> Vec<u32> {
    let mut got = vec![];
    loop {
        // SAFETY: a zeroed signalfd_siginfo is valid; read(2) fills whole ones.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = size_of::<libc::signalfd_siginfo>();
        // SAFETY: read(2) of one signalfd_siginfo into a local of its size.
        let n = unsafe { libc::read(sfd.as_raw_fd(), (&raw mut info).cast(), size) };
        if n != size as isize {
            return got;
        }
        got.push(info.ssi_signo);
    }
}

/// Waits until one of `fds` is readable (or hung up), or `ms` pass (-1: no limit).
fn wait_for(fds: &[RawFd], ms: i32) -> Vec<bool> {
    let mut set: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: poll(2) over a slice of pollfds we own, its length given.
    unsafe {
        libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, ms);
    }
    set.iter().map(|p| p.revents != 0).collect()
}

/// The signals a command gets back to their defaults (the keeper ignores them).
const IGNORED: [libc::c_int; 5] = [libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE, libc::SIGTTOU];

/// `backfilld worker-keeper`: the keeper's life, until the worker's socket ends (or a
/// SIGTERM); returns the exit status.
pub fn keeper_main() -> u8 {
    // SAFETY: fstat(2) into a local.
    let is_socket = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(SOCKET_FD, &raw mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
    };
    if !is_socket {
        eprintln!("backfilld worker-keeper: this is the helper process `backfilld worker --exec` starts; it is not run by hand");
        return 2;
    }
    // SAFETY: process-wide settings of this single-threaded process: the socket is not
    // handed to commands; orphans of commands come to us; a process group of our own; the
    // terminal's signals ignored (SIGTERM is read from the signalfd).
    unsafe {
        libc::fcntl(SOCKET_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::setpgid(0, 0);
        for s in IGNORED {
            libc::signal(s, libc::SIG_IGN);
        }
    }
    let sfd = match signal_fd() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("backfilld worker-keeper: {e}");
            return 1;
        }
    };
    // The commands running: pid (and process group) to run.
    let mut commands: HashMap<i32, u64> = HashMap::new();
    let mut buf = vec![0u8; MAX_MESSAGE];
    'life: loop {
        let ready = wait_for(&[sfd.as_raw_fd(), SOCKET_FD], -1);
        if ready[0] {
            if read_signals(&sfd).contains(&(libc::SIGTERM as u32)) {
                break 'life;
            }
            ended(&mut commands);
        }
        if !ready[1] {
            continue;
        }
        let mut fds = vec![];
        let n = match recv(SOCKET_FD, &mut buf, &mut fds) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => break,
            Err(_) => continue,
        };
        let Ok(spawn) = serde_json::from_slice::<Spawn>(&buf[..n]) else { continue };
        let id = spawn.id;
        let Ok([stdin, output]) = <[OwnedFd; 2]>::try_from(fds) else {
            tell(&Event::Failed { id, error: "the keeper got no pipes for the command".into() });
            continue;
        };
        match start(spawn, &stdin, &output) {
            Ok(pid) => {
                commands.insert(pid, id);
                tell(&Event::Started { id, pid });
            }
            Err(error) => tell(&Event::Failed { id, error }),
        }
        // The command's pipes are closed here at once: no later command may hold them (a
        // command's output ends only when every copy of its writing end is closed).
        drop((stdin, output));
    }
    // The worker has gone (or we are told to stop): every command is killed, with what it
    // started.
    clean_up(commands.keys().copied(), &sfd);
    0
}

/// Starts `sh -c` the spawn's command as a child, in a process group of its own and a
/// child subreaper, with `stdin` and `output` as its 0, 1 and 2 (`exec_command`); its pid.
fn start(spawn: Spawn, stdin: &OwnedFd, output: &OwnedFd) -> Result<i32, String> {
    // What exec needs, made before the fork.
    let command = CString::new(spawn.command).map_err(|_| "the command holds a NUL byte".to_string())?;
    let mut env: Vec<(Vec<u8>, Vec<u8>)> =
        std::env::vars_os().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
    for (k, v) in spawn.env {
        env.retain(|(name, _)| name.as_slice() != k.as_bytes());
        env.push((k.into_bytes(), v.into_bytes()));
    }
    let env: Vec<CString> =
        env.into_iter().filter_map(|(k, v)| CString::new([k.as_slice(), b"=", v.as_slice()].concat()).ok()).collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let argv: [*const libc::c_char; 4] = [c"sh".as_ptr(), c"-c".as_ptr(), command.as_ptr(), std::ptr::null()];
    let setup =
        Setup { argv: argv.as_ptr(), envp: envp.as_ptr(), stdin: stdin.as_raw_fd(), output: output.as_raw_fd() };
    // The child's stack while it shares our memory (until it execs): its calls need little.
    let mut stack = vec![0u128; 4096];
    let top = stack.as_mut_ptr_range().end.cast::<libc::c_void>();
    // SAFETY: clone(2) as posix_spawn does it: CLONE_VM and CLONE_VFORK, so the child runs
    // `exec_command` in our memory, on its own stack (`stack`, 64 KiB, 16-byte aligned),
    // and we go on only once it has exec'd or exited; `setup` and what it points to live
    // until then. Unlike posix_spawn, it can make the command's shell a child subreaper.
    // Sharing memory, no page table is copied: a fork's cost per command.
    let pid = unsafe {
        libc::clone(
            exec_command,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw const setup).cast_mut().cast(),
        )
    };
    drop(stack);
    if pid < 0 {
        return Err(format!("clone: {}", io::Error::last_os_error()));
    }
    // SAFETY: setpgid(2) of our child, as it did itself (a no-op then, or EACCES once it has
    // exec'd): its group exists before the worker may kill it.
    unsafe {
        libc::setpgid(pid, pid);
    }
    Ok(pid)
}

/// What the command's process needs before it execs, made beforehand.
struct Setup {
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdin: RawFd,
    output: RawFd,
}

/// The command's process, sharing the keeper's memory until it execs `/bin/sh`: its own
/// process group; a child subreaper (kept across exec), so that what the command starts
/// stays below it while it runs; the signal mask and the signals the keeper ignores back to
/// their defaults; the pipes as 0, 1 and 2. Should exec fail, it says so in the output and
/// exits 127, as a shell does for a command it cannot run. Only system calls here: no
/// allocation, no lock, nothing that would touch the keeper's state.
extern "C" fn exec_command(arg: *mut libc::c_void) -> libc::c_int {
    const FAILED: &[u8] = b"backfilld worker: /bin/sh could not be run\n";
    // SAFETY: `arg` is the keeper's `Setup`, alive until this process execs or exits (the
    // keeper waits: CLONE_VFORK); the calls are async-signal-safe system calls.
    unsafe {
        let setup = &*arg.cast::<Setup>();
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
        for s in IGNORED {
            libc::signal(s, libc::SIG_DFL);
        }
        if libc::dup2(setup.stdin, 0) >= 0 && libc::dup2(setup.output, 1) >= 0 && libc::dup2(setup.output, 2) >= 0 {
            libc::execve(c"/bin/sh".as_ptr(), setup.argv, setup.envp);
        }
        libc::write(2, FAILED.as_ptr().cast(), FAILED.len());
        libc::_exit(127)
    }
}

/// Reaps what has ended: a command's end is told to the worker, and what is left of its
/// process group is killed (a command's background processes end with it); every other
/// child is killed. Those come to the keeper only once their command has ended: while a
/// command runs, its shell is the subreaper of what it starts, and when the shell ends,
/// what it leaves comes here (also what left its process group, `setsid`).
fn ended(commands: &mut HashMap<i32, u64>) {
    let mut any = false;
    while let Some((pid, status)) = reap() {
        any = true;
        if let Some(id) = commands.remove(&pid) {
            tell(&Event::Ended { id, status });
            // SAFETY: kill(2) of the process group of the command just reaped: the id stays
            // reserved while a process of the group lives; with none, the call fails.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    if any {
        kill_children(|pid| !commands.contains_key(&pid));
    }
}

/// SIGKILL to each child `which` selects, and to the process group it leads, if any (a
/// process that left its command's group with `setsid` leads its own).
fn kill_children(which: impl Fn(i32) -> bool) {
    for child in children().into_iter().filter(|c| which(*c)) {
        // SAFETY: kill(2) of our own child, not yet reaped; a negative pid of a live child
        // names a group only if that child leads it.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::kill(-child, libc::SIGKILL);
        }
    }
}

/// Reaps one child that has ended, with its wait status; `None` when none has (or none is
/// left).
fn reap() -> Option<(i32, i32)> {
    let mut status = 0;
    // SAFETY: waitpid(2) for any child, into a local.
    let pid = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Kills the process groups `groups` and every child of this process, again and again as
/// their children come to us (we are a subreaper), until no child is left or `CLEAN_FOR`
/// has passed (a process that SIGKILL does not end is in an uninterruptible wait).
fn clean_up(groups: impl Iterator<Item = i32> + Clone, sfd: &OwnedFd) {
    let until = Instant::now() + CLEAN_FOR;
    loop {
        for g in groups.clone() {
            // SAFETY: kill(2) of a command's process group, as in `ended`.
            unsafe {
                libc::kill(-g, libc::SIGKILL);
            }
        }
        kill_children(|_| true);
        while reap().is_some() {}
        // SAFETY: waitpid(2) with WNOHANG: -1 (ECHILD) once no child is left.
        let left = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } >= 0;
        if !left || Instant::now() >= until {
            return;
        }
        wait_for(&[sfd.as_raw_fd()], 20);
        read_signals(sfd);
    }
}

/// The pids of this process's children: from /proc/self/task/TID/children for each of its
/// threads, or, where the kernel lacks those files, from every process's parent in /proc.
pub(super) fn children() -> Vec<i32> {
    // SAFETY: getpid(2).
    let me = unsafe { libc::getpid() };
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let mut found = None;
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                found
                    .get_or_insert_with(Vec::new)
                    .extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
        if let Some(found) = found {
            return found;
        }
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read(e.path().join("stat")).ok()?;
            // The parent is the second field after the name, which ends at the last ')'.
            let after = &stat[stat.iter().rposition(|b| *b == b')')? + 1..];
            let ppid: i32 = std::str::from_utf8(after).ok()?.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == me).then_some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair(2) into a local array; both fds are new and ours.
        unsafe {
            assert_eq!(
                libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()),
                0
            );
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        }
    }

    #[test]
    fn a_message_arrives_whole_with_its_descriptors() {
        let (a, b) = pair();
        let (mut reader, writer) = std::io::pipe().unwrap();
        let message = serde_json::to_vec(&Spawn {
            id: 7,
            command: "echo $X".into(),
            env: vec![("X".into(), "y".repeat(100_000))],
        })
        .unwrap();
        send(a.as_raw_fd(), &message, &[writer.as_raw_fd()]).unwrap();
        drop(writer);
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut fds = vec![];
        let n = recv(b.as_raw_fd(), &mut buf, &mut fds).unwrap();
        let got: Spawn = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!((got.id, got.command.as_str(), got.env[0].1.len()), (7, "echo $X", 100_000));
        // The descriptor that came is the pipe's writing end: what is written through it is
        // read from the pipe, which ends once it is closed.
        let [w]: [OwnedFd; 1] = fds.try_into().unwrap();
        std::fs::File::from(w).write_all(b"through").unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through");
    }

    #[test]
    fn a_packet_longer_than_the_buffer_is_an_error_and_the_end_reads_zero() {
        let (a, b) = pair();
        send(a.as_raw_fd(), &[1u8; 100], &[]).unwrap();
        assert!(recv(b.as_raw_fd(), &mut [0u8; 10], &mut vec![]).is_err());
        drop(a);
        assert_eq!(recv(b.as_raw_fd(), &mut [0u8; 10], &mut vec![]).unwrap(), 0);
    }

    #[test]
    fn events_read_back_as_written() {
        for event in [
            Event::Started { id: 1, pid: 42 },
            Event::Failed { id: 2, error: "fork: no".into() },
            Event::Ended { id: 3, status: 256 },
        ] {
            let text = serde_json::to_string(&event).unwrap();
            let back: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
        assert_eq!(
            serde_json::to_string(&Event::Ended { id: 3, status: 256 }).unwrap(),
            r#"{"ended":{"id":3,"status":256}}"#
        );
    }

    #[test]
    fn a_process_s_children_are_found() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = children();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
    }
}
