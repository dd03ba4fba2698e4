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
    /// Starts `sh -c command` with `env` added to the worker's environment and `input` on its
    /// standard input, in a new process group.
    pub fn start(command: &str, env: &[(String, String)], input: Vec<u8>) -> std::io::Result<Running> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let tail = Arc::new(Mutex::new(Tail::default()));
        let mut readers = vec![];
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input must not block the worker: the write
            // runs on a thread of its own, and a closed pipe is no error.
            readers.push(std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            }));
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
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(&buf[..n]);
                }
            }));
        }
        let (tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Ok(Running { pid, exited, tail, readers })
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
    pub fn kill(&self) -> Option<Ended> {
        // SAFETY: kill(2) with a negative pid signals that process group; the group is the
        // command's own (process_group(0) made its leader's pid the group id), and the
        // leader is not yet reaped while `exited` has not answered, so the id is not reused.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
        self.wait_until(Instant::now() + Duration::from_secs(5))
    }

    /// The tail of the output so far, once the output has ended or `grace` has passed (a
    /// process the command left running in the background may hold its output open).
    pub fn finish(self, grace: Duration) -> (String, u64) {
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

/// The exit code or the signal of a finished command, as the run's metrics say them.
pub fn describe(status: &ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}
