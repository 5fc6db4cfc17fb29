//! Helpers of the bridge tests: `shmring bridge` children whose stderr is
//! collected as it comes, free loopback ports, and numbered lines.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ChildGuard, shmring_bin, wait_until};

/// A running `shmring bridge ...` and what it has said on stderr so far.
pub struct Bridge {
    pub child: ChildGuard,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Bridge {
    /// Starts `shmring --dir DIR bridge args...` (stdout discarded).
    pub fn start(dir: &Path, args: &[&str]) -> Bridge {
        let mut child = shmring_bin()
            .arg("--dir")
            .arg(dir)
            .arg("bridge")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmring bridge");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Bridge {
            child: ChildGuard(Some(child)),
            log,
            reader: Some(reader),
        }
    }

    /// Everything said so far, one line each.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The first line said so far that contains `text`.
    pub fn line_with(&self, text: &str) -> Option<String> {
        self.lines().into_iter().find(|l| l.contains(text))
    }

    /// Waits (at most `limit`) for a line that contains `text`; panics
    /// with the log when none comes.
    pub fn wait_for(&self, text: &str, limit: Duration) -> String {
        self.try_wait_for(text, limit)
            .unwrap_or_else(|| panic!("no {text:?} within {limit:?}; said: {:#?}", self.lines()))
    }

    /// [`Self::wait_for`], `None` when no such line came in time.
    pub fn try_wait_for(&self, text: &str, limit: Duration) -> Option<String> {
        let mut found = None;
        wait_until(limit, || {
            found = self.line_with(text);
            found.is_some()
        });
        found
    }

    /// Waits for the process to end (at most `limit`) and returns its exit
    /// code and everything it said.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let status = self.child.wait_within(limit);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status.code(), self.lines())
    }

    /// Sends `signal`, then [`Self::finish`]es.
    pub fn stop(self, signal: nix::sys::signal::Signal) -> (Option<i32>, Vec<String>) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.pid()), signal)
            .expect("signal the bridge");
        self.finish(Duration::from_secs(30))
    }

    /// kill -9, and the log up to then.
    pub fn kill9(mut self) -> Vec<String> {
        self.child.kill9();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.lines()
    }
}

/// A loopback TCP port nobody listens on now (the kernel's pick for a
/// socket bound to port 0, closed again).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `1\n2\n...n\n`.
pub fn numbered_lines(n: u64) -> Vec<u8> {
    let mut s = String::new();
    for i in 1..=n {
        s.push_str(&i.to_string());
        s.push('\n');
    }
    s.into_bytes()
}

/// The numbers in `recv`'s output, one per line.
pub fn numbers(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}")))
        .collect()
}

/// The value after `word ` in a bridge's counters line.
pub fn counter(line: &str, word: &str) -> u64 {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                panic!("{word} has no number in {line:?}");
            });
        }
    }
    panic!("no {word} in {line:?}")
}
