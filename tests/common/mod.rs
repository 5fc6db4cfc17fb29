//! Helpers shared by the integration tests: private directories that must be
//! left empty, child processes (this test binary re-executed), and a
//! watchdog. The CLI crate's tests (cli/tests/) include this module too and
//! add the helpers that run the `shmring` binary (cli/tests/common/mod.rs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name: test tag, pid, counter.
pub fn unique(tag: &str) -> String {
    format!(
        "t-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private directory under /dev/shm (a tmpfs) for one test. Dropping it
/// removes it and everything in it, even when the test fails; call
/// [`TestDir::finish`] at the end of a passing test to also assert that the
/// code under test left nothing behind.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let path = PathBuf::from("/dev/shm").join(format!("shmring-test-{}", unique(tag)));
        std::fs::create_dir(&path).expect("create test dir in /dev/shm");
        TestDir { path }
    }

    /// Names of whatever is left in the directory.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.path)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Asserts the directory is empty; it is removed on drop either way.
    pub fn finish(self) {
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "left behind in {}: {left:?}",
            self.path.display()
        );
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Kills a child on drop (so a failing test never leaves processes running).
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn pid(&self) -> i32 {
        self.0.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child present")
    }

    /// Sends SIGKILL and reaps.
    pub fn kill9(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.0 = None;
    }

    /// Waits up to `limit` for exit; kills and panics past it.
    pub fn wait_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.0.as_mut().expect("child present");
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                self.0 = None;
                return st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.0 = None;
                panic!("child did not finish within {limit:?} (killed)");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `limit` and returns the output. Pipes are drained while
    /// waiting, so a child that writes a lot never blocks on a full pipe.
    pub fn output_within(mut self, limit: Duration) -> std::process::Output {
        use std::io::Read;
        fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        }
        let deadline = Instant::now() + limit;
        let mut child = self.0.take().expect("child present");
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let err = err.join().unwrap_or_default();
                panic!(
                    "child did not finish within {limit:?} (killed); stderr: {}",
                    String::from_utf8_lossy(&err)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The environment variable that tells a re-executed test binary which
/// child role to play.
pub const CHILD_ENV: &str = "SHMRING_TEST_CHILD";

/// Re-executes this test binary running only the test `entry` (which must
/// call [`child_role`] first) with the role and extra environment.
pub fn spawn_self(entry: &str, role: &str, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_ENV, role)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// In a child entry test: the role to play, if this process is a child.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Reads a `NAME=value` variable set by the parent.
pub fn env_str(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

/// Polls `cond` every millisecond until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// CPU time of every thread of this process (each thread's
/// /proc/self/task/*/schedstat: nanoseconds on a CPU, precise).
pub fn process_cpu() -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            ns += s.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        }
    }
    Duration::from_nanos(ns)
}

/// A child's report: its output's line that starts with a prefix, made
/// of `key=value` words.
pub struct Report {
    pub line: String,
}

impl Report {
    /// The line of `out` (a child that must have succeeded) that starts
    /// with `prefix`; printed for the log.
    pub fn find(out: &std::process::Output, prefix: &str) -> Report {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no report: {stdout}"))
            .to_string();
        eprintln!("{line}");
        Report { line }
    }

    /// The value of `key` (given with its `=`).
    pub fn field(&self, key: &str) -> String {
        self.line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing in {}", self.line))
            .to_string()
    }

    /// Asserts that `cpu_ns=` stayed under 1% of one core over `wall_ns=`,
    /// a window of at least `window`.
    pub fn assert_idle(&self, window: Duration, what: &str) {
        let cpu: u64 = self.field("cpu_ns=").parse().unwrap();
        let wall: u64 = self.field("wall_ns=").parse().unwrap();
        assert!(
            u128::from(wall) >= window.as_nanos(),
            "measured over {wall} ns"
        );
        assert!(cpu * 100 < wall, "{what} used {cpu} ns of CPU in {wall} ns");
    }
}

/// Is this process root (some tests mount file systems)?
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Reads lines from a child's pipe until one starts with `prefix` (the test
/// harness prints its own lines first) and returns it; panics at EOF.
pub fn read_line_starting(pipe: impl std::io::Read, prefix: &str) -> String {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(pipe);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).expect("read child pipe");
        assert!(n > 0, "child closed its pipe before printing {prefix:?}");
        if line.starts_with(prefix) || line.contains(prefix) {
            return line;
        }
    }
}

/// Attaches to an existing ring in `dir` (a child's side of a test), waiting
/// up to 20 s for its creator.
pub fn open_ring(dir: &str, name: &str) -> std::sync::Arc<shmring::Segment> {
    std::sync::Arc::new(
        shmring::SegmentOptions::new()
            .dir(dir)
            .timeout(Duration::from_secs(20))
            .open(name)
            .expect("open ring"),
    )
}

/// Creates an SPSC ring of `capacity` u64 slots named `name` in `dir`.
pub fn create_u64_ring(dir: &Path, name: &str, capacity: u64) -> shmring::Segment {
    shmring::SegmentOptions::new()
        .dir(dir)
        .create(
            name,
            &shmring::raw::typed_spec::<u64>(&shmring::spsc::layout::<u64>(capacity).unwrap()),
        )
        .expect("create ring")
}

/// A child's side: consumes u64 messages from the MPMC ring `name` until
/// every producer is gone, asserting that each producer's sequence (the bits
/// below `tag_shift`; the tag is above) only grows, then writes everything it
/// got to the new file `out` (little-endian u64s). Prints "ready" once
/// attached.
pub fn drain_mpmc_to_file(dir: &str, name: &str, out: &str, tag_shift: u32) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut rx = shmring::mpmc::Consumer::<u64>::attach(open_ring(dir, name)).unwrap();
    println!("ready");
    let mut got = Vec::new();
    let mut last = std::collections::HashMap::<u64, u64>::new();
    loop {
        match rx.pop_timeout(Some(Duration::from_secs(60))) {
            Ok(v) => {
                let (tag, seq) = (v >> tag_shift, v & ((1 << tag_shift) - 1));
                if let Some(&prev) = last.get(&tag) {
                    assert!(seq > prev, "producer {tag}: {seq} after {prev}");
                }
                last.insert(tag, seq);
                got.push(v);
            }
            Err(shmring::mpmc::PopError::Disconnected) => break,
            Err(e) => panic!("consumer: {e}"),
        }
    }
    let bytes: Vec<u8> = got.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
}

/// A tmpfs with `nr_inodes` inodes mounted on a fresh test directory (the
/// directory itself takes one); unmounted on drop. `None`, with a SKIPPED
/// line naming `test`, when not root or the mount fails.
pub struct FewInodes {
    pub dir: TestDir,
}

impl FewInodes {
    pub fn mount(test: &str, nr_inodes: u32) -> Option<FewInodes> {
        if !is_root() {
            eprintln!("SKIPPED {test}: mounting a tmpfs needs root");
            return None;
        }
        let dir = TestDir::new(test);
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size=4m,nr_inodes={nr_inodes}"),
                "shmring-test",
            ])
            .arg(&dir.path)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("SKIPPED {test}: mount failed ({status:?})");
            return None;
        }
        Some(FewInodes { dir })
    }
}

impl Drop for FewInodes {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir.path).status();
    }
}
