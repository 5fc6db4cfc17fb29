//! Memory backing: huge pages (hugetlbfs as root; shmem THP where the
//! kernel allows), mlock limits, and anonymous memfd rings passed over a
//! Unix socket.

mod common;

use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shmring::raw::{bytes_spec, typed_spec};
use shmring::segment::HugePages;
use shmring::spsc::{self, Consumer, Producer};
use shmring::{Error, SegmentOptions, frames};

#[test]
fn backing_child() {
    let Some(role) = child_role() else { return };
    match role.as_str() {
        // Opens the hugetlbfs ring, drains COUNT values and prints its
        // mapping's page facts.
        "huge-consumer" => {
            let count: u64 = env_str("B_COUNT").parse().unwrap();
            let mut rx = Consumer::<u64>::builder("r")
                .dir(env_str("B_DIR"))
                .wait_for(Duration::from_secs(20))
                .open()
                .unwrap();
            for i in 0..count {
                assert_eq!(rx.pop_timeout(Some(Duration::from_secs(30))), Ok(i));
            }
            let facts = rx.segment().mapping_facts().unwrap();
            println!("facts {} {}", facts.kernel_page_kib, facts.huge());
        }
        // Under a 64 KiB RLIMIT_MEMLOCK without CAP_IPC_LOCK: a 1 MiB
        // locked ring is refused, a 16 KiB one is locked.
        "locker" => {
            drop_cap_ipc_lock();
            let limit = 64 * 1024;
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_MEMLOCK,
                limit,
                limit,
            )
            .unwrap();
            let dir = env_str("B_DIR");
            let opts = SegmentOptions::new().dir(&dir).lock_memory(true);
            match opts.create("big", &bytes_spec(&frames::layout(1 << 20).unwrap())) {
                Err(e @ Error::MemoryLockLimit { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("65536") && text.contains("ulimit -l"),
                        "{text}"
                    );
                    println!("refused: {text}");
                }
                other => panic!("expected MemoryLockLimit, got {other:?}"),
            }
            let seg = opts
                .create("small", &bytes_spec(&frames::layout(4096).unwrap()))
                .unwrap();
            let facts = seg.mapping_facts().unwrap();
            assert_eq!(facts.locked_kib, facts.size_kib, "{facts:?}");
            println!("locked {} KiB", facts.locked_kib);
        }
        // Receives an anonymous ring over the socket and drains it.
        "memfd-consumer" => {
            let count: u64 = env_str("B_COUNT").parse().unwrap();
            let sock = UnixStream::connect(env_str("B_SOCK")).unwrap();
            let mut rx = Consumer::<u64>::builder("memfd").receive(&sock).unwrap();
            println!("attached");
            for i in 0..count {
                assert_eq!(rx.pop_timeout(Some(Duration::from_secs(30))), Ok(i));
            }
            println!("drained");
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// Clears CAP_IPC_LOCK (which exempts root from RLIMIT_MEMLOCK) from this
/// process's effective and permitted sets.
fn drop_cap_ipc_lock() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_IPC_LOCK: u32 = 14;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY (test): capget/capset with a v3 header and two data structs,
    // as the kernel ABI requires.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_IPC_LOCK);
        data[0].permitted &= !(1 << CAP_IPC_LOCK);
        assert_eq!(libc::syscall(libc::SYS_capset, &header, data.as_ptr()), 0);
    }
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Restores vm.nr_hugepages and unmounts the hugetlbfs when dropped, also
/// when the test fails.
struct HugeSetup {
    original: String,
    mount: std::path::PathBuf,
    mounted: bool,
}

impl Drop for HugeSetup {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.mount, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", &self.original);
    }
}

