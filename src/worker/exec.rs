//! Running one run's command: `sh -c CMD` in a process group of its own, with the run's
//! environment and its JSON on standard input, keeping the tail of its output, and killing
//! the whole group when asked (a timeout, a cancel, a stop).

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::plan::Tail;

/// A command started and not yet waited for.
pub struct Running {
    pid: i32,
    exited: Receiver<std::io::Result<ExitStatus>>,
    tail: Arc<Mutex<Tail>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a command ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited, or a signal ended it.
    Status(ExitStatus),
    /// Waiting for it failed (not expected on Linux).
    Lost(String),
}

impl Running {
    /// Starts `sh -c command` with `env` added to the worker's environment (less the
    /// worker's own credentials) and `input` on its standard input, in a new process group.
    pub fn start(command: &str, env: &[(String, String)], input: Vec<u8>) -> std::io::Result<Running> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env_remove("BACKFILLD_API_KEY")
            .env_remove("BACKFILLD_TOKEN")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let started = Self::watch(&mut child, input);
        if started.is_err() {
            // Nobody will wait for it: kill its group (not reaped, its id is still the
            // group's) and reap it here.
            // SAFETY: as in `signal_group`.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        let (tail, readers) = started?;
        let (tx, exited) = mpsc::channel();
        let waiter = thread("run-wait", move || {
            let _ = tx.send(child.wait());
        });
        let running = Running { pid, exited, tail, readers };
        match waiter {
            Ok(_) => Ok(running),
            Err(e) => {
                running.signal_group();
                Err(e)
            }
        }
    }

    /// The threads that feed the command its input and keep the tail of its output.
    #[allow(clippy::type_complexity)]
    fn watch(
        child: &mut std::process::Child,
        input: Vec<u8>,
    ) -> std::io::Result<(Arc<Mutex<Tail>>, Vec<JoinHandle<()>>)> {
        let tail = Arc::new(Mutex::new(Tail::default()));
        let mut readers = vec![];
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input must not block the worker: the write
            // runs on a thread of its own, and a closed pipe is no error.
            readers.push(thread("run-stdin", move || {
                let _ = stdin.write_all(&input);
            })?);
        }
        let out: Vec<Box<dyn Read + Send>> = [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut stream in out {
            let tail = tail.clone();
            readers.push(thread("run-output", move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(&buf[..n]);
                }
            })?);
        }
        Ok((tail, readers))
    }

    /// Waits until the command ends or `until` passes (then `None`).
    pub fn wait_until(&self, until: Instant) -> Option<Ended> {
        let left = until.saturating_duration_since(Instant::now());
        match self.exited.recv_timeout(left) {
            Ok(Ok(status)) => Some(Ended::Status(status)),
            Ok(Err(e)) => Some(Ended::Lost(e.to_string())),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Ended::Lost("the waiting thread ended".into())),
        }
    }

    /// Kills the command's whole process group (SIGKILL) and waits for the command itself.
    /// Callers ask `wait_until(now)` first, so that a command that has just ended is not
    /// reported killed.
    pub fn kill(&self) -> Option<Ended> {
        self.signal_group();
        self.wait_until(Instant::now() + Duration::from_secs(5))
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

    /// The tail of the output, once the output has ended or `grace` has passed; what the
    /// command left running in its process group is killed first.
    pub fn finish(self, grace: Duration) -> (String, u64) {
        self.signal_group();
        let deadline = Instant::now() + grace;
        for reader in self.readers {
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        let tail = self.tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tail.text()
    }
}

fn thread(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// The exit code or the signal of a finished command, as the run's metrics say them.
pub fn describe(status: &ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}