#[test]
fn hugetlbfs_ring_across_processes_is_backed_by_huge_pages() {
    if child_role().is_some() {
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED: not root: reserving huge pages and mounting hugetlbfs need root");
        return;
    }
    let holder = TestDir::new("huge");
    let original = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap();
    let mut setup = HugeSetup {
        original: original.clone(),
        mount: holder.path.join("mnt"),
        mounted: false,
    };
    std::fs::create_dir(&setup.mount).unwrap();
    nix::mount::mount(
        Some("none"),
        &setup.mount,
        Some("hugetlbfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .unwrap();
    setup.mounted = true;
    let dir = setup.mount.clone();
    let builder = |name: &str, capacity: u64| {
        Producer::<u64>::builder(name)
            .dir(&dir)
            .capacity(capacity)
            .huge_pages(HugePages::Require)
    };

    // More huge pages than are free: refused, naming HugePages_Free.
    let free = meminfo("HugePages_Free:");
    let too_big = ((free + 1) * (2 << 20)).next_power_of_two();
    match builder("big", too_big).create() {
        Err(e @ Error::HugePagesUnavailable { .. }) => {
            let text = e.to_string();
            assert!(text.contains("HugePages_Free") && text.contains("nr_hugepages"));
        }
        other => panic!("expected HugePagesUnavailable, got {other:?}"),
    }

    // Reserve a few and run a ring across two processes.
    let total: u64 = original.trim().parse::<u64>().unwrap() + 4;
    std::fs::write("/proc/sys/vm/nr_hugepages", total.to_string()).unwrap();
    assert!(
        meminfo("HugePages_Free:") >= 1,
        "the kernel reserved no huge page"
    );
    let mut tx = builder("r", 1024).create().unwrap();
    let seg = tx.segment().clone();
    assert_eq!(seg.descriptor().page_size_kib, 2048);
    assert_eq!(seg.layout().total_size(), 2 << 20);
    let count = 100_000u64;
    let child = spawn_self(
        "backing_child",
        "huge-consumer",
        &[
            ("B_DIR", dir.display().to_string()),
            ("B_COUNT", count.to_string()),
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut child = ChildGuard(Some(child));
    let stdout = child.child().stdout.take().unwrap();
    for i in 0..count {
        tx.push_timeout(i, Some(Duration::from_secs(30))).unwrap();
    }
    let line = read_line_starting(stdout, "facts");
    assert!(child.wait_within(Duration::from_secs(30)).success());
    assert_eq!(line.trim(), "facts 2048 true", "child's mapping: {line}");
    let ours = seg.mapping_facts().unwrap();
    assert!(ours.huge() && ours.kernel_page_kib == 2048, "{ours:?}");
    let info = shmring::segment::inspect(&dir, "r").unwrap();
    assert_eq!(info.huge_active, Some(true));
    assert!(
        info.mappings.iter().all(|m| m.huge()),
        "{:?}",
        info.mappings
    );
    eprintln!("hugetlbfs ring: 100000 values across processes on 2048 KiB pages");
    drop(tx);
    drop(seg);
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "ring left behind"
    );
    drop(setup);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap(),
        original
    );
    holder.finish();
}

#[test]
fn mlock_beyond_the_limit_is_refused_and_within_it_pages_are_locked() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("mlock");
    let out = ChildGuard(Some(
        spawn_self(
            "backing_child",
            "locker",
            &[("B_DIR", dir.path.display().to_string())],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    ))
    .output_within(Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("refused: ") && stdout.contains("locked "),
        "{stdout}"
    );
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("refused") || l.starts_with("locked"))
    {
        eprintln!("{line}");
    }
    dir.finish();
}

/// The memfd link of this process's open descriptors or mappings of
/// `label`, if any.
fn memfd_traces(label: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(entry.path())
            && target.to_string_lossy().contains(label)
        {
            found.push(format!("fd {}", target.display()));
        }
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    found.extend(
        maps.lines()
            .filter(|l| l.contains(label))
            .map(str::to_string),
    );
    found
}

#[test]
fn memfd_ring_over_a_socket_carries_a_million_and_leaves_nothing() {
    if child_role().is_some() {
        return;
    }
    let files = TestDir::new("memfd");
    let label = format!("shmring:memfd-{}", std::process::id());
    let sock_path = files.file("sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let count = 1_000_000u64;
    {
        let seg = Arc::new(
            SegmentOptions::new()
                .create_anonymous(
                    label.trim_start_matches("shmring:"),
                    &typed_spec::<u64>(&spsc::layout::<u64>(1024).unwrap()),
                )
                .unwrap(),
        );
        let mut child = ChildGuard(Some(
            spawn_self(
                "backing_child",
                "memfd-consumer",
                &[
                    ("B_SOCK", sock_path.display().to_string()),
                    ("B_COUNT", count.to_string()),
                ],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
        ));
        let (stream, _) = listener.accept().unwrap();
        seg.send(&stream).unwrap();
        let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
        let started = std::time::Instant::now();
        for i in 0..count {
            tx.push_timeout(i, Some(Duration::from_secs(30))).unwrap();
        }
        let stdout = child.child().stdout.take().unwrap();
        read_line_starting(stdout, "drained");
        eprintln!(
            "memfd ring: {count} values to a process that got the fd over a socket, in {:.2?}",
            started.elapsed()
        );
        assert!(child.wait_within(Duration::from_secs(30)).success());

        // Sealed: neither shrinking nor growing is possible.
        let fd_path = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| std::fs::read_link(p).is_ok_and(|t| t.to_string_lossy().contains(&label)))
            .expect("our memfd");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fd_path)
            .unwrap();
        assert!(file.set_len(0).is_err(), "a sealed ring was truncated");
        assert!(file.set_len(1 << 30).is_err(), "a sealed ring was grown");
        drop(file);
        assert!(!memfd_traces(&label).is_empty());
        drop(tx);
    }
    let left = memfd_traces(&label);
    assert!(left.is_empty(), "the memfd outlived its users: {left:?}");
    drop(listener);
    std::fs::remove_file(&sock_path).unwrap();
    files.finish();
}

#[test]
fn a_received_descriptor_that_is_not_a_sealed_memfd_is_refused() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("memfd-refuse");
    // A real ring, but a named tmpfs file: it cannot carry the seals.
    let seg = create_u64_ring(&dir.path, "r", 64);
    let file = std::fs::File::open(dir.file("r")).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let fds = [std::os::fd::AsRawFd::as_raw_fd(&file)];
    nix::sys::socket::sendmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&a),
        &[std::io::IoSlice::new(b"R")],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    match SegmentOptions::new().receive(&b) {
        Err(e @ Error::Corrupted { .. }) => assert!(e.to_string().contains("sealed"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // And a named ring is not sent at all.
    assert!(matches!(seg.send(&a), Err(Error::InvalidConfig { .. })));
    drop((file, seg));
    dir.finish();
}
